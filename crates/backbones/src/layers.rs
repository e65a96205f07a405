//! Building blocks shared by the backbones: activations, convolution (timm's `create_conv2d`),
//! BatchNorm + activation, squeeze-excitation, linear layers. Weights are fetched through a
//! `VarBuilder` under PyTorch's own key names.

use candle_core::{Module, Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};
use mixdet_mixconv::{
    conv1x1, DenseConvPlan, FusedAct, MixedConv2d, MixedConv2dConfig, PaddingMode, PointwisePlan, SplitRule,
};
use rayon::prelude::*;

use crate::arch::KernelSpec;

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

/// BatchNorm2d followed by an activation (timm's `BatchNormAct2d`).
///
/// Training runs [`mixdet_mixconv::batch_norm_act_train`] (one op, with the activation, forward
/// and backward) and updates the running statistics as PyTorch does (momentum 0.1, unbiased
/// variance); inference applies the running statistics.
#[derive(Debug, Clone)]
pub struct BnAct {
    weight: Tensor,
    bias: Tensor,
    /// Shares its storage with the `VarMap` entry when training, so checkpoints see the updates.
    running_mean: Var,
    running_var: Var,
    eps: f64,
    act: Activation,
    channels: usize,
}

/// PyTorch's BatchNorm momentum.
const BN_MOMENTUM: f64 = 0.1;

impl BnAct {
    /// Loads `weight`, `bias`, `running_mean`, `running_var` under `vb`.
    pub fn load(channels: usize, eps: f64, act: Activation, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        Ok(Self { weight, bias, running_mean, running_var, eps, act, channels })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Normalises (batch statistics when `train`, running statistics otherwise) and activates.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            let (scale, shift) = self.affine()?;
            let shape = (1, self.channels, 1, 1);
            let y = x.broadcast_mul(&scale.reshape(shape)?)?.broadcast_add(&shift.reshape(shape)?)?;
            return self.act.apply(&y);
        }
        let (fused, rest) = match self.act.as_fused() {
            Some(f) => (f, Activation::Identity),
            None => (FusedAct::None, self.act),
        };
        let out = mixdet_mixconv::batch_norm_act_train(x, &self.weight, &self.bias, self.eps, fused)?;
        let count = (x.elem_count() / self.channels) as f64;
        let unbiased = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
        let mean = ((self.running_mean.as_tensor() * (1.0 - BN_MOMENTUM))? + (out.mean * BN_MOMENTUM)?)?;
        let var = ((self.running_var.as_tensor() * (1.0 - BN_MOMENTUM))? + (out.var * (BN_MOMENTUM * unbiased))?)?;
        self.running_mean.set(&mean.detach())?;
        self.running_var.set(&var.detach())?;
        rest.apply(&out.y)
    }

    /// The inference BatchNorm as an affine map `x * scale + shift` per channel.
    pub fn affine(&self) -> Result<(Tensor, Tensor)> {
        let mean = self.running_mean.as_tensor().detach();
        let var = self.running_var.as_tensor().detach();
        let scale = ((var + self.eps)?.sqrt()?.recip()? * &self.weight)?;
        let shift = (&self.bias - (mean * &scale)?)?;
        Ok((scale, shift))
    }

    /// The activation.
    pub fn activation(&self) -> Activation {
        self.act
    }
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

/// A convolution as timm's `create_conv2d` builds it: a plain conv for an int kernel (1x1 ones
/// run as matrix products), a `MixedConv2d` (children `.0`, `.1`, ...) for a kernel list.
#[derive(Debug, Clone)]
pub enum Conv {
    /// 1x1, stride 1, dense: a matrix product.
    Pointwise {
        /// `(out, in, 1, 1)`.
        weight: Tensor,
        /// Optional bias `(out,)`.
        bias: Option<Tensor>,
    },
    /// Anything else (depthwise or mixed kernels, grouped 1x1, the dense stem conv).
    Mixed(MixedConv2d),
    /// A dense k x k convolution (the stem).
    Dense {
        /// `(out, in, k, k)`.
        weight: Tensor,
        /// Stride.
        stride: usize,
        /// Padding rule.
        padding: PaddingMode,
    },
}

