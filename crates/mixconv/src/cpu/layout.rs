//! Zero-padded scratch copies of one channel plane, laid out so that the inner loops
//! ([`super::engine`]) read every tap as a contiguous run of columns, whatever the stride,
//! dilation and (possibly asymmetric) padding.

use super::simd::round_up_lanes;
use crate::geometry::{GroupGeometry, MixedGeometry};

/// An input plane for the forward pass and the weight gradient.
///
/// Padded row `r` holds input row `r - pad_top`. Its columns are split by stride phase: phase `p`
/// holds padded columns `p, p + s, p + 2s, ...`, so that a stride-`s` tap reads consecutive
/// floats (a direct stride-2 kernel with no gathers). Each phase has room for whole vectors past
/// the last output column.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PaddedInput {
    rows: usize,
    phase_width: usize,
    stride: usize,
    dilation: usize,
    kernel: usize,
    pad_top: usize,
    pad_left: usize,
    in_h: usize,
    in_w: usize,
}

impl PaddedInput {
    pub fn new(geom: &MixedGeometry, g: &GroupGeometry) -> Self {
        let s = geom.stride;
        let span = (g.kernel - 1) * geom.dilation;
        Self {
            rows: (geom.out_h - 1) * s + span + 1,
            phase_width: round_up_lanes(geom.out_w) + span / s,
            stride: s,
            dilation: geom.dilation,
            kernel: g.kernel,
            pad_top: g.pad_top,
            pad_left: g.pad_left,
            in_h: geom.in_h,
            in_w: geom.in_w,
        }
    }

    /// Floats in the scratch plane.
    pub fn len(&self) -> usize {
        self.rows * self.stride * self.phase_width
    }

    /// Scratch distance between the first taps of consecutive output rows.
    pub fn row_step(&self) -> usize {
        self.stride * self.stride * self.phase_width
    }

    /// Scratch offset of each tap `(ky, kx)`, row-major like the weights.
    pub fn tap_offsets(&self, out: &mut Vec<usize>) {
        let (s, d, pw) = (self.stride, self.dilation, self.phase_width);
        out.clear();
        for ky in 0..self.kernel {
            for kx in 0..self.kernel {
                out.push(ky * d * s * pw + (kx * d % s) * pw + kx * d / s);
            }
        }
    }

