//! In-place epilogues for the inference path: per-channel bias + activation after a matrix
//! product, channel scaling (the squeeze-excitation gate) and residual addition, each one pass
//! over a buffer that is still hot instead of a candle op with its own output buffer.
//!
//! They apply to contiguous f32 CPU tensors; [`supported`] tells callers when to fall back to
//! candle ops (other devices, dtypes or layouts).

use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Tensor};
use rayon::prelude::*;

use crate::layers::Activation;

/// Whether `t` can take the in-place epilogues (contiguous f32 on the CPU).
pub fn supported(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

fn planes<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("in-place epilogue: f32 only") };
    let Some((a, b)) = layout.contiguous_offsets() else { candle_core::bail!("in-place epilogue: contiguous only") };
    Ok(&mut data[a..b])
}

impl Activation {
    /// Applies the activation to every value in place (same formulas as [`Activation::apply`]).
    pub fn apply_slice(self, xs: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
            Activation::Relu6 => xs.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
            Activation::Silu => mixdet_kernels::fast_math::silu_inplace(xs),
            Activation::HardSwish => xs.iter_mut().for_each(|x| *x *= (*x + 3.0).clamp(0.0, 6.0) / 6.0),
            Activation::HardSigmoid => xs.iter_mut().for_each(|x| *x = (*x + 3.0).clamp(0.0, 6.0) / 6.0),
            Activation::Sigmoid => mixdet_kernels::fast_math::sigmoid_inplace(xs),
        }
    }
}

struct BiasAct<'a> {
    bias: &'a [f32],
    act: Activation,
    plane: usize,
}

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = planes(storage, layout)?;
        let c = self.bias.len();
        data.par_chunks_mut(self.plane).enumerate().for_each(|(p, xs)| {
            let b = self.bias[p % c];
            xs.iter_mut().for_each(|x| *x += b);
            self.act.apply_slice(xs);
        });
        Ok(())
    }
}

/// `y[n, c, ...] = act(y[n, c, ...] + bias[c])` in place; `y` is `(N, C, H, W)`.
pub fn bias_act_inplace(y: &Tensor, bias: &[f32], act: Activation) -> Result<()> {
    let (_, c, h, w) = y.dims4()?;
    if c != bias.len() {
        candle_core::bail!("bias of {} values for {c} channels", bias.len());
    }
    y.inplace_op1(&BiasAct { bias, act, plane: h * w })
}

struct ScaleChannels {
    scale: Vec<f32>,
    plane: usize,
}

impl InplaceOp1 for ScaleChannels {
    fn name(&self) -> &'static str {
        "scale-channels"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = planes(storage, layout)?;
        data.par_chunks_mut(self.plane)
            .zip(self.scale.par_iter())
            .for_each(|(xs, &s)| xs.iter_mut().for_each(|x| *x *= s));
        Ok(())
    }
}

/// `y[n, c, ...] *= scale[n, c]` in place; `scale` is `(N, C)`.
pub fn scale_channels_inplace(y: &Tensor, scale: &Tensor) -> Result<()> {
    let (n, c, _, _) = y.dims4()?;
    if scale.dims() != [n, c] {
        candle_core::bail!("scale of shape {:?} for a ({n}, {c}, ..) tensor", scale.dims());
    }
    scale_channels_values_inplace(y, scale.flatten_all()?.to_vec1::<f32>()?)
}

/// `y[n, c, ...] *= scale[n * C + c]` in place.
pub fn scale_channels_values_inplace(y: &Tensor, scale: Vec<f32>) -> Result<()> {
    let (n, c, h, w) = y.dims4()?;
    if scale.len() != n * c {
        candle_core::bail!("{} scales for a ({n}, {c}, ..) tensor", scale.len());
    }
    y.inplace_op1(&ScaleChannels { scale, plane: h * w })
}

struct AddFrom<'a> {
    other: &'a [f32],
}

impl InplaceOp1 for AddFrom<'_> {
    fn name(&self) -> &'static str {
        "add-inplace"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = planes(storage, layout)?;
        if data.len() != self.other.len() {
            candle_core::bail!("add-inplace: {} values plus {}", data.len(), self.other.len());
        }
        data.par_chunks_mut(4096).zip(self.other.par_chunks(4096)).for_each(|(a, b)| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        });
        Ok(())
    }
}

/// `y += x` in place (same shapes; `x` must be a different tensor).
pub fn add_inplace(y: &Tensor, x: &Tensor) -> Result<()> {
    if y.dims() != x.dims() {
        candle_core::bail!("add-inplace: shapes {:?} and {:?}", y.dims(), x.dims());
    }
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("add-inplace: f32 CPU tensors only");
    };
    let Some((a, b)) = layout.contiguous_offsets() else { candle_core::bail!("add-inplace: contiguous only") };
    y.inplace_op1(&AddFrom { other: &data[a..b] })
}

/// `h + x` for a residual connection; in inference, in place into `h` when it can.
pub fn residual_add(h: Tensor, x: &Tensor, train: bool) -> Result<Tensor> {
    if !train && supported(&h) && supported(x) {
        add_inplace(&h, x)?;
        Ok(h)
    } else {
        h + x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn epilogues_match_candle_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (2, 3, 4, 5), &dev)?;
        let bias = [0.5f32, -1.0, 2.0];
        for act in [Activation::Relu, Activation::Relu6, Activation::Silu, Activation::HardSwish, Activation::Identity]
        {
            let y = x.copy()?;
            bias_act_inplace(&y, &bias, act)?;
            let expected = act.apply(&x.broadcast_add(&Tensor::new(&bias, &dev)?.reshape((1, 3, 1, 1))?)?)?;
            let err = (y - expected)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(err < 1e-6, "{act:?}: {err}");
        }
        let scale = Tensor::randn(0f32, 1.0, (2, 3), &dev)?;
        let y = x.copy()?;
        scale_channels_inplace(&y, &scale)?;
        let expected = x.broadcast_mul(&scale.unsqueeze(2)?.unsqueeze(3)?)?;
        assert!((y - expected)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? < 1e-6);
        let y = x.copy()?;
        let z = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?;
        add_inplace(&y, &z)?;
        assert!((y - (&x + &z)?)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? < 1e-6);
        Ok(())
    }
}
