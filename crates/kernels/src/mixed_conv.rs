//! `MixedConv2d`: timm's mixed convolution. The channels are split into groups, each group is
//! convolved with its own kernel size, and the outputs are concatenated in group order.
//!
//! In the depthwise case (MixConv proper) each group is a depthwise convolution; otherwise each
//! group is a dense convolution from its input split to its output split (MixNet's grouped 1x1
//! "a1.1"/"p1.1" expansions and projections).

use candle_core::{DType, Device, Result, Tensor};

use crate::fused_act::FusedAct;
use crate::geometry::MixedGeometry;
use crate::op::MixedDepthwiseOp;
use crate::padding::{conv_out_len, PaddingMode};
use crate::pointwise::conv1x1;
use crate::split::{split_channels, SplitRule};

/// Shape-level description of a mixed convolution (no weights).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixedConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (equal to `in_channels` when `depthwise`).
    pub out_channels: usize,
    /// One kernel size per group, e.g. `[3, 5, 7, 9]`.
    pub kernel_sizes: Vec<usize>,
    /// Stride, the same for every group.
    pub stride: usize,
    /// Dilation, the same for every group.
    pub dilation: usize,
    /// Padding rule, resolved per group from its kernel size.
    pub padding: PaddingMode,
    /// Depthwise groups (MixConv) or dense per-group convolutions.
    pub depthwise: bool,
    /// How channels are shared out among the groups.
    pub split: SplitRule,
}

/// Which implementation [`MixedConv2d::forward`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixConvImpl {
    /// The fused mixed depthwise op (forward and backward, all groups in one pass) for depthwise
    /// layers on CPU (and CUDA with the `cuda` feature) in f32, f16 or bf16 (the last two are
    /// converted to f32 around the kernel); the reference path for everything else.
    Auto,
    /// Built from candle ops only (per-group `conv2d`, differentiable): the reference.
    Reference,
}

/// Errors in a mixed convolution's configuration or weights.
#[derive(Debug, thiserror::Error)]
pub enum MixConvError {
    /// The configuration is inconsistent.
    #[error("invalid MixConv config: {0}")]
    Config(String),
    /// A weight tensor has the wrong shape.
    #[error("MixConv group {group}: weight shape {actual:?}, expected {expected:?}")]
    WeightShape {
        /// Group index.
        group: usize,
        /// Shape found.
        actual: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// An input tensor does not fit the layer (channels, spatial size, rank).
    #[error("MixConv input: {0}")]
    Input(String),
}

impl MixedConv2dConfig {
    /// A depthwise MixConv over `channels` channels with the given kernel sizes.
    pub fn depthwise(channels: usize, kernel_sizes: Vec<usize>, stride: usize) -> Self {
        Self {
            in_channels: channels,
            out_channels: channels,
            kernel_sizes,
            stride,
            dilation: 1,
            padding: PaddingMode::Symmetric,
            depthwise: true,
            split: SplitRule::Equal,
        }
    }

    /// Channels per group on the input side.
    pub fn in_splits(&self) -> Vec<usize> {
        split_channels(self.in_channels, self.kernel_sizes.len(), self.split)
    }

    /// Channels per group on the output side.
    pub fn out_splits(&self) -> Vec<usize> {
        split_channels(self.out_channels, self.kernel_sizes.len(), self.split)
    }

    /// The weight shape of each group, `(out_g, in_g / groups_g, k, k)` as PyTorch stores it.
    pub fn weight_shapes(&self) -> Vec<[usize; 4]> {
        self.in_splits()
            .iter()
            .zip(self.out_splits())
            .zip(&self.kernel_sizes)
            .map(|((&i, o), &k)| [o, if self.depthwise { 1 } else { i }, k, k])
            .collect()
    }

