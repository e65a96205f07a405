//! TensorFlow variable names of a TF Object Detection API SSD with a MobileNetV2 feature
//! extractor, for the layers mixdet builds under torchvision-style paths.
//!
//! | mixdet path | TF variable |
//! | --- | --- |
//! | `backbone.body.conv_stem` / `bn1` | `FeatureExtractor/MobilenetV2/Conv/weights` / `Conv/BatchNorm/*` |
//! | `backbone.body.blocks.{s}.{b}.conv_pw` (expansion) | `.../expanded_conv_{n}/expand/weights` |
//! | `... .conv_dw` | `.../expanded_conv_{n}/depthwise/depthwise_weights` |
//! | `... .conv_pwl` (or `conv_pw` of the first, unexpanded block) | `.../expanded_conv_{n}/project/weights` |
//! | `backbone.body.conv_head` / `bn2` | `FeatureExtractor/MobilenetV2/Conv_1/weights` / `BatchNorm/*` |
//! | `backbone.extra.{i}.{0,1,2}` | `.../layer_19_1_Conv2d_{i+2}_1x1_{d/2}`, `layer_19_2_Conv2d_{i+2}_3x3_s2_{d}_depthwise`, `..._{d}` |
//! | `head.classification_head.module_list.{i}.0` / `.1` | `BoxPredictor_{i}/ClassPredictor_depthwise` / `ClassPredictor` |
//! | `head.regression_head.module_list.{i}.0` / `.1` | `BoxPredictor_{i}/BoxEncodingPredictor_depthwise` / `BoxEncodingPredictor` |
//!
//! `n` counts blocks over all stages from 0 (`expanded_conv`, then `expanded_conv_1`, ...), `d` is
//! the extra layer's depth. BatchNorm `weight`, `bias`, `running_mean`, `running_var` are TF's
//! `gamma`, `beta`, `moving_mean`, `moving_variance`; conv biases are `biases`. A MixConv group
//! `g` of a depthwise conv (a mixdet-trained model, TF has none) is `depthwise_weights_{g}`.
//! Weight layouts are PyTorch's (OIHW); `mixdet convert` transposes TF's HWIO when it reads a graph.

use mixdet_backbones::arch::{decode_arch_def, BlockType};
use mixdet_backbones::{Architecture, ModelSpec};

/// Scope of the feature extractor's variables.
const EXTRACTOR: &str = "FeatureExtractor/MobilenetV2";

/// Maps mixdet's parameter paths to TF variable names for one detector.
#[derive(Debug, Clone)]
pub struct TfNames {
    /// The global index (counted over all stages) of each stage's first block.
    stage_starts: Vec<usize>,
    /// Whether each global block has an expansion conv (inverted residual).
    expands: Vec<bool>,
    /// Depth of each extra layer.
    extra_depths: Vec<usize>,
}

impl TfNames {
    /// The names of a detector on `backbone` (an EfficientNet-builder MobileNetV2) with extra
    /// layers of the given depths.
    pub fn new(backbone: &ModelSpec, extra_depths: &[usize]) -> candle_core::Result<Self> {
        let Architecture::EfficientNet(cfg) = &backbone.architecture else {
            candle_core::bail!(
                "{}: the tf_od_api family needs a MobileNetV2 backbone (tf_mobilenetv2_100)",
                backbone.name
            )
        };
        let stages =
            decode_arch_def(&cfg.arch, cfg.depth_multiplier, cfg.depth_trunc).map_err(candle_core::Error::wrap)?;
        let mut stage_starts = Vec::with_capacity(stages.len());
        let mut expands = Vec::new();
        for stage in &stages {
            stage_starts.push(expands.len());
            expands.extend(stage.iter().map(|b| b.block_type == BlockType::InvertedResidual));
        }
        Ok(Self { stage_starts, expands, extra_depths: extra_depths.to_vec() })
    }

    /// The TF name of a mixdet parameter path; paths it does not know come back unchanged (and
    /// then show up as missing when a TF file is loaded).
    pub fn tf_name(&self, path: &str) -> String {
        self.try_tf_name(path).unwrap_or_else(|| path.to_string())
    }

    fn try_tf_name(&self, path: &str) -> Option<String> {
        if let Some(rest) = path.strip_prefix("backbone.body.") {
            return self.backbone_name(rest);
        }
        if let Some(rest) = path.strip_prefix("backbone.extra.") {
            return self.extra_name(rest);
        }
        if let Some(rest) = path.strip_prefix("head.classification_head.module_list.") {
            return predictor_name(rest, "ClassPredictor");
        }
        if let Some(rest) = path.strip_prefix("head.regression_head.module_list.") {
            return predictor_name(rest, "BoxEncodingPredictor");
        }
        None
    }

