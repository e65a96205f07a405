//! CUDA launches of the mixed depthwise kernels (`mixconv.cu`, compiled to PTX by `build.rs`
//! when the `cuda` feature is on): forward with fused bias and activation, input gradient and
//! weight gradient, one launch each for all channel groups.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, Layout, Result, Shape};

use crate::fused_act::FusedAct;
use crate::geometry::MixedGeometry;
use crate::mixed_conv::MixConvError;

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/mixconv_ptx.rs"));
}

/// Most channel groups one launch handles (`MAX_GROUPS` in `mixconv.cu`); layers with more run
/// the reference path.
pub(crate) const MAX_GROUPS: usize = 8;

/// The candle module name the PTX is cached under.
const MODULE: &str = "mixdet_kernels";

/// Threads per block for the element-wise kernels; `GRAD_WEIGHT_THREADS` in `mixconv.cu` for the
/// weight gradient.
const BLOCK: u32 = 256;

/// `struct MixGeom` of `mixconv.cu`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct GeomArg {
    n_groups: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    stride: u32,
    dilation: u32,
    group_end: [u32; MAX_GROUPS],
    kernel: [u32; MAX_GROUPS],
    pad_top: [u32; MAX_GROUPS],
    pad_left: [u32; MAX_GROUPS],
    weight_offset: [u32; MAX_GROUPS],
}

// SAFETY: a `repr(C)` struct of `u32`s, passed by value as the kernels' `MixGeom` parameter.
unsafe impl DeviceRepr for GeomArg {}

fn wrap(e: MixConvError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

fn to_u32(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| wrap(MixConvError::Input(format!("{v} exceeds the CUDA kernels' 32-bit sizes"))))
}

impl GeomArg {
    fn new(geom: &MixedGeometry) -> Result<Self> {
        if geom.groups.len() > MAX_GROUPS {
            return Err(wrap(MixConvError::Config(format!(
                "{} groups; the CUDA kernels take at most {MAX_GROUPS}",
                geom.groups.len()
            ))));
        }
        let mut arg = GeomArg {
            n_groups: to_u32(geom.groups.len())?,
            channels: to_u32(geom.channels)?,
            in_h: to_u32(geom.in_h)?,
            in_w: to_u32(geom.in_w)?,
            out_h: to_u32(geom.out_h)?,
            out_w: to_u32(geom.out_w)?,
            stride: to_u32(geom.stride)?,
            dilation: to_u32(geom.dilation)?,
            group_end: [0; MAX_GROUPS],
            kernel: [0; MAX_GROUPS],
            pad_top: [0; MAX_GROUPS],
            pad_left: [0; MAX_GROUPS],
            weight_offset: [0; MAX_GROUPS],
        };
        to_u32(geom.weight_len)?;
        for (i, g) in geom.groups.iter().enumerate() {
            arg.group_end[i] = to_u32(g.channel_start + g.channels)?;
            arg.kernel[i] = to_u32(g.kernel)?;
            arg.pad_top[i] = to_u32(g.pad_top)?;
            arg.pad_left[i] = to_u32(g.pad_left)?;
            arg.weight_offset[i] = to_u32(g.weight_offset)?;
        }
        Ok(arg)
    }
}

/// The contiguous f32 view of a CUDA tensor.
fn f32_view<'a>(what: &str, storage: &'a CudaStorage, layout: &Layout) -> Result<CudaView<'a, f32>> {
    let slice = storage.as_cuda_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => Err(wrap(MixConvError::Input(format!("{what} must be contiguous")))),
    }
}

