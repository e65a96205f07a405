//! Activations that the fused forward kernel applies to each output plane while it is still in
//! cache, instead of a separate candle op with its own output buffer.

use candle_core::{Result, Tensor};

/// An activation applied by [`crate::MixedConv2d::forward_fused`] after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FusedAct {
    /// No activation.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * sigmoid(x)` (timm's "swish"), computed as candle does: `x / (1 + exp(-x))`.
    Silu,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
}

impl FusedAct {
    /// Applies the activation in place (the kernels' epilogue).
    #[inline(always)]
    pub(crate) fn apply_slice(self, xs: &mut [f32]) {
        match self {
            FusedAct::None => {}
            FusedAct::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
            FusedAct::Relu6 => xs.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
            FusedAct::Silu => crate::fast_math::silu_inplace(xs),
            FusedAct::HardSwish => xs.iter_mut().for_each(|x| *x *= (*x + 3.0).clamp(0.0, 6.0) / 6.0),
        }
    }

    /// Adds `bias`, then applies the activation, in one pass.
    #[inline(always)]
    pub(crate) fn apply_slice_bias(self, xs: &mut [f32], bias: f32) {
        match self {
            FusedAct::Silu => crate::fast_math::silu_bias_inplace(xs, bias),
            FusedAct::None => xs.iter_mut().for_each(|x| *x += bias),
            FusedAct::Relu => xs.iter_mut().for_each(|x| *x = (*x + bias).max(0.0)),
            FusedAct::Relu6 => xs.iter_mut().for_each(|x| *x = (*x + bias).clamp(0.0, 6.0)),
            FusedAct::HardSwish => xs.iter_mut().for_each(|x| {
                let v = *x + bias;
                *x = v * (v + 3.0).clamp(0.0, 6.0) / 6.0
            }),
        }
    }

    /// The same activation as candle ops (differentiable), for the training path.
    pub fn apply_tensor(self, x: &Tensor) -> Result<Tensor> {
        match self {
            FusedAct::None => Ok(x.clone()),
            FusedAct::Relu => x.relu(),
            FusedAct::Relu6 => x.clamp(0f32, 6f32),
            FusedAct::Silu => x.silu(),
            FusedAct::HardSwish => x.mul(&((x + 3.0)?.clamp(0f32, 6f32)? / 6.0)?),
        }
    }

    /// A stable code for the CUDA kernels.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn code(self) -> u32 {
        match self {
            FusedAct::None => 0,
            FusedAct::Relu => 1,
            FusedAct::Relu6 => 2,
            FusedAct::Silu => 3,
            FusedAct::HardSwish => 4,
        }
    }
}
