//! A convolution, its BatchNorm and activation, with the inference form that folds the
//! BatchNorm into the convolution and runs the layer as one op where it can.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use mixdet_kernels::{DenseConvPlan, PointwisePlan};

use super::{Activation, BnAct, Conv, ConvSpec};
use crate::onnx::OnnxValue;

/// A convolution, its BatchNorm and activation; `fuse` adds an inference form with the
/// BatchNorm folded into the convolution's weights and a bias, applied with the activation in
/// one pass (the kernel's epilogue for MixConv, an in-place pass after a 1x1 matrix product).
/// Training (`train = true`) always runs the unfolded layers.
#[derive(Debug, Clone)]
pub struct ConvBnAct {
    conv: Conv,
    bn: BnAct,
    folded: Option<Folded>,
}

#[derive(Debug, Clone)]
struct Folded {
    conv: Conv,
    bias: Tensor,
    bias_values: Vec<f32>,
    act: Activation,
    /// The whole layer as one op when it is a (grouped) 1x1 or a dense convolution.
    plan: Option<InferencePlan>,
}

/// A whole inference layer (convolution, folded bias, activation) as one CPU op.
#[derive(Debug, Clone)]
pub enum InferencePlan {
    /// A (grouped) 1x1 convolution.
    Pointwise(PointwisePlan),
    /// A dense k x k convolution (the stem).
    Dense(DenseConvPlan),
}

impl InferencePlan {
    /// Whether [`InferencePlan::forward`] can run on `x` (else run the layer's candle ops).
    pub fn supports(&self, x: &Tensor) -> bool {
        match self {
            InferencePlan::Pointwise(p) => p.supports(x),
            InferencePlan::Dense(p) => p.supports(x),
        }
    }

    /// The layer's output for `x`; not differentiable.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            InferencePlan::Pointwise(p) => p.forward(x),
            InferencePlan::Dense(p) => p.forward(x),
        }
    }
}

impl ConvBnAct {
    /// Loads the convolution under `conv_vb` and the BatchNorm under `bn_vb`.
    pub fn load(spec: &ConvSpec, eps: f64, act: Activation, conv_vb: VarBuilder, bn_vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: Conv::load(spec, conv_vb)?, bn: BnAct::load(spec.out_chs, eps, act, bn_vb)?, folded: None })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.bn.channels()
    }

    /// Folds the BatchNorm into the convolution for inference (idempotent; call again after
    /// changing the weights).
    pub fn fuse(&mut self) -> Result<()> {
        // Detached: candle_nn keeps running statistics as `Var`s, and anything derived from a
        // `Var` counts as "needs gradients", which would send the MixConv kernel down its
        // differentiable (unfused) path.
        let (scale, shift) = self.bn.affine()?;
        let (scale, shift) = (scale.detach(), shift.detach());
        let conv = self.conv.scaled(&scale)?;
        let bias_values = shift.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let act = self.bn.activation();
        let plan = conv.inference_plan(&bias_values, act)?;
        self.folded = Some(Folded { conv, bias: shift, bias_values, act, plan });
        Ok(())
    }

    /// Writes the inference form (BatchNorm folded into the convolution's weights and bias, then
    /// the activation) into an ONNX graph.
    pub fn to_onnx(&self, g: &mut mixdet_onnx::Graph, x: &OnnxValue) -> Result<OnnxValue> {
        let (conv, bias, act) = match &self.folded {
            Some(f) => (f.conv.clone(), f.bias_values.clone(), f.act),
            None => {
                let (scale, shift) = self.bn.affine()?;
                (self.conv.scaled(&scale.detach())?, crate::onnx::values(&shift)?, self.bn.activation())
            }
        };
        let y = conv.to_onnx(g, x, &bias)?;
        act.to_onnx(g, y)
    }

    /// Convolution, BatchNorm (batch statistics when `train`) and activation.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match (&self.folded, train) {
            (Some(f), false) => f.forward(x),
            _ => self.bn.forward_t(&self.conv.forward(x)?, train),
        }
    }
}

impl Folded {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(plan) = self.plan.as_ref().filter(|p| p.supports(x)) {
            return plan.forward(x);
        }
        // Only the depthwise kernel has a bias+activation epilogue; other convolutions without a
        // plan for `x` take the in-place epilogue below when they can, which is much cheaper than
        // candle's bias and activation ops.
        if let (Conv::Mixed(m), Some(act)) = (&self.conv, self.act.as_fused()) {
            if m.uses_fused_op(x) {
                return m.forward_fused(x, Some(&self.bias), act);
            }
        }
        let y = self.conv.forward(x)?;
        if crate::fused::supported(&y) {
            crate::fused::bias_act_inplace(&y, &self.bias_values, self.act)?;
            Ok(y)
        } else {
            self.act.apply(&y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::KernelSpec;
    use candle_core::{DType, Device};
    use mixdet_kernels::PaddingMode;

    /// Folded weights must not track gradients even when the model was built from `Var`s (as
    /// candle_nn's BatchNorm always makes its running statistics), or the MixConv kernel falls
    /// back to its differentiable, unfused path.
    #[test]
    fn folded_weights_do_not_track_gradients() -> Result<()> {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let spec = ConvSpec {
            in_chs: 8,
            out_chs: 8,
            kernel: KernelSpec::Mixed(vec![3, 5]),
            stride: 1,
            dilation: 1,
            depthwise: true,
            padding: PaddingMode::Symmetric,
        };
        let mut layer = ConvBnAct::load(&spec, 1e-5, Activation::Silu, vb.pp("conv"), vb.pp("bn"))?;
        layer.fuse()?;
        let folded = layer.folded.as_ref().expect("fused");
        assert!(!folded.bias.track_op());
        let Conv::Mixed(m) = &folded.conv else { panic!("a MixConv stays a MixConv") };
        assert!(m.weights().iter().all(|w| !w.track_op()));
        let x = Tensor::randn(0f32, 1.0, (1, 8, 6, 6), &Device::Cpu)?;
        assert!(m.uses_fused_op(&x));
        Ok(())
    }
}
