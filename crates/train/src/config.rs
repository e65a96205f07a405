//! The training configuration (`configs/train/*.json`), validated on load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::error::{Result, TrainError};
use crate::optim::OptimizerConfig;

/// A COCO-format split: an instances file and the folder its `file_name`s are relative to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Image folder.
    pub images: PathBuf,
    /// `instances_*.json`.
    pub annotations: PathBuf,
}

/// Everything a training run needs. Relative paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Detector: a built-in name or a detector config `.json`.
    pub detector: String,
    /// Training split.
    pub train: DataConfig,
    /// Validation split for COCO mAP (optional).
    #[serde(default)]
    pub val: Option<DataConfig>,
    /// Where checkpoints, the JSONL log and the plot go.
    pub output_dir: PathBuf,
    /// Images per step.
    pub batch_size: usize,
    /// Passes over the training split.
    pub epochs: u64,
    /// Stop after this many steps (the schedule still spans all epochs).
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    #[serde(default)]
    pub min_lr: f64,
    /// Linear warm-up steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Warm-up starts at `warmup_factor * lr`.
    #[serde(default = "default_warmup_factor")]
    pub warmup_factor: f64,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Apply weight decay to BatchNorm parameters and biases too (torchvision's default).
    #[serde(default = "yes")]
    pub decay_norm_and_bias: bool,
    /// timm backbone checkpoint (`.safetensors` / `.pth`) to start from; else from scratch.
    #[serde(default)]
    pub backbone_weights: Option<PathBuf>,
    /// Whole-detector weights in the detector's own key layout (a `model.safetensors` written by
    /// training, a converted or `.pb` TF frozen graph, or the name of a built-in detector with
    /// built-in weights, e.g. `ssdlite300_mobilenet_v2_person`) to continue from, with a fresh
    /// optimiser and schedule. Every variable must be present with its shape, except that a
    /// MixConv detector takes a single-kernel detector's depthwise kernels centred in its larger
    /// ones. Not used with `--resume`.
    #[serde(default)]
    pub init_weights: Option<PathBuf>,
    /// Key renames applied to `init_weights`' keys before loading, as `[from_prefix, to_prefix]`
    /// pairs (the first that matches a key applies), for weights of a related layout: e.g. head
    /// levels shifted by one when a detector gains a C3 level.
    #[serde(default)]
    pub init_rename: Vec<[String; 2]>,
    /// Prefixes of detector variables that `init_weights` may lack (new layers); they keep their
    /// fresh initial values. Every other variable must still be present with its shape.
    #[serde(default)]
    pub init_new: Vec<String>,
    /// Augmentations.
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Negatives per positive in hard-negative mining.
    #[serde(default = "default_neg_to_pos")]
    pub neg_to_pos: usize,
    /// IoU from which an anchor matches a box.
    #[serde(default = "default_iou")]
    pub iou_threshold: f32,
    /// Evaluate on `val` every this many epochs (0: only at the end).
    #[serde(default = "one")]
    pub eval_every_epochs: u64,
    /// Score threshold of the detections fed to the evaluator.
    #[serde(default = "default_eval_score")]
    pub eval_score_threshold: f32,
    /// Checkpoint every this many steps (and at the end).
    #[serde(default = "default_ckpt")]
    pub checkpoint_every_steps: u64,
    /// Log line every this many steps.
    #[serde(default = "default_log")]
    pub log_every_steps: u64,
    /// Seed of initialisation, shuffling and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Batches prepared ahead by the loader thread.
    #[serde(default = "default_prefetch")]
    pub prefetch_batches: usize,
}

fn yes() -> bool {
    true
}
fn one() -> u64 {
    1
}
fn default_warmup_factor() -> f64 {
    0.001
}
fn default_neg_to_pos() -> usize {
    3
}
fn default_iou() -> f32 {
    0.5
}
fn default_eval_score() -> f32 {
    0.01
}
fn default_ckpt() -> u64 {
    500
}
fn default_log() -> u64 {
    10
}
fn default_prefetch() -> usize {
    2
}

