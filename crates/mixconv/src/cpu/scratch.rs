//! Per-thread scratch buffers. They grow to the largest plane a thread has seen and are reused by
//! every later call, so a convolution allocates nothing but its output (and gradients).

use std::cell::RefCell;

/// One thread's buffers.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The padded plane the taps read.
    pub plane: Vec<f32>,
    /// A second plane: a sub-grid result, or an output gradient padded to whole vectors.
    pub aux: Vec<f32>,
    /// Tap offsets into `plane`.
    pub offsets: Vec<usize>,
    /// Tap weights, where they are not a contiguous slice of the packed weights.
    pub weights: Vec<f32>,
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
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch. `f` must not start parallel work: a nested task could
/// land on this thread and find the scratch borrowed.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}
