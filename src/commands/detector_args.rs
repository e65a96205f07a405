//! Arguments shared by the commands that run a detector.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use mixdet::Detector;

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
    /// Resolves the config, loads the weights strictly (the file given, else the built-in ones)
    /// and prepares the inference form.
    pub fn load(&self) -> Result<Detector> {
        let device = crate::device::parse_device(&self.device)?;
        match Detector::from_config(&self.model, self.weights.as_deref(), &device) {
            Ok(d) => Ok(d),
            Err(mixdet::Error::NoBuiltinWeights(name)) => bail!(
                "{name} has no built-in weights: pass --weights <FILE> (built-in weights: {})",
                mixdet_detect::builtin_weights::NAMES.join(", ")
            ),
            Err(e) => Err(e).with_context(|| format!("loading {}", self.model)),
        }
    }
}
