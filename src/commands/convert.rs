//! `mixdet convert`: a PyTorch pickle or safetensors state dict to safetensors, optionally in
//! another float type (the shipped detector is stored in f16), without Python.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::DType;

/// Arguments of `mixdet convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// State dict to read (.safetensors, .pth, .pt, .bin).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// safetensors file to write; an existing file is never replaced.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Float type of the floating-point tensors (f32, f16 or bf16); integer tensors are kept.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

/// Runs `mixdet convert`.
pub fn run(args: ConvertArgs) -> Result<ExitCode> {
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => bail!("--dtype {other}: expected f32, f16 or bf16"),
    };
    if args.out.exists() {
        bail!("{}: already exists; not replacing it", args.out.display());
    }
    let sd = mixdet_backbones::weights::read_state_dict(&args.weights)?;
    let converted = sd
        .into_iter()
        .map(|(k, t)| {
            let t = if t.dtype().is_float() { t.to_dtype(dtype)? } else { t };
            Ok((k, t))
        })
        .collect::<Result<std::collections::HashMap<_, _>>>()
        .with_context(|| format!("converting {}", args.weights.display()))?;
    crate::output::write_safetensors(&converted, &args.out)?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!("{}: {} tensors, {:.1} MB", args.out.display(), converted.len(), bytes as f64 / 1e6);
    Ok(ExitCode::SUCCESS)
}
