//! Arguments shared by the commands that run a detector.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use mixdet_detect::{DetectorConfig, SsdLite};

/// Which detector to build and where its weights come from.
#[derive(clap::Args, Debug, Clone)]
pub struct DetectorArgs {
    /// Built-in detector name (ssdlite320_mobilenet_v3_large, ssdlite320_mixnet_s, ...) or a config .json.
    #[arg(long, default_value = "ssdlite320_mobilenet_v3_large")]
    pub model: String,
    /// Weights (.safetensors or .pth) with the detector's state dict, e.g. torchvision's
    /// ssdlite320_mobilenet_v3_large COCO checkpoint.
    #[arg(long)]
    pub weights: PathBuf,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl DetectorArgs {
    /// Resolves the config, loads the weights strictly and prepares the inference form.
    pub fn load(&self) -> Result<(SsdLite, Device)> {
        let device = crate::device::parse_device(&self.device)?;
        let cfg = DetectorConfig::resolve(&self.model)?;
        let name = cfg.name.clone();
        let mut model =
            SsdLite::from_file(cfg, &self.weights, &device).with_context(|| format!("loading {name} weights"))?;
        model.fuse_for_inference()?;
        Ok((model, device))
    }
}
