//! `mixdet export`: a backbone or detector as an ONNX model (BatchNorm folded, MixConv as
//! standard operators, detectors with their box decoding and optionally NMS in the graph).
//! Nothing is written unless the whole model exports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use mixdet_backbones::onnx::ExportTarget;
use mixdet_backbones::{ModelOptions, ModelSpec};
use mixdet_onnx::ExportOptions;

/// The formats `export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ONNX (opsets 13–21).
    Onnx,
}

/// Arguments of `mixdet export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A backbone (`mixdet models`), a built-in detector or a detector config .json.
    #[arg(long)]
    pub model: String,
    /// Weights file (a state dict, or a TF frozen graph for the TF family). Optional for the
    /// detectors with built-in weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Deterministic synthetic weights (for checks and benchmarks only).
    #[arg(long, conflicts_with = "weights")]
    pub synthetic_weights: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Onnx)]
    pub format: Format,
    /// Where to write the model (never replaced unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// ONNX opset (13–21; MobileNetV3's HardSwish needs 14).
    #[arg(long, default_value_t = 17)]
    pub opset: i64,
    /// Batch size of the graph.
    #[arg(long, default_value_t = 1, conflicts_with = "dynamic_batch")]
    pub batch: usize,
    /// A batch dimension named `batch`, set at run time.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// Input height,width (backbones; default their pretrained size). A detector exports at its
    /// config's input size.
    #[arg(long, value_delimiter = ',', value_name = "H,W")]
    pub input: Option<Vec<usize>>,
    /// Detectors: add the family's NMS (`det_boxes`, `det_scores`, `det_labels`, `num_dets`).
    #[arg(long)]
    pub nms: bool,
    /// Store the weights as float16 (half the file; the graph still computes in float32, with
    /// the weights rounded to float16).
    #[arg(long)]
    pub half: bool,
    /// Backbones: output the feature maps (`features.<i>`, stride order) instead of the logits.
    #[arg(long)]
    pub features: bool,
    /// Backbones: replace the depthwise convs of a MobileNet by MixConv with these kernel sizes.
    #[arg(long, value_delimiter = ',')]
    pub mixconv_kernels: Option<Vec<usize>>,
    /// Backbones: classifier outputs in the weights file.
    #[arg(long, default_value_t = 1000)]
    pub num_classes: usize,
}

/// Runs `mixdet export`.
pub fn run(args: ExportArgs) -> Result<ExitCode> {
    if args.out.exists() && !args.force {
        bail!("{}: already exists; not replacing it (--force replaces it)", args.out.display());
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let batch = if args.dynamic_batch { None } else { Some(args.batch) };
    let input = match args.input.as_deref() {
        None => None,
        Some(&[h, w]) if h > 0 && w > 0 => Some([h, w]),
        Some(v) => bail!("--input {v:?}: expected two positive numbers H,W"),
    };
    let device = Device::Cpu;
    let (model, what) = if let Ok(spec) = ModelSpec::by_name(&args.model, args.mixconv_kernels.clone()) {
        if args.nms {
            bail!("--nms applies to detectors; {} is a backbone", spec.name);
        }
        if args.weights.is_none() && !args.synthetic_weights {
            bail!("{}: pass --weights FILE (or --synthetic-weights)", spec.name);
        }
        let opts = ModelOptions { num_classes: args.num_classes, features_only: false };
        let net = super::backbone_args::load_backbone(&spec, &opts, args.weights.as_deref(), &device)?;
        let size = input.unwrap_or([spec.pretrained.input_size; 2]);
        let opts = ExportOptions::new(size).with_opset(args.opset).with_batch(batch).with_half_weights(args.half);
        let target = if args.features { ExportTarget::Features } else { ExportTarget::Logits };
        let model = mixdet_backbones::onnx::export(net.as_ref(), &spec, &opts, target)
            .with_context(|| format!("exporting {}", spec.name))?;
        (model, spec.name.clone())
    } else {
        let cfg = match mixdet_detect::DetectorConfig::resolve(&args.model) {
            Ok(cfg) => cfg,
            Err(e) => bail!(
                "{}: not a backbone ({}) nor a detector: {e}",
                args.model,
                mixdet_backbones::MODEL_NAMES.join(", ")
            ),
        };
        if args.features {
            bail!("--features applies to backbones; {} is a detector", cfg.name);
        }
        let size = input.unwrap_or(cfg.input_size);
        if size != cfg.input_size {
            let [h, w] = cfg.input_size;
            bail!("{}: exports at its {h}x{w} input (its anchors are laid out for it); --input {},{} needs a config with that input_size", cfg.name, size[0], size[1]);
        }
        let name = cfg.name.clone();
        let opts = ExportOptions::new(size).with_opset(args.opset).with_batch(batch).with_half_weights(args.half);
        let onnx = if args.synthetic_weights {
            super::backbone_args::synthetic_detector(cfg, &device)?.to_onnx_model(&opts, args.nms)
        } else {
            let detector = super::detector_args::DetectorArgs {
                model: args.model.clone(),
                weights: args.weights.clone(),
                device: "cpu".into(),
            }
            .load()?;
            detector.model().to_onnx_model(&opts, args.nms)
        }
        .with_context(|| format!("exporting {name}"))?;
        (onnx, name)
    };
    let bytes = mixdet_onnx::encode(&model);
    crate::output::write_bytes(&args.out, &bytes)?;
    let graph = model.graph.as_ref();
    eprintln!(
        "{}: {what}, opset {}, {} nodes, {} initializers, {:.1} MB",
        args.out.display(),
        args.opset,
        graph.map_or(0, |g| g.node.len()),
        graph.map_or(0, |g| g.initializer.len()),
        bytes.len() as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