    /// Checks that the configuration describes a valid convolution.
    pub fn validate(&self) -> std::result::Result<(), MixConvError> {
        let bad = |m: String| Err(MixConvError::Config(m));
        if self.kernel_sizes.is_empty() {
            return bad("no kernel sizes".into());
        }
        if self.kernel_sizes.contains(&0) || self.stride == 0 || self.dilation == 0 {
            return bad(format!(
                "kernel sizes {:?}, stride {}, dilation {} must be positive",
                self.kernel_sizes, self.stride, self.dilation
            ));
        }
        if self.depthwise && self.in_channels != self.out_channels {
            return bad(format!(
                "depthwise MixConv needs in == out channels, got {} -> {}",
                self.in_channels, self.out_channels
            ));
        }
        if self.in_splits().contains(&0) || self.out_splits().contains(&0) {
            return bad(format!(
                "{} -> {} channels cannot be split into {} non-empty groups ({:?})",
                self.in_channels,
                self.out_channels,
                self.kernel_sizes.len(),
                self.split
            ));
        }
        if self.padding == PaddingMode::Symmetric
            && self.kernel_sizes.iter().any(|k| k % 2 == 0)
            && self.kernel_sizes.len() > 1
        {
            return bad("even kernel sizes with symmetric padding give groups of different output sizes".into());
        }
        Ok(())
    }
}

/// A mixed (per-group kernel size) convolution with its weights.
#[derive(Debug, Clone)]
pub struct MixedConv2d {
    config: MixedConv2dConfig,
    weights: Vec<Tensor>,
    bias: Option<Tensor>,
    implementation: MixConvImpl,
    /// The weights packed for the fused op (f32, group after group), when they are constants:
    /// trainable weights are packed per call so that gradients reach them and updates are seen.
    packed: Option<Tensor>,
}

impl MixedConv2d {
    /// Builds the layer from one weight tensor per group (shapes as [`MixedConv2dConfig::weight_shapes`])
    /// and an optional bias over all output channels.
    pub fn new(config: MixedConv2dConfig, weights: Vec<Tensor>, bias: Option<Tensor>) -> Result<Self> {
        config.validate().map_err(candle_core::Error::wrap)?;
        let expected = config.weight_shapes();
        if weights.len() != expected.len() {
            return Err(candle_core::Error::wrap(MixConvError::Config(format!(
                "{} weight tensors for {} groups",
                weights.len(),
                expected.len()
            ))));
        }
        for (group, (w, e)) in weights.iter().zip(&expected).enumerate() {
            if w.dims() != e {
                return Err(candle_core::Error::wrap(MixConvError::WeightShape {
                    group,
                    actual: w.dims().to_vec(),
                    expected: e.to_vec(),
                }));
            }
        }
        if let Some(b) = &bias {
            if b.dims() != [config.out_channels] {
                candle_core::bail!("MixConv bias shape {:?}, expected [{}]", b.dims(), config.out_channels);
            }
        }
        let packed = if config.depthwise && !weights.iter().any(Tensor::track_op) {
            Some(pack_weights(&weights)?)
        } else {
            None
        };
        Ok(Self { config, weights, bias, implementation: MixConvImpl::Auto, packed })
    }

    /// Builds the layer with weights drawn from N(0, std) (for tests and benchmarks).
    pub fn randn(config: MixedConv2dConfig, std: f64, device: &Device) -> Result<Self> {
        let weights = config
            .weight_shapes()
            .iter()
            .map(|s| Tensor::randn(0f32, std as f32, s.as_slice(), device))
            .collect::<Result<Vec<_>>>()?;
        Self::new(config, weights, None)
    }

    /// Selects the implementation used by [`MixedConv2d::forward`].
    pub fn with_impl(mut self, implementation: MixConvImpl) -> Self {
        self.implementation = implementation;
        self
    }

    /// The layer's configuration.
    pub fn config(&self) -> &MixedConv2dConfig {
        &self.config
    }

    /// The per-group weights.
    pub fn weights(&self) -> &[Tensor] {
        &self.weights
    }

    /// The bias over all output channels, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Output spatial size for an input of `h x w`, or an error when a kernel does not fit.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let c = &self.config;
        let mut size = None;
        for &k in &c.kernel_sizes {
            let ph = c.padding.resolve(h, k, c.stride, c.dilation);
            let pw = c.padding.resolve(w, k, c.stride, c.dilation);
            let (Some(oh), Some(ow)) =
                (conv_out_len(h, ph, k, c.stride, c.dilation), conv_out_len(w, pw, k, c.stride, c.dilation))
            else {
                candle_core::bail!("MixConv: a {k}x{k} kernel does not fit a {h}x{w} input");
            };
            match size {
                None => size = Some((oh, ow)),
                Some(s) if s != (oh, ow) => {
                    candle_core::bail!("MixConv: groups give different output sizes {s:?} and {:?}", (oh, ow))
                }
                Some(_) => {}
            }
        }
        size.ok_or_else(|| candle_core::Error::Msg("MixConv: no kernel sizes".into()))
    }

