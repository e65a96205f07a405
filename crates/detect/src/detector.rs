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
use crate::config::{ClassSet, ConfigError, DetectorConfig, PostprocessConfig};
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
    class_thresholds: Vec<(usize, f32)>,
    classes: Option<Vec<usize>>,
    iou_threshold: Option<f32>,
    max_detections: Option<usize>,
}

impl Default for DetectOptions {
    /// Detections of every class scoring at least 0.3, the model's own NMS IoU and detection count.
    fn default() -> Self {
        Self {
            score_threshold: 0.3,
            class_thresholds: Vec::new(),
            classes: None,
            iou_threshold: None,
            max_detections: None,
        }
    }
}

/// A class given by name (as in the detector's labels, case-insensitive) or by label index.
fn class_index(spec: &str, labels: &[String]) -> Result<usize, Error> {
    let spec = spec.trim();
    if let Ok(i) = spec.parse::<usize>() {
        if (1..labels.len()).contains(&i) {
            return Ok(i);
        }
        return Err(Error::Option(format!("class {i} is not a label of this detector (1..{})", labels.len() - 1)));
    }
    labels.iter().skip(1).position(|l| l.eq_ignore_ascii_case(spec)).map(|i| i + 1).ok_or_else(|| {
        let known: Vec<&str> = labels.iter().skip(1).map(String::as_str).filter(|l| *l != "N/A").take(12).collect();
        let more = if labels.len() > 13 { ", ..." } else { "" };
        Error::Option(format!("unknown class {spec:?} (this detector's classes: {}{more})", known.join(", ")))
    })
}

fn unit_interval(t: f32, what: &str) -> Result<f32, Error> {
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(Error::Option(format!("{what} {t} is not in [0, 1]")))
    }
}

impl DetectOptions {
    /// Keep detections scoring at least `t` (in `[0, 1]`), in the classes without a threshold
    /// of their own.
    pub fn with_score_threshold(self, t: f32) -> Result<Self, Error> {
        Ok(Self { score_threshold: unit_interval(t, "score threshold")?, ..self })
    }

    /// Keep detections of class `label` scoring at least `t` (in `[0, 1]`).
    pub fn with_class_score_threshold(mut self, label: usize, t: f32) -> Result<Self, Error> {
        let t = unit_interval(t, "score threshold")?;
        self.class_thresholds.retain(|(l, _)| *l != label);
        self.class_thresholds.push((label, t));
        self.class_thresholds.sort_by_key(|(l, _)| *l);
        Ok(self)
    }

    /// Parses a score-threshold list against a detector's `labels`: a default and per-class
    /// values, `0.3`, `0.3,person=0.5` or `person=0.5` (names or label indices).
    pub fn with_score_spec(self, spec: &str, labels: &[String]) -> Result<Self, Error> {
        let mut out = self;
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let parse = |v: &str| {
                v.trim().parse::<f32>().map_err(|_| Error::Option(format!("score threshold {v:?} is not a number")))
            };
            out = match item.split_once('=') {
                Some((class, value)) => out.with_class_score_threshold(class_index(class, labels)?, parse(value)?)?,
                None => out.with_score_threshold(parse(item)?)?,
            };
        }
        Ok(out)
    }

    /// Keep only detections of these classes (label indices; at least one).
    pub fn with_classes(self, mut labels: Vec<usize>) -> Result<Self, Error> {
        if labels.is_empty() {
            return Err(Error::Option("the class list is empty".into()));
        }
        labels.sort_unstable();
        labels.dedup();
        Ok(Self { classes: Some(labels), ..self })
    }

    /// Parses a class list (`person,car` or `1,3`) against a detector's `labels`.
    pub fn with_class_spec(self, spec: &str, labels: &[String]) -> Result<Self, Error> {
        let list = spec
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| class_index(c, labels))
            .collect::<Result<Vec<_>, _>>()?;
        self.with_classes(list)
    }

    /// The classes kept (`None`: all).
    pub fn classes(&self) -> Option<&[usize]> {
        self.classes.as_deref()
    }

    /// Per-class score thresholds, by label.
    pub fn class_score_thresholds(&self) -> &[(usize, f32)] {
        &self.class_thresholds
    }

    /// The score a detection of class `label` needs.
    pub fn score_threshold_for(&self, label: usize) -> f32 {
        self.class_thresholds.iter().find(|(l, _)| *l == label).map_or(self.score_threshold, |(_, t)| *t)
    }

    /// Whether a detection of class `label` with `score` is kept.
    pub fn keeps(&self, label: usize, score: f32) -> bool {
        self.classes.as_ref().is_none_or(|c| c.binary_search(&label).is_ok())
            && score >= self.score_threshold_for(label)
    }

    /// Drops the detections these options do not keep.
    pub fn retain(&self, d: &mut Detections) {
        d.retain(|label, score| self.keeps(label.max(0) as usize, score));
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

    /// The post-processing settings of `model` with these options applied: the IoU threshold,
    /// the detection count, and the classes (scored alone, so that the others take none of the
    /// detection places).
    pub fn postprocess(&self, model: &PostprocessConfig) -> PostprocessConfig {
        PostprocessConfig {
            nms_thresh: self.iou_threshold.unwrap_or(model.nms_thresh),
            detections_per_img: self.max_detections.unwrap_or(model.detections_per_img),
            classes: self.classes.as_deref().and_then(ClassSet::from_labels).or(model.classes),
            ..*model
        }
    }
}

