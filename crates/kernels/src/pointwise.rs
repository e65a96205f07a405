//! 1x1 convolutions as matrix products: candle's 1x1 `conv2d` copies element by element and is
//! several times slower than `matmul` on the reshaped tensor.
//!
//! [`PointwisePlan`] is the inference form: one op for a (grouped) 1x1 convolution with its
//! folded bias and activation on CPU f32, calling gemm directly on tiles of the output so that
//! the bias and activation run on each tile while it is still in cache, with no zero-filled
//! output buffer, no concatenation of groups and one parallel region per layer.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::simd::Isa;
use crate::plan_io::{self, nchw_input, OutPtr};
use crate::FusedAct;

/// Applies a 1x1 convolution with weight `(out, in, 1, 1)` (or `(out, in)`) to `x` `(N, in, H, W)`.
pub fn conv1x1(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let wm = match weight.rank() {
        4 => weight.flatten_from(1)?,
        2 => weight.clone(),
        r => candle_core::bail!("conv1x1: weight of rank {r}, expected 2 or 4"),
    };
    let (o, i) = wm.dims2()?;
    if i != c {
        candle_core::bail!("conv1x1: input has {c} channels, weight expects {i}");
    }
    let xm = x.reshape((n, c, h * w))?;
    let y = if n == 1 { wm.matmul(&xm.squeeze(0)?)?.unsqueeze(0)? } else { wm.broadcast_left(n)?.matmul(&xm)? };
    y.reshape((n, o, h, w))
}

/// One group of a grouped 1x1 convolution: input channels `in_start..in_start + in_len` map to
/// output channels `out_start..out_start + out_len` through the `(out_len, in_len)` matrix at
/// `weight_offset` of the packed weights.
#[derive(Debug, Clone, Copy)]
struct Group {
    in_start: usize,
    in_len: usize,
    out_start: usize,
    out_len: usize,
    weight_offset: usize,
}

/// A (grouped) 1x1 convolution with bias and activation, prepared for inference on CPU f32.
#[derive(Debug, Clone)]
pub struct PointwisePlan {
    weight: Vec<f32>,
    groups: Vec<Group>,
    bias: Vec<f32>,
    act: FusedAct,
    in_channels: usize,
    out_channels: usize,
}

/// Below this many multiply-adds a tile is not worth a thread of its own.
const TILE_MACS: usize = 1 << 17;
/// Output columns (pixels) per tile: a multiple of gemm's register tile width.
const MIN_TILE_COLS: usize = 64;
/// Every tile packs its blocks of the operands again, so more tiles than this per thread cost
/// more than they balance (chosen with `mixdet bench` on the MixNets at 1 and 2 threads).
const TILES_PER_THREAD: usize = 2;

impl PointwisePlan {
    /// Builds the plan from one weight per group (`(out_g, in_g, 1, 1)` or `(out_g, in_g)`, groups
    /// taking consecutive input and output channels), a bias per output channel and an activation.
    pub fn new(weights: &[Tensor], bias: Vec<f32>, act: FusedAct) -> Result<Self> {
        let mut packed = Vec::new();
        let mut groups = Vec::with_capacity(weights.len());
        let (mut in_start, mut out_start) = (0, 0);
        for w in weights {
            let (out_len, in_len) = match *w.dims() {
                [o, i, 1, 1] | [o, i] => (o, i),
                ref d => candle_core::bail!("pointwise plan: weight of shape {d:?}, expected (out, in, 1, 1)"),
            };
            let weight_offset = packed.len();
            packed.extend(w.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?);
            groups.push(Group { in_start, in_len, out_start, out_len, weight_offset });
            in_start += in_len;
            out_start += out_len;
        }
        if bias.len() != out_start {
            candle_core::bail!("pointwise plan: {} bias values for {out_start} output channels", bias.len());
        }
        Ok(Self { weight: packed, groups, bias, act, in_channels: in_start, out_channels: out_start })
    }

    /// Whether [`PointwisePlan::forward`] can run on `x`: an f32 CPU tensor of rank 4 that tracks no
    /// gradients.
    pub fn supports(&self, x: &Tensor) -> bool {
        plan_io::supports(x)
    }

    /// `act(conv1x1(x) + bias)` for `x` `(N, in, H, W)`; not differentiable.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// Splits the product for one image and group into `(rows, cols)` tiles of at least
    /// [`TILE_MACS`] multiply-adds, at most [`TILES_PER_THREAD`] per thread: columns first (the
    /// epilogue then touches whole rows of a tile), rows when the image is too small to split.
    fn tiling(g: &Group, plane: usize) -> (usize, usize) {
        let macs = g.out_len * g.in_len * plane;
        let tiles = macs.div_ceil(TILE_MACS).clamp(1, TILES_PER_THREAD * rayon::current_num_threads());
        let col_tiles = tiles.min(plane.div_ceil(MIN_TILE_COLS)).max(1);
        let row_tiles = tiles.div_ceil(col_tiles).min(g.out_len.div_ceil(16)).max(1);
        (g.out_len.div_ceil(row_tiles), plane.div_ceil(col_tiles))
    }
}

