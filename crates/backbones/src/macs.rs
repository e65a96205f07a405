//! Multiply-accumulate counting: the convolutions and linear layers add what they computed to
//! a per-thread counter while [`count`] runs, so the figure comes from the forward pass that
//! actually runs (any input size, any detector head) rather than from a second description of
//! the architecture. Element-wise work (BatchNorm, activations, pooling) is not counted,
//! matching the usual "FLOPs" of the MixConv and MobileNet papers (multiply-adds of the
//! convolutions and the classifier).

use std::cell::Cell;

thread_local! {
    static COUNTER: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` and returns its result with the multiply-adds it performed on this thread.
pub fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let outer = COUNTER.with(|c| c.replace(Some(0)));
    let out = f();
    let n = COUNTER.with(|c| c.replace(outer)).unwrap_or(0);
    if let Some(o) = outer {
        COUNTER.with(|c| c.set(Some(o + n)));
    }
    (out, n)
}

/// Adds the multiply-adds `n()` computes when counting; `n` is not called otherwise, so the
/// forward pass pays nothing for the counter outside [`count`].
pub(crate) fn add(n: impl FnOnce() -> usize) {
    COUNTER.with(|c| {
        if let Some(v) = c.get() {
            c.set(Some(v + n() as u64));
        }
    });
}

/// Multiply-adds of a convolution with weight `(o, i, kh, kw)` (i per group) producing `out`
/// `(N, O, H', W')` elements: each output element of a group sums `i * kh * kw` products.
pub(crate) fn conv(out_elems: usize, weight_dims: &[usize]) -> usize {
    out_elems * weight_dims.iter().skip(1).product::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelOptions, ModelSpec};
    use candle_core::{DType, Device, Tensor};

    /// Multiply-adds at 224x224 as PyTorch's `torch.utils.flop_counter.FlopCounterMode` counts
    /// them on timm 1.0.31 / torchvision 0.29 (its FLOPs / 2), to the nearest thousand.
    #[test]
    fn counts_match_pytorch_flop_counter() -> candle_core::Result<()> {
        let expected = [
            ("mixnet_s", 239_173u64),
            ("mixnet_m", 339_173),
            ("mixnet_l", 555_252),
            ("mobilenetv2_100", 300_774),
            ("mobilenet_v3_large", 216_590),
        ];
        for (name, thousands) in expected {
            let spec = ModelSpec::by_name(name, None).expect("model");
            let opts = ModelOptions::default();
            let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
            let net = spec.build(&opts, vb)?;
            let x = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu)?;
            let (_, n) = count(|| net.forward(&x));
            assert_eq!((n + 500) / 1000, thousands, "{name}: {n}");
        }
        Ok(())
    }

    #[test]
    fn nested_counts_add_up() {
        let (inner, outer) = count(|| {
            add(|| 5);
            let ((), n) = count(|| add(|| 7));
            n
        });
        assert_eq!((inner, outer), (7, 12));
    }
}