    /// Applies the convolution to `x` `(N, C, H, W)`, then the layer's bias if it has one.
    ///
    /// Differentiable on every path: on the fused op, gradients for the input and the weights
    /// come from its own backward kernels.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, None, FusedAct::None)
    }

    /// `act(conv(x) + bias)` with the bias (one value per output channel, added to the layer's
    /// own bias if it has one) and the activation applied inside the convolution kernel, while
    /// each output plane is in cache. This is the inference path for a convolution with its
    /// BatchNorm folded in: scale the weights by `gamma / sqrt(var + eps)` and pass
    /// `beta - mean * gamma / sqrt(var + eps)` as `bias`.
    ///
    /// When the input, the weights or the bias track gradients, or the fused op does not apply
    /// (see [`MixConvImpl::Auto`]), the same function is computed with differentiable candle
    /// ops around the convolution, so the result is the same either way.
    pub fn forward_fused(&self, x: &Tensor, bias: Option<&Tensor>, act: FusedAct) -> Result<Tensor> {
        let bias = self.combined_bias(bias)?;
        if !self.uses_fused_op(x) {
            let y = self.forward_groups(x)?;
            let y = match &bias {
                Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?.reshape((1, (), 1, 1))?)?,
                None => y,
            };
            return act.apply_tensor(&y);
        }
        let dims = x.dims();
        let &[_, _, h, w] = dims else {
            return Err(candle_core::Error::wrap(MixConvError::Input(format!("expected (N, C, H, W), got {dims:?}"))));
        };
        let geom = MixedGeometry::resolve(&self.config, h, w).map_err(candle_core::Error::wrap)?;
        geom.check_input("input", dims).map_err(candle_core::Error::wrap)?;
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        let packed = match &self.packed {
            Some(p) => p.clone(),
            None => pack_weights(&self.weights)?,
        };
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        let training = xf.track_op() || packed.track_op() || bias.as_ref().is_some_and(Tensor::track_op);
        let y = if training {
            let y = xf.apply_op2(&packed, MixedDepthwiseOp::new(geom, FusedAct::None))?;
            let y = match bias {
                Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
                None => y,
            };
            act.apply_tensor(&y)?
        } else {
            let op = MixedDepthwiseOp::new(geom, act);
            match bias {
                Some(b) => xf.apply_op3_no_bwd(&packed, &b.contiguous()?, &op)?,
                None => xf.apply_op2_no_bwd(&packed, &op)?,
            }
        };
        y.to_dtype(dtype)
    }

    /// Whether [`MixedConv2d::forward`] runs the fused op for `x`.
    pub fn uses_fused_op(&self, x: &Tensor) -> bool {
        let dtype_ok = matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16);
        let device_ok = match x.device() {
            Device::Cpu => true,
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => self.config.kernel_sizes.len() <= crate::cuda::MAX_GROUPS,
            _ => false,
        };
        self.implementation == MixConvImpl::Auto && self.config.depthwise && dtype_ok && device_ok
    }

    /// The layer's bias plus `extra`, checked against the output channels.
    fn combined_bias(&self, extra: Option<&Tensor>) -> Result<Option<Tensor>> {
        if let Some(b) = extra {
            if b.dims() != [self.config.out_channels] {
                return Err(candle_core::Error::wrap(MixConvError::Input(format!(
                    "fused bias shape {:?}, expected [{}]",
                    b.dims(),
                    self.config.out_channels
                ))));
            }
        }
        match (&self.bias, extra) {
            (Some(a), Some(b)) => Ok(Some(a.add(&b.to_dtype(a.dtype())?)?)),
            (Some(a), None) => Ok(Some(a.clone())),
            (None, Some(b)) => Ok(Some(b.clone())),
            (None, None) => Ok(None),
        }
    }

    /// The reference path: per-group candle convolutions, concatenated (differentiable).
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward_groups(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    fn forward_groups(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (_, ch, h, w) = x.dims4()?;
        if ch != c.in_channels {
            candle_core::bail!("MixConv: input has {ch} channels, layer expects {}", c.in_channels);
        }
        let mut outs = Vec::with_capacity(self.weights.len());
        let mut start = 0;
        for ((&k, cin), wt) in c.kernel_sizes.iter().zip(c.in_splits()).zip(&self.weights) {
            let xg = if self.weights.len() == 1 { x.clone() } else { x.narrow(1, start, cin)? };
            start += cin;
            if k == 1 && c.stride == 1 && !c.depthwise {
                outs.push(conv1x1(&xg, wt)?);
                continue;
            }
            let ph = c.padding.resolve(h, k, c.stride, c.dilation);
            let pw = c.padding.resolve(w, k, c.stride, c.dilation);
            let (xg, pad) = if ph.before == ph.after && pw.before == pw.after && ph.before == pw.before {
                (xg, ph.before)
            } else {
                (xg.pad_with_zeros(2, ph.before, ph.after)?.pad_with_zeros(3, pw.before, pw.after)?, 0)
            };
            let groups = if c.depthwise { cin } else { 1 };
            outs.push(xg.conv2d(wt, pad, c.stride, c.dilation, groups)?);
        }
        if outs.len() == 1 {
            Ok(outs.remove(0))
        } else {
            Tensor::cat(&outs, 1)
        }
    }
}

