//! The front door: a detector with its weights, options and device, from images to labelled
//! boxes in image pixels.
//!
//! ```no_run
//! use candle_core::Device;
//! use mixdet_detect::{DetectOptions, Detector};
//!
//! # fn main() -> Result<(), mixdet_detect::Error> {
//! let detector = Detector::builtin("ssdlite300_mobilenet_v2_person", &Device::Cpu)?
//!     .with_options(DetectOptions::default().with_score_threshold(0.5)?);
//! let image = image::open("photo.jpg").expect("an image").to_rgb8();
//! for d in detector.detect(&image)? {
//!     println!("{} {:.2} at {:?}", d.name, d.score, d.bbox);
//! }
//! # Ok(())
//! # }
//! ```

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::batch::forward_in_chunks;
use crate::config::{ConfigError, DetectorConfig, PostprocessConfig};
use crate::postprocess::Detections;
use crate::SsdLite;

/// Why a detector could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is unknown or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights could not be read or do not fit the config.
    #[error(transparent)]
    Weights(#[from] mixdet_backbones::WeightsError),
    /// A built-in detector without built-in weights (or a build without `builtin-weights`).
    #[error("{0} has no built-in weights (built-in weights: {names}); load it with Detector::from_config and a weights file", names = crate::builtin_weights::NAMES.join(", "))]
    NoBuiltinWeights(String),
    /// An option is out of range.
    #[error("{0}")]
    Option(String),
    /// The computation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// One detected object.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in pixels of the image passed in.
    pub bbox: [f32; 4],
    /// Confidence in `[0, 1]`.
    pub score: f32,
    /// Class index into [`Detector::labels`] (1.., 0 is the background); for the COCO models it
    /// is the COCO category id.
    pub label: usize,
    /// The class name.
    pub name: String,
}

/// What [`Detector::detect`] keeps; validated when set.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    score_threshold: f32,
    iou_threshold: Option<f32>,
    max_detections: Option<usize>,
}

impl Default for DetectOptions {
    /// Detections scoring at least 0.3, the model's own NMS IoU and detection count.
    fn default() -> Self {
        Self { score_threshold: 0.3, iou_threshold: None, max_detections: None }
    }
}

impl DetectOptions {
    /// Keep detections scoring at least `t` (in `[0, 1]`).
    pub fn with_score_threshold(self, t: f32) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::Option(format!("score threshold {t} is not in [0, 1]")));
        }
        Ok(Self { score_threshold: t, ..self })
    }

    /// Suppress boxes overlapping a better box of their class above IoU `t` (in `[0, 1]`).
    pub fn with_iou_threshold(self, t: f32) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::Option(format!("IoU threshold {t} is not in [0, 1]")));
        }
        Ok(Self { iou_threshold: Some(t), ..self })
    }

    /// Keep at most `n` detections per image (at least 1).
    pub fn with_max_detections(self, n: usize) -> Result<Self, Error> {
        if n == 0 {
            return Err(Error::Option("max detections must be at least 1".into()));
        }
        Ok(Self { max_detections: Some(n), ..self })
    }

    /// The score threshold.
    pub fn score_threshold(&self) -> f32 {
        self.score_threshold
    }

    /// The post-processing settings of `model` with these options applied.
    pub fn postprocess(&self, model: &PostprocessConfig) -> PostprocessConfig {
        PostprocessConfig {
            nms_thresh: self.iou_threshold.unwrap_or(model.nms_thresh),
            detections_per_img: self.max_detections.unwrap_or(model.detections_per_img),
            ..*model
        }
    }
}

/// A detector ready for inference: the network (BatchNorm folded), its device and options.
#[derive(Debug)]
pub struct Detector {
    model: SsdLite,
    device: Device,
    options: DetectOptions,
}

impl Detector {
    /// A built-in detector with its built-in weights (`mixdet models` lists the detectors;
    /// [`crate::builtin_weights::NAMES`] those with weights).
    pub fn builtin(name: &str, device: &Device) -> Result<Self, Error> {
        let config = DetectorConfig::resolve(name)?;
        let state_dict =
            crate::builtin_weights::state_dict(name).ok_or_else(|| Error::NoBuiltinWeights(name.to_string()))??;
        let model = SsdLite::from_state_dict(config, state_dict, &format!("built-in {name} weights"), device)?;
        Self::new(model, device)
    }

