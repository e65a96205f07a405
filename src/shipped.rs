//! The detectors that ship with weights (`mixdet_detect::builtin_weights`), as the CLI names them.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::Tensor;
pub use mixdet_detect::builtin_weights::NAMES as WITH_WEIGHTS;

/// The detector `detect` and `eval` use when no `--model` is given.
pub const DEFAULT_DETECTOR: &str = mixdet_detect::builtin_weights::PERSON;

/// The compiled-in state dict of a built-in detector, if it has one.
pub fn state_dict(model: &str) -> Option<Result<HashMap<String, Tensor>>> {
    mixdet_detect::builtin_weights::state_dict(model)
        .map(|r| r.with_context(|| format!("reading the built-in {model} weights")))
}
