//! The compute kernels mixdet's models run on, as candle ops: MixConv (mixed depthwise
//! convolution, Tan & Le, BMVC 2019) first, and the other layers whose candle implementations are
//! too slow for small detectors: pointwise (1x1) and dense (stem) convolutions with a fused
//! bias/activation epilogue, training-time BatchNorm with its activation, fast activations, and
//! the control of subnormal floats ([`denormals`]) that keeps their speed independent of the
//! values in the weights and images.
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
//!
//! [`MixedConv2d::forward`] is differentiable on every path: on the fused op, the input and weight
//! gradients come from the op's own backward kernels. For inference,
//! [`MixedConv2d::forward_fused`] also applies a per-channel bias and an activation inside the
//! kernel, which is how a depthwise convolution followed by a BatchNorm and an activation runs
//! once the BatchNorm is folded into it:
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use mixdet_kernels::{FusedAct, MixedConv2d, MixedConv2dConfig};
//!
//! # fn main() -> candle_core::Result<()> {
//! let dev = Device::Cpu;
//! let config = MixedConv2dConfig::depthwise(8, vec![3, 5], 1);
//! let weights: Vec<Tensor> = config
//!     .weight_shapes()
//!     .iter()
//!     .map(|s| Tensor::randn(0f32, 0.1, s.as_slice(), &dev))
//!     .collect::<candle_core::Result<_>>()?;
//! // BatchNorm statistics (one per channel).
//! let (gamma, beta) = (Tensor::ones(8, candle_core::DType::F32, &dev)?, Tensor::zeros(8, candle_core::DType::F32, &dev)?);
//! let (mean, var) = (Tensor::zeros(8, candle_core::DType::F32, &dev)?, Tensor::ones(8, candle_core::DType::F32, &dev)?);
//! let scale = gamma.broadcast_div(&(var + 1e-3)?.sqrt()?)?;
//! // Fold: each group's weights scaled by its channels' `scale`, bias = beta - mean * scale.
//! let mut start = 0;
//! let folded = weights
//!     .iter()
//!     .map(|w| {
//!         let c = w.dim(0)?;
//!         let s = scale.narrow(0, start, c)?.reshape((c, 1, 1, 1))?;
//!         start += c;
//!         w.broadcast_mul(&s)
//!     })
//!     .collect::<candle_core::Result<Vec<_>>>()?;
//! let bias = (beta - mean.mul(&scale)?)?;
//! let layer = MixedConv2d::new(config, folded, None)?;
//! let x = Tensor::randn(0f32, 1.0, (1, 8, 16, 16), &dev)?;
//! let y = layer.forward_fused(&x, Some(&bias), FusedAct::HardSwish)?;
//! assert_eq!(y.dims(), &[1, 8, 16, 16]);
//! # Ok(())
//! # }
//! ```

pub mod batch_norm;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
pub mod denormals;
pub mod dense;
pub mod dense_train;
pub mod fast_math;
mod fused_act;
mod geometry;
pub mod mixed_conv;
mod op;
pub mod padding;
mod plan_io;
pub mod pointwise;
pub mod split;

pub use batch_norm::{batch_norm_act_train, BatchNormTrainOutput};
pub use cpu::simd::Isa;
pub use dense::DenseConvPlan;
pub use dense_train::dense_conv2d;
pub use fused_act::FusedAct;
pub use mixed_conv::{MixConvError, MixConvImpl, MixedConv2d, MixedConv2dConfig};
pub use padding::{Pad1d, PaddingMode};
pub use pointwise::{conv1x1, PointwisePlan};
pub use split::{split_channels, SplitRule};
