//! timm's block-string notation for EfficientNet-family architectures, decoded.
//!
//! A block string such as `ir_r1_k3.5.7_a1.1_p1.1_s2_e6_c40_se0.5_nsw` reads: inverted residual,
//! 1 repeat, MixConv depthwise kernels {3,5,7}, expansion and projection 1x1 convs split into 2
//! groups, stride 2, expansion 6, 40 output channels, squeeze-excitation 0.5 (relative to the
//! block input), SiLU. Tokens after the block type may come in any order.

use crate::layers::Activation;

/// A convolution's kernel: an int in the string gives a plain conv, a dotted list a `MixedConv2d`
/// (even a one-element list, which changes the weight names to `.0.weight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// A plain convolution with this kernel size.
    Single(usize),
    /// A mixed convolution, one group per kernel size.
    Mixed(Vec<usize>),
}

impl KernelSpec {
    /// Kernel sizes as a list (one element for [`KernelSpec::Single`]).
    pub fn sizes(&self) -> Vec<usize> {
        match self {
            KernelSpec::Single(k) => vec![*k],
            KernelSpec::Mixed(ks) => ks.clone(),
        }
    }

    fn parse(value: &str) -> Result<Self, ArchError> {
        let bad = || ArchError(format!("bad kernel size {value:?}"));
        if value.contains('.') {
            let ks = value.split('.').map(|k| k.parse::<usize>().map_err(|_| bad())).collect::<Result<Vec<_>, _>>()?;
            Ok(KernelSpec::Mixed(ks))
        } else {
            value.parse().map(KernelSpec::Single).map_err(|_| bad())
        }
    }
}

/// Block types of the EfficientNet builder that the MixNet / MobileNetV2 families use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    /// `ds`: depthwise conv, BN+act, SE, pointwise conv, BN (no act).
    DepthwiseSeparable,
    /// `dsa`: as `ds` with an activation after the pointwise conv and no skip.
    DepthwiseSeparableAct,
    /// `ir`: 1x1 expansion, depthwise, SE, 1x1 projection.
    InvertedResidual,
}

/// One decoded block string.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockArgs {
    /// Block type.
    pub block_type: BlockType,
    /// Repeats before depth scaling.
    pub repeats: usize,
    /// Depthwise kernel(s).
    pub dw_kernel: KernelSpec,
    /// Expansion conv kernel(s) (`a`); `Single(1)` by default.
    pub exp_kernel: KernelSpec,
    /// Projection conv kernel(s) (`p`); `Single(1)` by default.
    pub pw_kernel: KernelSpec,
    /// Stride of the first repeat.
    pub stride: usize,
    /// Expansion ratio (`e`); 1 for depthwise-separable blocks.
    pub exp_ratio: f64,
    /// Output channels before channel rounding.
    pub out_chs: usize,
    /// Squeeze-excitation ratio, relative to the block input channels; 0 for none.
    pub se_ratio: f64,
    /// Activation override (`n..`); `None` means the model default.
    pub act: Option<Activation>,
    /// `noskip` given (always true for `dsa`).
    pub noskip: bool,
}

/// An error in an architecture definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("architecture definition: {0}")]
pub struct ArchError(pub String);