/// A grid-stride launch over `total` elements.
fn elementwise_config(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

type Arg<'a> = (&'a CudaStorage, &'a Layout);

pub(crate) fn forward(
    geom: &MixedGeometry,
    act: FusedAct,
    (xs, xl): Arg,
    (ws, wl): Arg,
    bias: Option<Arg>,
) -> Result<(CudaStorage, Shape)> {
    let batch = geom.check_input("input", xl.dims()).map_err(wrap)?;
    geom.check_weights("packed weights", wl.shape().elem_count()).map_err(wrap)?;
    let arg = GeomArg::new(geom)?;
    let dev = xs.device().clone();
    let x = f32_view("input", xs, xl)?;
    let w = f32_view("packed weights", ws, wl)?;
    let b = match bias {
        Some((bs, bl)) => {
            if bl.dims() != [geom.channels] {
                return Err(wrap(MixConvError::Input(format!(
                    "bias has shape {:?}, expected [{}]",
                    bl.dims(),
                    geom.channels
                ))));
            }
            Some(f32_view("bias", bs, bl)?)
        }
        None => None,
    };
    let total = batch * geom.channels * geom.out_h * geom.out_w;
    // SAFETY: every element is written by the kernel below (grid-stride over `total`).
    let y = unsafe { dev.alloc::<f32>(total.max(1)) }?;
    if total > 0 {
        let func = dev.get_or_load_custom_func("mixconv_fwd_f32", MODULE, ptx::MIXCONV)?;
        let mut launch = func.builder();
        launch.arg(&x);
        launch.arg(&w);
        // Without a bias the kernel never reads this pointer; the weights stand in for it.
        match &b {
            Some(b) => launch.arg(b),
            None => launch.arg(&w),
        };
        launch.arg(&y);
        launch.arg(&arg);
        candle_core::builder_arg!(launch, total as u64, act.code(), u32::from(b.is_some()));
        // SAFETY: the argument list matches `mixconv_fwd_f32`; the shapes were checked above.
        unsafe { launch.launch(elementwise_config(total)) }.w()?;
    }
    let shape = Shape::from((batch, geom.channels, geom.out_h, geom.out_w));
    Ok((CudaStorage::wrap_cuda_slice(y, dev), shape))
}

pub(crate) fn grad_input(geom: &MixedGeometry, (gs, gl): Arg, (ws, wl): Arg) -> Result<(CudaStorage, Shape)> {
    let batch = geom.check_output("output gradient", gl.dims()).map_err(wrap)?;
    geom.check_weights("packed weights", wl.shape().elem_count()).map_err(wrap)?;
    let arg = GeomArg::new(geom)?;
    let dev = gs.device().clone();
    let g = f32_view("output gradient", gs, gl)?;
    let w = f32_view("packed weights", ws, wl)?;
    let total = batch * geom.channels * geom.in_h * geom.in_w;
    // SAFETY: every element is written by the kernel below (grid-stride over `total`).
    let dx = unsafe { dev.alloc::<f32>(total.max(1)) }?;
    if total > 0 {
        let func = dev.get_or_load_custom_func("mixconv_grad_input_f32", MODULE, ptx::MIXCONV)?;
        let mut launch = func.builder();
        launch.arg(&g);
        launch.arg(&w);
        launch.arg(&dx);
        launch.arg(&arg);
        candle_core::builder_arg!(launch, total as u64);
        // SAFETY: the argument list matches `mixconv_grad_input_f32`; shapes checked above.
        unsafe { launch.launch(elementwise_config(total)) }.w()?;
    }
    let shape = Shape::from((batch, geom.channels, geom.in_h, geom.in_w));
    Ok((CudaStorage::wrap_cuda_slice(dx, dev), shape))
}

pub(crate) fn grad_weight(geom: &MixedGeometry, (xs, xl): Arg, (gs, gl): Arg) -> Result<(CudaStorage, Shape)> {
    let batch = geom.check_input("input", xl.dims()).map_err(wrap)?;
    if geom.check_output("output gradient", gl.dims()).map_err(wrap)? != batch {
        return Err(wrap(MixConvError::Input("input and output gradient batch sizes differ".into())));
    }
    let arg = GeomArg::new(geom)?;
    let dev = xs.device().clone();
    let x = f32_view("input", xs, xl)?;
    let g = f32_view("output gradient", gs, gl)?;
    let dw = dev.alloc_zeros::<f32>(geom.weight_len)?;
    if batch > 0 {
        let func = dev.get_or_load_custom_func("mixconv_grad_weight_f32", MODULE, ptx::MIXCONV)?;
        let mut launch = func.builder();
        launch.arg(&x);
        launch.arg(&g);
        launch.arg(&dw);
        launch.arg(&arg);
        candle_core::builder_arg!(launch, to_u32(batch)?);
        let cfg =
            LaunchConfig { grid_dim: (to_u32(geom.weight_len)?, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the argument list matches `mixconv_grad_weight_f32`; shapes checked above; one
        // block per packed weight, BLOCK == GRAD_WEIGHT_THREADS threads each.
        unsafe { launch.launch(cfg) }.w()?;
    }
    Ok((CudaStorage::wrap_cuda_slice(dw, dev), Shape::from(geom.weight_len)))
}