/// Shape of a convolution to load.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    /// Input channels.
    pub in_chs: usize,
    /// Output channels.
    pub out_chs: usize,
    /// Kernel(s).
    pub kernel: KernelSpec,
    /// Stride.
    pub stride: usize,
    /// Dilation.
    pub dilation: usize,
    /// Depthwise (groups == channels).
    pub depthwise: bool,
    /// Padding rule.
    pub padding: PaddingMode,
}

impl Conv {
    /// Loads a bias-free convolution under `vb` (`weight`, or `{i}.weight` for a kernel list).
    pub fn load(spec: &ConvSpec, vb: VarBuilder) -> Result<Self> {
        let cfg = MixedConv2dConfig {
            in_channels: spec.in_chs,
            out_channels: spec.out_chs,
            kernel_sizes: spec.kernel.sizes(),
            stride: spec.stride,
            dilation: spec.dilation,
            padding: spec.padding,
            depthwise: spec.depthwise,
            split: SplitRule::Equal,
        };
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let shapes = cfg.weight_shapes();
        match &spec.kernel {
            KernelSpec::Single(k) => {
                let weight = vb.get(shapes[0].to_vec(), "weight")?;
                if spec.depthwise {
                    Ok(Conv::Mixed(MixedConv2d::new(cfg, vec![weight], None)?))
                } else if *k == 1 && spec.stride == 1 {
                    Ok(Conv::Pointwise { weight, bias: None })
                } else {
                    Ok(Conv::Dense { weight, stride: spec.stride, padding: spec.padding })
                }
            }
            KernelSpec::Mixed(_) => {
                let weights = shapes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| vb.pp(i.to_string()).get(s.to_vec(), "weight"))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Conv::Mixed(MixedConv2d::new(cfg, weights, None)?))
            }
        }
    }

    /// The same convolution with every output channel's weights multiplied by `scale[o]`, for
    /// inference: the result is detached from any autograd graph.
    pub fn scaled(&self, scale: &Tensor) -> Result<Self> {
        let per_out = |w: &Tensor, s: &Tensor| -> Result<Tensor> {
            let o = w.dim(0)?;
            Ok(w.broadcast_mul(&s.reshape((o, 1, 1, 1))?)?.detach())
        };
        Ok(match self {
            Conv::Pointwise { weight, bias } => {
                let bias = bias.as_ref().map(|b| (b * scale).map(|t| t.detach())).transpose()?;
                Conv::Pointwise { weight: per_out(weight, scale)?, bias }
            }
            Conv::Dense { weight, stride, padding } => {
                Conv::Dense { weight: per_out(weight, scale)?, stride: *stride, padding: *padding }
            }
            Conv::Mixed(m) => {
                let mut start = 0;
                let mut weights = Vec::with_capacity(m.weights().len());
                for w in m.weights() {
                    let o = w.dim(0)?;
                    weights.push(per_out(w, &scale.narrow(0, start, o)?)?);
                    start += o;
                }
                Conv::Mixed(MixedConv2d::new(m.config().clone(), weights, None)?)
            }
        })
    }

    /// The convolution with `bias` added and `act` applied as one inference op, when it is a
    /// stride-1 (grouped) 1x1 or a dense convolution and the activation has a kernel epilogue
    /// (depthwise layers have theirs in the MixConv kernel).
    /// `bias` holds one value per output channel, added to the convolution's own bias if any.
    pub fn inference_plan(&self, bias: &[f32], act: Activation) -> Result<Option<InferencePlan>> {
        let Some(act) = act.as_fused() else { return Ok(None) };
        let with_own_bias = |own: Option<&Tensor>| -> Result<Vec<f32>> {
            let mut total = bias.to_vec();
            if let Some(b) = own {
                for (t, v) in total.iter_mut().zip(b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?) {
                    *t += v;
                }
            }
            Ok(total)
        };
        Ok(match self {
            Conv::Pointwise { weight, bias } => Some(InferencePlan::Pointwise(PointwisePlan::new(
                std::slice::from_ref(weight),
                with_own_bias(bias.as_ref())?,
                act,
            )?)),
            Conv::Mixed(m) => {
                let c = m.config();
                if c.depthwise || c.stride != 1 || c.kernel_sizes.iter().any(|&k| k != 1) {
                    return Ok(None);
                }
                Some(InferencePlan::Pointwise(PointwisePlan::new(m.weights(), with_own_bias(m.bias())?, act)?))
            }
            Conv::Dense { weight, stride, padding } => {
                Some(InferencePlan::Dense(DenseConvPlan::new(weight, bias.to_vec(), *stride, *padding, act)?))
            }
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> Result<usize> {
        match self {
            Conv::Pointwise { weight, .. } | Conv::Dense { weight, .. } => weight.dim(0),
            Conv::Mixed(m) => Ok(m.config().out_channels),
        }
    }

    /// Loads a 1x1 convolution with bias (squeeze-excitation layers).
    pub fn load_pointwise_bias(in_chs: usize, out_chs: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_chs, in_chs, 1, 1), "weight")?;
        let bias = vb.get(out_chs, "bias")?;
        Ok(Conv::Pointwise { weight, bias: Some(bias) })
    }

    /// Applies the convolution.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward_uncounted(x)?;
        crate::macs::add(|| match self {
            Conv::Pointwise { weight, .. } | Conv::Dense { weight, .. } => {
                crate::macs::conv(y.elem_count(), weight.dims())
            }
            Conv::Mixed(m) => {
                // Per group: (N, c_g, H', W') outputs, each over that group's weights.
                let per_channel = y.elem_count() / m.config().out_channels.max(1);
                m.config().weight_shapes().iter().map(|s| crate::macs::conv(per_channel * s[0], s)).sum()
            }
        });
        Ok(y)
    }

    fn forward_uncounted(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Conv::Pointwise { weight, bias } => {
                let y = conv1x1(x, weight)?;
                match bias {
                    Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
                    None => Ok(y),
                }
            }
            Conv::Mixed(m) => m.forward(x),
            Conv::Dense { weight, stride, padding } if mixdet_mixconv::dense_train::supports(x, weight) => {
                mixdet_mixconv::dense_conv2d(x, weight, *stride, *padding)
            }
            Conv::Dense { weight, stride, padding } => {
                let (_, _, h, w) = x.dims4()?;
                let k = weight.dim(2)?;
                let ph = padding.resolve(h, k, *stride, 1);
                let pw = padding.resolve(w, k, *stride, 1);
                if ph.before == ph.after && pw.before == pw.after && ph.before == pw.before {
                    x.conv2d(weight, ph.before, *stride, 1, 1)
                } else {
                    x.pad_with_zeros(2, ph.before, ph.after)?
                        .pad_with_zeros(3, pw.before, pw.after)?
                        .conv2d(weight, 0, *stride, 1, 1)
                }
            }
        }
    }
}

