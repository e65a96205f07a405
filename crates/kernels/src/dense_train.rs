//! A dense `k x k` convolution without bias for training on CPU f32, with its backward pass: the
//! stem of every backbone here (3 input channels, 3x3, stride 2).
//!
//! candle runs the weight gradient of such a layer as a convolution whose kernel is the whole
//! output gradient, several times slower than the forward pass on the training stem
//! (`cargo bench -p mixdet-kernels` times both). Here all three passes walk
//! output rows through the inference plan's input panel (`Cin * k * k` rows of one output row's
//! taps, in L1): the forward is the plan's kernel; the weight gradient is each output-gradient row
//! dotted with each panel row; the input gradient, computed only when the input needs one, is
//! scattered back through the same taps. Sums are grouped in a fixed order, so results do not
//! depend on the thread count.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::simd::Isa;
use crate::dense::{Call, DenseConvPlan, Geometry};
use crate::padding::PaddingMode;
use crate::plan_io::nchw_input;
use crate::FusedAct;

/// `conv2d(x, weight)` for `x` `(N, in, H, W)` and `weight` `(out, in, k, k)`, with `padding`'s
/// rule (asymmetric TF "SAME" included), differentiable in both arguments. CPU f32 only: see
/// [`supports`].
pub fn dense_conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: PaddingMode) -> Result<Tensor> {
    if stride == 0 {
        candle_core::bail!("dense conv: stride 0");
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, DenseConvOp { stride, padding })
}

/// Whether [`dense_conv2d`] can run on these tensors: f32 on the CPU, rank 4.
pub fn supports(x: &Tensor, weight: &Tensor) -> bool {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.rank() == 4;
    f32_cpu(x) && f32_cpu(weight)
}

#[derive(Clone, Copy)]
struct DenseConvOp {
    stride: usize,
    padding: PaddingMode,
}

/// `(out, in, k)` of a square `(out, in, k, k)` weight.
fn weight_dims(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match *dims {
        [o, i, kh, kw] if kh == kw && kh > 0 => Ok((o, i, kh)),
        _ => candle_core::bail!("dense conv: weight of shape {dims:?}, expected (out, in, k, k)"),
    }
}

fn contiguous_f32<'a>(what: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("dense conv: f32 {what} only") };
    let Some((a, b)) = layout.contiguous_offsets() else { candle_core::bail!("dense conv: contiguous {what} only") };
    Ok(&data[a..b])
}

impl DenseConvOp {
    /// A plan carrying this op's geometry (and the weights, when the pass needs them).
    fn plan(&self, weight: Vec<f32>, out: usize, inp: usize, k: usize) -> DenseConvPlan {
        DenseConvPlan {
            weight,
            bias: vec![0.0; out],
            act: FusedAct::None,
            in_channels: inp,
            out_channels: out,
            kernel: k,
            stride: self.stride,
            padding: self.padding,
        }
    }

    /// The plan (without weights) and output geometry of a gradient pass of `what` for an
    /// `(n, i, h, w)` input and `(o, i, k, k)` weight, with `grad_dims` checked against the output.
    fn gradient_geometry(
        &self,
        what: &str,
        (o, i, k): (usize, usize, usize),
        [n, h, w]: [usize; 3],
        grad_dims: &[usize],
    ) -> Result<(DenseConvPlan, Geometry)> {
        let plan = self.plan(Vec::new(), o, i, k);
        let geo = plan.geometry(h, w)?;
        if grad_dims != [n, o, geo.ho, geo.wo] {
            candle_core::bail!("{what}: gradient {grad_dims:?}, expected {:?}", [n, o, geo.ho, geo.wo]);
        }
        Ok((plan, geo))
    }
}