/// Applies `key=value` overrides to a config's JSON: `key` is a field, or a dotted path into
/// nested objects (`optimizer.kind`, `train.images`); `value` is read as JSON when it parses
/// (`0.003`, `true`, `[448, 448]`, `null`), else taken as a string (`runs/a`,
/// `ssdlite300_mobilenet_v2_person`). An unknown key is an error when the config is read.
pub fn apply_overrides(config: &mut serde_json::Value, overrides: &[String]) -> std::result::Result<(), String> {
    for item in overrides {
        let Some((key, raw)) = item.split_once('=') else {
            return Err(format!("--set {item}: expected key=value"));
        };
        let value = serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
        let mut node = &mut *config;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let Some(object) = node.as_object_mut() else {
                return Err(format!("--set {key}: `{part}` is not inside an object"));
            };
            if parts.peek().is_none() {
                object.insert(part.to_string(), value);
                break;
            }
            node = object.entry(part.to_string()).or_insert_with(|| serde_json::json!({}));
        }
    }
    Ok(())
}

impl TrainConfig {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with(path, &[])
    }

    /// Reads a config file, applies `key=value` overrides ([`apply_overrides`]) and validates.
    pub fn from_file_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io { path: origin.clone(), source })?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| TrainError::Json { path: origin.clone(), source })?;
        apply_overrides(&mut value, overrides).map_err(TrainError::Invalid)?;
        let cfg: Self =
            serde_json::from_value(value).map_err(|source| TrainError::Json { path: origin.clone(), source })?;
        cfg.validate().map_err(|e| TrainError::Invalid(format!("{origin}: {e}")))?;
        Ok(cfg)
    }

    /// Checks the values; the message names the offending field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if self.epochs == 0 {
            return Err("epochs must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("lr must be positive (got {})", self.lr));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(format!("min_lr must lie in [0, lr] (got {})", self.min_lr));
        }
        if !(self.warmup_factor > 0.0 && self.warmup_factor <= 1.0) {
            return Err(format!("warmup_factor must lie in (0, 1] (got {})", self.warmup_factor));
        }
        if !(self.iou_threshold > 0.0 && self.iou_threshold <= 1.0) {
            return Err(format!("iou_threshold must lie in (0, 1] (got {})", self.iou_threshold));
        }
        if !(0.0..1.0).contains(&self.eval_score_threshold) {
            return Err(format!("eval_score_threshold must lie in [0, 1) (got {})", self.eval_score_threshold));
        }
        if self.checkpoint_every_steps == 0 || self.log_every_steps == 0 || self.prefetch_batches == 0 {
            return Err("checkpoint_every_steps, log_every_steps and prefetch_batches must be at least 1".into());
        }
        if self.max_steps == Some(0) {
            return Err("max_steps must be at least 1".into());
        }
        if self.backbone_weights.is_some() && self.init_weights.is_some() {
            return Err(
                "backbone_weights and init_weights exclude each other: init_weights sets the whole detector".into()
            );
        }
        if self.init_weights.is_none() && !(self.init_rename.is_empty() && self.init_new.is_empty()) {
            return Err("init_rename and init_new apply to init_weights, which is not set".into());
        }
        self.optimizer.validate().map_err(|e| format!("optimizer: {e}"))
    }

    /// `key` renamed by the first `init_rename` pair whose prefix it starts with.
    pub fn init_key(&self, key: &str) -> String {
        self.init_rename
            .iter()
            .find_map(|[from, to]| key.strip_prefix(from.as_str()).map(|rest| format!("{to}{rest}")))
            .unwrap_or_else(|| key.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "detector": "ssdlite320_mixnet_s",
            "train": {"images": "d/train", "annotations": "d/annotations/instances_train.json"},
            "output_dir": "runs/x",
            "batch_size": 4,
            "epochs": 2,
            "lr": 0.01,
            "optimizer": {"kind": "sgd", "momentum": 0.9, "weight_decay": 4e-5}
        })
    }

    #[test]
    fn parses_defaults_and_reports_bad_values() {
        let cfg: TrainConfig = serde_json::from_value(base()).unwrap();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.neg_to_pos, 3);
        let mut v = base();
        v["batch_size"] = 0.into();
        let cfg: TrainConfig = serde_json::from_value(v).unwrap();
        assert!(cfg.validate().unwrap_err().contains("batch_size"));
        let mut v = base();
        v["optimizer"] = serde_json::json!({"kind": "sgd", "momentum": 1.5});
        let cfg: TrainConfig = serde_json::from_value(v).unwrap();
        assert!(cfg.validate().unwrap_err().contains("momentum"));
        let mut v = base();
        v["backbone_weights"] = "a.safetensors".into();
        v["init_weights"] = "b.safetensors".into();
        let cfg: TrainConfig = serde_json::from_value(v).unwrap();
        assert!(cfg.validate().unwrap_err().contains("init_weights"));
        let mut v = base();
        v["init_new"] = serde_json::json!(["head.classification_head.module_list.0."]);
        let cfg: TrainConfig = serde_json::from_value(v).unwrap();
        assert!(cfg.validate().unwrap_err().contains("init_new"));
        let mut v = base();
        v["bacth_size"] = 3.into();
        assert!(serde_json::from_value::<TrainConfig>(v).unwrap_err().to_string().contains("bacth_size"));
    }

    #[test]
    fn init_rename_applies_the_first_matching_prefix_once() {
        let mut v = base();
        v["init_weights"] = "w.safetensors".into();
        v["init_rename"] = serde_json::json!([["head.m.0.", "head.m.1."], ["head.m.1.", "head.m.2."]]);
        let cfg: TrainConfig = serde_json::from_value(v).unwrap();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.init_key("head.m.0.weight"), "head.m.1.weight");
        assert_eq!(cfg.init_key("head.m.1.bias"), "head.m.2.bias");
        assert_eq!(cfg.init_key("head.m.10.bias"), "head.m.10.bias");
        assert_eq!(cfg.init_key("backbone.x"), "backbone.x");
    }

    #[test]
    fn overrides_set_fields_nested_fields_and_strings() {
        let mut v =
            serde_json::json!({"lr": 0.04, "optimizer": {"kind": "sgd", "momentum": 0.9}, "output_dir": "runs/a"});
        let sets = [
            "lr=0.003",
            "optimizer.kind=adamw",
            "output_dir=runs/b",
            "init_weights=ssdlite300_mobilenet_v2_person",
            "augment.hflip=false",
        ];
        apply_overrides(&mut v, &sets.map(String::from)).expect("valid");
        assert_eq!(v["lr"], 0.003);
        assert_eq!(v["optimizer"], serde_json::json!({"kind": "adamw", "momentum": 0.9}));
        assert_eq!(v["output_dir"], "runs/b");
        assert_eq!(v["init_weights"], "ssdlite300_mobilenet_v2_person");
        assert_eq!(v["augment"]["hflip"], false);
        assert!(apply_overrides(&mut v, &["lr".to_string()]).unwrap_err().contains("expected key=value"));
        assert!(apply_overrides(&mut v, &["lr.x=1".to_string()]).unwrap_err().contains("not inside an object"));
    }

    /// Every training config in `configs/train/` parses, validates and names a detector config
    /// (a file, or a built-in name) that parses too; weights to start from are built in or in the
    /// repository (a run's own files come in only as documented `--set` overrides).
    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut n = 0;
        for entry in std::fs::read_dir(root.join("configs/train")).expect("configs/train") {
            let path = entry.expect("entry").path();
            let cfg = TrainConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            let det = root.join(&cfg.detector);
            let parsed = if det.is_file() {
                mixdet_detect::DetectorConfig::from_file(&det)
            } else {
                mixdet_detect::DetectorConfig::resolve(&cfg.detector)
            };
            parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for weights in [&cfg.init_weights, &cfg.backbone_weights].into_iter().flatten() {
                let built_in = weights.to_str().is_some_and(|w| mixdet_detect::builtin_weights::NAMES.contains(&w));
                assert!(
                    built_in || root.join(weights).is_file(),
                    "{}: {} is not in a clone",
                    path.display(),
                    weights.display()
                );
            }
            n += 1;
        }
        assert!(n >= 3, "{n} configs");
    }
}
