//! Zero-padded scratch copies of one channel plane, laid out so that the inner loops
//! ([`super::engine`]) read every tap as a contiguous run of columns, whatever the stride,
//! dilation and (possibly asymmetric) padding.

use super::simd::{round_up_lanes, Simd8, LANES};
use crate::geometry::{GroupGeometry, MixedGeometry};

/// An input plane for the forward pass and the weight gradient.
///
/// Padded row `r` holds input row `r - pad_top`. Its columns are split by stride phase: phase `p`
/// holds padded columns `p, p + s, p + 2s, ...`, so that a stride-`s` tap reads consecutive
/// floats (a direct stride-2 kernel with no gathers). Each phase has room for whole vectors past
/// the last output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            // Whole vectors, so that the stride-2 deinterleave has no scalar tail.
            phase_width: round_up_lanes(round_up_lanes(geom.out_w) + span / s),
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

    /// The first padded row that holds an input row, and how many do.
    fn input_rows(&self) -> (usize, usize) {
        let first = self.pad_top.min(self.rows);
        (first, self.in_h.min(self.rows - first))
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
    /// `rows` is a buffer for the padded input rows of a strided plane. With `borders_zero`,
    /// `dst` and `rows` already hold this layout's zeros (the previous fill had the same layout)
    /// and only the input's own floats are written: on small planes with large kernels the
    /// borders are most of the plane.
    ///
    /// # Safety
    /// `S` must be runnable on this CPU.
    #[inline(always)]
    pub unsafe fn fill<S: Simd8>(&self, src: &[f32], dst: &mut [f32], rows: &mut Vec<f32>, borders_zero: bool) {
        let (s, pw, w) = (self.stride, self.phase_width, self.in_w);
        let dst = &mut dst[..self.len()];
        // Padded columns [left, left + copy) come from the input; every phase reads inside
        // [0, s * pw).
        let left = self.pad_left.min(s * pw);
        let copy = w.min(s * pw - left);
        if s == 2 {
            // Pad the input rows contiguously into `rows`, then split each into its two phases
            // with vector shuffles (a per-element strided copy cost a sixth of the stride-2
            // forward). Two passes, so that the shuffles' loads do not wait on the copies' stores
            // still in flight (store forwarding fails on overlapping loads of another width).
            let width = 2 * pw + 1;
            let (first, count) = self.input_rows();
            if rows.len() < count * width {
                rows.resize(count * width, 0.0);
            }
            for (i, padded) in rows.chunks_exact_mut(width).take(count).enumerate() {
                let iy = first + i - self.pad_top;
                if !borders_zero {
                    padded[..left].fill(0.0);
                    padded[left + copy..].fill(0.0);
                }
                // SAFETY: `S` runnable per this function's contract.
                unsafe { copy_short::<S>(&src[iy * w..iy * w + copy], &mut padded[left..]) };
            }
            for (r, out) in dst.chunks_exact_mut(2 * pw).enumerate() {
                if r < first || r >= first + count {
                    if !borders_zero {
                        out.fill(0.0);
                    }
                    continue;
                }
                let padded = &rows[(r - first) * width..(r - first + 1) * width];
                let (even, odd) = out.split_at_mut(pw);
                // SAFETY: `S` runnable per this function's contract.
                unsafe {
                    deinterleave2::<S>(&padded[..2 * pw], even);
                    deinterleave2::<S>(&padded[1..], odd);
                }
            }
            return;
        }
        for (r, out) in dst.chunks_exact_mut(s * pw).enumerate() {
            let iy = r as isize - self.pad_top as isize;
            if iy < 0 || iy >= self.in_h as isize {
                if !borders_zero {
                    out.fill(0.0);
                }
                continue;
            }
            let src_row = &src[iy as usize * w..(iy as usize + 1) * w];
            if s == 1 {
                if !borders_zero {
                    out[..left].fill(0.0);
                    out[left + copy..].fill(0.0);
                }
                // SAFETY: `S` runnable per this function's contract.
                unsafe { copy_short::<S>(&src_row[..copy], &mut out[left..]) };
                continue;
            }
            for (p, seg) in out.chunks_exact_mut(pw).enumerate() {
                for (j, v) in seg.iter_mut().enumerate() {
                    // Phase element j is padded column j * s + p.
                    let col = j * s + p;
                    *v = if col >= left && col < left + copy { src_row[col - left] } else { 0.0 };
                }
            }
        }
    }
}

/// `dst[i] = src[2 i]` for `dst.len()` a whole number of vectors and `src` twice as long.
///
/// # Safety
/// `S` must be runnable on this CPU.
#[inline(always)]
unsafe fn deinterleave2<S: Simd8>(src: &[f32], dst: &mut [f32]) {
    assert!(dst.len().is_multiple_of(LANES) && src.len() >= 2 * dst.len());
    for (i, d) in dst.chunks_exact_mut(LANES).enumerate() {
        // SAFETY: 16 reads from 2 * LANES * i stay inside `src` (asserted); 8 writes fill `d`.
        unsafe { S::store(d.as_mut_ptr(), S::load_even(src.as_ptr().add(2 * LANES * i))) };
    }
}

/// `dst[..src.len()].copy_from_slice(src)` without a library call: rows are often a few dozen
/// floats, where the call costs as much as the copy. `dst` runs on into the row's right padding,
/// which must hold zeros: the tail is written as a whole vector with zeros past `src`, because a
/// masked store costs several times a plain one.
///
/// # Safety
/// `S` must be runnable on this CPU.
#[inline(always)]
unsafe fn copy_short<S: Simd8>(src: &[f32], dst: &mut [f32]) {
    assert!(src.len() <= dst.len());
    let whole = src.len() / LANES * LANES;
    for i in (0..whole).step_by(LANES) {
        // SAFETY: i + LANES <= len for both slices.
        unsafe { S::store(dst.as_mut_ptr().add(i), S::load(src.as_ptr().add(i))) };
    }
    let tail = src.len() - whole;
    if tail > 0 {
        // SAFETY: `tail < LANES` floats from `whole` lie inside both slices; the full store only
        // when `dst` has LANES floats from `whole`, else the masked one.
        unsafe {
            let v = S::load_partial(src.as_ptr().add(whole), tail);
            if whole + LANES <= dst.len() {
                S::store(dst.as_mut_ptr().add(whole), v);
            } else {
                S::store_partial(dst.as_mut_ptr().add(whole), v, tail);
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Appends the taps of sub-grid `(ρy, ρx)`: offsets into the padded plane and the index of
    /// each tap's weight in a channel's `kernel x kernel` weights.
    pub fn sub_taps(&self, rho_y: usize, rho_x: usize, offsets: &mut Vec<usize>, indices: &mut Vec<usize>) {
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
                indices.push(ky * self.kernel + kx);
            }
        }
    }

    pub fn stride(&self) -> usize {
        self.stride
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