impl CustomOp1 for PointwisePlan {
    fn name(&self) -> &'static str {
        "pointwise-bias-act"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, [n, c, h, w]) = nchw_input("pointwise plan", storage, layout, self.in_channels)?;
        let plane = h * w;
        let co = self.out_channels;
        // (image, group, first row, rows, first column, columns) for every tile.
        let mut tiles = Vec::new();
        for img in 0..n {
            for (gi, g) in self.groups.iter().enumerate() {
                let (rows, cols) = Self::tiling(g, plane);
                for r0 in (0..g.out_len).step_by(rows) {
                    for c0 in (0..plane).step_by(cols) {
                        tiles.push((img, gi, r0, rows.min(g.out_len - r0), c0, cols.min(plane - c0)));
                    }
                }
            }
        }
        let mut out: Vec<f32> = Vec::with_capacity(n * co * plane);
        let dst = OutPtr(out.as_mut_ptr());
        let isa = Isa::detect();
        let run = |&(img, gi, r0, rows, c0, cols): &(usize, usize, usize, usize, usize, usize)| {
            let g = &self.groups[gi];
            // SAFETY: the tile's block of `out` (rows out_start+r0.., columns c0..c0+cols of image
            // img) is written by this tile only and lies inside the allocation; the input and
            // weight blocks are in bounds by construction of the groups.
            unsafe {
                let d = dst.get().add((img * co + g.out_start + r0) * plane + c0);
                let lhs = self.weight.as_ptr().add(g.weight_offset + r0 * g.in_len);
                let rhs = x.as_ptr().add((img * c + g.in_start) * plane + c0);
                gemm::gemm(
                    rows,
                    cols,
                    g.in_len,
                    d,
                    1,
                    plane as isize,
                    false,
                    lhs,
                    1,
                    g.in_len as isize,
                    rhs,
                    1,
                    plane as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                let bias = &self.bias[g.out_start + r0..][..rows];
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => epilogue_avx2(self.act, d, plane, cols, bias),
                    _ => epilogue(self.act, d, plane, cols, bias),
                }
            }
        };
        if tiles.len() == 1 {
            run(&tiles[0]);
        } else {
            tiles.par_iter().for_each(run);
        }
        // SAFETY: the tiles cover every element of the output exactly once (gemm with
        // read_dst = false writes each element of its block).
        unsafe { out.set_len(n * co * plane) };
        Ok((CpuStorage::F32(out), Shape::from_dims(&[n, co, h, w])))
    }
}

/// Adds each row's bias and applies the activation to `bias.len()` rows of `cols` values, `stride`
/// apart, starting at `d`.
///
/// # Safety
/// Every row must be valid for `cols` reads and writes and not accessed elsewhere meanwhile.
#[inline(always)]
unsafe fn epilogue(act: FusedAct, d: *mut f32, stride: usize, cols: usize, bias: &[f32]) {
    for (r, &b) in bias.iter().enumerate() {
        // SAFETY: guaranteed by the caller.
        let row = unsafe { std::slice::from_raw_parts_mut(d.add(r * stride), cols) };
        act.apply_slice_bias(row, b);
    }
}

/// [`epilogue`] compiled for AVX2 (the activations vectorise 8 wide instead of SSE's 4).
///
/// # Safety
/// As [`epilogue`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn epilogue_avx2(act: FusedAct, d: *mut f32, stride: usize, cols: usize, bias: &[f32]) {
    // SAFETY: guaranteed by the caller.
    unsafe { epilogue(act, d, stride, cols, bias) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The plan equals matmul + bias + activation through candle ops, for single and grouped
    /// convolutions, images too small and large enough to be split into tiles, and batch > 1.
    #[test]
    fn plan_matches_candle_ops() -> Result<()> {
        let dev = Device::Cpu;
        for &(n, splits, outs, h, w, act) in &[
            (1, &[16usize][..], &[24usize][..], 7, 7, FusedAct::Relu),
            (2, &[16, 16], &[48, 48], 56, 56, FusedAct::Silu),
            (1, &[40, 40], &[120, 120], 28, 29, FusedAct::HardSwish),
            (1, &[320], &[1280], 7, 7, FusedAct::None),
            (3, &[3, 5], &[7, 9], 9, 5, FusedAct::Relu6),
        ] {
            let cin: usize = splits.iter().sum();
            let cout: usize = outs.iter().sum();
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev)?;
            let weights: Vec<Tensor> = splits
                .iter()
                .zip(outs)
                .map(|(&i, &o)| Tensor::randn(0f32, 0.2, (o, i, 1, 1), &dev))
                .collect::<Result<_>>()?;
            let bias: Vec<f32> = (0..cout).map(|i| (i as f32 * 0.37).sin()).collect();
            let plan = PointwisePlan::new(&weights, bias.clone(), act)?;
            let got = plan.forward(&x)?;
            let mut parts = Vec::new();
            let mut start = 0;
            for (wt, &i) in weights.iter().zip(splits) {
                parts.push(conv1x1(&x.narrow(1, start, i)?, wt)?);
                start += i;
            }
            let y = Tensor::cat(&parts, 1)?
                .broadcast_add(&Tensor::new(bias.as_slice(), &dev)?.reshape((1, cout, 1, 1))?)?;
            let expected = act.apply_tensor(&y)?;
            let err = (got - expected)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(err < 1e-4, "n={n} splits={splits:?} {h}x{w} {act:?}: max error {err}");
        }
        Ok(())
    }

    #[test]
    fn plan_rejects_mismatched_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::zeros((4, 3, 1, 1), candle_core::DType::F32, &dev)?;
        assert!(PointwisePlan::new(std::slice::from_ref(&w), vec![0.0; 3], FusedAct::None).is_err());
        let plan = PointwisePlan::new(&[w], vec![0.0; 4], FusedAct::None)?;
        assert!(plan.forward(&Tensor::zeros((1, 5, 2, 2), candle_core::DType::F32, &dev)?).is_err());
        assert!(PointwisePlan::new(
            &[Tensor::zeros((4, 3, 3, 3), candle_core::DType::F32, &dev)?],
            vec![0.0; 4],
            FusedAct::None
        )
        .is_err());
        Ok(())
    }
}
