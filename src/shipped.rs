//! The detectors that ship with weights (`mixdet_detect::builtin_weights`), as the CLI names them.

/// The detector `detect`, `eval` and `anchors` use when no `--model` is given.
pub const DEFAULT_DETECTOR: &str = mixdet_detect::builtin_weights::PERSON;
