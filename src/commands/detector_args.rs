//! Arguments shared by the commands that run a detector.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use mixdet_detect::{DetectorConfig, SsdLite};

use crate::shipped;

/// Which detector to build and where its weights come from.
#[derive(clap::Args, Debug, Clone)]
pub struct DetectorArgs {
    /// Built-in detector name (ssdlite300_mobilenet_v2_person, ssdlite512_mixnet_s_c3_shapes,
    /// ssdlite320_mobilenet_v3_large, ...; `mixdet models` lists them) or a config .json. The
    /// default is the person detector, whose weights are built in.
    #[arg(long, default_value = shipped::DEFAULT_DETECTOR)]
    pub model: String,
    /// Weights (.safetensors, .pth, or a TF frozen graph .pb) with the detector's state dict, e.g.
    /// torchvision's ssdlite320_mobilenet_v3_large COCO checkpoint. Optional for the detectors
    /// with built-in weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
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
        let mut model = match (&self.weights, shipped::state_dict(&self.model)) {
            (Some(path), _) => {
                SsdLite::from_file(cfg, path, &device).with_context(|| format!("loading {name} weights"))?
            }
            (None, Some(sd)) => SsdLite::from_state_dict(cfg, sd?, &format!("built-in {name} weights"), &device)?,
            (None, None) => bail!(
                "{name} has no built-in weights: pass --weights <FILE> (built-in weights: {})",
                shipped::WITH_WEIGHTS.join(", ")
            ),
        };
        model.fuse_for_inference()?;
        Ok((model, device))
    }
}
