//! Element-wise activations of the MixNet / MobileNet families, as candle ops and as the fused
//! kernels' epilogues.

use candle_core::{Result, Tensor};
use mixdet_kernels::FusedAct;

/// Element-wise activations used by the MixNet / MobileNet families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * sigmoid(x)` (timm's "swish").
    Silu,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::Relu6 => x.clamp(0f32, 6f32),
            Activation::Silu => x.silu(),
            Activation::HardSwish => x.mul(&hard_sigmoid(x)?),
            Activation::HardSigmoid => hard_sigmoid(x),
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }
}

fn hard_sigmoid(x: &Tensor) -> Result<Tensor> {
    (x + 3.0)?.clamp(0f32, 6f32)? / 6.0
}

impl Activation {
    /// The same activation as a kernel epilogue of the fused MixConv op, when it has one.
    pub fn as_fused(self) -> Option<FusedAct> {
        match self {
            Activation::Identity => Some(FusedAct::None),
            Activation::Relu => Some(FusedAct::Relu),
            Activation::Relu6 => Some(FusedAct::Relu6),
            Activation::Silu => Some(FusedAct::Silu),
            Activation::HardSwish => Some(FusedAct::HardSwish),
            Activation::HardSigmoid | Activation::Sigmoid => None,
        }
    }
}
