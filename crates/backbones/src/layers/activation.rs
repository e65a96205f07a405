//! Element-wise activations of the MixNet / MobileNet families, as candle ops and as the fused
//! kernels' epilogues.

use candle_core::{Result, Tensor};
use mixdet_kernels::FusedAct;

use crate::onnx::OnnxValue;

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

impl Activation {
    /// Writes the activation into an ONNX graph (SiLU as `x * Sigmoid(x)`, ReLU6 as `Clip`).
    pub fn to_onnx(self, g: &mut mixdet_onnx::Graph, x: OnnxValue) -> Result<OnnxValue> {
        use mixdet_onnx::Attr;
        let w = crate::onnx::wrap;
        let y = match self {
            Activation::Identity => return Ok(x),
            Activation::Relu => g.op("Relu", &[&x.name], &[]).map_err(w)?,
            Activation::Relu6 => {
                let lo = g.f32_scalar("zero", 0.0).map_err(w)?;
                let hi = g.f32_scalar("six", 6.0).map_err(w)?;
                g.op("Clip", &[&x.name, &lo, &hi], &[]).map_err(w)?
            }
            Activation::Silu => {
                let s = g.op("Sigmoid", &[&x.name], &[]).map_err(w)?;
                g.op("Mul", &[&x.name, &s], &[]).map_err(w)?
            }
            Activation::HardSwish => g.op("HardSwish", &[&x.name], &[]).map_err(w)?,
            Activation::HardSigmoid => g
                .op("HardSigmoid", &[&x.name], &[("alpha", Attr::Float(1.0 / 6.0)), ("beta", Attr::Float(0.5))])
                .map_err(w)?,
            Activation::Sigmoid => g.op("Sigmoid", &[&x.name], &[]).map_err(w)?,
        };
        Ok(x.renamed(y))
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
