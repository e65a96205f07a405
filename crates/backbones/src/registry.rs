//! The named models: architecture definitions as data (timm's block strings) and their
//! pretrained preprocessing settings.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use mixdet_kernels::PaddingMode;

use crate::arch::DepthTrunc;
use crate::efficientnet::{EfficientNet, EfficientNetConfig};
use crate::layers::Activation;
use crate::mobilenetv3::{MobileNetV3, MobileNetV3Config};
use crate::weights::{read_state_dict, CheckedStateDict, ShapeRecorder, WeightsError};
use crate::Backbone;

#[rustfmt::skip]
const MIXNET_S: &[&[&str]] = &[
    &["ds_r1_k3_s1_e1_c16"],
    &["ir_r1_k3_a1.1_p1.1_s2_e6_c24", "ir_r1_k3_a1.1_p1.1_s1_e3_c24"],
    &["ir_r1_k3.5.7_s2_e6_c40_se0.5_nsw", "ir_r3_k3.5_a1.1_p1.1_s1_e6_c40_se0.5_nsw"],
    &["ir_r1_k3.5.7_p1.1_s2_e6_c80_se0.25_nsw", "ir_r2_k3.5_p1.1_s1_e6_c80_se0.25_nsw"],
    &["ir_r1_k3.5.7_a1.1_p1.1_s1_e6_c120_se0.5_nsw", "ir_r2_k3.5.7.9_a1.1_p1.1_s1_e3_c120_se0.5_nsw"],
    &["ir_r1_k3.5.7.9.11_s2_e6_c200_se0.5_nsw", "ir_r2_k3.5.7.9_p1.1_s1_e6_c200_se0.5_nsw"],
];

#[rustfmt::skip]
const MIXNET_M: &[&[&str]] = &[
    &["ds_r1_k3_s1_e1_c24"],
    &["ir_r1_k3.5.7_a1.1_p1.1_s2_e6_c32", "ir_r1_k3_a1.1_p1.1_s1_e3_c32"],
    &["ir_r1_k3.5.7.9_s2_e6_c40_se0.5_nsw", "ir_r3_k3.5_a1.1_p1.1_s1_e6_c40_se0.5_nsw"],
    &["ir_r1_k3.5.7_s2_e6_c80_se0.25_nsw", "ir_r3_k3.5.7.9_a1.1_p1.1_s1_e6_c80_se0.25_nsw"],
    &["ir_r1_k3_s1_e6_c120_se0.5_nsw", "ir_r3_k3.5.7.9_a1.1_p1.1_s1_e3_c120_se0.5_nsw"],
    &["ir_r1_k3.5.7.9_s2_e6_c200_se0.5_nsw", "ir_r3_k3.5.7.9_p1.1_s1_e6_c200_se0.5_nsw"],
];

#[rustfmt::skip]
const MOBILENETV2: &[&[&str]] = &[
    &["ds_r1_k3_s1_c16"],
    &["ir_r2_k3_s2_e6_c24"],
    &["ir_r3_k3_s2_e6_c32"],
    &["ir_r4_k3_s2_e6_c64"],
    &["ir_r3_k3_s1_e6_c96"],
    &["ir_r3_k3_s2_e6_c160"],
    &["ir_r1_k3_s1_e6_c320"],
];

/// The kernel list of the `_mixconv` model variants unless the caller gives another.
pub const DEFAULT_MIXCONV_KERNELS: [usize; 4] = [3, 5, 7, 9];

/// Every model name this crate can build.
pub const MODEL_NAMES: &[&str] = &[
    "mixnet_s",
    "mixnet_m",
    "mixnet_l",
    "mixnet_xl",
    "tf_mixnet_s",
    "tf_mixnet_m",
    "tf_mixnet_l",
    "mobilenetv2_100",
    "mobilenetv2_100_mixconv",
    "tf_mobilenetv2_100",
    "mobilenet_v3_large",
    "mobilenet_v3_large_mixconv",
];

/// Resampling filter of the pretrained preprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Bicubic (timm models).
    Bicubic,
    /// Bilinear (torchvision models).
    Bilinear,
}

/// How the pretrained weights expect images to be prepared (timm's `pretrained_cfg`).
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedConfig {
    /// Square input size.
    pub input_size: usize,
    /// Centre-crop fraction: resize the short side to `input_size / crop_pct`, then crop.
    pub crop_pct: f64,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Per-channel mean (RGB, on [0, 1] values).
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Which builder a model uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Architecture {
    /// timm's EfficientNet builder (MixNet, MobileNetV2).
    EfficientNet(EfficientNetConfig),
    /// torchvision's MobileNetV3-Large.
    MobileNetV3Large(MobileNetV3Config),
}

/// A named model: its architecture and preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The name, e.g. `mixnet_s`.
    pub name: String,
    /// The architecture.
    pub architecture: Architecture,
    /// Preprocessing of the pretrained weights.
    pub pretrained: PretrainedConfig,
}

