//! Training-mode BatchNorm fused with the activation that follows it, forward and backward.
//!
//! candle-nn's training BatchNorm is a dozen candle ops (transpose + copy, two means, broadcast
//! subtract, square, divide, multiply, add, transpose back), each with its own full-size buffer
//! and each with its own backward op; profiled on SSDLite-MixNet-S training, element-wise
//! broadcast ops, their buffers' page faults and memsets took over half of a step, gemm 4%.
//! Here the forward is two reads and one write per element, the backward two reads and one write,
//! and the activation's derivative is applied in the same pass.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use crate::cpu::simd::Isa;
use crate::fused_act::FusedAct;
use crate::op::f32_slice;

/// Output of [`batch_norm_act_train`].
#[derive(Debug, Clone)]
pub struct BatchNormTrainOutput {
    /// `act(gamma * (x - mean) / sqrt(var + eps) + beta)`, differentiable in `x`, `gamma`, `beta`.
    pub y: Tensor,
    /// Per-channel batch mean `(C,)` (detached).
    pub mean: Tensor,
    /// Per-channel biased batch variance `(C,)` (detached), the one used to normalise; PyTorch's
    /// running variance takes the unbiased one, `var * n / (n - 1)`.
    pub var: Tensor,
}

/// BatchNorm over `(N, C, ...)` with the batch's statistics, then `act`.
///
/// On the CPU with f32 this is one custom op (forward and backward); elsewhere it is built from
/// candle ops with the same result.
pub fn batch_norm_act_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: FusedAct,
) -> Result<BatchNormTrainOutput> {
    if x.rank() < 2 {
        candle_core::bail!("batch norm: input of shape {:?}, expected (N, C, ...)", x.dims());
    }
    let c = x.dim(1)?;
    if gamma.dims() != [c] || beta.dims() != [c] {
        candle_core::bail!("batch norm: {c} channels, but weight {:?} and bias {:?}", gamma.dims(), beta.dims());
    }
    if !matches!(x.device(), Device::Cpu) || x.dtype() != candle_core::DType::F32 {
        return composed(x, gamma, beta, eps, act);
    }
    let saved = Arc::new(Mutex::new(None));
    let op = BnActTrainOp { eps: eps as f32, act, saved: saved.clone() };
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let saved = saved.lock().map_err(|_| candle_core::Error::Msg("batch norm: poisoned lock".into()))?;
    let Some(s) = saved.as_ref() else { candle_core::bail!("batch norm: the forward kept no statistics") };
    let mean = Tensor::from_slice(&s.mean, c, x.device())?;
    let var = Tensor::from_slice(&s.var, c, x.device())?;
    Ok(BatchNormTrainOutput { y, mean, var })
}

/// The same computation from candle ops (any device and dtype); also the reference of the tests.
pub fn composed(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, act: FusedAct) -> Result<BatchNormTrainOutput> {
    let c = x.dim(1)?;
    let xt = x.transpose(0, 1)?.flatten_from(1)?.contiguous()?;
    let mean = xt.mean_keepdim(D::Minus1)?;
    let centred = xt.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = centred.broadcast_div(&(&var + eps)?.sqrt()?)?;
    let z = xhat.broadcast_mul(&gamma.reshape((c, 1))?)?.broadcast_add(&beta.reshape((c, 1))?)?;
    let mut dims = x.dims().to_vec();
    dims.swap(0, 1);
    let z = z.reshape(dims)?.transpose(0, 1)?.contiguous()?;
    Ok(BatchNormTrainOutput {
        y: act.apply_tensor(&z)?,
        mean: mean.flatten_all()?.detach(),
        var: var.flatten_all()?.detach(),
    })
}

/// What the backward needs from the forward, per channel.
#[derive(Debug, Clone)]
struct Saved {
    mean: Vec<f32>,
    /// Biased batch variance, for the running statistics.
    var: Vec<f32>,
    invstd: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Debug)]
struct BnActTrainOp {
    eps: f32,
    act: FusedAct,
    /// Filled by the forward; read by the caller (statistics) and by the backward.
    saved: Arc<Mutex<Option<Saved>>>,
}

/// A raw pointer that rayon tasks may share: each task writes only its own channel's planes.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: the tasks write disjoint index sets (one channel each), and the buffer outlives them.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// Sum with eight independent accumulators, so the loop vectorises and the rounding error grows
/// with `len / 8` rather than `len`.
#[inline(always)]
fn sum8(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for i in 0..8 {
            acc[i] += f(ch[i]);
        }
    }
    let mut total: f64 = acc.iter().map(|&v| v as f64).sum();
    total += rest.iter().map(|&v| f(v) as f64).sum::<f64>();
    total
}

