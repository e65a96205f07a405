//! Building blocks shared by the backbones, one concern per file as timm splits its layers:
//! activations, BatchNorm + activation, convolution (timm's `create_conv2d`), convolution +
//! BatchNorm + activation with its folded inference form, squeeze-excitation, the inverted
//! residual block and the classifier. Weights are fetched through a `VarBuilder` under PyTorch's
//! own key names.

mod activation;
mod blocks;
mod conv;
mod conv_bn_act;
mod linear;
mod norm_act;
mod squeeze_excite;

pub use activation::Activation;
pub(crate) use blocks::InvertedResidual;
pub use conv::{Conv, ConvSpec};
pub use conv_bn_act::{ConvBnAct, InferencePlan};
pub use linear::{classify, linear};
pub use norm_act::BnAct;
pub use squeeze_excite::SqueezeExcite;
