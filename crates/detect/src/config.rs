//! Detector configurations as data (`configs/detectors/*.json`), validated on load.

use std::path::Path;

use serde::{Deserialize, Serialize};

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

/// Post-processing thresholds (torchvision's SSD `postprocess_detections`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostprocessConfig {
    /// Keep class scores strictly above this.
    pub score_thresh: f32,
    /// Suppress a box whose IoU with a better box of the same class is above this.
    pub nms_thresh: f32,
    /// Detections kept per image after NMS.
    pub detections_per_img: usize,
    /// Candidates kept per class before NMS.
    pub topk_candidates: usize,
}

/// A complete SSDLite detector definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Name shown to users.
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
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
    pub anchors: AnchorConfig,
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

/// A built-in config: its name and `configs/detectors/<name>.json`, compiled in.
macro_rules! builtin {
    ($name:literal) => {
        ($name, include_str!(concat!("../../../configs/detectors/", $name, ".json")))
    };
}

/// The compiled-in detector configs: one table, from which [`BUILTIN_NAMES`] is derived.
const BUILTINS: [(&str, &str); 10] = [
    builtin!("ssdlite320_mobilenet_v3_large"),
    builtin!("ssdlite320_mobilenet_v3_large_mixconv"),
    builtin!("ssdlite320_mixnet_s"),
    builtin!("ssdlite320_mixnet_m"),
    builtin!("ssdlite320_mixnet_l"),
    builtin!("ssdlite320_mixnet_s_shapes"),
    builtin!("ssdlite320_mixnet_s_c3_shapes"),
    builtin!("ssdlite448_mixnet_s_c3_shapes"),
    builtin!("ssdlite512_mixnet_s_c3_shapes"),
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

fn builtin_json(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, json)| *json)
}

impl DetectorConfig {
    /// A built-in detector by name, or a config file when `name_or_path` ends in `.json`.
    pub fn resolve(name_or_path: &str) -> Result<Self, ConfigError> {
        if let Some(json) = builtin_json(name_or_path) {
            return Self::from_json(json, name_or_path);
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
        self.anchors.aspect_ratios.iter().map(|r| 2 + 2 * r.len()).collect()
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
        if self.anchors.aspect_ratios.len() != self.num_levels() {
            return bad(format!(
                "{} anchor aspect-ratio lists for {} feature levels ({}C4, C5 and {} extra layers)",
                self.anchors.aspect_ratios.len(),
                self.num_levels(),
                if self.c3_level { "C3, " } else { "" },
                self.extra_channels.len()
            ));
        }
        if self.top_down && !self.c3_level {
            return bad("top_down merges C4 into C3 and needs c3_level".into());
        }
        if self.anchors.aspect_ratios.iter().flatten().any(|&a| !(a.is_finite() && a > 0.0)) {
            return bad("aspect ratios must be positive".into());
        }
        if let Some(s) = &self.anchors.scales {
            if s.len() != self.num_levels() + 1 {
                return bad(format!("{} anchor scales, expected {} (levels + 1)", s.len(), self.num_levels() + 1));
            }
        }
        if let Some(s) = &self.anchors.steps {
            if s.len() != self.num_levels() || s.contains(&0) {
                return bad(format!("anchor steps must be {} positive values", self.num_levels()));
            }
        }
        if self.anchors.min_ratio.is_nan()
            || self.anchors.min_ratio <= 0.0
            || self.anchors.min_ratio > self.anchors.max_ratio
        {
            return bad("anchors need 0 < min_ratio <= max_ratio".into());
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
            assert_eq!(cfg.anchors_per_location(), vec![6; cfg.num_levels()]);
        }
    }

    #[test]
    fn invalid_configs_are_reported() {
        let json = include_str!("../../../configs/detectors/ssdlite320_mixnet_s.json");
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
}
