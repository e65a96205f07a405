//! Helpers shared by the integration tests.

// Each test binary uses its own subset.
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor};
use mixdet_kernels::{MixedConv2d, MixedConv2dConfig, PaddingMode, SplitRule};

/// A reproducible tensor of uniform values in `[-scale, scale)` (candle's CPU `randn` cannot be
/// seeded, and a failing case must fail every time).
pub fn rand_tensor(dims: &[usize], scale: f32, seed: u64, dev: &Device) -> Result<Tensor> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n = dims.iter().product::<usize>();
    let values = (0..n)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (r as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect::<Vec<_>>();
    Tensor::from_vec(values, dims, dev)
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    assert_eq!(a.dims(), b.dims());
    a.to_dtype(DType::F32)?.sub(&b.to_dtype(DType::F32)?)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

/// Largest absolute value of a tensor.
pub fn max_abs(a: &Tensor) -> Result<f32> {
    a.to_dtype(DType::F32)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

/// `max |a - b| / max |b|`: the relative error of a whole gradient tensor.
pub fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok(max_abs_diff(a, b)? / max_abs(b)?.max(f32::MIN_POSITIVE))
}

/// One layer shape to test.
#[derive(Debug, Clone)]
pub struct Case {
    pub channels: usize,
    pub kernels: Vec<usize>,
    pub stride: usize,
    pub dilation: usize,
    pub padding: PaddingMode,
    pub split: SplitRule,
    pub batch: usize,
    pub h: usize,
    pub w: usize,
}

impl Case {
    pub fn config(&self) -> MixedConv2dConfig {
        MixedConv2dConfig {
            dilation: self.dilation,
            padding: self.padding,
            split: self.split,
            ..MixedConv2dConfig::depthwise(self.channels, self.kernels.clone(), self.stride)
        }
    }

    /// Reproducible weights, one tensor per group.
    pub fn weights(&self, seed: u64, dev: &Device) -> Result<Vec<Tensor>> {
        let shapes = self.config().weight_shapes();
        shapes.iter().enumerate().map(|(i, s)| rand_tensor(s, 0.5, seed + 1000 * i as u64, dev)).collect()
    }

    pub fn layer(&self, dev: &Device) -> Result<MixedConv2d> {
        MixedConv2d::new(self.config(), self.weights(7, dev)?, None)
    }

    pub fn input(&self, dev: &Device) -> Result<Tensor> {
        rand_tensor(&[self.batch, self.channels, self.h, self.w], 1.5, 11, dev)
    }
}

/// Every single kernel size 3..11 with each stride, dilation and padding rule on odd and even
/// inputs, then multi-group layers with uneven channel splits.
pub fn sweep(sizes: &[(usize, usize)]) -> Vec<Case> {
    let mut cases = Vec::new();
    for k in [3, 5, 7, 9, 11] {
        for stride in [1, 2] {
            for dilation in [1, 2] {
                for padding in [PaddingMode::Symmetric, PaddingMode::TfSame] {
                    for &(h, w) in sizes {
                        cases.push(Case {
                            channels: 3,
                            kernels: vec![k],
                            stride,
                            dilation,
                            padding,
                            split: SplitRule::Equal,
                            batch: 2,
                            h,
                            w,
                        });
                    }
                }
            }
        }
    }
    cases.extend(multi_group(sizes));
    cases
}

/// Multi-group layers: uneven equal splits (remainder to the first group), exponential splits.
pub fn multi_group(sizes: &[(usize, usize)]) -> Vec<Case> {
    let mut cases = Vec::new();
    let layers: [(usize, &[usize], SplitRule); 4] = [
        (13, &[3, 5, 7, 9, 11], SplitRule::Equal),
        (10, &[3, 5, 7], SplitRule::Equal),
        (11, &[3, 5, 7], SplitRule::Exponential),
        (7, &[5, 3], SplitRule::Equal),
    ];
    for (channels, kernels, split) in layers {
        for stride in [1, 2] {
            for dilation in [1, 2] {
                for padding in [PaddingMode::Symmetric, PaddingMode::TfSame] {
                    for &(h, w) in sizes {
                        cases.push(Case {
                            channels,
                            kernels: kernels.to_vec(),
                            stride,
                            dilation,
                            padding,
                            split,
                            batch: 3,
                            h,
                            w,
                        });
                    }
                }
            }
        }
    }
    cases
}