    fn backbone_name(&self, rest: &str) -> Option<String> {
        let (module, param) = rest.rsplit_once('.')?;
        let scoped = |scope: &str, layer: Layer| Some(format!("{EXTRACTOR}/{scope}/{}", layer.param(param)?));
        match module {
            "conv_stem" => return scoped("Conv", Layer::Conv),
            "bn1" => return scoped("Conv", Layer::BatchNorm),
            "conv_head" => return scoped("Conv_1", Layer::Conv),
            "bn2" => return scoped("Conv_1", Layer::BatchNorm),
            _ => {}
        }
        let mut parts = module.strip_prefix("blocks.")?.splitn(4, '.');
        let stage: usize = parts.next()?.parse().ok()?;
        let block: usize = parts.next()?.parse().ok()?;
        let layer = parts.next()?;
        let group = parts.next();
        let n = self.stage_starts.get(stage)? + block;
        let expands = *self.expands.get(n)?;
        let block_scope = if n == 0 { "expanded_conv".to_string() } else { format!("expanded_conv_{n}") };
        let (scope, kind) = match (layer, expands) {
            ("conv_pw", true) => ("expand", Layer::Conv),
            ("bn1", true) => ("expand", Layer::BatchNorm),
            ("conv_dw", _) => ("depthwise", Layer::Depthwise),
            ("bn2", true) | ("bn1", false) => ("depthwise", Layer::BatchNorm),
            ("conv_pwl", true) | ("conv_pw", false) => ("project", Layer::Conv),
            ("bn3", true) | ("bn2", false) => ("project", Layer::BatchNorm),
            _ => return None,
        };
        let name = match (kind, group) {
            (_, None) => kind.param(param)?,
            (Layer::Depthwise, Some(g)) if param == "weight" => {
                format!("depthwise_weights_{}", g.parse::<usize>().ok()?)
            }
            _ => return None,
        };
        Some(format!("{EXTRACTOR}/{block_scope}/{scope}/{name}"))
    }

    fn extra_name(&self, rest: &str) -> Option<String> {
        let mut parts = rest.splitn(4, '.');
        let i: usize = parts.next()?.parse().ok()?;
        let conv: usize = parts.next()?.parse().ok()?;
        let part: usize = parts.next()?.parse().ok()?;
        let param = parts.next()?;
        let depth = *self.extra_depths.get(i)?;
        let level = i + 2;
        let (scope, conv_kind) = match conv {
            0 => (format!("layer_19_1_Conv2d_{level}_1x1_{}", depth / 2), Layer::Conv),
            1 => (format!("layer_19_2_Conv2d_{level}_3x3_s2_{depth}_depthwise"), Layer::Depthwise),
            2 => (format!("layer_19_2_Conv2d_{level}_3x3_s2_{depth}"), Layer::Conv),
            _ => return None,
        };
        let kind = match part {
            0 => conv_kind,
            1 => Layer::BatchNorm,
            _ => return None,
        };
        Some(format!("{EXTRACTOR}/{scope}/{}", kind.param(param)?))
    }
}

/// `{i}.0.0.weight` (depthwise), `{i}.0.1.*` (its BatchNorm), `{i}.1.{weight,bias}` (the 1x1 conv).
fn predictor_name(rest: &str, predictor: &str) -> Option<String> {
    let (level, tail) = rest.split_once('.')?;
    let level: usize = level.parse().ok()?;
    let scope = format!("BoxPredictor_{level}");
    let (module, param) = tail.rsplit_once('.')?;
    let (sub, kind) = match module {
        "0.0" => ("_depthwise", Layer::Depthwise),
        "0.1" => ("_depthwise", Layer::BatchNorm),
        "1" => ("", Layer::ConvBias),
        _ => return None,
    };
    Some(format!("{scope}/{predictor}{sub}/{}", kind.param(param)?))
}

/// What kind of layer a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// A bias-free convolution.
    Conv,
    /// A depthwise convolution.
    Depthwise,
    /// A convolution with a bias.
    ConvBias,
    /// A BatchNorm.
    BatchNorm,
}

