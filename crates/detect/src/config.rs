//! Detector configurations as data (`crates/detect/configs/*.json`), validated on load.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

/// The reference implementation a detector reproduces: it fixes what the config's numbers do not
/// (the resize, the padding of the extra layers, the weight names, the box code, the score
/// function and the NMS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// torchvision's SSDLite: normalise then resize (`F.interpolate`, half-pixel centres),
    /// symmetric padding, torchvision state-dict names, `(dx, dy, dw, dh)` codes, softmax scores,
    /// class-aware NMS over per-class top-k candidates. C5 is the backbone's last block (MixNet)
    /// or torchvision's feature split (MobileNetV3).
    #[default]
    Torchvision,
    /// The TensorFlow Object Detection API's SSD meta-architecture as its frozen graphs compute it:
    /// TF1 `ResizeBilinear` (legacy pixel centres) on 0..255 values then `(x - mean) / std`,
    /// TF "SAME" padding, TF variable names (`FeatureExtractor/MobilenetV2/...`, `BoxPredictor_i/...`),
    /// `(ty, tx, th, tw)` codes decoded in normalised coordinates, sigmoid scores with the
    /// background column dropped, per-class NMS (`NonMaxSuppressionV3`), then sorting, clipping to
    /// the image and `detections_per_img`. C5 is the backbone's 1x1 head conv (`Conv_1`, layer 19).
    TfOdApi,
}

/// Anchor generator settings (torchvision's `DefaultBoxGenerator`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorConfig {
    /// Extra aspect ratios per feature level; each adds two boxes (w/h swapped).
    pub aspect_ratios: Vec<Vec<f64>>,
    /// Scale of the first level, relative to the input size.
    pub min_ratio: f64,
    /// Scale of the last level.
    pub max_ratio: f64,
    /// Explicit scales (one per level plus one), overriding min/max ratio.
    #[serde(default)]
    pub scales: Option<Vec<f64>>,
    /// Explicit steps (pixels between anchor centres) per level; default: the feature-map grid.
    #[serde(default)]
    pub steps: Option<Vec<usize>>,
    /// Clamp widths and heights to [0, 1] (in units of the input size).
    #[serde(default = "yes")]
    pub clip: bool,
}

fn yes() -> bool {
    true
}

fn is_torchvision(f: &Family) -> bool {
    *f == Family::Torchvision
}

/// The TF Object Detection API's `ssd_anchor_generator` (`create_ssd_anchors` feeding a
/// `MultipleGridAnchorGenerator`): normalised anchors, scales linear from `min_scale` to
/// `max_scale` over the levels (then 1.0), every aspect ratio at the level's scale plus one box
/// at the geometric mean of this level's and the next level's scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfAnchorConfig {
    /// Scale of the first level, relative to the shorter image side.
    pub min_scale: f64,
    /// Scale of the last level.
    pub max_scale: f64,
    /// Aspect ratios (width / height) of every level, in the order the head's anchors use them.
    /// Kept as written in the TF config (e.g. `0.3333`, not 1/3): the trained weights expect it.
    pub aspect_ratios: Vec<f64>,
    /// Aspect ratio of the extra box between two levels' scales; 0 for none.
    #[serde(default = "one")]
    pub interpolated_scale_aspect_ratio: f64,
    /// The first level has only three boxes: (0.1, 1.0), (min_scale, 2.0), (min_scale, 0.5).
    #[serde(default = "yes")]
    pub reduce_boxes_in_lowest_layer: bool,
    /// Height and width of a scale-1 anchor, relative to the shorter image side.
    #[serde(default = "unit_size")]
    pub base_anchor_size: [f64; 2],
}

fn one() -> f64 {
    1.0
}

fn unit_size() -> [f64; 2] {
    [1.0, 1.0]
}

/// Which anchor generator a detector uses. In JSON, the `anchors` object's `generator` field
/// names it: `"ssd_default_boxes"` (the default when absent) or `"tf_multiple_grid"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "generator", rename_all = "snake_case")]
pub enum AnchorGenerator {
    /// torchvision's `DefaultBoxGenerator`.
    SsdDefaultBoxes(AnchorConfig),
    /// The TF Object Detection API's SSD anchors.
    TfMultipleGrid(TfAnchorConfig),
}

