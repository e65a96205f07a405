//! The two inner loops every CPU pass is built from, over zero-padded scratch planes so that they
//! need no border tests:
//!
//! * [`correlate`]: `dst[r][col] = init + Σ_t w[t] · src[r·row_step + off[t] + col]`: the forward
//!   pass and the input gradient (with their own tap lists);
//! * [`tap_dots`]: `out[t] += Σ_{r, col} g[r][col] · src[r·row_step + off[t] + col]`: the weight
//!   gradient.
//!
//! Accumulators stay in registers across all taps (blocks of 4 rows × 16 columns, 8 independent
//! FMA chains), so each output is stored once instead of once per tap.

use std::mem::MaybeUninit;

use super::simd::{Simd8, LANES};

/// `xs` as a destination for [`correlate`], which only ever writes initialised floats into it.
pub(crate) fn as_uninit(xs: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and no caller writes uninitialised
    // values through the result, so `xs` stays initialised.
    unsafe { &mut *(xs as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// A tap list over a scratch plane: tap `t` reads `src[base + off[t]]` with weight `w[t]`.
pub(crate) struct Taps<'a> {
    pub src: &'a [f32],
    /// Distance in `src` between consecutive destination rows.
    pub row_step: usize,
    pub offsets: &'a [usize],
    /// One weight per offset ([`correlate`]); unused by [`tap_dots`], which computes them.
    pub weights: &'a [f32],
}

impl Taps<'_> {
    /// Asserts that `rows` rows of `padded_cols` columns stay inside `src`: every unchecked load
    /// below relies on it.
    fn check_bounds(&self, rows: usize, padded_cols: usize) {
        if rows == 0 || padded_cols == 0 {
            return;
        }
        let max_off = self.offsets.iter().copied().max().unwrap_or(0);
        let end = (rows - 1) * self.row_step + max_off + padded_cols;
        assert!(end <= self.src.len(), "scratch plane too short: {end} > {}", self.src.len());
    }
}

/// Writes `rows x cols` outputs into `dst` (row stride `dst_stride`; what lies between the end of
/// a row and the next row may be overwritten too); reads `cols` rounded up to whole vectors from
/// `taps.src`. `dst` need not be initialised: every output is written, none is read.
///
/// # Safety
/// `S` must be runnable on this CPU.
#[inline(always)]
pub(crate) unsafe fn correlate<S: Simd8>(
    taps: &Taps,
    init: f32,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    rows: usize,
    cols: usize,
) {
    let padded_cols = cols.div_ceil(LANES) * LANES;
    assert_eq!(taps.offsets.len(), taps.weights.len());
    taps.check_bounds(rows, padded_cols);
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(dst_stride >= cols && dst.len() >= (rows - 1) * dst_stride + cols);
    let end = (rows - 1) * dst_stride + cols;
    let mut r = 0;
    while r + 4 <= rows {
        // SAFETY: bounds asserted above; `S` runnable per this function's contract.
        unsafe { row_block::<S, 4>(taps, init, dst, dst_stride, r, cols, end) };
        r += 4;
    }
    // SAFETY: as above.
    unsafe {
        match rows - r {
            3 => row_block::<S, 3>(taps, init, dst, dst_stride, r, cols, end),
            2 => row_block::<S, 2>(taps, init, dst, dst_stride, r, cols, end),
            1 => row_block::<S, 1>(taps, init, dst, dst_stride, r, cols, end),
            _ => {}
        }
    }
}

/// Rows `r0 .. r0 + R`: tiles of 16 columns from right to left; the rightmost holds the rest
/// (up to 16 columns; 8 when at most 8 remain), so 14-wide planes fill 2 vectors per row.
///
/// A tile whose last vector holds fewer than 8 columns stores it whole (a masked store costs
/// several times a plain one): the extra lanes land either in the row's stride gap or at the
/// start of a later row, which a tile to the left (processed after it, hence right to left) or a
/// later row overwrites. Only a store that would reach past the last output is masked.
#[inline(always)]
unsafe fn row_block<S: Simd8, const R: usize>(
    taps: &Taps,
    init: f32,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    r0: usize,
    cols: usize,
    end: usize,
) {
    let wide = cols / (2 * LANES);
    let (col, rest) = (wide * 2 * LANES, cols % (2 * LANES));
    // SAFETY: the caller checked bounds for every column below `cols` rounded up to LANES, and
    // a 2-vector tile reads past `cols` only when `rest > LANES`, i.e. up to that rounding.
    unsafe {
        if rest > LANES {
            tile::<S, R, 2>(taps, init, dst, dst_stride, r0, col, rest, end);
        } else if rest > 0 {
            tile::<S, R, 1>(taps, init, dst, dst_stride, r0, col, rest, end);
        }
        for i in (0..wide).rev() {
            tile::<S, R, 2>(taps, init, dst, dst_stride, r0, i * 2 * LANES, 2 * LANES, end);
        }
    }
}

/// `end`: one past the last output of `dst` (the bound for whole-vector stores).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<S: Simd8, const R: usize, const V: usize>(
    taps: &Taps,
    init: f32,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    r0: usize,
    col: usize,
    valid: usize,
    end: usize,
) {
    // SAFETY (whole body): loads stay below the end checked by `check_bounds`; stores stay in
    // rows r0 .. r0 + R < rows and columns col .. col + valid <= cols of `dst`, checked by
    // `correlate`, except whole-vector stores of a partial tile, which stay below `end`.
    unsafe {
        let mut acc = [[S::splat(init); V]; R];
        let base = taps.src.as_ptr().add(r0 * taps.row_step + col);
        for (&off, &w) in taps.offsets.iter().zip(taps.weights) {
            let wv = S::splat(w);
            let p = base.add(off);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (v, a) in acc_r.iter_mut().enumerate() {
                    *a = S::mul_add(wv, S::load(p.add(r * taps.row_step + v * LANES)), *a);
                }
            }
        }
        let out = dst.as_mut_ptr().cast::<f32>().add(r0 * dst_stride + col);
        for (r, acc_r) in acc.iter().enumerate() {
            let row = out.add(r * dst_stride);
            for (v, a) in acc_r.iter().enumerate() {
                let lanes = valid.saturating_sub(v * LANES).min(LANES);
                if lanes == LANES || (lanes > 0 && (r0 + r) * dst_stride + col + (v + 1) * LANES <= end) {
                    S::store(row.add(v * LANES), *a);
                } else if lanes > 0 {
                    S::store_partial(row.add(v * LANES), *a, lanes);
                }
            }
        }
    }
}