/// An unknown model name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown model {name:?}; known models: {}", MODEL_NAMES.join(", "))]
pub struct UnknownModel {
    /// The name asked for.
    pub name: String,
}

fn strings(arch: &[&[&str]]) -> Vec<Vec<String>> {
    arch.iter().map(|s| s.iter().map(|b| b.to_string()).collect()).collect()
}

fn mixnet(arch: &[&[&str]], stem: usize, channel: f64, depth: f64, tf: bool) -> EfficientNetConfig {
    EfficientNetConfig {
        arch: strings(arch),
        stem_size: stem,
        num_features: 1536,
        channel_multiplier: channel,
        depth_multiplier: depth,
        depth_trunc: DepthTrunc::Round,
        act: Activation::Relu,
        bn_eps: if tf { 1e-3 } else { 1e-5 },
        padding: if tf { PaddingMode::TfSame } else { PaddingMode::Symmetric },
        dw_kernel_override: None,
    }
}

/// MobileNetV2 (width 1.0) as timm builds it, or with `tf` as TF-slim's (the TF Object Detection
/// API's feature extractor): the same blocks with TF "SAME" padding and BatchNorm epsilon 1e-3.
fn mobilenetv2(tf: bool, dw_kernel_override: Option<Vec<usize>>) -> EfficientNetConfig {
    EfficientNetConfig {
        arch: strings(MOBILENETV2),
        stem_size: 32,
        num_features: 1280,
        channel_multiplier: 1.0,
        depth_multiplier: 1.0,
        depth_trunc: DepthTrunc::Ceil,
        act: Activation::Relu6,
        bn_eps: if tf { 1e-3 } else { 1e-5 },
        padding: if tf { PaddingMode::TfSame } else { PaddingMode::Symmetric },
        dw_kernel_override,
    }
}

impl ModelSpec {
    /// Looks a model up by name. `mixconv_kernels` replaces the depthwise kernels of the
    /// MobileNet models (the `_mixconv` names default to {3, 5, 7, 9}); it is an error for MixNet,
    /// whose kernels are part of the architecture.
    pub fn by_name(name: &str, mixconv_kernels: Option<Vec<usize>>) -> Result<Self, UnknownModel> {
        let unknown = || UnknownModel { name: name.to_string() };
        let mix_default = || Some(mixconv_kernels.clone().unwrap_or(DEFAULT_MIXCONV_KERNELS.to_vec()));
        let timm = PretrainedConfig {
            input_size: 224,
            crop_pct: 0.875,
            interpolation: Interpolation::Bicubic,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        };
        let architecture = match name {
            "mixnet_s" => Architecture::EfficientNet(mixnet(MIXNET_S, 16, 1.0, 1.0, false)),
            "mixnet_m" => Architecture::EfficientNet(mixnet(MIXNET_M, 24, 1.0, 1.0, false)),
            "mixnet_l" => Architecture::EfficientNet(mixnet(MIXNET_M, 24, 1.3, 1.0, false)),
            "mixnet_xl" => Architecture::EfficientNet(mixnet(MIXNET_M, 24, 1.6, 1.2, false)),
            "tf_mixnet_s" => Architecture::EfficientNet(mixnet(MIXNET_S, 16, 1.0, 1.0, true)),
            "tf_mixnet_m" => Architecture::EfficientNet(mixnet(MIXNET_M, 24, 1.0, 1.0, true)),
            "tf_mixnet_l" => Architecture::EfficientNet(mixnet(MIXNET_M, 24, 1.3, 1.0, true)),
            "mobilenetv2_100" | "mobilenetv2_100_mixconv" => Architecture::EfficientNet(mobilenetv2(
                false,
                if name.ends_with("_mixconv") { mix_default() } else { mixconv_kernels.clone() },
            )),
            "tf_mobilenetv2_100" => Architecture::EfficientNet(mobilenetv2(true, mixconv_kernels.clone())),
            "mobilenet_v3_large" | "mobilenet_v3_large_mixconv" => Architecture::MobileNetV3Large(MobileNetV3Config {
                reduced_tail: false,
                mixconv_kernels: if name.ends_with("_mixconv") { mix_default() } else { mixconv_kernels.clone() },
            }),
            _ => return Err(unknown()),
        };
        if name.contains("mixnet") && mixconv_kernels.is_some() {
            return Err(UnknownModel { name: format!("{name} (MixNet kernels are fixed by the architecture)") });
        }
        let pretrained = match &architecture {
            Architecture::MobileNetV3Large(_) => PretrainedConfig { interpolation: Interpolation::Bilinear, ..timm },
            // TF-slim's inception preprocessing: bilinear, pixels mapped to [-1, 1].
            Architecture::EfficientNet(_) if name.starts_with("tf_mobilenet") => {
                PretrainedConfig { interpolation: Interpolation::Bilinear, mean: [0.5; 3], std: [0.5; 3], ..timm }
            }
            Architecture::EfficientNet(_) => timm,
        };
        Ok(Self { name: name.to_string(), architecture, pretrained })
    }

