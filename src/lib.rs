//! mixdet: object detection in Rust around MixConv (Tan & Le, BMVC 2019), on candle.
//!
//! The front door is [`Detector`]: a built-in or configured detector with its weights, from an
//! image to labelled boxes in its pixels. The default detector, `ssdlite300_mobilenet_v2_person`
//! (the TensorFlow Object Detection API's SSDLite + MobileNetV2, trained on people), has its
//! weights compiled in:
//!
//! ```no_run
//! use mixdet::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let detector = Detector::builtin("ssdlite300_mobilenet_v2_person", &Device::Cpu)?;
//! let mut image = image::open("street.jpg")?.to_rgb8();
//! let found = detector.detect(&image)?;
//! for d in &found {
//!     println!("{} {:.2} {:?}", d.name, d.score, d.bbox);
//! }
//! mixdet::viz::draw_detections(&mut image, &found);
//! image.save("street_boxes.jpg")?;
//! # Ok(())
//! # }
//! ```
//!
//! The crates behind it, re-exported: [`kernels`] (MixConv and the other CPU/CUDA kernels),
//! [`backbones`] (MixNet, MobileNetV2/V3 as timm / torchvision define them), [`detect`] (SSDLite
//! in the torchvision and TF Object Detection API families, anchors, NMS, the batch pipeline),
//! [`coco`] (the pycocotools-exact evaluator), [`train`] (the training loop). The `mixdet` binary
//! is a thin command line over them.

pub mod parts;
pub mod shard;
pub mod viz;

pub use candle_core::Device;
pub use mixdet_detect::{DetectOptions, Detection, Detector, Error};
pub use {
    mixdet_backbones as backbones, mixdet_coco as coco, mixdet_detect as detect, mixdet_kernels as kernels,
    mixdet_train as train,
};

/// The types of a typical program: `use mixdet::prelude::*;`.
pub mod prelude {
    pub use crate::viz::draw_detections;
    pub use crate::{DetectOptions, Detection, Detector, Device};
}