impl<'de> Deserialize<'de> for AnchorGenerator {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = serde_json::Value::deserialize(deserializer)?;
        let generator = match value.as_object_mut().map(|o| o.remove("generator")) {
            Some(Some(serde_json::Value::String(g))) => g,
            Some(None) => "ssd_default_boxes".to_string(),
            Some(Some(other)) => {
                return Err(D::Error::custom(format!("anchors.generator must be a string, not {other}")))
            }
            None => return Err(D::Error::custom("anchors must be an object")),
        };
        match generator.as_str() {
            "ssd_default_boxes" => {
                AnchorConfig::deserialize(value).map(Self::SsdDefaultBoxes).map_err(D::Error::custom)
            }
            "tf_multiple_grid" => {
                TfAnchorConfig::deserialize(value).map(Self::TfMultipleGrid).map_err(D::Error::custom)
            }
            other => Err(D::Error::custom(format!(
                "unknown anchors.generator {other:?} (expected \"ssd_default_boxes\" or \"tf_multiple_grid\")"
            ))),
        }
    }
}

impl AnchorGenerator {
    /// Number of pyramid levels the generator is set up for (`None`: any number, as TF's).
    fn levels(&self) -> Option<usize> {
        match self {
            Self::SsdDefaultBoxes(a) => Some(a.aspect_ratios.len()),
            Self::TfMultipleGrid(_) => None,
        }
    }
}

/// A set of class labels below 256, as a bitmask (so that [`PostprocessConfig`] stays `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassSet([u64; 4]);

impl ClassSet {
    /// The set of `labels`, or `None` when one is 256 or more.
    pub fn from_labels(labels: &[usize]) -> Option<Self> {
        let mut bits = [0u64; 4];
        for &l in labels {
            *bits.get_mut(l / 64)? |= 1 << (l % 64);
        }
        Some(Self(bits))
    }

    /// Whether `label` is in the set.
    pub fn contains(&self, label: usize) -> bool {
        self.0.get(label / 64).is_some_and(|b| b & (1 << (label % 64)) != 0)
    }
}

/// Post-processing thresholds (torchvision's SSD `postprocess_detections`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostprocessConfig {
    /// Keep class scores strictly above this.
    pub score_thresh: f32,
    /// Suppress a box whose IoU with a better box of the same class is above this.
    pub nms_thresh: f32,
    /// Detections kept per image after NMS.
    pub detections_per_img: usize,
    /// Candidates kept per class before NMS (torchvision); for the TF family, the most boxes
    /// NMS keeps per class (`max_detections_per_class`).
    pub topk_candidates: usize,
    /// Only these classes are scored, so that the others take none of the `detections_per_img`
    /// places (set from `DetectOptions::with_classes`; not part of a config file).
    #[serde(skip)]
    pub classes: Option<ClassSet>,
}

/// A complete SSDLite detector definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Name shown to users.
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// The reference whose computations the detector reproduces.
    #[serde(default, skip_serializing_if = "is_torchvision")]
    pub family: Family,
    /// Backbone model name (`mixdet models`).
    pub backbone: String,
    /// Replace the backbone's depthwise convs by MixConv with these kernels (MobileNets only).
    #[serde(default)]
    pub backbone_mixconv_kernels: Option<Vec<usize>>,
    /// torchvision's `reduced_tail` (MobileNetV3 only): halves the last stage.
    #[serde(default)]
    pub reduced_tail: bool,
    /// Network input size `[height, width]`; images are resized to it (aspect ratio not kept).
    pub input_size: [usize; 2],
    /// Classes including the background at index 0.
    pub num_classes: usize,
    /// Class names, index = label (index 0 the background; "N/A" for unused slots).
    pub labels: Vec<String>,
    /// Also predict from C3 (stride 8), a level in front of C4 for small objects. Not part of
    /// torchvision's SSDLite; the head's `module_list` then starts with C3's block.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub c3_level: bool,
    /// Top-down merge into C3 (FPN-style): C4 through a 1x1 conv and BatchNorm, upsampled 2x
    /// (nearest) and added to C3, so that the small-object level sees C4's deeper features.
    /// Needs `c3_level`. Weights `neck.top_down.{0,1}`; the BatchNorm scale starts at zero when
    /// training, so the merge starts as the identity and a C3 detector's weights carry over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub top_down: bool,
    /// Output channels of the extra layers appended after C5.
    pub extra_channels: Vec<usize>,
    /// BatchNorm epsilon of the extra layers and the head.
    pub bn_eps: f64,
    /// Per-channel mean subtracted from [0, 1] pixels.
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation.
    pub image_std: [f32; 3],
    /// Anchors.
    pub anchors: AnchorGenerator,
    /// Post-processing.
    pub postprocess: PostprocessConfig,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Malformed JSON or a missing/mistyped field.
    #[error("{path}: invalid detector config: {source}")]
    Json {
        /// The file.
        path: String,
        /// The error (with line and column).
        source: serde_json::Error,
    },
    /// The values are inconsistent.
    #[error("{name}: {message}")]
    Invalid {
        /// Config name or file.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Neither a built-in name nor a file.
    #[error("unknown detector {0:?}: not a built-in model ({names}) nor a .json file", names = BUILTIN_NAMES.join(", "))]
    Unknown(String),
}

