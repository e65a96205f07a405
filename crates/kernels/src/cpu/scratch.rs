//! Per-thread scratch buffers. They grow to the largest plane a thread has seen and are reused by
//! every later call, so a convolution allocates nothing but its output (and gradients).

use std::cell::RefCell;

use super::layout::{PaddedGrad, PaddedInput};
use super::simd::Simd8;

/// The layout whose taps the scratch holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TapsOf {
    Input(PaddedInput),
    Grad(PaddedGrad),
}

/// One thread's buffers.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The padded plane the taps read (output gradients; input planes live in `input_plane`).
    pub plane: Vec<f32>,
    /// The last padded input plane, written only by [`Scratch::padded_input`].
    input_plane: Vec<f32>,
    /// Its padded rows (stride 2).
    input_rows: Vec<f32>,
    /// The layout whose zero borders `input_plane` and `input_rows` hold.
    input_layout: Option<PaddedInput>,
    /// A second plane: a sub-grid result, or an output gradient padded to whole vectors.
    pub aux: Vec<f32>,
    /// Tap offsets into `plane`.
    pub offsets: Vec<usize>,
    /// Tap weights, where they are not a contiguous slice of the packed weights.
    pub weights: Vec<f32>,
    /// For a [`PaddedGrad`]: each tap's index in the channel's kernel.
    pub indices: Vec<usize>,
    /// For a [`PaddedGrad`]: each sub-grid's range of `offsets` and `indices`.
    pub sub_ranges: Vec<std::ops::Range<usize>>,
    taps_of: Option<TapsOf>,
}

impl Scratch {
    /// Makes `plane` at least `plane_len` and `aux` at least `aux_len` floats long.
    pub fn reserve(&mut self, plane_len: usize, aux_len: usize) {
        if self.plane.len() < plane_len {
            self.plane.resize(plane_len, 0.0);
        }
        if self.aux.len() < aux_len {
            self.aux.resize(aux_len, 0.0);
        }
    }

    /// Copies `src` into `layout`'s zero-padded plane (read it with [`Scratch::input_plane`]).
    /// Consecutive planes mostly share a layout: then only the input's own floats are rewritten,
    /// the zeros around them are kept.
    ///
    /// # Safety
    /// `S` must be runnable on this CPU.
    #[inline(always)]
    pub unsafe fn padded_input<S: Simd8>(&mut self, layout: &PaddedInput, src: &[f32]) {
        let same = self.input_layout == Some(*layout);
        if self.input_plane.len() < layout.len() {
            self.input_plane.resize(layout.len(), 0.0);
        }
        // Cleared first: if `fill` panicked half-way, the borders would not be known to be zero.
        self.input_layout = None;
        // SAFETY: forwarded from this function's contract.
        unsafe { layout.fill::<S>(src, &mut self.input_plane, &mut self.input_rows, same) };
        self.input_layout = Some(*layout);
    }

    /// The plane [`Scratch::padded_input`] wrote last, `layout.len()` floats.
    pub fn input_plane(&self, layout: &PaddedInput) -> &[f32] {
        &self.input_plane[..layout.len()]
    }

    /// Fills `offsets` for `layout`. Consecutive planes mostly share a group, so the offsets are
    /// recomputed only when the layout changes.
    pub fn input_taps(&mut self, layout: &PaddedInput) {
        if self.taps_of != Some(TapsOf::Input(*layout)) {
            layout.tap_offsets(&mut self.offsets);
            self.taps_of = Some(TapsOf::Input(*layout));
        }
    }

    /// Fills `offsets`, `indices` and `sub_ranges` (sub-grid `ρy · s + ρx`) for `layout`,
    /// recomputed only when the layout changes.
    pub fn grad_taps(&mut self, layout: &PaddedGrad) {
        if self.taps_of == Some(TapsOf::Grad(*layout)) {
            return;
        }
        let s = layout.stride();
        self.offsets.clear();
        self.indices.clear();
        self.sub_ranges.clear();
        for rho_y in 0..s {
            for rho_x in 0..s {
                let start = self.offsets.len();
                layout.sub_taps(rho_y, rho_x, &mut self.offsets, &mut self.indices);
                self.sub_ranges.push(start..self.offsets.len());
            }
        }
        self.taps_of = Some(TapsOf::Grad(*layout));
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch. `f` must not start parallel work: a nested task could
/// land on this thread and find the scratch borrowed.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}
