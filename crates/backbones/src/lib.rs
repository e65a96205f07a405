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
pub mod registry;
pub mod synthetic;
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

    /// Channels of the two maps [`Backbone::forward_detection_taps`] returns.
    fn detection_tap_channels(&self) -> (usize, usize);

    /// The two maps torchvision's SSDLite takes from a classification backbone, in one pass:
    /// C4, the output of the 1x1 expansion (with BN and activation) of the first block of the
    /// last stride-2 stage (stride 16), and C5, the last feature map (stride 32: the head conv
    /// when the model has one, else the last block's output).
    fn forward_detection_taps(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)>;
}