/// Sums over planes of at most this many elements are done in f32, the planes' sums in f64.
const PLANE_CHUNK: usize = 4096;

#[inline(always)]
fn channel_sum(x: &[f32], n: usize, c: usize, inner: usize, ch: usize, f: impl Fn(f32) -> f32 + Copy) -> f64 {
    (0..n)
        .map(|b| {
            let plane = &x[(b * c + ch) * inner..][..inner];
            plane.chunks(PLANE_CHUNK).map(|p| sum8(p, f)).sum::<f64>()
        })
        .sum()
}

/// `(N, C, inner)` of a contiguous `(N, C, ...)` tensor: channel `ch` of image `b` is the plane
/// at `(b * c + ch) * inner`.
#[derive(Clone, Copy)]
struct Planes {
    n: usize,
    c: usize,
    inner: usize,
}

impl Planes {
    /// The planes of a `(N, C, ...)` shape.
    fn of(dims: &[usize]) -> Self {
        Self { n: dims[0], c: dims[1], inner: dims[2..].iter().product() }
    }
}

/// One channel of the forward: its batch statistics, then `act(x * a + b)` into its planes of
/// `out`; returns `(mean, var, invstd)`.
///
/// # Safety
/// `out` must hold `x.len()` elements, and no other thread may touch channel `ch`'s planes.
#[inline(always)]
unsafe fn forward_channel(
    op: &BnActTrainOp,
    x: &[f32],
    out: SharedMut,
    p: Planes,
    ch: usize,
    (gamma, beta): (f32, f32),
) -> (f32, f32, f32) {
    let Planes { n, c, inner } = p;
    let count = (n * inner) as f64;
    let mean = (channel_sum(x, n, c, inner, ch, |v| v) / count) as f32;
    let var = (channel_sum(x, n, c, inner, ch, |v| (v - mean) * (v - mean)) / count) as f32;
    let invstd = 1.0 / (var + op.eps).sqrt();
    let a = gamma * invstd;
    let b = beta - mean * a;
    for bi in 0..n {
        let off = (bi * c + ch) * inner;
        // SAFETY: this channel's plane of image `bi`, written by this call only (caller's promise).
        let dst = unsafe { std::slice::from_raw_parts_mut({ out }.0.add(off), inner) };
        for (d, &v) in dst.iter_mut().zip(&x[off..off + inner]) {
            *d = v * a + b;
        }
        op.act.apply_slice(dst);
    }
    (mean, var, invstd)
}

/// [`forward_channel`] compiled for AVX2 (same arithmetic, wider vectors: bit-identical).
///
/// # Safety
/// As [`forward_channel`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_channel_avx2(
    op: &BnActTrainOp,
    x: &[f32],
    out: SharedMut,
    p: Planes,
    ch: usize,
    params: (f32, f32),
) -> (f32, f32, f32) {
    // SAFETY: guaranteed by the caller.
    unsafe { forward_channel(op, x, out, p, ch, params) }
}

