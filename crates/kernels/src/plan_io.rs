//! What the inference plans ([`crate::PointwisePlan`], [`crate::DenseConvPlan`]) share: the
//! checked view of their NCHW f32 input and the output pointer their parallel tasks write through.

use candle_core::{CpuStorage, Layout, Result, Tensor};

/// Whether a plan can run on `x`: an f32 CPU tensor of rank 4 that tracks no gradients (the
/// plans have no backward; a non-contiguous input is copied first).
pub(crate) fn supports(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.rank() == 4 && !x.track_op()
}

/// The input of a plan as a contiguous f32 slice with its `[N, C, H, W]`, checked against the
/// plan's input channels; errors are prefixed with `op`.
pub(crate) fn nchw_input<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
    in_channels: usize,
) -> Result<(&'a [f32], [usize; 4])> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op}: f32 input only") };
    let Some((a, b)) = layout.contiguous_offsets() else { candle_core::bail!("{op}: contiguous input only") };
    let &[n, c, h, w] = layout.dims() else {
        candle_core::bail!("{op}: input of shape {:?}, expected (N, C, H, W)", layout.dims())
    };
    if c != in_channels {
        candle_core::bail!("{op}: input has {c} channels, weights expect {in_channels}");
    }
    Ok((&data[a..b], [n, c, h, w]))
}

/// A raw pointer into an output buffer that parallel tasks write through, each task to its own
/// disjoint block.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: the tasks write disjoint blocks of one buffer that outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
