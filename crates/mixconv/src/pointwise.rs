//! 1x1 convolutions as matrix products: candle's 1x1 `conv2d` copies element by element and is
//! several times slower than `matmul` on the reshaped tensor.

use candle_core::{Result, Tensor};

/// Applies a 1x1 convolution with weight `(out, in, 1, 1)` (or `(out, in)`) to `x` `(N, in, H, W)`.
pub fn conv1x1(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let wm = match weight.rank() {
        4 => weight.flatten_from(1)?,
        2 => weight.clone(),
        r => candle_core::bail!("conv1x1: weight of rank {r}, expected 2 or 4"),
    };
    let (o, i) = wm.dims2()?;
    if i != c {
        candle_core::bail!("conv1x1: input has {c} channels, weight expects {i}");
    }
    let xm = x.reshape((n, c, h * w))?;
    let y = if n == 1 { wm.matmul(&xm.squeeze(0)?)?.unsqueeze(0)? } else { wm.broadcast_left(n)?.matmul(&xm)? };
    y.reshape((n, o, h, w))
}