/// Decodes one block string, e.g. `ir_r2_k3.5_p1.1_s1_e6_c80_se0.25_nsw`.
pub fn decode_block_str(block: &str) -> Result<BlockArgs, ArchError> {
    let mut tokens = block.split('_');
    let block_type = match tokens.next() {
        Some("ir") => BlockType::InvertedResidual,
        Some("ds") => BlockType::DepthwiseSeparable,
        Some("dsa") => BlockType::DepthwiseSeparableAct,
        other => return Err(ArchError(format!("{block:?}: unsupported block type {other:?}"))),
    };
    let mut opts: Vec<(&str, &str)> = Vec::new();
    let mut act = None;
    let mut noskip = block_type == BlockType::DepthwiseSeparableAct;
    for token in tokens {
        match token {
            "noskip" => noskip = true,
            "skip" => noskip = false,
            t if t.starts_with('n') => {
                act = Some(match &t[1..] {
                    "re" => Activation::Relu,
                    "r6" => Activation::Relu6,
                    "hs" => Activation::HardSwish,
                    "sw" => Activation::Silu,
                    other => return Err(ArchError(format!("{block:?}: unsupported activation {other:?}"))),
                })
            }
            t => {
                let split = t.find(|c: char| c.is_ascii_digit()).unwrap_or(t.len());
                if split == 0 || split == t.len() {
                    return Err(ArchError(format!("{block:?}: cannot read token {t:?}")));
                }
                opts.push((&t[..split], &t[split..]));
            }
        }
    }
    let get = |key: &str| opts.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let need = |key: &str| get(key).ok_or_else(|| ArchError(format!("{block:?}: missing `{key}`")));
    let int = |key: &str| -> Result<usize, ArchError> {
        need(key)?.parse().map_err(|_| ArchError(format!("{block:?}: `{key}` is not an integer")))
    };
    let float = |key: &str, default: f64| -> Result<f64, ArchError> {
        get(key)
            .map_or(Ok(default), |v| v.parse().map_err(|_| ArchError(format!("{block:?}: `{key}` is not a number"))))
    };
    let kernel_or_one = |key: &str| get(key).map_or(Ok(KernelSpec::Single(1)), KernelSpec::parse);
    let is_ir = block_type == BlockType::InvertedResidual;
    Ok(BlockArgs {
        block_type,
        repeats: int("r")?,
        dw_kernel: KernelSpec::parse(need("k")?)?,
        exp_kernel: kernel_or_one("a")?,
        pw_kernel: kernel_or_one("p")?,
        stride: int("s")?,
        exp_ratio: if is_ir { float("e", f64::NAN)? } else { 1.0 },
        out_chs: int("c")?,
        se_ratio: float("se", 0.0)?,
        act,
        noskip,
    })
    .and_then(|a| if a.exp_ratio.is_nan() { Err(ArchError(format!("{block:?}: missing `e`"))) } else { Ok(a) })
}

/// How a depth multiplier's scaled repeat count is truncated (timm's `depth_trunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthTrunc {
    /// `ceil` (EfficientNet default).
    Ceil,
    /// `round` (MixNet).
    Round,
}

/// Python's `round()`: half to even.
pub(crate) fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// timm's `make_divisible(v, divisor=8)`: nearest multiple of 8, at least 8, never more than 10 % down.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = d.max(((v + d / 2.0) as i64 / divisor as i64 * divisor as i64) as f64);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

/// timm's `round_channels(c, multiplier)`.
pub fn round_channels(channels: usize, multiplier: f64) -> usize {
    if multiplier == 0.0 {
        channels
    } else {
        make_divisible(channels as f64 * multiplier, 8)
    }
}

/// Scales a stage's repeats as timm's `_scale_stage_depth` and expands them into one
/// `BlockArgs` per block.
fn scale_stage_depth(stage: &[BlockArgs], multiplier: f64, trunc: DepthTrunc) -> Vec<BlockArgs> {
    let mut num_repeat: usize = stage.iter().map(|b| b.repeats).sum();
    let mut scaled = match trunc {
        DepthTrunc::Round => (py_round(num_repeat as f64 * multiplier) as usize).max(1),
        DepthTrunc::Ceil => (num_repeat as f64 * multiplier).ceil() as usize,
    };
    // Shared out in reverse so that the first block def is the least likely to grow.
    let mut reps = Vec::with_capacity(stage.len());
    for b in stage.iter().rev() {
        let rs = (py_round(b.repeats as f64 / num_repeat as f64 * scaled as f64) as usize).max(1);
        reps.push(rs);
        num_repeat -= b.repeats;
        scaled = scaled.saturating_sub(rs);
    }
    reps.reverse();
    stage.iter().zip(reps).flat_map(|(b, r)| std::iter::repeat_n(b.clone(), r)).collect()
}