    /// A detector from a built-in name or a config `.json`, with weights from `weights`
    /// (`.safetensors`, `.pth` or a TF frozen graph `.pb`), or the built-in weights when `None`.
    pub fn from_config(config: &str, weights: Option<&Path>, device: &Device) -> Result<Self, Error> {
        let Some(path) = weights else { return Self::builtin(config, device) };
        let model = SsdLite::from_file(DetectorConfig::resolve(config)?, path, device)?;
        Self::new(model, device)
    }

    /// Wraps a loaded model (folding its BatchNorm for inference).
    pub fn new(mut model: SsdLite, device: &Device) -> Result<Self, Error> {
        model.fuse_for_inference()?;
        Ok(Self { model, device: device.clone(), options: DetectOptions::default() })
    }

    /// The same detector with other options.
    pub fn with_options(self, options: DetectOptions) -> Self {
        Self { options, ..self }
    }

    /// The options.
    pub fn options(&self) -> &DetectOptions {
        &self.options
    }

    /// Class names, index = label (index 0 the background).
    pub fn labels(&self) -> &[String] {
        &self.model.config().labels
    }

    /// The network.
    pub fn model(&self) -> &SsdLite {
        &self.model
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The objects in one image, best first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, Error> {
        Ok(self.detect_batch(std::slice::from_ref(image))?.pop().unwrap_or_default())
    }

    /// The objects in each image, best first, in one batched pass.
    pub fn detect_batch(&self, images: &[RgbImage]) -> Result<Vec<Vec<Detection>>, Error> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let [h, w] = self.model.config().input_size;
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for image in images {
            data.extend(self.model.preprocess_rgb(image));
        }
        let post = self.options.postprocess(&self.model.config().postprocess);
        let dets = crate::batch::on_worker(|| -> candle_core::Result<Vec<Detections>> {
            let x = Tensor::from_vec(data, (images.len(), 3, h, w), &self.device)?;
            let out = forward_in_chunks(&self.model, &x, &self.device)?;
            self.model.postprocess(&out, &post)
        })?;
        Ok(dets
            .into_iter()
            .zip(images)
            .map(|(mut d, image)| {
                d.rescale([h, w], [image.height() as usize, image.width() as usize]);
                d.retain_score_at_least(self.options.score_threshold);
                self.detections(&d)
            })
            .collect())
    }

    /// [`Detections`] (as the batch pipeline returns them) as labelled [`Detection`]s.
    pub fn detections(&self, d: &Detections) -> Vec<Detection> {
        let labels = self.labels();
        (0..d.len())
            .map(|i| {
                let label = d.labels[i].max(0) as usize;
                Detection {
                    bbox: d.boxes[i],
                    score: d.scores[i],
                    label,
                    name: labels.get(label).cloned().unwrap_or_else(|| format!("class_{label}")),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_when_set() {
        assert!(DetectOptions::default().with_score_threshold(1.5).is_err());
        assert!(DetectOptions::default().with_iou_threshold(-0.1).is_err());
        assert!(DetectOptions::default().with_max_detections(0).is_err());
        let o = DetectOptions::default().with_iou_threshold(0.4).and_then(|o| o.with_max_detections(5)).expect("valid");
        let model =
            PostprocessConfig { score_thresh: 0.01, nms_thresh: 0.6, detections_per_img: 100, topk_candidates: 100 };
        let p = o.postprocess(&model);
        assert_eq!((p.nms_thresh, p.detections_per_img, p.score_thresh), (0.4, 5, 0.01));
    }

    #[test]
    fn builtin_person_detector_finds_the_astronaut() -> Result<(), Error> {
        let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/photos/astronaut.jpg");
        let image = image::open(photo).map_err(|e| Error::Option(e.to_string()))?.to_rgb8();
        let detector = Detector::builtin("ssdlite300_mobilenet_v2_person", &Device::Cpu)?;
        let found = detector.detect(&image)?;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].label, found[0].name.as_str()), (1, "person"));
        assert!(found[0].score > 0.85 && found[0].bbox[3] > 400.0, "{found:?}");
        let both = detector.detect_batch(&[image.clone(), image])?;
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], found);
        assert!(matches!(Detector::builtin("ssdlite320_mixnet_s", &Device::Cpu), Err(Error::NoBuiltinWeights(_))));
        Ok(())
    }
}