/// Squeeze-excitation: global average, 1x1 reduce (bias), activation, 1x1 expand (bias), gate.
/// timm names the convs `conv_reduce`/`conv_expand`, torchvision `fc1`/`fc2`.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    reduce_w: Tensor,
    reduce_b: Tensor,
    expand_w: Tensor,
    expand_b: Tensor,
    act: Activation,
    gate: Activation,
    /// Constant copies of the weights for the inference path (see [`SqueezeExcite::fuse`]).
    fused: Option<SeValues>,
}

/// The squeeze-excitation weights as plain values: the gate (a mean per channel and two small
/// matrix-vector products) costs less computed on slices than as the ten candle ops, each with
/// its own buffer, that compute it otherwise.
#[derive(Debug, Clone)]
struct SeValues {
    /// `(reduced, channels)`.
    reduce_w: Vec<f32>,
    reduce_b: Vec<f32>,
    /// `(channels, reduced)`.
    expand_w: Vec<f32>,
    expand_b: Vec<f32>,
}

/// `sum(a[i] * b[i])` over eight partial sums, which the compiler vectorises (a single running
/// sum fixes the order of the additions and stays scalar).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

impl SeValues {
    /// The gate of every channel of every image of `x` (`n` images of `channels` planes).
    fn gate(&self, x: &[f32], n: usize, plane: usize, act: Activation, gate: Activation) -> Vec<f32> {
        let channels = self.expand_b.len();
        let reduced = self.reduce_b.len();
        let pooled: Vec<f32> = x
            .par_chunks(plane)
            .map(|p| {
                // Eight partial sums so that the loop vectorises, then the mean.
                let mut lanes = [0f32; 8];
                let chunks = p.chunks_exact(8);
                let tail: f32 = chunks.remainder().iter().sum();
                for c in chunks {
                    lanes.iter_mut().zip(c).for_each(|(l, v)| *l += v);
                }
                (lanes.iter().sum::<f32>() + tail) / plane as f32
            })
            .collect();
        let mut out = Vec::with_capacity(n * channels);
        for img in pooled.chunks(channels) {
            let mut s: Vec<f32> =
                self.reduce_w.chunks(channels).zip(&self.reduce_b).map(|(w, b)| b + dot(w, img)).collect();
            act.apply_slice(&mut s);
            let mut g: Vec<f32> =
                self.expand_w.chunks(reduced).zip(&self.expand_b).map(|(w, b)| b + dot(w, &s)).collect();
            gate.apply_slice(&mut g);
            out.extend(g);
        }
        out
    }
}