/// Sliced inference for small objects in large images (the SAHI method): the image is cut into
/// overlapping square tiles, each detected at the network's input size, and the detections,
/// mapped back to the image, are merged greedily per class by intersection over the smaller box
/// (SAHI's default match metric, at 0.5): a box mostly inside a better box of its class (the part
/// of an object a tile cut off, or the same object seen by two tiles) is dropped. SAHI's default
/// merges such boxes into their union instead; dropping keeps the better-scored box as it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileOptions {
    size: u32,
    overlap: f32,
    full_image: bool,
}

impl TileOptions {
    /// Tiles of `size` pixels (at least 32), overlapping by a fifth of their size.
    pub fn new(size: u32) -> Result<Self, Error> {
        if size < 32 {
            return Err(Error::Option(format!("tile size {size} is below 32 pixels")));
        }
        Ok(Self { size, overlap: 0.2, full_image: false })
    }

    /// Neighbouring tiles share this fraction of their size (in `[0, 1)`).
    pub fn with_overlap(self, overlap: f32) -> Result<Self, Error> {
        if !(0.0..1.0).contains(&overlap) {
            return Err(Error::Option(format!("tile overlap {overlap} is not in [0, 1)")));
        }
        Ok(Self { overlap, ..self })
    }

    /// Also detect on the whole image (for objects larger than a tile).
    pub fn with_full_image(self, full_image: bool) -> Self {
        Self { full_image, ..self }
    }

    /// The tiles of a `width` x `height` image as `(x, y, w, h)`: a grid whose last row and
    /// column end at the image's edge, one tile per axis when the image is not larger.
    pub fn tiles(&self, width: u32, height: u32) -> Vec<(u32, u32, u32, u32)> {
        let starts = |extent: u32| -> Vec<u32> {
            if extent <= self.size {
                return vec![0];
            }
            let stride = ((self.size as f32 * (1.0 - self.overlap)).floor() as u32).max(1);
            let mut v: Vec<u32> = (0..).map(|i| i * stride).take_while(|&s| s + self.size < extent).collect();
            v.push(extent - self.size);
            v
        };
        let (xs, ys) = (starts(width), starts(height));
        let mut out = Vec::with_capacity(xs.len() * ys.len());
        for &y in &ys {
            for &x in &xs {
                out.push((x, y, self.size.min(width), self.size.min(height)));
            }
        }
        out
    }
}

