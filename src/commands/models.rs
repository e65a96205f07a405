//! `mixdet models`: the model names with their parameter counts and feature maps.

use std::process::ExitCode;

use anyhow::Result;
use mixdet_backbones::{ModelSpec, MODEL_NAMES};

/// Arguments of `mixdet models`.
#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mixdet models`.
pub fn run(args: ModelsArgs) -> Result<ExitCode> {
    if !args.json {
        println!("{:<28} {:>12} {:>14}  features (channels@stride)", "model", "params", "features_only");
    }
    for name in MODEL_NAMES {
        let s = ModelSpec::by_name(name, None)?.summary()?;
        if args.json {
            let features: Vec<_> = s
                .features
                .iter()
                .map(|f| serde_json::json!({"channels": f.channels, "stride": f.stride, "module": f.module}))
                .collect();
            let line = serde_json::json!({
                "model": name, "params": s.params, "features_only_params": s.backbone_params, "features": features
            });
            println!("{line}");
        } else {
            let feats: Vec<String> = s.features.iter().map(|f| format!("{}@{}", f.channels, f.stride)).collect();
            println!("{name:<28} {:>12} {:>14}  {}", s.params, s.backbone_params, feats.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
