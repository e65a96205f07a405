//! Padding rules: PyTorch's symmetric padding and TensorFlow's "SAME" padding.
//!
//! TF "SAME" depends on the input size, so it is resolved per call, per layer, from the actual
//! input (a static pad computed once from the image size is a classic porting bug).

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingMode {
    /// PyTorch / timm default (`pad_type=''`): `((stride - 1) + dilation * (k - 1)) / 2` on every side.
    #[default]
    Symmetric,
    /// TensorFlow "SAME" as timm's `Conv2dSame`/`pad_same`: total padding
    /// `max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)`, `total / 2` before, the rest after.
    TfSame,
    /// Explicit padding, the same on every side.
    Fixed(usize),
}

/// Padding of one spatial dimension: elements added before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pad1d {
    /// Zeros added before the first element (top or left).
    pub before: usize,
    /// Zeros added after the last element (bottom or right).
    pub after: usize,
}

impl PaddingMode {
    /// Resolves the padding of one spatial dimension of length `n` for kernel `k`.
    pub fn resolve(self, n: usize, k: usize, stride: usize, dilation: usize) -> Pad1d {
        match self {
            PaddingMode::Symmetric => {
                let p = ((stride - 1) + dilation * (k - 1)) / 2;
                Pad1d { before: p, after: p }
            }
            PaddingMode::TfSame => {
                let out = n.div_ceil(stride);
                let total = ((out.max(1) - 1) * stride + (k - 1) * dilation + 1).saturating_sub(n);
                Pad1d { before: total / 2, after: total - total / 2 }
            }
            PaddingMode::Fixed(p) => Pad1d { before: p, after: p },
        }
    }
}

/// Output length of a convolution over `n` elements, or `None` when the kernel does not fit.
pub fn conv_out_len(n: usize, pad: Pad1d, k: usize, stride: usize, dilation: usize) -> Option<usize> {
    let span = dilation * (k - 1) + 1;
    let padded = n + pad.before + pad.after;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_same_matches_timm_examples() {
        // Values from timm's pad_same on the MixNet stride-2 layers.
        let p = PaddingMode::TfSame;
        assert_eq!(p.resolve(224, 3, 2, 1), Pad1d { before: 0, after: 1 });
        assert_eq!(p.resolve(112, 5, 2, 1), Pad1d { before: 1, after: 2 });
        assert_eq!(p.resolve(112, 7, 2, 1), Pad1d { before: 2, after: 3 });
        assert_eq!(p.resolve(14, 11, 2, 1), Pad1d { before: 4, after: 5 });
        // Odd input: the total is k - 1, hence symmetric.
        assert_eq!(p.resolve(15, 5, 2, 1), Pad1d { before: 2, after: 2 });
        // Stride 1 with odd kernels is PyTorch's symmetric padding.
        assert_eq!(p.resolve(17, 7, 1, 1), Pad1d { before: 3, after: 3 });
        assert_eq!(p.resolve(17, 3, 1, 2), Pad1d { before: 2, after: 2 });
    }

    #[test]
    fn symmetric_matches_pytorch_get_padding() {
        let p = PaddingMode::Symmetric;
        assert_eq!(p.resolve(10, 3, 1, 1), Pad1d { before: 1, after: 1 });
        assert_eq!(p.resolve(10, 3, 2, 1), Pad1d { before: 1, after: 1 });
        assert_eq!(p.resolve(10, 9, 2, 1), Pad1d { before: 4, after: 4 });
        assert_eq!(p.resolve(10, 3, 1, 3), Pad1d { before: 3, after: 3 });
    }

    #[test]
    fn output_length() {
        let pad = Pad1d { before: 0, after: 1 };
        assert_eq!(conv_out_len(224, pad, 3, 2, 1), Some(112));
        assert_eq!(conv_out_len(2, Pad1d::default(), 5, 1, 1), None);
        assert_eq!(conv_out_len(15, Pad1d { before: 2, after: 2 }, 5, 2, 1), Some(8));
    }
}
