//! A direct kernel for small dense convolutions (the stem: 3 input channels, 3x3, stride 2)
//! with a folded bias and an activation, for inference on CPU f32.
//!
//! candle runs such a convolution as im2col over the whole image plus a matrix product with
//! only `3 * k * k` rows; here each output row gathers its `Cin * k * k` input rows into a panel
//! that stays in L1 and every output channel is accumulated over it in registers-wide strips.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::simd::Isa;
use crate::padding::{conv_out_len, PaddingMode};
use crate::plan_io::{self, nchw_input, OutPtr};
use crate::FusedAct;

/// A dense `k x k` convolution with bias and activation, prepared for inference on CPU f32.
#[derive(Debug, Clone)]
pub struct DenseConvPlan {
    /// `(out, in * k * k)`, PyTorch's layout flattened.
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) act: FusedAct,
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) padding: PaddingMode,
}

/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 4;

impl DenseConvPlan {
    /// Builds the plan from a `(out, in, k, k)` weight, a bias per output channel, the stride,
    /// the padding rule and an activation.
    pub fn new(weight: &Tensor, bias: Vec<f32>, stride: usize, padding: PaddingMode, act: FusedAct) -> Result<Self> {
        let &[out_channels, in_channels, kh, kw] = weight.dims() else {
            candle_core::bail!("dense conv plan: weight of shape {:?}, expected (out, in, k, k)", weight.dims())
        };
        if kh != kw || kh == 0 || stride == 0 {
            candle_core::bail!("dense conv plan: {kh}x{kw} kernel with stride {stride}");
        }
        if bias.len() != out_channels {
            candle_core::bail!("dense conv plan: {} bias values for {out_channels} output channels", bias.len());
        }
        let weight = weight.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        Ok(Self { weight, bias, act, in_channels, out_channels, kernel: kh, stride, padding })
    }

    /// Whether [`DenseConvPlan::forward`] can run on `x`: an f32 CPU tensor of rank 4 that tracks no
    /// gradients.
    pub fn supports(&self, x: &Tensor) -> bool {
        plan_io::supports(x)
    }

    /// `act(conv(x) + bias)` for `x` `(N, in, H, W)`; not differentiable.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }
}

/// Geometry of one call.
pub(crate) struct Call<'a> {
    x: &'a [f32],
    h: usize,
    w: usize,
    wo: usize,
    pad_top: usize,
    pad_left: usize,
}

impl<'a> Call<'a> {
    /// The call on the contiguous `x` `(N, in, h, w)` with `g`'s output geometry.
    pub(crate) fn new(x: &'a [f32], h: usize, w: usize, g: &Geometry) -> Self {
        Self { x, h, w, wo: g.wo, pad_top: g.pad_top, pad_left: g.pad_left }
    }
}

impl DenseConvPlan {
    /// Fills `panel` (`Cin * k * k` rows of `wo`) with the input taps of output row `oy`.
    pub(crate) fn fill_panel(&self, c: &Call, img: usize, oy: usize, panel: &mut [f32]) {
        let (k, s) = (self.kernel, self.stride);
        for ci in 0..self.in_channels {
            let plane = &c.x[(img * self.in_channels + ci) * c.h * c.w..][..c.h * c.w];
            for ky in 0..k {
                let iy = (oy * s + ky).checked_sub(c.pad_top).filter(|&iy| iy < c.h);
                for kx in 0..k {
                    let row = &mut panel[((ci * k + ky) * k + kx) * c.wo..][..c.wo];
                    let Some(iy) = iy else {
                        row.fill(0.0);
                        continue;
                    };
                    let src = &plane[iy * c.w..][..c.w];
                    // Output columns whose tap ox * s + kx - pad_left falls inside the row.
                    let lo = c.pad_left.saturating_sub(kx).div_ceil(s).min(c.wo);
                    let hi = (c.w + c.pad_left).saturating_sub(kx).div_ceil(s).clamp(lo, c.wo);
                    row[..lo].fill(0.0);
                    row[hi..].fill(0.0);
                    if lo < hi {
                        let first = lo * s + kx - c.pad_left;
                        for (v, &x) in row[lo..hi].iter_mut().zip(src[first..].iter().step_by(s)) {
                            *v = x;
                        }
                    }
                }
            }
        }
    }