/// Adds to `out[t]` the dot product of `rows x padded_cols` values of `g` (row stride
/// `g_stride`; columns that are not outputs must hold zeros) with tap `t`'s window of `taps.src`.
///
/// # Safety
/// `S` must be runnable on this CPU.
#[inline(always)]
pub(crate) unsafe fn tap_dots<S: Simd8>(
    taps: &Taps,
    g: &[f32],
    g_stride: usize,
    rows: usize,
    padded_cols: usize,
    out: &mut [f32],
) {
    assert!(padded_cols.is_multiple_of(LANES) && g_stride >= padded_cols);
    taps.check_bounds(rows, padded_cols);
    if rows == 0 || padded_cols == 0 {
        return;
    }
    assert!(g.len() >= (rows - 1) * g_stride + padded_cols && out.len() >= taps.offsets.len());
    let mut t = 0;
    let n = taps.offsets.len();
    // Eight taps share each load of `g` and give eight independent FMA chains. Odd square kernels
    // have 8m + 1 taps, so the tail is one tap.
    while t + 8 <= n {
        // SAFETY: bounds asserted above; `S` runnable per this function's contract.
        unsafe { dot_block::<S, 8>(taps, g, g_stride, rows, padded_cols, t, out) };
        t += 8;
    }
    while t + 4 <= n {
        // SAFETY: as above.
        unsafe { dot_block::<S, 4>(taps, g, g_stride, rows, padded_cols, t, out) };
        t += 4;
    }
    while t < n {
        // SAFETY: as above.
        unsafe { dot_block::<S, 1>(taps, g, g_stride, rows, padded_cols, t, out) };
        t += 1;
    }
}

#[inline(always)]
unsafe fn dot_block<S: Simd8, const T: usize>(
    taps: &Taps,
    g: &[f32],
    g_stride: usize,
    rows: usize,
    padded_cols: usize,
    t0: usize,
    out: &mut [f32],
) {
    // SAFETY (whole body): reads of `g` and `src` stay inside the ranges checked by `tap_dots`.
    unsafe {
        let mut acc = [S::splat(0.0); T];
        let mut offs = [0usize; T];
        offs.copy_from_slice(&taps.offsets[t0..t0 + T]);
        for r in 0..rows {
            let g_row = g.as_ptr().add(r * g_stride);
            let s_row = taps.src.as_ptr().add(r * taps.row_step);
            let mut col = 0;
            while col < padded_cols {
                let gv = S::load(g_row.add(col));
                for (a, &off) in acc.iter_mut().zip(&offs) {
                    *a = S::mul_add(gv, S::load(s_row.add(off + col)), *a);
                }
                col += LANES;
            }
        }
        for (o, a) in out[t0..t0 + T].iter_mut().zip(acc) {
            *o += S::sum(a);
        }
    }
}