/// How a built-in detector's config is defined.
enum Builtin {
    /// `crates/detect/configs/<name>.json`, compiled in.
    File(&'static str),
    /// Another built-in's config at another square input size: the same layers and anchor scales
    /// (fractions of the input), so only the feature-map sizes change.
    Resized {
        /// The built-in it is derived from.
        base: &'static str,
        /// Side of the square input.
        size: usize,
    },
}

macro_rules! builtin {
    ($name:literal) => {
        ($name, Builtin::File(include_str!(concat!("../configs/", $name, ".json"))))
    };
    ($name:literal = $base:literal at $size:literal) => {
        ($name, Builtin::Resized { base: $base, size: $size })
    };
}

/// The compiled-in detector configs: one table, from which [`BUILTIN_NAMES`] is derived.
const BUILTINS: [(&str, Builtin); 13] = [
    builtin!("ssdlite300_mobilenet_v2_person"),
    builtin!("ssdlite300_mobilenet_v2_mixconv357_person"),
    builtin!("ssdlite300_mobilenet_v2_coco"),
    builtin!("ssdlite320_mobilenet_v3_large"),
    builtin!("ssdlite320_mobilenet_v3_large_mixconv"),
    builtin!("ssdlite320_mixnet_s"),
    builtin!("ssdlite320_mixnet_m"),
    builtin!("ssdlite320_mixnet_l"),
    builtin!("ssdlite320_mixnet_s_shapes"),
    builtin!("ssdlite320_mixnet_s_c3_shapes"),
    builtin!("ssdlite448_mixnet_s_c3_shapes" = "ssdlite320_mixnet_s_c3_shapes" at 448),
    builtin!("ssdlite512_mixnet_s_c3_shapes" = "ssdlite320_mixnet_s_c3_shapes" at 512),
    builtin!("ssdlite320_mixnet_s_c3td_shapes"),
];

/// Names of the detectors whose configs are compiled in.
pub const BUILTIN_NAMES: &[&str] = &builtin_names();

const fn builtin_names() -> [&'static str; BUILTINS.len()] {
    let mut names = [""; BUILTINS.len()];
    let mut i = 0;
    while i < BUILTINS.len() {
        names[i] = BUILTINS[i].0;
        i += 1;
    }
    names
}

/// A built-in's config, or `None` for a name that is not built in.
fn builtin_config(name: &str) -> Option<Result<DetectorConfig, ConfigError>> {
    let (_, builtin) = BUILTINS.iter().find(|(n, _)| *n == name)?;
    Some(match builtin {
        Builtin::File(json) => DetectorConfig::from_json(json, name),
        Builtin::Resized { base, size } => builtin_config(base)?.and_then(|mut cfg| {
            let (from_h, from_w) = (cfg.input_size[0], cfg.input_size[1]);
            cfg.description = format!(
                "{base} at a {size}x{size} input ({from_h}x{from_w} there): the same layers and anchor scales \
                 (fractions of the input), larger feature maps; small objects span {:.1}x more pixels",
                *size as f64 / from_w as f64
            );
            cfg.name = name.to_string();
            cfg.input_size = [*size, *size];
            cfg.validate()?;
            Ok(cfg)
        }),
    })
}

impl DetectorConfig {
    /// A built-in detector by name, or a config file when `name_or_path` ends in `.json`.
    pub fn resolve(name_or_path: &str) -> Result<Self, ConfigError> {
        if let Some(cfg) = builtin_config(name_or_path) {
            return cfg;
        }
        if name_or_path.ends_with(".json") {
            return Self::from_file(Path::new(name_or_path));
        }
        Err(ConfigError::Unknown(name_or_path.to_string()))
    }

    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and validates a config.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let cfg: Self =
            serde_json::from_str(text).map_err(|source| ConfigError::Json { path: source_name.to_string(), source })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Number of feature levels (C3 if enabled, C4, C5 and the extra layers).
    pub fn num_levels(&self) -> usize {
        usize::from(self.c3_level) + 2 + self.extra_channels.len()
    }

