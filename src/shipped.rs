//! The detectors that ship with weights compiled into the binary, so that `mixdet detect` works
//! on a fresh clone with nothing to download (`models/README.md` names sources and licences):
//! - `ssdlite300_mobilenet_v2_person`, the default: the TensorFlow Object Detection API's
//!   SSDLite + MobileNetV2 trained on photographs of people;
//! - `ssdlite300_mobilenet_v2_mixconv357_person`: the same with MixConv {3, 5, 7} depthwise convs,
//!   its weights made at load time from the person detector's (same outputs, a start for
//!   fine-tuning);
//! - `ssdlite512_mixnet_s_c3_shapes`: SSDLite on MixNet-S trained on the synthetic shapes set.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use mixdet_detect::DetectorConfig;

/// The detector `detect` and `eval` use when no `--model` is given.
pub const DEFAULT_DETECTOR: &str = "ssdlite300_mobilenet_v2_person";

/// The shapes detector trained by mixdet (`mixdet synth` data).
pub const SHAPES_DETECTOR: &str = "ssdlite512_mixnet_s_c3_shapes";

/// The person detector with MixConv kernels.
const MIXCONV_PERSON: &str = "ssdlite300_mobilenet_v2_mixconv357_person";

/// Stored in f16 to keep the repository small; the loader converts to f32.
const PERSON_WEIGHTS: &[u8] = include_bytes!("../models/ssdlite300_mobilenet_v2_person.safetensors");
const SHAPES_WEIGHTS: &[u8] = include_bytes!("../models/ssdlite512_mixnet_s_c3_shapes.safetensors");

/// The names of the built-in detectors that have built-in weights.
pub const WITH_WEIGHTS: [&str; 3] = [DEFAULT_DETECTOR, MIXCONV_PERSON, SHAPES_DETECTOR];

fn read(model: &str, bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .with_context(|| format!("reading the built-in {model} weights"))
}

/// The compiled-in state dict of a built-in detector, if it has one.
pub fn state_dict(model: &str) -> Option<Result<HashMap<String, Tensor>>> {
    match model {
        DEFAULT_DETECTOR => Some(read(model, PERSON_WEIGHTS)),
        SHAPES_DETECTOR => Some(read(model, SHAPES_WEIGHTS)),
        MIXCONV_PERSON => Some(read(DEFAULT_DETECTOR, PERSON_WEIGHTS).and_then(|person| {
            let cfg = DetectorConfig::resolve(model)?;
            Ok(mixdet_detect::mixconv_init::embed_depthwise_kernels(&cfg, &person)?)
        })),
        _ => None,
    }
}