impl SqueezeExcite {
    /// Loads the two 1x1 convs under `vb.pp(names.0)` and `vb.pp(names.1)`.
    pub fn load(
        channels: usize,
        reduced: usize,
        act: Activation,
        gate: Activation,
        names: (&str, &str),
        vb: VarBuilder,
    ) -> Result<Self> {
        let r = vb.pp(names.0);
        let e = vb.pp(names.1);
        Ok(Self {
            reduce_w: r.get((reduced, channels, 1, 1), "weight")?.flatten_from(1)?,
            reduce_b: r.get(reduced, "bias")?,
            expand_w: e.get((channels, reduced, 1, 1), "weight")?.flatten_from(1)?,
            expand_b: e.get(channels, "bias")?,
            act,
            gate,
            fused: None,
        })
    }

    /// Keeps constant copies of the weights for [`SqueezeExcite::forward_inplace`] (call again
    /// after changing the weights).
    pub fn fuse(&mut self) -> Result<()> {
        let values = |t: &Tensor| t.detach().flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>();
        self.fused = Some(SeValues {
            reduce_w: values(&self.reduce_w)?,
            reduce_b: values(&self.reduce_b)?,
            expand_w: values(&self.expand_w)?,
            expand_b: values(&self.expand_b)?,
        });
        Ok(())
    }

    fn gate(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?; // (N, C)
        crate::macs::add(|| {
            pooled.dims().first().copied().unwrap_or(0) * (self.reduce_w.elem_count() + self.expand_w.elem_count())
        });
        let s = pooled.matmul(&self.reduce_w.t()?)?.broadcast_add(&self.reduce_b)?;
        let s = self.act.apply(&s)?;
        let s = s.matmul(&self.expand_w.t()?)?.broadcast_add(&self.expand_b)?;
        self.gate.apply(&s)
    }

    /// Rescales the channels of `x` `(N, C, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&self.gate(x)?.unsqueeze(2)?.unsqueeze(3)?)
    }

    /// Inference form of [`SqueezeExcite::forward`]: scales `x` in place when it can (so `x` must
    /// not be needed afterwards, nor be part of an autograd graph).
    pub fn forward_inplace(&self, x: Tensor) -> Result<Tensor> {
        if let (Some(values), true) = (&self.fused, crate::fused::supported(&x) && !x.track_op()) {
            let (n, _, h, w) = x.dims4()?;
            let gates = {
                let (storage, layout) = x.storage_and_layout();
                let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)), Some((a, b))) =
                    (&*storage, layout.contiguous_offsets())
                else {
                    candle_core::bail!("squeeze-excitation: expected a contiguous f32 CPU tensor");
                };
                values.gate(&data[a..b], n, h * w, self.act, self.gate)
            };
            crate::fused::scale_channels_values_inplace(&x, gates)?;
            crate::macs::add(|| n * (self.reduce_w.elem_count() + self.expand_w.elem_count()));
            return Ok(x);
        }
        let g = self.gate(&x)?;
        if crate::fused::supported(&x) {
            crate::fused::scale_channels_inplace(&x, &g)?;
            Ok(x)
        } else {
            x.broadcast_mul(&g.unsqueeze(2)?.unsqueeze(3)?)
        }
    }
}

/// A fully connected layer loaded under PyTorch's `weight` `(out, in)` / `bias` names.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = vb.get(out_dim, "bias")?;
    Ok(candle_nn::Linear::new(w, Some(b)))
}

