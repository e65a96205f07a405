//! Mixed depthwise convolution (MixConv, Tan & Le, BMVC 2019) for candle.
//!
//! A MixConv layer splits its channels into groups and convolves each group depthwise with its
//! own kernel size (3x3, 5x5, 7x7, ...). This crate holds the channel-split rules, the padding
//! rules (PyTorch symmetric and TensorFlow "SAME"), the layer itself and its kernels: one candle
//! op for the whole layer (all groups, forward and backward), instead of candle's grouped
//! `conv2d`, which runs one convolution per channel.
//!
//! * CPU: f32 kernels, parallel over batch and channels with rayon, AVX2/FMA chosen at run time
//!   (`MIXDET_MIXCONV_ISA=portable` forces the portable loops).
//! * CUDA (feature `cuda`): the same three kernels in `src/cuda/mixconv.cu`, compiled to PTX at
//!   build time.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod fused_act;
mod geometry;
pub mod mixed_conv;
mod op;
pub mod padding;
pub mod pointwise;
pub mod split;

pub use cpu::simd::Isa;
pub use fused_act::FusedAct;
pub use mixed_conv::{MixConvError, MixConvImpl, MixedConv2d, MixedConv2dConfig};
pub use padding::{Pad1d, PaddingMode};
pub use pointwise::conv1x1;
pub use split::{split_channels, SplitRule};