impl CustomOp3 for BnActTrainOp {
    fn name(&self) -> &'static str {
        "batch-norm-act-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice("input", xs, xl)?;
        let gamma = f32_slice("weight", gs, gl)?;
        let beta = f32_slice("bias", bs, bl)?;
        let planes = Planes::of(xl.dims());
        let Planes { n, c, inner } = planes;
        let count = (n * inner) as f64;
        if count == 0.0 {
            candle_core::bail!("batch norm: empty input {:?}", xl.dims());
        }
        let mut y = vec![0f32; x.len()];
        let out = SharedMut(y.as_mut_ptr());
        let isa = Isa::detect();
        let stats: Vec<(f32, f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: each task writes only channel `ch`'s planes of `y` (`x.len()` elements);
                // `Isa::Avx2Fma` is only chosen after detecting AVX2 and FMA.
                Isa::Avx2Fma => unsafe { forward_channel_avx2(self, x, out, planes, ch, (gamma[ch], beta[ch])) },
                // SAFETY: as above.
                _ => unsafe { forward_channel(self, x, out, planes, ch, (gamma[ch], beta[ch])) },
            })
            .collect();
        let saved = Saved {
            mean: stats.iter().map(|s| s.0).collect(),
            var: stats.iter().map(|s| s.1).collect(),
            invstd: stats.iter().map(|s| s.2).collect(),
            gamma: gamma.to_vec(),
            beta: beta.to_vec(),
        };
        *self.saved.lock().map_err(|_| candle_core::Error::Msg("batch norm: poisoned lock".into()))? = Some(saved);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().map_err(|_| candle_core::Error::Msg("batch norm: poisoned lock".into()))?.clone();
        let Some(saved) = saved else { candle_core::bail!("batch norm: backward before forward") };
        let c = saved.mean.len();
        let numel = x.elem_count();
        let op = BnActTrainBwdOp { act: self.act, saved };
        let packed = x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &op)?;
        let dx = packed.narrow(0, 0, numel)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, numel, c)?;
        let dbeta = packed.narrow(0, numel + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// The backward as one op over `(x, grad)`; its output is `dx` flattened, then `dgamma`, then
/// `dbeta` (a custom op has one output).
struct BnActTrainBwdOp {
    act: FusedAct,
    saved: Saved,
}

/// `d act(z) / dz` times `g`, over a plane: `z` holds the pre-activations and is overwritten;
/// `scratch` is reused between planes.
#[inline(always)]
fn act_grad(act: FusedAct, z: &mut [f32], g: &[f32], scratch: &mut Vec<f32>) {
    match act {
        FusedAct::None => z.copy_from_slice(g),
        FusedAct::Relu => z.iter_mut().zip(g).for_each(|(z, &g)| *z = if *z > 0.0 { g } else { 0.0 }),
        FusedAct::Relu6 => z.iter_mut().zip(g).for_each(|(z, &g)| *z = if *z > 0.0 && *z < 6.0 { g } else { 0.0 }),
        FusedAct::HardSwish => z.iter_mut().zip(g).for_each(|(z, &g)| {
            let d = if *z < -3.0 {
                0.0
            } else if *z > 3.0 {
                1.0
            } else {
                (2.0 * *z + 3.0) / 6.0
            };
            *z = g * d
        }),
        FusedAct::Silu => {
            // silu'(z) = s + z s (1 - s) with s = sigmoid(z); the plane keeps z, a copy gets s.
            scratch.clear();
            scratch.extend_from_slice(z);
            crate::fast_math::sigmoid_inplace(scratch);
            z.iter_mut().zip(g).zip(scratch.iter()).for_each(|((z, &g), &s)| *z = g * (s + *z * s * (1.0 - s)));
        }
    }
}

/// One channel of the backward: writes `dx` into its planes of `out` and returns
/// `(dgamma, dbeta)`; `scratch` is the task's reusable buffer.
///
/// # Safety
/// `out` must hold at least `x.len()` elements, and no other thread may touch channel `ch`'s
/// planes.
#[inline(always)]
unsafe fn backward_channel(
    op: &BnActTrainBwdOp,
    (x, g): (&[f32], &[f32]),
    out: SharedMut,
    p: Planes,
    ch: usize,
    scratch: &mut Vec<f32>,
) -> (f32, f32) {
    let Planes { n, c, inner } = p;
    let count = (n * inner) as f32;
    let s = &op.saved;
    let (mean, invstd, gamma, beta) = (s.mean[ch], s.invstd[ch], s.gamma[ch], s.beta[ch]);
    let (mut sum_gz, mut sum_gz_xhat) = (0f64, 0f64);
    // Pass 1: gz = g * act'(z) into the output, and its two sums.
    for bi in 0..n {
        let off = (bi * c + ch) * inner;
        // SAFETY: this channel's plane of image `bi`, written by this task only.
        let dst = unsafe { std::slice::from_raw_parts_mut({ out }.0.add(off), inner) };
        let xp = &x[off..off + inner];
        for (d, &v) in dst.iter_mut().zip(xp) {
            *d = (v - mean) * invstd * gamma + beta;
        }
        act_grad(op.act, dst, &g[off..off + inner], scratch);
        for (dc, xc) in dst.chunks(PLANE_CHUNK).zip(xp.chunks(PLANE_CHUNK)) {
            sum_gz += sum8(dc, |v| v);
            let mut acc = [0f32; 8];
            let mut tail = 0f64;
            let dch = dc.chunks_exact(8);
            let drest = dch.remainder();
            let xch = xc.chunks_exact(8);
            let xrest = xch.remainder();
            for (d8, x8) in dch.zip(xch) {
                for i in 0..8 {
                    acc[i] += d8[i] * (x8[i] - mean);
                }
            }
            for (&d, &v) in drest.iter().zip(xrest) {
                tail += (d * (v - mean)) as f64;
            }
            sum_gz_xhat += (acc.iter().map(|&v| v as f64).sum::<f64>() + tail) * invstd as f64;
        }
    }
    let (mean_gz, mean_gz_xhat) = ((sum_gz / count as f64) as f32, (sum_gz_xhat / count as f64) as f32);
    let k = gamma * invstd;
    // Pass 2: dx = gamma * invstd * (gz - mean(gz) - xhat * mean(gz * xhat)).
    for bi in 0..n {
        let off = (bi * c + ch) * inner;
        // SAFETY: as above.
        let dst = unsafe { std::slice::from_raw_parts_mut({ out }.0.add(off), inner) };
        for (d, &v) in dst.iter_mut().zip(&x[off..off + inner]) {
            let xhat = (v - mean) * invstd;
            *d = k * (*d - mean_gz - xhat * mean_gz_xhat);
        }
    }
    (sum_gz_xhat as f32, sum_gz as f32)
}

/// [`backward_channel`] compiled for AVX2 (same arithmetic, wider vectors: bit-identical).
///
/// # Safety
/// As [`backward_channel`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_channel_avx2(
    op: &BnActTrainBwdOp,
    xg: (&[f32], &[f32]),
    out: SharedMut,
    p: Planes,
    ch: usize,
    scratch: &mut Vec<f32>,
) -> (f32, f32) {
    // SAFETY: guaranteed by the caller.
    unsafe { backward_channel(op, xg, out, p, ch, scratch) }
}

