//! Forward pass of the mixed depthwise convolution, one output plane at a time, with the bias and
//! activation applied while the plane is in cache.

use std::mem::MaybeUninit;

use super::engine::{correlate, Taps};
use super::layout::PaddedInput;
use super::scratch::Scratch;
use super::simd::Simd8;
use crate::fused_act::FusedAct;
use crate::geometry::MixedGeometry;

/// One output plane's inputs.
pub(crate) struct ForwardPlane<'a> {
    pub geom: &'a MixedGeometry,
    pub channel: usize,
    /// The `in_h x in_w` input plane.
    pub input: &'a [f32],
    /// All packed weights.
    pub weights: &'a [f32],
    pub bias: f32,
    pub act: FusedAct,
}

/// Computes one `out_h x out_w` plane into `dst` (which need not be initialised) and returns it.
///
/// # Safety
/// `S` must be runnable on this CPU.
#[inline(always)]
pub(crate) unsafe fn forward_plane<S: Simd8>(p: &ForwardPlane, dst: &mut [MaybeUninit<f32>], scratch: &mut Scratch) {
    let geom = p.geom;
    let g = geom.group_of(p.channel);
    let layout = PaddedInput::new(geom, g);
    scratch.input_taps(&layout);
    // SAFETY: forwarded from this function's contract.
    unsafe { scratch.padded_input::<S>(&layout, p.input) };
    let first = g.weight_offset + (p.channel - g.channel_start) * g.taps();
    let taps = Taps {
        src: scratch.input_plane(&layout),
        row_step: layout.row_step(),
        offsets: &scratch.offsets,
        weights: &p.weights[first..first + g.taps()],
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { correlate::<S>(&taps, p.bias, dst, geom.out_w, geom.out_h, geom.out_w) };
    assert_eq!(dst.len(), geom.out_h * geom.out_w);
    // SAFETY: `correlate` wrote all out_h rows of out_w floats at stride out_w: the whole plane.
    let dst = unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) };
    p.act.apply_slice(dst);
}