    /// Copies the `in_h x in_w` plane `src` into `dst` (`self.len()` floats), zeros around it.
    #[inline(always)]
    pub fn fill(&self, src: &[f32], dst: &mut [f32]) {
        let (s, pw, w) = (self.stride, self.phase_width, self.in_w);
        for (r, row) in dst[..self.len()].chunks_exact_mut(s * pw).enumerate() {
            let iy = r as isize - self.pad_top as isize;
            if iy < 0 || iy >= self.in_h as isize {
                row.fill(0.0);
                continue;
            }
            let src_row = &src[iy as usize * w..(iy as usize + 1) * w];
            for (p, seg) in row.chunks_exact_mut(pw).enumerate() {
                // Phase element j is input column j * s + p - pad_left.
                let lo = if self.pad_left > p { (self.pad_left - p).div_ceil(s) } else { 0 }.min(pw);
                let hi = if w + self.pad_left > p { (w - 1 + self.pad_left - p) / s + 1 } else { 0 }.clamp(lo, pw);
                seg[..lo].fill(0.0);
                seg[hi..].fill(0.0);
                if lo < hi {
                    let first = lo * s + p - self.pad_left;
                    if s == 1 {
                        seg[lo..hi].copy_from_slice(&src_row[first..first + (hi - lo)]);
                    } else {
                        for (d, v) in seg[lo..hi].iter_mut().zip(src_row[first..].iter().step_by(s)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }
}

/// An output-gradient plane for the input gradient, read as a transposed convolution.
///
/// The input positions split into `s x s` sub-grids by residue `(ρy, ρx)`; on one sub-grid the
/// input gradient is a stride-1 correlation of the output gradient with the taps whose
/// `ρ + pad - k·d` is a multiple of `s`, at output offset `δ = (ρ + pad - k·d) / s`. Padded row
/// `r` holds output-gradient row `r - top` so that every `δ` reads inside the plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PaddedGrad {
    rows: usize,
    width: usize,
    top: usize,
    left: usize,
    /// Row stride of a sub-grid's result (whole vectors).
    sub_stride: usize,
    stride: usize,
    dilation: usize,
    kernel: usize,
    pad_top: usize,
    pad_left: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
}

/// `floor(a / b)` for a positive `b`.
fn floor_div(a: isize, b: usize) -> isize {
    a.div_euclid(b as isize)
}

impl PaddedGrad {
    pub fn new(geom: &MixedGeometry, g: &GroupGeometry) -> Self {
        let s = geom.stride;
        let span = ((g.kernel - 1) * geom.dilation) as isize;
        let top = (-floor_div(g.pad_top as isize - span, s)).max(0) as usize;
        let left = (-floor_div(g.pad_left as isize - span, s)).max(0) as usize;
        let sub_h = geom.in_h.div_ceil(s);
        let sub_w = round_up_lanes(geom.in_w.div_ceil(s));
        Self {
            rows: top + sub_h + g.pad_top.div_ceil(s),
            width: left + sub_w + g.pad_left.div_ceil(s),
            top,
            left,
            sub_stride: sub_w,
            stride: s,
            dilation: geom.dilation,
            kernel: g.kernel,
            pad_top: g.pad_top,
            pad_left: g.pad_left,
            in_h: geom.in_h,
            in_w: geom.in_w,
            out_h: geom.out_h,
            out_w: geom.out_w,
        }
    }

    /// Floats in the padded plane.
    pub fn len(&self) -> usize {
        self.rows * self.width
    }

    /// Row stride of the plane (= distance between consecutive sub-grid rows).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Floats in one sub-grid result buffer.
    pub fn sub_len(&self) -> usize {
        self.in_h.div_ceil(self.stride) * self.sub_stride
    }

    pub fn sub_stride(&self) -> usize {
        self.sub_stride
    }

    /// Rows and columns of sub-grid `(ρy, ρx)`.
    pub fn sub_size(&self, rho_y: usize, rho_x: usize) -> (usize, usize) {
        let s = self.stride;
        (self.in_h.saturating_sub(rho_y).div_ceil(s), self.in_w.saturating_sub(rho_x).div_ceil(s))
    }

    /// The taps of sub-grid `(ρy, ρx)`: offsets into the padded plane and their weights taken
    /// from the channel's `kernel x kernel` weights `wk`.
    pub fn sub_taps(&self, rho_y: usize, rho_x: usize, wk: &[f32], offsets: &mut Vec<usize>, weights: &mut Vec<f32>) {
        offsets.clear();
        weights.clear();
        let (s, d) = (self.stride as isize, self.dilation as isize);
        let delta = |rho: usize, pad: usize, k: usize| {
            let num = (rho + pad) as isize - k as isize * d;
            (num.rem_euclid(s) == 0).then_some(num / s)
        };
        for ky in 0..self.kernel {
            let Some(dy) = delta(rho_y, self.pad_top, ky) else { continue };
            for kx in 0..self.kernel {
                let Some(dx) = delta(rho_x, self.pad_left, kx) else { continue };
                let row = (dy + self.top as isize) as usize;
                let col = (dx + self.left as isize) as usize;
                offsets.push(row * self.width + col);
                weights.push(wk[ky * self.kernel + kx]);
            }
        }
    }

    /// Copies the `out_h x out_w` plane `src` into `dst` (`self.len()` floats), zeros around it.
    #[inline(always)]
    pub fn fill(&self, src: &[f32], dst: &mut [f32]) {
        let ow = self.out_w;
        let copy_w = ow.min(self.width.saturating_sub(self.left));
        for (r, row) in dst[..self.len()].chunks_exact_mut(self.width).enumerate() {
            let oy = r as isize - self.top as isize;
            if oy < 0 || oy >= self.out_h as isize {
                row.fill(0.0);
                continue;
            }
            let left = self.left.min(self.width);
            row[..left].fill(0.0);
            row[left..left + copy_w].copy_from_slice(&src[oy as usize * ow..oy as usize * ow + copy_w]);
            row[left + copy_w..].fill(0.0);
        }
    }
}
