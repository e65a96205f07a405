//! `mixdet models`: the backbones and detectors with their parameter counts, multiply-adds and
//! feature maps.

use std::process::ExitCode;

use anyhow::Result;
use mixdet_backbones::{ModelSpec, MODEL_NAMES};
use mixdet_detect::{DetectorConfig, SsdLite, BUILTIN_NAMES};

/// Arguments of `mixdet models`.
#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Detector config .json (or built-in name) to list too (repeatable).
    #[arg(long, value_name = "CONFIG")]
    pub detector: Vec<String>,
}

/// Runs `mixdet models`.
pub fn run(args: ModelsArgs) -> Result<ExitCode> {
    if !args.json {
        println!(
            "{:<28} {:>12} {:>14} {:>8}  features (channels@stride)",
            "backbone", "params", "features_only", "MMACs"
        );
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
                "model": name, "params": s.params, "features_only_params": s.backbone_params, "features": features,
                "macs": s.macs, "input": 224
            });
            println!("{line}");
        } else {
            let feats: Vec<String> = s.features.iter().map(|f| format!("{}@{}", f.channels, f.stride)).collect();
            println!(
                "{name:<28} {:>12} {:>14} {:>8.1}  {}",
                s.params,
                s.backbone_params,
                s.macs as f64 / 1e6,
                feats.join(" ")
            );
        }
    }
    if !args.json {
        println!("\n{:<40} {:>12} {:>8}  input", "detector", "params", "MMACs");
    }
    let extra = args.detector.iter().map(String::as_str);
    for (i, name) in BUILTIN_NAMES.iter().copied().chain(extra).enumerate() {
        let cfg = DetectorConfig::resolve(name)?;
        // A `--detector` that is a built-in (by name, or a copy of its file) is already listed.
        if i >= BUILTIN_NAMES.len() && DetectorConfig::resolve(&cfg.name).is_ok_and(|builtin| builtin == cfg) {
            continue;
        }
        let name = cfg.name.as_str();
        let s = SsdLite::summary(&cfg)?;
        let [h, w] = cfg.input_size;
        if args.json {
            let line = serde_json::json!({"detector": name, "params": s.params, "macs": s.macs, "input": [h, w]});
            println!("{line}");
        } else {
            println!("{name:<40} {:>12} {:>8.1}  {h}x{w}", s.params, s.macs as f64 / 1e6);
        }
    }
    Ok(ExitCode::SUCCESS)
}