    /// Anchors per location at each level.
    pub fn anchors_per_location(&self) -> Vec<usize> {
        match &self.anchors {
            AnchorGenerator::SsdDefaultBoxes(a) => a.aspect_ratios.iter().map(|r| 2 + 2 * r.len()).collect(),
            AnchorGenerator::TfMultipleGrid(a) => {
                let interpolated = usize::from(a.interpolated_scale_aspect_ratio > 0.0);
                (0..self.num_levels())
                    .map(|l| {
                        if l == 0 && a.reduce_boxes_in_lowest_layer {
                            3
                        } else {
                            a.aspect_ratios.len() + interpolated
                        }
                    })
                    .collect()
            }
        }
    }

    /// Checks that the values fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |message: String| Err(ConfigError::Invalid { name: self.name.clone(), message });
        if self.labels.len() != self.num_classes {
            return bad(format!("{} labels for {} classes", self.labels.len(), self.num_classes));
        }
        if self.num_classes < 2 {
            return bad("at least one class besides the background is needed".into());
        }
        if let Some(levels) = self.anchors.levels().filter(|&l| l != self.num_levels()) {
            return bad(format!(
                "{levels} anchor aspect-ratio lists for {} feature levels ({}C4, C5 and {} extra layers)",
                self.num_levels(),
                if self.c3_level { "C3, " } else { "" },
                self.extra_channels.len()
            ));
        }
        match &self.anchors {
            AnchorGenerator::SsdDefaultBoxes(a) => {
                if a.aspect_ratios.iter().flatten().any(|&r| !(r.is_finite() && r > 0.0)) {
                    return bad("aspect ratios must be positive".into());
                }
                if let Some(s) = &a.scales {
                    if s.len() != self.num_levels() + 1 {
                        return bad(format!(
                            "{} anchor scales, expected {} (levels + 1)",
                            s.len(),
                            self.num_levels() + 1
                        ));
                    }
                }
                if let Some(s) = &a.steps {
                    if s.len() != self.num_levels() || s.contains(&0) {
                        return bad(format!("anchor steps must be {} positive values", self.num_levels()));
                    }
                }
                if a.min_ratio.is_nan() || a.min_ratio <= 0.0 || a.min_ratio > a.max_ratio {
                    return bad("anchors need 0 < min_ratio <= max_ratio".into());
                }
            }
            AnchorGenerator::TfMultipleGrid(a) => {
                let positive = |v: f64| v.is_finite() && v > 0.0;
                if a.aspect_ratios.is_empty() || !a.aspect_ratios.iter().all(|&r| positive(r)) {
                    return bad("anchors.aspect_ratios must be positive values".into());
                }
                if !(positive(a.min_scale) && a.min_scale <= a.max_scale && a.max_scale.is_finite()) {
                    return bad("anchors need 0 < min_scale <= max_scale".into());
                }
                let interpolated_ok =
                    a.interpolated_scale_aspect_ratio.is_finite() && a.interpolated_scale_aspect_ratio >= 0.0;
                if !a.base_anchor_size.iter().all(|&v| positive(v)) || !interpolated_ok {
                    return bad(
                        "anchors need a positive base_anchor_size and interpolated_scale_aspect_ratio >= 0".into()
                    );
                }
                if self.family != Family::TfOdApi {
                    return bad(
                        "tf_multiple_grid anchors need \"family\": \"tf_od_api\" (normalised TF box codes)".into()
                    );
                }
            }
        }
        if self.family == Family::TfOdApi && (self.c3_level || self.top_down) {
            return bad("the tf_od_api family has no C3 level or top-down merge".into());
        }
        if self.family == Family::TfOdApi && !matches!(self.anchors, AnchorGenerator::TfMultipleGrid(_)) {
            return bad(
                "the tf_od_api family decodes TF's normalised anchors: use \"generator\": \"tf_multiple_grid\"".into(),
            );
        }
        if self.top_down && !self.c3_level {
            return bad("top_down merges C4 into C3 and needs c3_level".into());
        }
        if self.input_size.contains(&0) || self.extra_channels.iter().any(|&c| c < 2) {
            return bad("input size and extra channels must be positive".into());
        }
        if self.image_std.iter().any(|&s| s <= 0.0) || self.bn_eps.is_nan() || self.bn_eps <= 0.0 {
            return bad("image_std and bn_eps must be positive".into());
        }
        let p = &self.postprocess;
        if !(0.0..=1.0).contains(&p.nms_thresh) || !p.score_thresh.is_finite() {
            return bad("nms_thresh must be in [0, 1] and score_thresh finite".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_validate() {
        for name in BUILTIN_NAMES {
            let cfg = DetectorConfig::resolve(name).expect("valid built-in");
            assert_eq!(&cfg.name, name);
            let per_location = match cfg.family {
                // TF's reduced lowest layer: 3 boxes, then 5 ratios + 1 interpolated scale.
                Family::TfOdApi => [vec![3], vec![6; cfg.num_levels() - 1]].concat(),
                Family::Torchvision => vec![6; cfg.num_levels()],
            };
            assert_eq!(cfg.anchors_per_location(), per_location, "{name}");
        }
    }

    #[test]
    fn resized_builtins_change_only_the_input_size() {
        let base = DetectorConfig::resolve("ssdlite320_mixnet_s_c3_shapes").expect("base");
        let big = DetectorConfig::resolve("ssdlite512_mixnet_s_c3_shapes").expect("resized");
        assert_eq!(big.input_size, [512, 512]);
        assert!(big.description.starts_with("ssdlite320_mixnet_s_c3_shapes at a 512x512 input"), "{}", big.description);
        let same = DetectorConfig {
            name: base.name.clone(),
            description: base.description.clone(),
            input_size: base.input_size,
            ..big
        };
        assert_eq!(same, base);
    }

    #[test]
    fn invalid_configs_are_reported() {
        let json = include_str!("../configs/ssdlite320_mixnet_s.json");
        let mut v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["num_classes"] = 5.into();
        let err = DetectorConfig::from_json(&v.to_string(), "x.json").expect_err("labels mismatch");
        assert!(err.to_string().contains("91 labels for 5 classes"), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["c3_level"] = true.into();
        let err = DetectorConfig::from_json(&v.to_string(), "x.json").expect_err("one level short");
        assert!(err.to_string().contains("6 anchor aspect-ratio lists for 7 feature levels (C3, C4"), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["top_down"] = true.into();
        let err = DetectorConfig::from_json(&v.to_string(), "x.json").expect_err("top_down without C3");
        assert!(err.to_string().contains("top_down merges C4 into C3 and needs c3_level"), "{err}");
        let err = DetectorConfig::from_json("{\"name\": 3}", "y.json").expect_err("bad json");
        assert!(err.to_string().starts_with("y.json: invalid detector config"), "{err}");
        assert!(matches!(DetectorConfig::resolve("nope"), Err(ConfigError::Unknown(_))));
    }

    #[test]
    fn anchor_generators_are_chosen_by_name_and_checked() {
        let json = include_str!("../configs/ssdlite300_mobilenet_v2_person.json");
        let cfg = DetectorConfig::from_json(json, "person.json").expect("valid");
        assert!(matches!(cfg.anchors, AnchorGenerator::TfMultipleGrid(_)) && cfg.family == Family::TfOdApi);
        let mut v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["anchors"]["generator"] = "grid".into();
        let err = DetectorConfig::from_json(&v.to_string(), "x.json").expect_err("unknown generator");
        assert!(err.to_string().contains("unknown anchors.generator \"grid\""), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["family"] = "torchvision".into();
        let err = DetectorConfig::from_json(&v.to_string(), "x.json").expect_err("TF anchors need the TF family");
        assert!(err.to_string().contains("tf_multiple_grid anchors need"), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["anchors"]["min_scale"] = (-1.0).into();
        let err = DetectorConfig::from_json(&v.to_string(), "x.json").expect_err("negative scale");
        assert!(err.to_string().contains("0 < min_scale <= max_scale"), "{err}");
        // A round trip through JSON keeps the generator.
        let back =
            DetectorConfig::from_json(&serde_json::to_string(&cfg).expect("serialise"), "y.json").expect("valid");
        assert_eq!(back, cfg);
    }
}
