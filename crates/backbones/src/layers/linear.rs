//! The classifier: a fully connected layer after global average pooling.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// A fully connected layer loaded under PyTorch's `weight` `(out, in)` / `bias` names.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = vb.get(out_dim, "bias")?;
    Ok(candle_nn::Linear::new(w, Some(b)))
}

/// Global average pooling `(N, C, H, W) -> (N, C)` then a linear classifier.
pub fn classify(x: &Tensor, fc: &candle_nn::Linear) -> Result<Tensor> {
    crate::macs::add(|| x.dims().first().copied().unwrap_or(0) * fc.weight().elem_count());
    fc.forward(&x.mean(D::Minus1)?.mean(D::Minus1)?)
}