/// Decodes an architecture (stages of block strings) into one `BlockArgs` per block, per stage.
pub fn decode_arch_def<S: AsRef<str>>(
    arch: &[Vec<S>],
    depth_multiplier: f64,
    trunc: DepthTrunc,
) -> Result<Vec<Vec<BlockArgs>>, ArchError> {
    arch.iter()
        .map(|stage| {
            let decoded = stage.iter().map(|s| decode_block_str(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
            Ok(scale_stage_depth(&decoded, depth_multiplier, trunc))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_mixnet_block() {
        let b = decode_block_str("ir_r3_k3.5_a1.1_p1.1_s1_e6_c40_se0.5_nsw").expect("valid");
        assert_eq!(b.block_type, BlockType::InvertedResidual);
        assert_eq!(b.repeats, 3);
        assert_eq!(b.dw_kernel, KernelSpec::Mixed(vec![3, 5]));
        assert_eq!(b.exp_kernel, KernelSpec::Mixed(vec![1, 1]));
        assert_eq!(b.pw_kernel, KernelSpec::Mixed(vec![1, 1]));
        assert_eq!((b.stride, b.out_chs), (1, 40));
        assert_eq!((b.exp_ratio, b.se_ratio), (6.0, 0.5));
        assert_eq!(b.act, Some(Activation::Silu));
        let ds = decode_block_str("ds_r1_k3_s1_e1_c16").expect("valid");
        assert_eq!(ds.dw_kernel, KernelSpec::Single(3));
        assert_eq!(ds.exp_ratio, 1.0);
        assert!(!ds.noskip);
    }

    #[test]
    fn rejects_malformed_strings() {
        assert!(decode_block_str("zz_r1_k3_s1_c16").is_err());
        assert!(decode_block_str("ir_r1_k3_s1_c16").is_err(), "ir needs e");
        assert!(decode_block_str("ir_r1_kx_s1_e6_c16").is_err());
        assert!(decode_block_str("ds_r1_s1_c16").is_err());
    }

    #[test]
    fn channel_rounding_matches_timm() {
        // MixNet-L (x1.3) and MixNet-XL (x1.6) widths from timm.
        let l: Vec<_> = [24, 32, 40, 80, 120, 200].iter().map(|&c| round_channels(c, 1.3)).collect();
        assert_eq!(l, vec![32, 40, 56, 104, 160, 264]);
        let xl: Vec<_> = [24, 32, 40, 80, 120, 200].iter().map(|&c| round_channels(c, 1.6)).collect();
        assert_eq!(xl, vec![40, 48, 64, 128, 192, 320]);
        assert_eq!(make_divisible(3.0, 8), 8);
    }

    #[test]
    fn depth_scaling_matches_timm_mixnet_xl() {
        // mixnet_xl: depth 1.2 with 'round' gives 1/2/5/5/5/5 blocks per stage.
        let arch: Vec<Vec<&str>> = vec![
            vec!["ds_r1_k3_s1_e1_c24"],
            vec!["ir_r1_k3.5.7_a1.1_p1.1_s2_e6_c32", "ir_r1_k3_a1.1_p1.1_s1_e3_c32"],
            vec!["ir_r1_k3.5.7.9_s2_e6_c40_se0.5_nsw", "ir_r3_k3.5_a1.1_p1.1_s1_e6_c40_se0.5_nsw"],
            vec!["ir_r1_k3.5.7_s2_e6_c80_se0.25_nsw", "ir_r3_k3.5.7.9_a1.1_p1.1_s1_e6_c80_se0.25_nsw"],
            vec!["ir_r1_k3_s1_e6_c120_se0.5_nsw", "ir_r3_k3.5.7.9_a1.1_p1.1_s1_e3_c120_se0.5_nsw"],
            vec!["ir_r1_k3.5.7.9_s2_e6_c200_se0.5_nsw", "ir_r3_k3.5.7.9_p1.1_s1_e6_c200_se0.5_nsw"],
        ];
        let stages = decode_arch_def(&arch, 1.2, DepthTrunc::Round).expect("valid");
        let counts: Vec<_> = stages.iter().map(|s| s.len()).collect();
        assert_eq!(counts, vec![1, 2, 5, 5, 5, 5]);
        // The first block def keeps one repeat; the extra block goes to the second.
        assert_eq!(stages[2][0].dw_kernel, KernelSpec::Mixed(vec![3, 5, 7, 9]));
        assert_eq!(stages[2][1].dw_kernel, KernelSpec::Mixed(vec![3, 5]));
    }
}
