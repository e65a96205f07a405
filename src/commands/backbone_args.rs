//! Arguments shared by the commands that run a backbone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use mixdet_backbones::synthetic_weights::synthetic_tensor;
use mixdet_backbones::weights::ShapeRecorder;
use mixdet_backbones::{Backbone, ModelOptions, ModelSpec};
use mixdet_detect::{DetectorConfig, SsdLite};

/// Which backbone to build and where its weights come from.
#[derive(clap::Args, Debug, Clone)]
pub struct BackboneArgs {
    /// Model name (see `mixdet models`; `forward` also takes a detector name or config).
    #[arg(long, default_value = "mixnet_s")]
    pub model: String,
    /// Weights: a timm / torchvision state dict as .safetensors or .pth/.pt.
    #[arg(long, required_unless_present = "synthetic_weights")]
    pub weights: Option<PathBuf>,
    /// Deterministic synthetic weights instead of a file (the ones `mixdet bench` uses; for
    /// parity checks and benchmarks: the model predicts nothing useful).
    #[arg(long, conflicts_with = "weights")]
    pub synthetic_weights: bool,
    /// Replace the depthwise convs of a MobileNet model by MixConv with these kernel sizes (e.g. 3,5,7,9).
    #[arg(long, value_delimiter = ',')]
    pub mixconv_kernels: Option<Vec<usize>>,
    /// Number of classifier outputs in the weights file.
    #[arg(long, default_value_t = 1000)]
    pub num_classes: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl BackboneArgs {
    /// Resolves the model, reads the weights strictly and builds the network for inference
    /// (BatchNorm folded into the convolutions).
    pub fn load(&self) -> Result<(ModelSpec, Box<dyn Backbone>, Device)> {
        let device = crate::device::parse_device(&self.device)?;
        let spec = ModelSpec::by_name(&self.model, self.mixconv_kernels.clone())?;
        let opts = ModelOptions { num_classes: self.num_classes, features_only: false };
        let net = load_backbone(&spec, &opts, self.weights.as_deref(), &device)?;
        Ok((spec, net, device))
    }
}

/// A backbone with the weights of `weights`, or the synthetic ones when `None`.
pub fn load_backbone(
    spec: &ModelSpec,
    opts: &ModelOptions,
    weights: Option<&Path>,
    device: &Device,
) -> Result<Box<dyn Backbone>> {
    match weights {
        Some(w) => spec.load_file(opts, w, device).with_context(|| format!("loading {} weights", spec.name)),
        None => Ok(spec.load_state_dict(opts, synthetic(spec.state_dict_shapes(opts)?)?, "synthetic", device)?),
    }
}

/// A detector with the synthetic weights (every key of its state dict, as `mixdet bench` uses).
pub fn synthetic_detector(cfg: DetectorConfig, device: &Device) -> Result<SsdLite> {
    let recorder = ShapeRecorder::default();
    SsdLite::load(cfg.clone(), recorder.var_builder(&Device::Cpu))?;
    Ok(SsdLite::from_state_dict(cfg, synthetic(recorder.shapes())?, "synthetic", device)?)
}

/// The synthetic tensors for the given keys and shapes.
pub fn synthetic(shapes: impl IntoIterator<Item = (String, Vec<usize>)>) -> Result<HashMap<String, Tensor>> {
    shapes.into_iter().map(|(k, s)| Ok((k.clone(), synthetic_tensor(&k, &s, &Device::Cpu)?))).collect()
}