/// Flattens the per-group weights into the fused op's packed f32 vector, group after group.
fn pack_weights(weights: &[Tensor]) -> Result<Tensor> {
    let flat = weights.iter().map(|w| w.flatten_all()?.to_dtype(DType::F32)).collect::<Result<Vec<_>>>()?;
    match flat.as_slice() {
        [one] => one.contiguous(),
        _ => Tensor::cat(&flat, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        a.sub(b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("tensors of equal shape")
    }

    #[test]
    fn direct_kernel_matches_candle_grouped_conv() -> Result<()> {
        let dev = Device::Cpu;
        for &(kernels, stride, dilation, padding, h, w) in &[
            (&[3usize, 5, 7][..], 1usize, 1usize, PaddingMode::Symmetric, 9usize, 11usize),
            (&[3, 5, 7, 9, 11][..], 2, 1, PaddingMode::Symmetric, 14, 15),
            (&[3, 5, 7, 9, 11][..], 2, 1, PaddingMode::TfSame, 14, 15),
            (&[3, 5][..], 2, 1, PaddingMode::TfSame, 16, 9),
            (&[3, 5][..], 1, 2, PaddingMode::Symmetric, 12, 10),
            (&[3, 5, 7][..], 2, 2, PaddingMode::TfSame, 13, 12),
            (&[3][..], 2, 1, PaddingMode::TfSame, 8, 8),
        ] {
            let channels = 13;
            let config = MixedConv2dConfig {
                dilation,
                padding,
                ..MixedConv2dConfig::depthwise(channels, kernels.to_vec(), stride)
            };
            let layer = MixedConv2d::randn(config, 0.5, &dev)?;
            let x = Tensor::randn(0f32, 1.0, (2, channels, h, w), &dev)?;
            let fast = layer.forward(&x)?;
            let reference = layer.forward_reference(&x)?;
            assert_eq!(fast.dims(), reference.dims(), "{kernels:?} s{stride} d{dilation} {padding:?}");
            let err = max_abs_diff(&fast, &reference);
            assert!(err < 1e-5, "{kernels:?} s{stride} d{dilation} {padding:?}: max abs diff {err}");
        }
        Ok(())
    }

    #[test]
    fn grouped_pointwise_equals_block_diagonal_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let config = MixedConv2dConfig {
            in_channels: 6,
            out_channels: 4,
            kernel_sizes: vec![1, 1],
            stride: 1,
            dilation: 1,
            padding: PaddingMode::Symmetric,
            depthwise: false,
            split: SplitRule::Equal,
        };
        let layer = MixedConv2d::randn(config, 1.0, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (1, 6, 3, 2), &dev)?;
        let y = layer.forward(&x)?;
        let w0 = layer.weights()[0].flatten_from(1)?;
        let y0 = w0.matmul(&x.narrow(1, 0, 3)?.reshape((3, 6))?)?;
        assert!(max_abs_diff(&y.narrow(1, 0, 2)?.reshape((2, 6))?, &y0) < 1e-6);
        assert_eq!(y.dims(), &[1, 4, 3, 2]);
        Ok(())
    }

    #[test]
    fn rejects_bad_configs_and_weights() {
        let dev = Device::Cpu;
        let mut cfg = MixedConv2dConfig::depthwise(3, vec![3, 5, 7, 9], 1);
        assert!(cfg.validate().is_err(), "3 channels cannot feed 4 groups");
        cfg.in_channels = 8;
        cfg.out_channels = 8;
        assert!(cfg.validate().is_ok());
        let w = vec![Tensor::zeros((2, 1, 3, 3), DType::F32, &dev).expect("zeros")];
        let err = MixedConv2d::new(cfg, w, None).expect_err("one tensor for four groups");
        assert!(err.to_string().contains("4 groups"), "{err}");
    }
}
