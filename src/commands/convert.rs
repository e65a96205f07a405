//! `mixdet convert`: a PyTorch pickle, a safetensors state dict or a TensorFlow 1 frozen graph
//! (`frozen_inference_graph.pb`) to safetensors, optionally in another float type (the shipped
//! detectors are stored in f16), without Python or TensorFlow. A frozen graph's variables keep
//! their TF names with PyTorch's OIHW conv layout (see `mixdet_backbones::tf_graph`), and must
//! form the detector they are converted for, so that a graph of another model is refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use mixdet_detect::{DetectorConfig, Family, SsdLite};

/// Arguments of `mixdet convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// State dict to read (.safetensors, .pth, .pt, .bin) or TF frozen graph (.pb).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// safetensors file to write; an existing file is never replaced.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Float type of the floating-point tensors (f32, f16 or bf16); integer tensors are kept.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Check that the weights load into this detector (built-in name or config .json) before
    /// writing. Default for a .pb: ssdlite300_mobilenet_v2_person's layout, with the class count
    /// taken from the graph (TF's ssdlite_mobilenet_v2_coco passes too).
    #[arg(long)]
    pub model: Option<String>,
}

/// The TF detector layout a frozen graph is checked against when no `--model` is given.
const TF_LAYOUT: &str = "ssdlite300_mobilenet_v2_person";

/// Loads `sd` into the detector `model` strictly, on the CPU, and says what was expected if it
/// does not fit.
fn check_fits(model: &str, sd: &HashMap<String, Tensor>, source: &str, graph: bool) -> Result<String> {
    let cfg = DetectorConfig::resolve(model)?;
    let family = cfg.family;
    let name = cfg.name.clone();
    match SsdLite::from_state_dict(cfg, sd.clone(), source, &Device::Cpu) {
        Ok(m) => Ok(format!("{name} ({} classes)", m.config().num_classes)),
        Err(e) if graph && family == Family::TfOdApi => bail!(
            "{source}: a TensorFlow frozen graph, but not a TF Object Detection API SSD with {name}'s layout \
             (MobileNetV2 feature extractor `FeatureExtractor/MobilenetV2/...`, 4 extra layers, 6 depthwise \
             `BoxPredictor_i`; pass --model for another layout): {}",
            mismatch(&e)
        ),
        Err(e) => bail!("{source}: does not fit {name}: {}", mismatch(&e)),
    }
}

/// The mismatch part of a loading error.
fn mismatch(e: &mixdet_backbones::WeightsError) -> String {
    match e {
        mixdet_backbones::WeightsError::Mismatch { report, .. } => report.to_string(),
        other => other.to_string(),
    }
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
    let graph = args.weights.extension().is_some_and(|e| e.eq_ignore_ascii_case("pb"));
    let source = args.weights.display().to_string();
    let checked = match args.model.as_deref().or(graph.then_some(TF_LAYOUT)) {
        Some(model) => Some(check_fits(model, &sd, &source, graph)?),
        None => None,
    };
    let converted = sd
        .into_iter()
        .map(|(k, t)| {
            let t = if t.dtype().is_float() { t.to_dtype(dtype)? } else { t };
            Ok((k, t))
        })
        .collect::<Result<HashMap<_, _>>>()
        .with_context(|| format!("converting {source}"))?;
    crate::output::write_safetensors(&converted, &args.out)?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    let fits = checked.map(|c| format!(", loads as {c}")).unwrap_or_default();
    println!("{}: {} tensors, {:.1} MB{fits}", args.out.display(), converted.len(), bytes as f64 / 1e6);
    Ok(ExitCode::SUCCESS)
}
