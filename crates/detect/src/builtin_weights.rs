//! Weights compiled into the library (cargo feature `builtin-weights`, on by default), so that the
//! shipped detectors run on a fresh clone with nothing to download; `crates/detect/models/README.md` names their
//! sources and licences:
//! - `ssdlite300_mobilenet_v2_person`: the TensorFlow Object Detection API's SSDLite +
//!   MobileNetV2 trained on photographs of people;
//! - `ssdlite300_mobilenet_v2_mixconv357_person`: the same with MixConv {3, 5, 7} depthwise convs,
//!   its weights made at load time from the person detector's ([`crate::mixconv_init`]: same
//!   outputs, a start for fine-tuning);
//! - `ssdlite512_mixnet_s_c3_shapes`: SSDLite on MixNet-S trained by mixdet on its synthetic
//!   shapes set.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};

use crate::config::DetectorConfig;

/// The person detector, the default of `mixdet detect`.
pub const PERSON: &str = "ssdlite300_mobilenet_v2_person";
/// The person detector with MixConv kernels.
pub const MIXCONV_PERSON: &str = "ssdlite300_mobilenet_v2_mixconv357_person";
/// The shapes detector trained by mixdet.
pub const SHAPES: &str = "ssdlite512_mixnet_s_c3_shapes";

/// The built-in detectors that have weights, default first.
pub const NAMES: [&str; 3] = [PERSON, MIXCONV_PERSON, SHAPES];

/// Stored in f16 to keep the repository small; [`state_dict`] returns them as stored (the
/// loaders convert to f32).
#[cfg(feature = "builtin-weights")]
const PERSON_WEIGHTS: &[u8] = include_bytes!("../models/ssdlite300_mobilenet_v2_person.safetensors");
#[cfg(feature = "builtin-weights")]
const SHAPES_WEIGHTS: &[u8] = include_bytes!("../models/ssdlite512_mixnet_s_c3_shapes.safetensors");

#[cfg(feature = "builtin-weights")]
fn bytes(model: &str) -> Option<&'static [u8]> {
    match model {
        PERSON => Some(PERSON_WEIGHTS),
        SHAPES => Some(SHAPES_WEIGHTS),
        _ => None,
    }
}

#[cfg(not(feature = "builtin-weights"))]
fn bytes(_model: &str) -> Option<&'static [u8]> {
    None
}

/// The compiled-in safetensors bytes a built-in detector's weights come from (the person
/// detector's for its MixConv variant), or `None`: what to fingerprint a run's weights by.
pub fn raw_bytes(model: &str) -> Option<&'static [u8]> {
    bytes(if model == MIXCONV_PERSON { PERSON } else { model })
}

/// The compiled-in state dict of a built-in detector, or `None` when it has none (or the crate
/// was built without `builtin-weights`).
pub fn state_dict(model: &str) -> Option<Result<HashMap<String, Tensor>>> {
    let read = |name: &str| -> Option<Result<HashMap<String, Tensor>>> {
        bytes(name).map(|b| candle_core::safetensors::load_buffer(b, &Device::Cpu))
    };
    if model == MIXCONV_PERSON {
        return read(PERSON).map(|person| {
            let cfg = DetectorConfig::resolve(model).map_err(candle_core::Error::wrap)?;
            crate::mixconv_init::embed_depthwise_kernels(&cfg, &person?)
        });
    }
    read(model)
}