/// Global average pooling `(N, C, H, W) -> (N, C)` then a linear classifier.
pub fn classify(x: &Tensor, fc: &candle_nn::Linear) -> Result<Tensor> {
    crate::macs::add(|| x.dims().first().copied().unwrap_or(0) * fc.weight().elem_count());
    fc.forward(&x.mean(D::Minus1)?.mean(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

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

    /// A training step updates the running statistics in the `VarMap` as PyTorch does:
    /// `(1 - 0.1) * running + 0.1 * batch`, with the unbiased batch variance; the output is
    /// normalised with the biased one.
    #[test]
    fn training_batch_norm_updates_running_statistics_like_pytorch() -> Result<()> {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let bn = BnAct::load(2, 1e-5, Activation::Identity, vb.pp("bn"))?;
        // Channel 0 holds 1..=8, channel 1 holds 0 everywhere; 2 images of 2x2 per channel.
        let vals: Vec<f32> = vec![1., 2., 3., 4., 0., 0., 0., 0., 5., 6., 7., 8., 0., 0., 0., 0.];
        let x = Tensor::from_vec(vals, (2, 2, 2, 2), &Device::Cpu)?;
        let y = bn.forward_t(&x, true)?;
        let data = varmap.data().lock().expect("varmap");
        let rm = data["bn.running_mean"].as_tensor().to_vec1::<f32>()?;
        let rv = data["bn.running_var"].as_tensor().to_vec1::<f32>()?;
        // mean 4.5, biased var 5.25, unbiased 6.0.
        assert!((rm[0] - 0.45).abs() < 1e-6 && rm[1].abs() < 1e-6, "{rm:?}");
        assert!((rv[0] - (0.9 + 0.6)).abs() < 1e-5 && (rv[1] - 0.9).abs() < 1e-6, "{rv:?}");
        let y0 = y.get(0)?.get(0)?.flatten_all()?.to_vec1::<f32>()?;
        let expected = (1.0 - 4.5) / (5.25f32 + 1e-5).sqrt();
        assert!((y0[0] - expected).abs() < 1e-5, "{y0:?}");
        Ok(())
    }
}

/// A depthwise-separable or inverted-residual block, as MobileNetV2/V3 and the EfficientNet family
/// build them: an optional 1x1 expansion, the depthwise conv, optional squeeze-excite, the 1x1
/// projection and an optional skip. Each architecture loads it under its own key names.
#[derive(Debug, Clone)]
pub(crate) struct InvertedResidual {
    /// Expansion conv + BN + activation (absent in depthwise-separable blocks).
    pub expand: Option<ConvBnAct>,
    /// Depthwise conv + BN + activation.
    pub depthwise: ConvBnAct,
    /// Squeeze-excite.
    pub se: Option<SqueezeExcite>,
    /// Projection conv + BN (with an activation only in some depthwise-separable blocks).
    pub project: ConvBnAct,
    /// Whether the input is added to the output.
    pub skip: bool,
}

impl InvertedResidual {
    /// The expansion conv's output (the input itself when the block has none).
    pub fn expand_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.expand {
            Some(e) => e.forward_t(x, train),
            None => Ok(x.clone()),
        }
    }

    /// The block's output.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_tapped(x, train, None)
    }

    /// The block's output; with `tap`, the expansion output (SSDLite's C3/C4) is kept there too.
    pub fn forward_tapped(&self, x: &Tensor, train: bool, tap: Option<&mut Option<Tensor>>) -> Result<Tensor> {
        let expanded = self.expand_t(x, train)?;
        let mut h = self.depthwise.forward_t(&expanded, train)?;
        if let Some(slot) = tap {
            *slot = Some(expanded);
        }
        if let Some(se) = &self.se {
            h = if train { se.forward(&h)? } else { se.forward_inplace(h)? };
        }
        h = self.project.forward_t(&h, train)?;
        if self.skip {
            h = crate::fused::residual_add(h, x, train)?;
        }
        Ok(h)
    }

    /// Channels after the expansion (those of the depthwise conv).
    pub fn expanded_channels(&self) -> usize {
        self.depthwise.out_channels()
    }

    /// Folds the BatchNorms for inference.
    pub fn fuse(&mut self) -> Result<()> {
        if let Some(e) = &mut self.expand {
            e.fuse()?;
        }
        self.depthwise.fuse()?;
        if let Some(se) = &mut self.se {
            se.fuse()?;
        }
        self.project.fuse()
    }
}
