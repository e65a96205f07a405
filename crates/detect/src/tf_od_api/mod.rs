//! The TensorFlow Object Detection API's SSD meta-architecture (the framework of the MixConv
//! paper's detection experiments), as its exported frozen graphs compute it: preprocessing,
//! variable names, anchors, box coding and post-processing. The network itself (MobileNetV2
//! feature extractor, extra layers with depthwise 3x3 stride-2 convs, depthwise box predictors)
//! is [`crate::SsdLite`] built with [`crate::config::Family::TfOdApi`].

pub mod anchors;
pub mod names;
pub mod postprocess;
pub mod preprocess;