/// Intersection over the smaller box above which tiled detections of one class are one object.
const TILE_MATCH_IOS: f32 = 0.5;

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
                self.options.retain(&mut d);
                self.detections(&d)
            })
            .collect())
    }

    /// The objects in one image by sliced inference ([`TileOptions`]), best first. The tiles
    /// run as one batch; the options' classes and thresholds apply, then the detection count.
    pub fn detect_tiled(&self, image: &RgbImage, tiles: &TileOptions) -> Result<Vec<Detection>, Error> {
        let (w, h) = image.dimensions();
        let grid = tiles.tiles(w, h);
        let mut crops: Vec<RgbImage> =
            grid.iter().map(|&(x, y, tw, th)| image::imageops::crop_imm(image, x, y, tw, th).to_image()).collect();
        if tiles.full_image {
            crops.push(image.clone());
        }
        let mut per_crop = self.detect_batch(&crops)?;
        if per_crop.len() == 1 {
            // One tile covering the image: plain detection, nothing to merge.
            return Ok(per_crop.pop().unwrap_or_default());
        }
        let mut all: Vec<Detection> = Vec::new();
        for (i, dets) in per_crop.into_iter().enumerate() {
            let (ox, oy) = grid.get(i).map_or((0.0, 0.0), |&(x, y, _, _)| (x as f32, y as f32));
            all.extend(dets.into_iter().map(|mut d| {
                d.bbox = [d.bbox[0] + ox, d.bbox[1] + oy, d.bbox[2] + ox, d.bbox[3] + oy];
                d
            }));
        }
        let post = self.options.postprocess(&self.model.config().postprocess);
        all.sort_by(|a, b| b.score.total_cmp(&a.score));
        let area = |b: &[f32; 4]| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
        let mut merged: Vec<Detection> = Vec::new();
        for d in all {
            let covered = merged.iter().any(|k| {
                if k.label != d.label {
                    return false;
                }
                let (a, b) = (&k.bbox, &d.bbox);
                let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
                let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
                let smaller = area(a).min(area(b));
                smaller > 0.0 && w * h / smaller > TILE_MATCH_IOS
            });
            if !covered {
                merged.push(d);
            }
        }
        merged.truncate(post.detections_per_img);
        Ok(merged)
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
        let model = PostprocessConfig {
            score_thresh: 0.01,
            nms_thresh: 0.6,
            detections_per_img: 100,
            topk_candidates: 100,
            classes: None,
        };
        let p = o.postprocess(&model);
        assert_eq!((p.nms_thresh, p.detections_per_img, p.score_thresh), (0.4, 5, 0.01));
    }

    #[test]
    fn tiles_cover_the_image_with_the_overlap_asked_for() {
        let t = TileOptions::new(320).and_then(|t| t.with_overlap(0.25)).expect("valid");
        let grid = t.tiles(1000, 300);
        let xs: Vec<u32> = grid.iter().map(|g| g.0).collect();
        assert_eq!(xs, [0, 240, 480, 680]);
        assert!(grid.iter().all(|g| g.1 == 0 && g.2 == 320 && g.3 == 300));
        assert_eq!(TileOptions::new(320).expect("valid").tiles(200, 100), [(0, 0, 200, 100)]);
        assert!(TileOptions::new(31).is_err());
        assert!(TileOptions::new(64).and_then(|t| t.with_overlap(1.0)).is_err());
    }

    #[test]
    fn classes_and_per_class_thresholds_by_name_or_index() {
        let labels: Vec<String> = ["__background__", "person", "car", "traffic light"].map(String::from).to_vec();
        let o = DetectOptions::default()
            .with_score_spec("0.4, Person=0.8,3=0.1", &labels)
            .and_then(|o| o.with_class_spec("person,traffic light", &labels))
            .expect("valid");
        assert_eq!(o.score_threshold(), 0.4);
        assert_eq!(o.class_score_thresholds(), &[(1, 0.8), (3, 0.1)]);
        assert_eq!(o.classes(), Some(&[1, 3][..]));
        assert!(o.keeps(1, 0.85) && !o.keeps(1, 0.7) && o.keeps(3, 0.2) && !o.keeps(2, 0.99));
        let mut d =
            Detections { boxes: vec![[0.0; 4]; 4], scores: vec![0.9, 0.5, 0.99, 0.15], labels: vec![1, 1, 2, 3] };
        o.retain(&mut d);
        assert_eq!((d.scores, d.labels), (vec![0.9, 0.15], vec![1, 3]));
        let err = |r: Result<DetectOptions, Error>| r.expect_err("invalid").to_string();
        assert!(err(DetectOptions::default().with_class_spec("bus", &labels))
            .contains("unknown class \"bus\" (this detector's classes: person, car, traffic light)"));
        assert!(err(DetectOptions::default().with_class_spec("0", &labels)).contains("class 0 is not a label"));
        assert!(err(DetectOptions::default().with_class_spec(" , ", &labels)).contains("empty"));
        assert!(err(DetectOptions::default().with_score_spec("person=1.5", &labels)).contains("1.5 is not in [0, 1]"));
        assert!(err(DetectOptions::default().with_score_spec("high", &labels)).contains("\"high\" is not a number"));
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
