//! BatchNorm followed by an activation (timm's `BatchNormAct2d`), for training and inference.

use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use mixdet_kernels::FusedAct;

use super::Activation;

/// BatchNorm2d followed by an activation (timm's `BatchNormAct2d`).
///
/// Training runs [`mixdet_kernels::batch_norm_act_train`] (one op, with the activation, forward
/// and backward) and updates the running statistics as PyTorch does (momentum 0.1, unbiased
/// variance); inference applies the running statistics.
#[derive(Debug, Clone)]
pub struct BnAct {
    weight: Tensor,
    bias: Tensor,
    /// Shares its storage with the `VarMap` entry when training, so checkpoints see the updates.
    running_mean: Var,
    running_var: Var,
    eps: f64,
    act: Activation,
    channels: usize,
}

/// PyTorch's BatchNorm momentum.
const BN_MOMENTUM: f64 = 0.1;

impl BnAct {
    /// Loads `weight`, `bias`, `running_mean`, `running_var` under `vb`.
    pub fn load(channels: usize, eps: f64, act: Activation, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        Ok(Self { weight, bias, running_mean, running_var, eps, act, channels })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Normalises (batch statistics when `train`, running statistics otherwise) and activates.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            let (scale, shift) = self.affine()?;
            let shape = (1, self.channels, 1, 1);
            let y = x.broadcast_mul(&scale.reshape(shape)?)?.broadcast_add(&shift.reshape(shape)?)?;
            return self.act.apply(&y);
        }
        let (fused, rest) = match self.act.as_fused() {
            Some(f) => (f, Activation::Identity),
            None => (FusedAct::None, self.act),
        };
        let out = mixdet_kernels::batch_norm_act_train(x, &self.weight, &self.bias, self.eps, fused)?;
        let count = (x.elem_count() / self.channels) as f64;
        let unbiased = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
        let mean = ((self.running_mean.as_tensor() * (1.0 - BN_MOMENTUM))? + (out.mean * BN_MOMENTUM)?)?;
        let var = ((self.running_var.as_tensor() * (1.0 - BN_MOMENTUM))? + (out.var * (BN_MOMENTUM * unbiased))?)?;
        self.running_mean.set(&mean.detach())?;
        self.running_var.set(&var.detach())?;
        rest.apply(&out.y)
    }

    /// The inference BatchNorm as an affine map `x * scale + shift` per channel.
    pub fn affine(&self) -> Result<(Tensor, Tensor)> {
        let mean = self.running_mean.as_tensor().detach();
        let var = self.running_var.as_tensor().detach();
        let scale = ((var + self.eps)?.sqrt()?.recip()? * &self.weight)?;
        let shift = (&self.bias - (mean * &scale)?)?;
        Ok((scale, shift))
    }

    /// The activation.
    pub fn activation(&self) -> Activation {
        self.act
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// A training step updates the running statistics in the `VarMap` as PyTorch does:
    /// `(1 - 0.1) * running + 0.1 * batch`, with the unbiased batch variance; the output is
    /// normalised with the biased one.
    #[test]
    fn training_batch_norm_updates_running_statistics_like_pytorch() -> Result<()> {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let bn = BnAct::load(2, 1e-5, Activation::Identity, vb.pp("bn"))?;
        // Channel 0 holds 1..=8, channel 1 holds 0 everywhere; 2 images of 2x2 per channel.
        let vals: Vec<f32> = vec![1., 2., 3., 4., 0., 0., 0., 0., 5., 6., 7., 8., 0., 0., 0., 0.];
        let x = Tensor::from_vec(vals, (2, 2, 2, 2), &Device::Cpu)?;
        let y = bn.forward_t(&x, true)?;
        let data = varmap.data().lock().expect("varmap");
        let rm = data["bn.running_mean"].as_tensor().to_vec1::<f32>()?;
        let rv = data["bn.running_var"].as_tensor().to_vec1::<f32>()?;
        // mean 4.5, biased var 5.25, unbiased 6.0.
        assert!((rm[0] - 0.45).abs() < 1e-6 && rm[1].abs() < 1e-6, "{rm:?}");
        assert!((rv[0] - (0.9 + 0.6)).abs() < 1e-5 && (rv[1] - 0.9).abs() < 1e-6, "{rv:?}");
        let y0 = y.get(0)?.get(0)?.flatten_all()?.to_vec1::<f32>()?;
        let expected = (1.0 - 4.5) / (5.25f32 + 1e-5).sqrt();
        assert!((y0[0] - expected).abs() < 1e-5, "{y0:?}");
        Ok(())
    }
}