    /// Builds the model from a `VarBuilder`.
    pub fn build(&self, opts: &ModelOptions, vb: VarBuilder) -> candle_core::Result<Box<dyn Backbone>> {
        Ok(match &self.architecture {
            Architecture::EfficientNet(cfg) => {
                Box::new(EfficientNet::load(cfg, opts.num_classes, opts.features_only, vb)?)
            }
            Architecture::MobileNetV3Large(cfg) => {
                Box::new(MobileNetV3::load_large(cfg, opts.num_classes, opts.features_only, vb)?)
            }
        })
    }

    /// State-dict prefixes of the classification head, which a features-only model ignores.
    fn head_prefixes(&self) -> &'static [&'static str] {
        match &self.architecture {
            Architecture::EfficientNet(_) => &["conv_head.", "bn2.", "classifier."],
            Architecture::MobileNetV3Large(_) => &["classifier."],
        }
    }

    /// Builds the model from a state dict, strictly: every key must be used and match in shape.
    pub fn load_state_dict(
        &self,
        opts: &ModelOptions,
        state_dict: HashMap<String, Tensor>,
        source_name: &str,
        device: &Device,
    ) -> Result<Box<dyn Backbone>, WeightsError> {
        let checked = CheckedStateDict::new(state_dict);
        let model = self.build(opts, checked.var_builder(DType::F32, device))?;
        let ignored = if opts.features_only || opts.num_classes == 0 { self.head_prefixes() } else { &[] };
        let report = checked.report(ignored);
        if report.is_empty() {
            Ok(model)
        } else {
            Err(WeightsError::Mismatch { source_name: source_name.to_string(), report })
        }
    }

    /// Builds the model from a `.safetensors` / `.pth` file.
    pub fn load_file(
        &self,
        opts: &ModelOptions,
        path: &Path,
        device: &Device,
    ) -> Result<Box<dyn Backbone>, WeightsError> {
        let sd = read_state_dict(path)?;
        self.load_state_dict(opts, sd, &path.display().to_string(), device)
    }

    /// Every state-dict key the model uses with its shape (BatchNorm counters excluded).
    pub fn state_dict_shapes(&self, opts: &ModelOptions) -> candle_core::Result<Vec<(String, Vec<usize>)>> {
        let recorder = ShapeRecorder::default();
        self.build(opts, recorder.var_builder(&Device::Cpu))?;
        Ok(recorder.shapes().into_iter().collect())
    }

    /// Number of learnable parameters (BatchNorm running statistics excluded), as PyTorch counts them.
    pub fn parameter_count(&self, opts: &ModelOptions) -> candle_core::Result<usize> {
        Ok(self
            .state_dict_shapes(opts)?
            .iter()
            .filter(|(k, _)| is_parameter(k))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum())
    }

    /// Parameter counts and feature maps of the full model (1000 classes), from one weightless build.
    pub fn summary(&self) -> candle_core::Result<ModelSummary> {
        let recorder = ShapeRecorder::default();
        let net = self.build(&ModelOptions::default(), recorder.var_builder(&Device::Cpu))?;
        let shapes = recorder.shapes();
        let size = self.pretrained.input_size;
        let x = Tensor::zeros((1, 3, size, size), DType::F32, &Device::Cpu)?;
        let (out, macs) = crate::macs::count(|| net.forward(&x));
        out?;
        let count = |keep: &dyn Fn(&str) -> bool| -> usize {
            shapes.iter().filter(|(k, _)| is_parameter(k) && keep(k)).map(|(_, s)| s.iter().product::<usize>()).sum()
        };
        let head = self.head_prefixes();
        Ok(ModelSummary {
            params: count(&|_| true),
            backbone_params: count(&|k| !head.iter().any(|p| k.starts_with(p))),
            features: net.feature_info().to_vec(),
            macs,
        })
    }
}

/// Whether a state-dict key is a learnable parameter (PyTorch's `parameters()`), not a
/// BatchNorm running statistic.
pub fn is_parameter(key: &str) -> bool {
    // PyTorch names, then TensorFlow's (`.../BatchNorm/moving_mean`).
    !["running_mean", "running_var", "moving_mean", "moving_variance"].iter().any(|s| key.ends_with(s))
}

/// Size and feature maps of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    /// Learnable parameters with a 1000-class classifier.
    pub params: usize,
    /// Learnable parameters of the feature extractor alone (timm's `features_only`).
    pub backbone_params: usize,
    /// Feature maps in stride order.
    pub features: Vec<crate::FeatureInfo>,
    /// Multiply-adds of one image at the pretrained input size (see [`crate::macs`]).
    pub macs: u64,
}

/// What part of a model to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// Classifier outputs; 0 builds no classifier.
    pub num_classes: usize,
    /// Build the feature extractor only (no head conv, no classifier), as timm's `features_only`.
    pub features_only: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { num_classes: 1000, features_only: false }
    }
}
