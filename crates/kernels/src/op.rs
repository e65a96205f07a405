//! The candle custom ops: the mixed depthwise forward (differentiable, or fused with a bias and
//! an activation for inference) and its two gradients, each one op over all channel groups.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::cpu;
use crate::cpu::simd::Isa;
use crate::fused_act::FusedAct;
use crate::geometry::MixedGeometry;
use crate::mixed_conv::MixConvError;

fn wrap(e: MixConvError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// The contiguous f32 values of a CPU tensor.
pub(crate) fn f32_slice<'a>(what: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        return Err(wrap(MixConvError::Input(format!("{what} is {:?}; the kernel computes in f32", storage.dtype()))));
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => Err(wrap(MixConvError::Input(format!("{what} must be contiguous")))),
    }
}

/// Forward: input `(N, C, H, W)`, packed weights (each group's `(c_g, 1, k_g, k_g)` weights
/// flattened and concatenated in group order) and, as a [`CustomOp3`], a `(C,)` bias.
#[derive(Debug, Clone)]
pub(crate) struct MixedDepthwiseOp {
    pub geom: MixedGeometry,
    pub act: FusedAct,
    pub isa: Isa,
}

impl MixedDepthwiseOp {
    pub fn new(geom: MixedGeometry, act: FusedAct) -> Self {
        Self { geom, act, isa: Isa::detect() }
    }

    fn out_shape(&self, batch: usize) -> Shape {
        Shape::from((batch, self.geom.channels, self.geom.out_h, self.geom.out_w))
    }

    fn cpu_forward(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let batch = self.geom.check_input("input", xl.dims()).map_err(wrap)?;
        self.geom.check_weights("packed weights", wl.shape().elem_count()).map_err(wrap)?;
        let x = f32_slice("input", xs, xl)?;
        let w = f32_slice("packed weights", ws, wl)?;
        let b = match bias {
            Some((bs, bl)) => {
                if bl.dims() != [self.geom.channels] {
                    return Err(wrap(MixConvError::Input(format!(
                        "bias has shape {:?}, expected [{}]",
                        bl.dims(),
                        self.geom.channels
                    ))));
                }
                Some(f32_slice("bias", bs, bl)?)
            }
            None => None,
        };
        let y = cpu::forward(self.isa, &self.geom, batch, x, w, b, self.act);
        Ok((CpuStorage::F32(y), self.out_shape(batch)))
    }
}

impl CustomOp2 for MixedDepthwiseOp {
    fn name(&self) -> &'static str {
        "mixed-depthwise-conv2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward(xs, xl, ws, wl, None)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::forward(&self.geom, self.act, (xs, xl), (ws, wl), None)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if self.act != FusedAct::None {
            candle_core::bail!("mixed depthwise conv: a fused activation has no backward (inference only)");
        }
        let grad = grad.contiguous()?;
        let grad_x = if x.track_op() {
            let op = GradInputOp { geom: self.geom.clone(), isa: self.isa };
            Some(grad.apply_op2_no_bwd(&w.contiguous()?, &op)?)
        } else {
            None
        };
        let grad_w = if w.track_op() {
            let op = GradWeightOp { geom: self.geom.clone(), isa: self.isa };
            Some(x.contiguous()?.apply_op2_no_bwd(&grad, &op)?)
        } else {
            None
        };
        Ok((grad_x, grad_w))
    }
}

impl CustomOp3 for MixedDepthwiseOp {
    fn name(&self) -> &'static str {
        "mixed-depthwise-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward(xs, xl, ws, wl, Some((bs, bl)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
        bs: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::forward(&self.geom, self.act, (xs, xl), (ws, wl), Some((bs, bl)))
    }
}

/// Input gradient: output gradient `(N, C, OH, OW)` and packed weights to `(N, C, H, W)`.
#[derive(Debug, Clone)]
pub(crate) struct GradInputOp {
    pub geom: MixedGeometry,
    pub isa: Isa,
}

impl CustomOp2 for GradInputOp {
    fn name(&self) -> &'static str {
        "mixed-depthwise-conv2d-grad-input"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let batch = self.geom.check_output("output gradient", gl.dims()).map_err(wrap)?;
        self.geom.check_weights("packed weights", wl.shape().elem_count()).map_err(wrap)?;
        let g = f32_slice("output gradient", gs, gl)?;
        let w = f32_slice("packed weights", ws, wl)?;
        let dx = cpu::grad_input(self.isa, &self.geom, batch, g, w);
        Ok((CpuStorage::F32(dx), Shape::from((batch, self.geom.channels, self.geom.in_h, self.geom.in_w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::grad_input(&self.geom, (gs, gl), (ws, wl))
    }
}

/// Weight gradient: input `(N, C, H, W)` and output gradient to the packed weights' shape,
/// reduced over the batch.
#[derive(Debug, Clone)]
pub(crate) struct GradWeightOp {
    pub geom: MixedGeometry,
    pub isa: Isa,
}

impl CustomOp2 for GradWeightOp {
    fn name(&self) -> &'static str {
        "mixed-depthwise-conv2d-grad-weight"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let batch = self.geom.check_input("input", xl.dims()).map_err(wrap)?;
        if self.geom.check_output("output gradient", gl.dims()).map_err(wrap)? != batch {
            return Err(wrap(MixConvError::Input("input and output gradient batch sizes differ".into())));
        }
        let x = f32_slice("input", xs, xl)?;
        let g = f32_slice("output gradient", gs, gl)?;
        let dw = cpu::grad_weight(self.isa, &self.geom, batch, x, g);
        Ok((CpuStorage::F32(dw), Shape::from(self.geom.weight_len)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::grad_weight(&self.geom, (xs, xl), (gs, gl))
    }
}