    /// One output row of every channel: `out[co][..] = act(bias[co] + sum_t w[co, t] * panel[t][..])`.
    ///
    /// # Safety
    /// `out + co * channel_stride` must be valid for `wo` writes for every output channel `co`,
    /// and nothing else may access those rows during the call.
    #[inline(always)]
    unsafe fn row(&self, panel: &[f32], wo: usize, out: *mut f32, channel_stride: usize) {
        let taps = self.in_channels * self.kernel * self.kernel;
        for co in 0..self.out_channels {
            // SAFETY: guaranteed by the caller.
            let acc = unsafe { std::slice::from_raw_parts_mut(out.add(co * channel_stride), wo) };
            acc.fill(self.bias[co]);
            let w = &self.weight[co * taps..][..taps];
            for (t, &wt) in w.iter().enumerate() {
                let p = &panel[t * wo..][..wo];
                acc.iter_mut().zip(p).for_each(|(a, &v)| *a += wt * v);
            }
            self.act.apply_slice(acc);
        }
    }
}

/// [`DenseConvPlan::row`] compiled for AVX2 and FMA.
///
/// # Safety
/// As [`DenseConvPlan::row`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(plan: &DenseConvPlan, panel: &[f32], wo: usize, out: *mut f32, channel_stride: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { plan.row(panel, wo, out, channel_stride) }
}

impl CustomOp1 for DenseConvPlan {
    fn name(&self) -> &'static str {
        "dense-conv-bias-act"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [n, _, h, w]) = nchw_input("dense conv plan", storage, layout, self.in_channels)?;
        let (out, dims) = self.run(x, n, h, w)?;
        Ok((CpuStorage::F32(out), Shape::from_dims(&dims)))
    }
}

/// Where one call's output rows come from in its input.
pub(crate) struct Geometry {
    pub(crate) ho: usize,
    pub(crate) wo: usize,
    pub(crate) pad_top: usize,
    pub(crate) pad_left: usize,
}

