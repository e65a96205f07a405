//! Arguments shared by the commands that run a backbone.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use mixdet_backbones::{Backbone, ModelOptions, ModelSpec};

/// Which backbone to build and where its weights come from.
#[derive(clap::Args, Debug, Clone)]
pub struct BackboneArgs {
    /// Model name (see `mixdet models`; `forward` also takes a detector name or config).
    #[arg(long, default_value = "mixnet_s")]
    pub model: String,
    /// Weights: a timm / torchvision state dict as .safetensors or .pth/.pt.
    #[arg(long)]
    pub weights: PathBuf,
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
        let net =
            spec.load_file(&opts, &self.weights, &device).with_context(|| format!("loading {} weights", spec.name))?;
        Ok((spec, net, device))
    }
}
