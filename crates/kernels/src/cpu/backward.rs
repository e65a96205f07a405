//! Gradients of the mixed depthwise convolution: the input gradient one input plane at a time
//! (a transposed convolution, split into stride sub-grids), the weight gradient one channel at a
//! time, reduced over the batch in the same pass.

use super::engine::{as_uninit, correlate, tap_dots, Taps};
use super::layout::{PaddedGrad, PaddedInput};
use super::scratch::Scratch;
use super::simd::{round_up_lanes, Simd8};
use crate::geometry::MixedGeometry;

/// Computes the `in_h x in_w` input-gradient plane of `channel` into `dst` (which must hold
/// zeros: sub-grids that no tap reaches are left as they are) from its output-gradient plane.
///
/// # Safety
/// `S` must be runnable on this CPU.
#[inline(always)]
pub(crate) unsafe fn grad_input_plane<S: Simd8>(
    geom: &MixedGeometry,
    channel: usize,
    grad_out: &[f32],
    weights: &[f32],
    dst: &mut [f32],
    scratch: &mut Scratch,
) {
    let g = geom.group_of(channel);
    let layout = PaddedGrad::new(geom, g);
    let s = geom.stride;
    scratch.reserve(layout.len(), if s > 1 { layout.sub_len() } else { 0 });
    layout.fill(grad_out, &mut scratch.plane);
    scratch.grad_taps(&layout);
    let first = g.weight_offset + (channel - g.channel_start) * g.taps();
    let wk = &weights[first..first + g.taps()];
    let w = geom.in_w;
    for rho_y in 0..s {
        for rho_x in 0..s {
            let (rows, cols) = layout.sub_size(rho_y, rho_x);
            let range = scratch.sub_ranges[rho_y * s + rho_x].clone();
            if rows == 0 || cols == 0 || range.is_empty() {
                continue;
            }
            scratch.weights.clear();
            scratch.weights.extend(scratch.indices[range.clone()].iter().map(|&i| wk[i]));
            let taps = Taps {
                src: &scratch.plane[..layout.len()],
                row_step: layout.width(),
                offsets: &scratch.offsets[range],
                weights: &scratch.weights,
            };
            if s == 1 {
                // SAFETY: forwarded from this function's contract.
                unsafe { correlate::<S>(&taps, 0.0, as_uninit(dst), w, rows, cols) };
                continue;
            }
            let sub = &mut scratch.aux[..layout.sub_len()];
            // SAFETY: forwarded from this function's contract.
            unsafe { correlate::<S>(&taps, 0.0, as_uninit(sub), layout.sub_stride(), rows, cols) };
            for (a, sub_row) in sub.chunks_exact(layout.sub_stride()).take(rows).enumerate() {
                let dst_row = &mut dst[(rho_y + s * a) * w..(rho_y + s * a + 1) * w];
                for (d, v) in dst_row[rho_x..].iter_mut().step_by(s).zip(&sub_row[..cols]) {
                    *d = *v;
                }
            }
        }
    }
}

/// One channel's planes across the batch, for the weight gradient.
pub(crate) struct ChannelPlanes<'a> {
    pub geom: &'a MixedGeometry,
    pub channel: usize,
    pub batch: usize,
    /// The whole `(N, C, H, W)` input.
    pub input: &'a [f32],
    /// The whole `(N, C, OH, OW)` output gradient.
    pub grad_out: &'a [f32],
}

/// Adds the channel's weight gradient, summed over the batch, to `dst` (`kernel²` floats).
///
/// # Safety
/// `S` must be runnable on this CPU.
#[inline(always)]
pub(crate) unsafe fn grad_weight_channel<S: Simd8>(p: &ChannelPlanes, dst: &mut [f32], scratch: &mut Scratch) {
    let geom = p.geom;
    let g = geom.group_of(p.channel);
    let layout = PaddedInput::new(geom, g);
    let (oh, ow) = (geom.out_h, geom.out_w);
    let owp = round_up_lanes(ow);
    // The output gradient is read in whole vectors: rows that do not fill them are copied into
    // a zero-padded buffer, so the extra lanes add nothing.
    let copy_grad = owp != ow;
    scratch.reserve(0, if copy_grad { oh * owp } else { 0 });
    scratch.input_taps(&layout);
    let (plane_in, plane_out) = (geom.in_h * geom.in_w, oh * ow);
    for n in 0..p.batch {
        let plane = n * geom.channels + p.channel;
        let input = &p.input[plane * plane_in..(plane + 1) * plane_in];
        // SAFETY: forwarded from this function's contract.
        unsafe { scratch.padded_input::<S>(&layout, input) };
        let grad = &p.grad_out[plane * plane_out..(plane + 1) * plane_out];
        let (g_rows, g_stride) = if copy_grad {
            for (d, s) in scratch.aux.chunks_exact_mut(owp).zip(grad.chunks_exact(ow)) {
                d[..ow].copy_from_slice(s);
                d[ow..].fill(0.0);
            }
            (&scratch.aux[..oh * owp], owp)
        } else {
            (grad, ow)
        };
        let taps = Taps {
            src: scratch.input_plane(&layout),
            row_step: layout.row_step(),
            offsets: &scratch.offsets,
            weights: &[],
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { tap_dots::<S>(&taps, g_rows, g_stride, oh, owp, dst) };
    }
}