impl CustomOp2 for BnActTrainBwdOp {
    fn name(&self) -> &'static str {
        "batch-norm-act-train-backward"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice("input", xs, xl)?;
        let g = f32_slice("gradient", gs, gl)?;
        if x.len() != g.len() {
            candle_core::bail!("batch norm backward: input {:?} and gradient {:?} differ", xl.dims(), gl.dims());
        }
        let planes = Planes::of(xl.dims());
        let c = planes.c;
        let numel = x.len();
        let mut out = vec![0f32; numel + 2 * c];
        let ptr = SharedMut(out.as_mut_ptr());
        let isa = Isa::detect();
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map_init(Vec::new, |scratch, ch| match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: each task writes only channel `ch`'s planes of `out` (`numel` elements
                // and more); `Isa::Avx2Fma` is only chosen after detecting AVX2 and FMA.
                Isa::Avx2Fma => unsafe { backward_channel_avx2(self, (x, g), ptr, planes, ch, scratch) },
                // SAFETY: as above.
                _ => unsafe { backward_channel(self, (x, g), ptr, planes, ch, scratch) },
            })
            .collect();
        for (ch, (dgamma, dbeta)) in sums.into_iter().enumerate() {
            out[numel + ch] = dgamma;
            out[numel + c + ch] = dbeta;
        }
        Ok((CpuStorage::F32(out), Shape::from(numel + 2 * c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
    }

    /// Forward, statistics and all three gradients against the candle-op composition, for every
    /// activation, an odd plane size and a batch of 3.
    #[test]
    fn matches_composed_ops_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        for act in [FusedAct::None, FusedAct::Relu, FusedAct::Relu6, FusedAct::Silu, FusedAct::HardSwish] {
            let x = Var::from_tensor(&(Tensor::randn(0.5f32, 2.0, (3, 5, 7, 9), &dev)? * 2.0)?)?;
            let gamma = Var::from_tensor(&Tensor::randn(1f32, 0.5, 5, &dev)?)?;
            let beta = Var::from_tensor(&Tensor::randn(0f32, 1.0, 5, &dev)?)?;
            let probe = Tensor::randn(0f32, 1.0, (3, 5, 7, 9), &dev)?;
            let fused = batch_norm_act_train(&x, &gamma, &beta, 1e-3, act)?;
            let reference = composed(&x, &gamma, &beta, 1e-3, act)?;
            assert!(max_rel(&fused.y, &reference.y) < 1e-5, "{act:?} forward");
            assert!(max_rel(&fused.mean, &reference.mean) < 1e-5, "{act:?} mean");
            assert!(max_rel(&fused.var, &reference.var) < 1e-4, "{act:?} var");
            let gf = (fused.y * &probe)?.sum_all()?.backward()?;
            let gr = (reference.y * &probe)?.sum_all()?.backward()?;
            for (name, v) in [("x", &x), ("gamma", &gamma), ("beta", &beta)] {
                let (a, b) = (gf.get(v).expect("fused grad"), gr.get(v).expect("reference grad"));
                let err = max_rel(a, b);
                assert!(err < 1e-4, "{act:?} d{name}: {err}");
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_mismatched_parameters() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 4, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let g = Tensor::ones(3, candle_core::DType::F32, &dev).unwrap();
        assert!(batch_norm_act_train(&x, &g, &g, 1e-5, FusedAct::None).is_err());
    }
}
