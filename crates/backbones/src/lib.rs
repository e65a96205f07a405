//! Backbones for mixdet: the MixNet family and MobileNetV2 exactly as timm defines them,
//! torchvision's MobileNetV3-Large, each optionally with MixConv in place of its depthwise convs.
//!
//! Architectures are data (timm's block strings, decoded by one builder); weights load from
//! timm / torchvision state dicts under their own key names.

pub mod arch;
pub mod efficientnet;
pub mod fused;
pub mod layers;
pub mod macs;
pub mod mobilenetv3;
pub mod onnx;
pub mod registry;
pub mod synthetic_weights;
pub mod tf_graph;
pub mod transforms;
pub mod weights;

use candle_core::{Result, Tensor};

pub use registry::{Architecture, Interpolation, ModelOptions, ModelSpec, PretrainedConfig, UnknownModel, MODEL_NAMES};
pub use weights::{read_state_dict, MismatchReport, WeightsError};

/// One feature map of a backbone's feature-extraction mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureInfo {
    /// Channels.
    pub channels: usize,
    /// Reduction relative to the input (2, 4, 8, 16, 32).
    pub stride: usize,
    /// The reference module whose output this is (e.g. `blocks.4`).
    pub module: String,
}

/// What a backbone's forward pass returns.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Class logits `(N, classes)`, when the model has a classifier.
    pub logits: Option<Tensor>,
    /// Feature maps in stride order (timm's `features_only` taps).
    pub features: Vec<Tensor>,
}

/// The maps an SSD-style detector takes from a backbone, each the output of the 1x1 expansion
/// (with BN and activation) of the first block of a stride-2 stage, as torchvision's SSDLite
/// takes C4, plus the last map.
#[derive(Debug, Clone)]
pub struct DetectionTaps {
    /// Stride 8: the expansion of the block that goes from stride 8 to 16 (only when asked for;
    /// not part of torchvision's SSDLite, added for small objects).
    pub c3: Option<Tensor>,
    /// Stride 16: the expansion of the block that goes from stride 16 to 32.
    pub c4: Tensor,
    /// Stride 32: the head conv when the model has one, else the last block's output.
    pub c5: Tensor,
}

/// Channels of the [`DetectionTaps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapChannels {
    /// Channels of C3; `None` when the backbone has no stride-2 stage before C4's.
    pub c3: Option<usize>,
    /// Channels of C4.
    pub c4: usize,
    /// Channels of C5.
    pub c5: usize,
}

/// A backbone: an image classifier that also exposes its intermediate feature maps.
pub trait Backbone: Send + Sync + std::fmt::Debug {
    /// Channels and strides of the feature maps [`Backbone::forward_t`] returns.
    fn feature_info(&self) -> &[FeatureInfo];

    /// Runs the network on `x` `(N, 3, H, W)`; `train` selects batch statistics in BatchNorm.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<ModelOutput>;

    /// Inference forward pass.
    fn forward(&self, x: &Tensor) -> Result<ModelOutput> {
        self.forward_t(x, false)
    }

    /// Folds every BatchNorm into its convolution and switches inference (`train = false`) to the
    /// fused kernels. Training keeps using the unfolded layers; call again after changing weights.
    fn fuse_for_inference(&mut self) -> Result<()>;

    /// Channels of the maps [`Backbone::forward_detection_taps`] returns.
    fn detection_tap_channels(&self) -> TapChannels;

    /// The maps an SSDLite detector takes, in one pass; C3 only when `with_c3` (an error when the
    /// backbone has no stride-2 stage before C4's).
    fn forward_detection_taps(&self, x: &Tensor, train: bool, with_c3: bool) -> Result<DetectionTaps>;

    /// Writes the inference form of the network (BatchNorm folded) into an ONNX graph on the
    /// input `x`, computing what `target` asks for.
    fn to_onnx(
        &self,
        g: &mut mixdet_onnx::Graph,
        x: &onnx::OnnxValue,
        target: onnx::ExportTarget,
    ) -> Result<onnx::ExportedBackbone>;
}

/// Where the C3 tap is taken when one is asked for: an error when the backbone has none, so that
/// a detector never runs with fewer levels than its head was built for.
pub(crate) fn requested_c3(with_c3: bool, c3_position: Option<usize>) -> Result<Option<usize>> {
    match (with_c3, c3_position) {
        (false, _) => Ok(None),
        (true, Some(p)) => Ok(Some(p)),
        (true, None) => candle_core::bail!("model has no stride-2 stage before C4's for the C3 tap"),
    }
}
