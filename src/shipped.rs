//! The detector that ships with mixdet: SSDLite on a MixNet-S trunk at a 512x512 input, with a
//! stride-8 level for small objects, trained on the synthetic shapes set (`mixdet synth`; the README gives the
//! commands, seeds and times). Its weights are compiled into the binary, so `mixdet detect` works
//! on a fresh clone with nothing to download.

/// The detector `detect` and `eval` use when no `--model` is given.
pub const DEFAULT_DETECTOR: &str = "ssdlite512_mixnet_s_c3_shapes";

/// Stored in f16 to keep the repository small; the loader converts to f32.
const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../models/ssdlite512_mixnet_s_c3_shapes.safetensors");

/// The compiled-in weights of a built-in detector, if it has any.
pub fn weights(model: &str) -> Option<&'static [u8]> {
    (model == DEFAULT_DETECTOR).then_some(DEFAULT_WEIGHTS)
}