impl Layer {
    /// The TF name of parameter `param` (PyTorch's name) of this layer, relative to its scope.
    fn param(self, param: &str) -> Option<String> {
        let name = match (self, param) {
            (Layer::Conv, "weight") | (Layer::ConvBias, "weight") => "weights",
            (Layer::ConvBias, "bias") => "biases",
            (Layer::Depthwise, "weight") => "depthwise_weights",
            (Layer::BatchNorm, "weight") => "BatchNorm/gamma",
            (Layer::BatchNorm, "bias") => "BatchNorm/beta",
            (Layer::BatchNorm, "running_mean") => "BatchNorm/moving_mean",
            (Layer::BatchNorm, "running_var") => "BatchNorm/moving_variance",
            _ => return None,
        };
        Some(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> TfNames {
        let spec = ModelSpec::by_name("tf_mobilenetv2_100", None).expect("model");
        TfNames::new(&spec, &[512, 256, 256, 128]).expect("names")
    }

    #[test]
    fn maps_the_person_detector_layout() {
        let n = names();
        let cases = [
            ("backbone.body.conv_stem.weight", "FeatureExtractor/MobilenetV2/Conv/weights"),
            ("backbone.body.bn1.running_var", "FeatureExtractor/MobilenetV2/Conv/BatchNorm/moving_variance"),
            (
                "backbone.body.blocks.0.0.conv_dw.weight",
                "FeatureExtractor/MobilenetV2/expanded_conv/depthwise/depthwise_weights",
            ),
            (
                "backbone.body.blocks.0.0.bn1.weight",
                "FeatureExtractor/MobilenetV2/expanded_conv/depthwise/BatchNorm/gamma",
            ),
            ("backbone.body.blocks.0.0.conv_pw.weight", "FeatureExtractor/MobilenetV2/expanded_conv/project/weights"),
            ("backbone.body.blocks.0.0.bn2.bias", "FeatureExtractor/MobilenetV2/expanded_conv/project/BatchNorm/beta"),
            ("backbone.body.blocks.1.0.conv_pw.weight", "FeatureExtractor/MobilenetV2/expanded_conv_1/expand/weights"),
            (
                "backbone.body.blocks.1.1.bn2.running_mean",
                "FeatureExtractor/MobilenetV2/expanded_conv_2/depthwise/BatchNorm/moving_mean",
            ),
            (
                "backbone.body.blocks.5.0.conv_pwl.weight",
                "FeatureExtractor/MobilenetV2/expanded_conv_13/project/weights",
            ),
            (
                "backbone.body.blocks.6.0.bn3.weight",
                "FeatureExtractor/MobilenetV2/expanded_conv_16/project/BatchNorm/gamma",
            ),
            (
                "backbone.body.blocks.3.2.conv_dw.1.weight",
                "FeatureExtractor/MobilenetV2/expanded_conv_8/depthwise/depthwise_weights_1",
            ),
            ("backbone.body.conv_head.weight", "FeatureExtractor/MobilenetV2/Conv_1/weights"),
            ("backbone.body.bn2.running_mean", "FeatureExtractor/MobilenetV2/Conv_1/BatchNorm/moving_mean"),
            ("backbone.extra.0.0.0.weight", "FeatureExtractor/MobilenetV2/layer_19_1_Conv2d_2_1x1_256/weights"),
            (
                "backbone.extra.0.1.0.weight",
                "FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_2_3x3_s2_512_depthwise/depthwise_weights",
            ),
            ("backbone.extra.3.2.1.bias", "FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_5_3x3_s2_128/BatchNorm/beta"),
            (
                "head.classification_head.module_list.0.0.0.weight",
                "BoxPredictor_0/ClassPredictor_depthwise/depthwise_weights",
            ),
            (
                "head.regression_head.module_list.5.0.1.running_var",
                "BoxPredictor_5/BoxEncodingPredictor_depthwise/BatchNorm/moving_variance",
            ),
            ("head.classification_head.module_list.3.1.weight", "BoxPredictor_3/ClassPredictor/weights"),
            ("head.regression_head.module_list.2.1.bias", "BoxPredictor_2/BoxEncodingPredictor/biases"),
        ];
        for (path, tf) in cases {
            assert_eq!(n.tf_name(path), tf, "{path}");
        }
    }

    #[test]
    fn unknown_paths_pass_through() {
        let n = names();
        for p in ["backbone.body.blocks.9.0.conv_dw.weight", "neck.top_down.0.weight", "backbone.extra.7.0.0.weight"] {
            assert_eq!(n.tf_name(p), p);
        }
    }
}
