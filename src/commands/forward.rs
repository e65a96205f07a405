//! `mixdet forward`: runs a model on a stored NCHW tensor and stores its outputs: the tool the
//! parity tests, and anyone debugging a port, compare against the reference framework with.
//! Backbones write `logits` and `features.<i>`; detectors write `cls_logits`, `bbox_regression`,
//! `anchors`, every anchor's `decoded_boxes` and `class_scores` (what an exported model's `boxes`
//! and `scores` hold) and per image `boxes.<i>`, `scores.<i>`, `labels.<i>` (input pixels).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};

use super::backbone_args::BackboneArgs;

/// Arguments of `mixdet forward`.
#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// A .safetensors file holding an f32 tensor named `input` of shape (N, 3, H, W); any H and W.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write `logits` (N x classes) and `features.<i>` (feature maps in stride order).
    #[arg(long)]
    pub output: PathBuf,
}

/// Runs `mixdet forward`.
pub fn run(args: ForwardArgs) -> Result<ExitCode> {
    if same_file(&args.input, &args.output) {
        anyhow::bail!("{}: --output would overwrite --input", args.output.display());
    }
    let device = crate::device::parse_device(&args.backbone.device)?;
    let tensors = candle_core::safetensors::load(&args.input, &device)
        .with_context(|| format!("{}: cannot read safetensors", args.input.display()))?;
    let input = tensors.get("input").with_context(|| {
        let mut names: Vec<_> = tensors.keys().cloned().collect();
        names.sort();
        format!("{}: no tensor named `input` (found: {})", args.input.display(), names.join(", "))
    })?;
    let dims = input.dims();
    if dims.len() != 4 || dims[1] != 3 {
        anyhow::bail!("{}: `input` has shape {dims:?}, expected (N, 3, H, W)", args.input.display());
    }
    let input = input.to_dtype(DType::F32)?;
    let is_backbone = mixdet_backbones::ModelSpec::by_name(&args.backbone.model, None).is_ok();
    let result = if !is_backbone && mixdet_detect::DetectorConfig::resolve(&args.backbone.model).is_ok() {
        forward_detector(&args, &input, &device)?
    } else {
        let (_, net, _) = args.backbone.load()?;
        let out = net.forward(&input).context("running the model")?;
        let mut result: HashMap<String, Tensor> = HashMap::new();
        if let Some(logits) = out.logits {
            result.insert("logits".into(), logits);
        }
        for (i, f) in out.features.into_iter().enumerate() {
            result.insert(format!("features.{i}"), f);
        }
        result
    };
    crate::output::write_safetensors(&result, &args.output)?;
    Ok(ExitCode::SUCCESS)
}

fn forward_detector(
    args: &ForwardArgs,
    input: &Tensor,
    device: &candle_core::Device,
) -> Result<HashMap<String, Tensor>> {
    let cfg = mixdet_detect::DetectorConfig::resolve(&args.backbone.model)?;
    let [h, w] = cfg.input_size;
    let (_, _, ih, iw) = input.dims4()?;
    if (ih, iw) != (h, w) {
        anyhow::bail!("{}: a detector takes a preprocessed input of {h}x{w}, got {ih}x{iw}", args.input.display());
    }
    let name = cfg.name.clone();
    let mut model = match &args.backbone.weights {
        Some(w) => {
            mixdet_detect::SsdLite::from_file(cfg, w, device).with_context(|| format!("loading {name} weights"))?
        }
        None => super::backbone_args::synthetic_detector(cfg, device)?,
    };
    model.fuse_for_inference()?;
    let out = model.forward_t(input, false).context("running the detector")?;
    let post = model.config().postprocess;
    let dets = model.postprocess(&out, &post)?;
    let cpu = candle_core::Device::Cpu;
    let anchors: Vec<f32> = model.anchors(&out.grid_sizes).iter().flatten().copied().collect();
    let n_anchors = anchors.len() / 4;
    let (decoded_boxes, class_scores) = model.decode(&out)?;
    let mut result = HashMap::from([
        ("decoded_boxes".to_string(), decoded_boxes),
        ("class_scores".to_string(), class_scores),
        ("cls_logits".to_string(), out.cls_logits),
        ("bbox_regression".to_string(), out.bbox_regression),
        ("anchors".to_string(), Tensor::from_vec(anchors, (n_anchors, 4), &cpu)?),
    ]);
    for (i, d) in dets.into_iter().enumerate() {
        let n = d.len();
        let boxes: Vec<f32> = d.boxes.iter().flatten().copied().collect();
        result.insert(format!("boxes.{i}"), Tensor::from_vec(boxes, (n, 4), &cpu)?);
        result.insert(format!("scores.{i}"), Tensor::from_vec(d.scores, n, &cpu)?);
        result.insert(format!("labels.{i}"), Tensor::from_vec(d.labels, n, &cpu)?);
    }
    Ok(result)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
