//! Convolutions as timm's `create_conv2d` builds them: 1x1 layers as matrix products, MixConv
//! (or a single depthwise kernel) as the fused op, a dense stem convolution.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use mixdet_kernels::{conv1x1, DenseConvPlan, MixedConv2d, MixedConv2dConfig, PaddingMode, PointwisePlan, SplitRule};

use super::{Activation, InferencePlan};
use crate::arch::KernelSpec;
use crate::onnx::OnnxValue;

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

    /// Writes the convolution into an ONNX graph with `bias` (one value per output channel)
    /// added to its own: one `Conv` node, or for a MixConv with several kernel sizes `Split`,
    /// a `Conv` per group and `Concat` (one grouped `Conv` when the groups are 1x1 and equal).
    pub fn to_onnx(&self, g: &mut mixdet_onnx::Graph, x: &OnnxValue, bias: &[f32]) -> Result<OnnxValue> {
        use crate::onnx::{conv, values, wrap};
        let plus_own = |own: Option<&Tensor>| -> Result<Vec<f32>> {
            let mut b = bias.to_vec();
            if let Some(own) = own {
                b.iter_mut().zip(values(own)?).for_each(|(t, v)| *t += v);
            }
            Ok(b)
        };
        let dims4 = |w: &Tensor| -> Result<[usize; 4]> {
            match *w.dims() {
                [o, i, kh, kw] => Ok([o, i, kh, kw]),
                [o, i] => Ok([o, i, 1, 1]),
                ref d => candle_core::bail!("convolution weight of shape {d:?}"),
            }
        };
        match self {
            Conv::Pointwise { weight, bias: own } => {
                let b = plus_own(own.as_ref())?;
                conv(g, x, &values(weight)?, dims4(weight)?, Some(&b), 1, 1, 1, PaddingMode::Symmetric)
            }
            Conv::Dense { weight, stride, padding } => {
                conv(g, x, &values(weight)?, dims4(weight)?, Some(bias), *stride, 1, 1, *padding)
            }
            Conv::Mixed(m) => {
                let c = m.config();
                let b = plus_own(m.bias())?;
                let (ins, outs) = (c.in_splits(), c.out_splits());
                let groups_of = |i: usize| if c.depthwise { ins[i] } else { 1 };
                if m.weights().len() == 1 {
                    let w = &m.weights()[0];
                    return conv(g, x, &values(w)?, dims4(w)?, Some(&b), c.stride, c.dilation, groups_of(0), c.padding);
                }
                let uniform = ins.iter().all(|&i| i == ins[0]) && outs.iter().all(|&o| o == outs[0]);
                if !c.depthwise && uniform && c.kernel_sizes.iter().all(|&k| k == 1) {
                    // A grouped 1x1 convolution is one Conv with `group`.
                    let mut w = Vec::new();
                    for t in m.weights() {
                        w.extend(values(t)?);
                    }
                    let dims = [c.out_channels, ins[0], 1, 1];
                    return conv(g, x, &w, dims, Some(&b), c.stride, c.dilation, ins.len(), c.padding);
                }
                let split = g.i64_vec("split", &ins.iter().map(|&v| v as i64).collect::<Vec<_>>()).map_err(wrap)?;
                let parts = g
                    .op_n("Split", &[&x.name, &split], &[("axis", mixdet_onnx::Attr::Int(1))], ins.len())
                    .map_err(wrap)?;
                let mut ys = Vec::with_capacity(parts.len());
                let mut start = 0;
                for (i, (part, w)) in parts.into_iter().zip(m.weights()).enumerate() {
                    let xi = OnnxValue { name: part, channels: ins[i], hw: x.hw };
                    let bi = &b[start..start + outs[i]];
                    start += outs[i];
                    ys.push(conv(
                        g,
                        &xi,
                        &values(w)?,
                        dims4(w)?,
                        Some(bi),
                        c.stride,
                        c.dilation,
                        groups_of(i),
                        c.padding,
                    )?);
                }
                let hw = ys[0].hw;
                let names: Vec<&str> = ys.iter().map(|y| y.name.as_str()).collect();
                let y = g.op("Concat", &names, &[("axis", mixdet_onnx::Attr::Int(1))]).map_err(wrap)?;
                Ok(OnnxValue { name: y, channels: c.out_channels, hw })
            }
        }
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
            Conv::Dense { weight, stride, padding } if mixdet_kernels::dense_train::supports(x, weight) => {
                mixdet_kernels::dense_conv2d(x, weight, *stride, *padding)
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