impl CustomOp2 for DenseConvOp {
    fn name(&self) -> &'static str {
        "dense-conv"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (o, i, k) = weight_dims(wl.dims())?;
        let weight = contiguous_f32("weight", ws, wl)?;
        let (x, [n, _, h, w]) = nchw_input("dense conv", xs, xl, i)?;
        let (out, dims) = self.plan(weight.to_vec(), o, i, k).run(x, n, h, w)?;
        Ok((CpuStorage::F32(out), Shape::from_dims(&dims)))
    }

    fn bwd(&self, x: &Tensor, weight: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dw = if weight.track_op() {
            let op = WeightGradOp { conv: *self, weight_dims: weight.dims().to_vec() };
            Some(x.contiguous()?.apply_op2_no_bwd(&grad, &op)?)
        } else {
            None
        };
        // The stem's input is the image: no gradient to compute.
        let dx = if x.track_op() {
            let op = InputGradOp { conv: *self, input_dims: x.dims().to_vec() };
            Some(grad.apply_op2_no_bwd(&weight.contiguous()?, &op)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Dot product with eight independent partial sums, so that it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Adds `panel row t . grad row co` to `acc[co * taps + t]` for every output channel and tap.
#[inline(always)]
fn weight_grad_row(panel: &[f32], grad_rows: &[&[f32]], taps: usize, wo: usize, acc: &mut [f64]) {
    for (co, g) in grad_rows.iter().enumerate() {
        for t in 0..taps {
            acc[co * taps + t] += dot(g, &panel[t * wo..][..wo]) as f64;
        }
    }
}

/// [`weight_grad_row`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_row_avx2(panel: &[f32], grad_rows: &[&[f32]], taps: usize, wo: usize, acc: &mut [f64]) {
    weight_grad_row(panel, grad_rows, taps, wo, acc)
}

/// Output rows summed into one partial weight gradient; the partials are added in order.
const ROWS_PER_PARTIAL: usize = 8;

/// `dW` from `(x, dy)`.
struct WeightGradOp {
    conv: DenseConvOp,
    weight_dims: Vec<usize>,
}

impl CustomOp2 for WeightGradOp {
    fn name(&self) -> &'static str {
        "dense-conv-weight-grad"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (o, i, k) = weight_dims(&self.weight_dims)?;
        let (x, [n, _, h, w]) = nchw_input("dense conv weight gradient", xs, xl, i)?;
        let grad = contiguous_f32("gradient", gs, gl)?;
        let (plan, geo) = self.conv.gradient_geometry("dense conv weight gradient", (o, i, k), [n, h, w], gl.dims())?;
        let (ho, wo) = (geo.ho, geo.wo);
        let taps = plan.taps();
        let call = Call::new(x, h, w, &geo);
        let isa = Isa::detect();
        let chunks: Vec<(usize, usize)> =
            (0..n).flat_map(|img| (0..ho).step_by(ROWS_PER_PARTIAL).map(move |oy| (img, oy))).collect();
        let partials: Vec<Vec<f64>> = chunks
            .par_iter()
            .map_init(
                || vec![0f32; taps * wo],
                |panel, &(img, oy0)| {
                    let mut acc = vec![0f64; o * taps];
                    for oy in oy0..(oy0 + ROWS_PER_PARTIAL).min(ho) {
                        plan.fill_panel(&call, img, oy, panel);
                        let rows: Vec<&[f32]> =
                            (0..o).map(|co| &grad[((img * o + co) * ho + oy) * wo..][..wo]).collect();
                        match isa {
                            #[cfg(target_arch = "x86_64")]
                            // SAFETY: `Isa::Avx2Fma` is only chosen after detecting AVX2 and FMA.
                            Isa::Avx2Fma => unsafe { weight_grad_row_avx2(panel, &rows, taps, wo, &mut acc) },
                            _ => weight_grad_row(panel, &rows, taps, wo, &mut acc),
                        }
                    }
                    acc
                },
            )
            .collect();
        let mut total = vec![0f64; o * taps];
        for p in &partials {
            total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
        let dw: Vec<f32> = total.into_iter().map(|v| v as f32).collect();
        Ok((CpuStorage::F32(dw), Shape::from_dims(&[o, i, k, k])))
    }
}

/// `dX` from `(dy, W)`.
struct InputGradOp {
    conv: DenseConvOp,
    input_dims: Vec<usize>,
}

impl CustomOp2 for InputGradOp {
    fn name(&self) -> &'static str {
        "dense-conv-input-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (o, i, k) = weight_dims(wl.dims())?;
        let weight = contiguous_f32("weight", ws, wl)?;
        let grad = contiguous_f32("gradient", gs, gl)?;
        let &[n, ci, h, w] = self.input_dims.as_slice() else {
            candle_core::bail!("dense conv input gradient: input of shape {:?}", self.input_dims)
        };
        if ci != i {
            candle_core::bail!("dense conv input gradient: input has {ci} channels, weights expect {i}");
        }
        let (_, geo) = self.conv.gradient_geometry("dense conv input gradient", (o, i, k), [n, h, w], gl.dims())?;
        let (ho, wo, s) = (geo.ho, geo.wo, self.conv.stride);
        let taps = i * k * k;
        let mut dx = vec![0f32; n * i * h * w];
        // One task per image: overlapping taps of neighbouring rows add into the same input pixels.
        dx.par_chunks_mut(i * h * w).enumerate().for_each(|(img, dx)| {
            let mut dpanel = vec![0f32; taps * wo];
            for oy in 0..ho {
                dpanel.fill(0.0);
                for co in 0..o {
                    let g = &grad[((img * o + co) * ho + oy) * wo..][..wo];
                    for t in 0..taps {
                        let wt = weight[co * taps + t];
                        dpanel[t * wo..][..wo].iter_mut().zip(g).for_each(|(d, &gv)| *d += wt * gv);
                    }
                }
                for c in 0..i {
                    for ky in 0..k {
                        let Some(iy) = (oy * s + ky).checked_sub(geo.pad_top).filter(|&iy| iy < h) else { continue };
                        let dst = &mut dx[(c * h + iy) * w..][..w];
                        for kx in 0..k {
                            let src = &dpanel[((c * k + ky) * k + kx) * wo..][..wo];
                            for (ox, &v) in src.iter().enumerate() {
                                if let Some(ix) = (ox * s + kx).checked_sub(geo.pad_left).filter(|&ix| ix < w) {
                                    dst[ix] += v;
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from_dims(&self.input_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_abs(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// Forward and both gradients equal candle's conv2d on explicitly padded input, for the
    /// training stem, TF "SAME" on odd and even sizes, stride 1 and a 5x5 kernel.
    #[test]
    fn matches_candle_conv2d_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        for &(n, cin, cout, k, s, h, w, padding) in &[
            (2, 3, 16, 3, 2, 64, 48, PaddingMode::Symmetric),
            (2, 3, 8, 3, 2, 33, 40, PaddingMode::TfSame),
            (1, 3, 16, 3, 2, 32, 32, PaddingMode::TfSame),
            (3, 4, 6, 5, 1, 11, 9, PaddingMode::Symmetric),
            (1, 2, 5, 3, 1, 6, 7, PaddingMode::Fixed(2)),
        ] {
            let x = Var::randn(0f32, 1.0, (n, cin, h, w), &dev)?;
            let wt = Var::randn(0f32, 0.3, (cout, cin, k, k), &dev)?;
            let y = dense_conv2d(x.as_tensor(), wt.as_tensor(), s, padding)?;
            let r = Tensor::randn(0f32, 1.0, y.dims(), &dev)?;
            let grads = (&y * &r)?.sum_all()?.backward()?;

            let (ph, pw) = (padding.resolve(h, k, s, 1), padding.resolve(w, k, s, 1));
            let xp = x.pad_with_zeros(2, ph.before, ph.after)?.pad_with_zeros(3, pw.before, pw.after)?;
            let y_ref = xp.conv2d(wt.as_tensor(), 0, s, 1, 1)?;
            let ref_grads = (&y_ref * &r)?.sum_all()?.backward()?;
            let case = format!("{n}x{cin}x{h}x{w} k{k} s{s} {padding:?}");
            assert_eq!(y.dims(), y_ref.dims(), "{case}");
            assert!(max_abs(&y, &y_ref)? < 1e-4, "{case}: forward");
            for (name, v) in [("dx", &x), ("dw", &wt)] {
                let (got, want) = (grads.get(v.as_tensor()), ref_grads.get(v.as_tensor()));
                let (Some(got), Some(want)) = (got, want) else { panic!("{case}: no {name}") };
                let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?.max(1.0);
                assert!(max_abs(got, want)? / scale < 1e-4, "{case}: {name}");
            }
        }
        Ok(())
    }

    /// An input that tracks no gradient (the image) gets none, and the weight gradient does not
    /// depend on the thread count.
    #[test]
    fn image_input_gets_no_gradient_and_sums_are_deterministic() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 40, 40), &dev)?;
        let wt = Var::randn(0f32, 0.3, (8, 3, 3, 3), &dev)?;
        let dw = |threads: usize| -> Result<Vec<f32>> {
            let pool =
                rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(candle_core::Error::wrap)?;
            pool.install(|| {
                let y = dense_conv2d(&x, wt.as_tensor(), 2, PaddingMode::Symmetric)?;
                let grads = y.sqr()?.sum_all()?.backward()?;
                assert!(grads.get(&x).is_none());
                let Some(g) = grads.get(wt.as_tensor()) else { candle_core::bail!("no weight gradient") };
                g.flatten_all()?.to_vec1::<f32>()
            })
        };
        assert_eq!(dw(1)?, dw(3)?);
        Ok(())
    }
}