impl DenseConvPlan {
    /// Input channels times kernel taps: the rows of a panel.
    pub(crate) fn taps(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// Output size and padding for an `h x w` input.
    pub(crate) fn geometry(&self, h: usize, w: usize) -> Result<Geometry> {
        let (k, s) = (self.kernel, self.stride);
        let (ph, pw) = (self.padding.resolve(h, k, s, 1), self.padding.resolve(w, k, s, 1));
        let (Some(ho), Some(wo)) = (conv_out_len(h, ph, k, s, 1), conv_out_len(w, pw, k, s, 1)) else {
            candle_core::bail!("dense conv: {k}x{k} kernel does not fit a {h}x{w} input")
        };
        Ok(Geometry { ho, wo, pad_top: ph.before, pad_left: pw.before })
    }

    /// The convolution of the contiguous `x` `(n, in, h, w)`: the output and its dims.
    pub(crate) fn run(&self, x: &[f32], n: usize, h: usize, w: usize) -> Result<(Vec<f32>, [usize; 4])> {
        let g = self.geometry(h, w)?;
        let (ho, wo) = (g.ho, g.wo);
        let call = Call::new(x, h, w, &g);
        let co = self.out_channels;
        let mut out: Vec<f32> = Vec::with_capacity(n * co * ho * wo);
        let dst = OutPtr(out.as_mut_ptr());
        let taps = self.taps();
        let isa = Isa::detect();
        let blocks: Vec<(usize, usize)> =
            (0..n).flat_map(|img| (0..ho).step_by(ROWS_PER_TASK).map(move |oy| (img, oy))).collect();
        blocks.par_iter().for_each_init(
            || vec![0f32; taps * wo],
            |panel, &(img, oy0)| {
                for oy in oy0..(oy0 + ROWS_PER_TASK).min(ho) {
                    self.fill_panel(&call, img, oy, panel);
                    // SAFETY: row `oy` of every channel of image `img` lies inside the output
                    // allocation and belongs to this task only.
                    let out = unsafe { dst.get().add((img * co * ho + oy) * wo) };
                    match isa {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: as above; `Isa::Avx2Fma` is only chosen after detecting AVX2 and FMA.
                        Isa::Avx2Fma => unsafe { row_avx2(self, panel, wo, out, ho * wo) },
                        // SAFETY: as above.
                        _ => unsafe { self.row(panel, wo, out, ho * wo) },
                    }
                }
            },
        );
        // SAFETY: the tasks cover every output row of every channel and image exactly once.
        unsafe { out.set_len(n * co * ho * wo) };
        Ok((out, [n, co, ho, wo]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Equal to candle's conv2d (with explicit padding for TF "SAME") plus bias and activation
    /// for the stem shapes, odd and even sizes, both padding rules and batch > 1.
    #[test]
    fn plan_matches_candle_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        for &(n, cin, cout, k, s, h, w, padding, act) in &[
            (1, 3, 16, 3, 2, 224, 224, PaddingMode::Symmetric, FusedAct::Relu),
            (2, 3, 24, 3, 2, 33, 40, PaddingMode::TfSame, FusedAct::Silu),
            (1, 3, 16, 3, 2, 320, 320, PaddingMode::TfSame, FusedAct::HardSwish),
            (1, 4, 8, 5, 1, 11, 9, PaddingMode::Symmetric, FusedAct::None),
            (3, 2, 5, 3, 1, 6, 7, PaddingMode::Fixed(2), FusedAct::Relu6),
        ] {
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev)?;
            let wt = Tensor::randn(0f32, 0.3, (cout, cin, k, k), &dev)?;
            let bias: Vec<f32> = (0..cout).map(|i| (i as f32 * 0.7).cos()).collect();
            let plan = DenseConvPlan::new(&wt, bias.clone(), s, padding, act)?;
            let got = plan.forward(&x)?;
            let (ph, pw) = (padding.resolve(h, k, s, 1), padding.resolve(w, k, s, 1));
            let xp = x.pad_with_zeros(2, ph.before, ph.after)?.pad_with_zeros(3, pw.before, pw.after)?;
            let y = xp.conv2d(&wt, 0, s, 1, 1)?;
            let y = y.broadcast_add(&Tensor::new(bias.as_slice(), &dev)?.reshape((1, cout, 1, 1))?)?;
            let expected = act.apply_tensor(&y)?;
            assert_eq!(got.dims(), expected.dims());
            let err = (got - expected)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(err < 1e-5, "{n}x{cin}x{h}x{w} k{k} s{s} {padding:?}: max error {err}");
        }
        Ok(())
    }

    #[test]
    fn plan_rejects_bad_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((4, 3, 3, 3), candle_core::DType::F32, &dev)?;
        assert!(DenseConvPlan::new(&wt, vec![0.0; 3], 2, PaddingMode::Symmetric, FusedAct::None).is_err());
        let plan = DenseConvPlan::new(&wt, vec![0.0; 4], 2, PaddingMode::Symmetric, FusedAct::None)?;
        assert!(plan.forward(&Tensor::zeros((1, 2, 8, 8), candle_core::DType::F32, &dev)?).is_err());
        let unpadded = DenseConvPlan::new(&wt, vec![0.0; 4], 1, PaddingMode::Fixed(0), FusedAct::None)?;
        assert!(unpadded.forward(&Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &dev)?).is_err());
        Ok(())
    }
}
