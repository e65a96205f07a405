//! Mixed depthwise convolution (MixConv, Tan & Le, BMVC 2019) for candle.
//!
//! A MixConv layer splits its channels into groups and convolves each group depthwise with its
//! own kernel size (3x3, 5x5, 7x7, ...). This crate holds the channel-split rules, the padding
//! rules (PyTorch symmetric and TensorFlow "SAME"), the layer itself and its kernels.

mod depthwise_cpu;
pub mod mixed_conv;
pub mod padding;
pub mod pointwise;
pub mod split;

pub use mixed_conv::{MixConvError, MixConvImpl, MixedConv2d, MixedConv2dConfig};
pub use padding::{Pad1d, PaddingMode};
pub use pointwise::conv1x1;
pub use split::{split_channels, SplitRule};
