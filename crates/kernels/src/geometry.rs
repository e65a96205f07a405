//! The geometry of one call of the mixed depthwise convolution: the per-group kernel sizes and
//! paddings resolved from the actual input size (TF "SAME" depends on it), with every check that
//! keeps the kernels' index arithmetic in bounds.

use crate::mixed_conv::{MixConvError, MixedConv2dConfig};
use crate::padding::conv_out_len;

/// One kernel-size group of channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupGeometry {
    /// First channel of the group.
    pub channel_start: usize,
    /// Channels in the group.
    pub channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Zeros above the first input row.
    pub pad_top: usize,
    /// Zeros left of the first input column.
    pub pad_left: usize,
    /// Index of the group's first weight in the packed weight vector.
    pub weight_offset: usize,
}

impl GroupGeometry {
    /// Weights per channel.
    pub fn taps(&self) -> usize {
        self.kernel * self.kernel
    }
}

/// All groups of a mixed depthwise convolution for one input size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MixedGeometry {
    pub groups: Vec<GroupGeometry>,
    pub channels: usize,
    pub stride: usize,
    pub dilation: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    /// Length of the packed weight vector.
    pub weight_len: usize,
}

impl MixedGeometry {
    /// Resolves a depthwise configuration for an `h x w` input.
    pub fn resolve(config: &MixedConv2dConfig, h: usize, w: usize) -> Result<Self, MixConvError> {
        config.validate()?;
        if !config.depthwise {
            return Err(MixConvError::Config("the fused kernel handles depthwise MixConv only".into()));
        }
        if h == 0 || w == 0 {
            return Err(MixConvError::Input(format!("empty {h}x{w} input")));
        }
        let (s, d) = (config.stride, config.dilation);
        let mut groups = Vec::with_capacity(config.kernel_sizes.len());
        let (mut channel_start, mut weight_offset) = (0, 0);
        let mut out = None;
        for (&k, channels) in config.kernel_sizes.iter().zip(config.in_splits()) {
            let ph = config.padding.resolve(h, k, s, d);
            let pw = config.padding.resolve(w, k, s, d);
            let (Some(oh), Some(ow)) = (conv_out_len(h, ph, k, s, d), conv_out_len(w, pw, k, s, d)) else {
                return Err(MixConvError::Input(format!(
                    "a {k}x{k} kernel (dilation {d}) does not fit a {h}x{w} input"
                )));
            };
            match out {
                None => out = Some((oh, ow)),
                Some(o) if o != (oh, ow) => {
                    return Err(MixConvError::Input(format!(
                        "groups give different output sizes {o:?} and {:?} for a {h}x{w} input",
                        (oh, ow)
                    )))
                }
                Some(_) => {}
            }
            groups.push(GroupGeometry {
                channel_start,
                channels,
                kernel: k,
                pad_top: ph.before,
                pad_left: pw.before,
                weight_offset,
            });
            channel_start += channels;
            weight_offset += channels * k * k;
        }
        let (out_h, out_w) = out.ok_or_else(|| MixConvError::Config("no kernel sizes".into()))?;
        Ok(Self {
            groups,
            channels: channel_start,
            stride: s,
            dilation: d,
            in_h: h,
            in_w: w,
            out_h,
            out_w,
            weight_len: weight_offset,
        })
    }

    /// The group holding `channel` (groups are few: a linear scan).
    pub fn group_of(&self, channel: usize) -> &GroupGeometry {
        self.groups
            .iter()
            .find(|g| channel < g.channel_start + g.channels)
            .unwrap_or_else(|| &self.groups[self.groups.len() - 1])
    }

    /// The largest kernel size.
    pub fn max_kernel(&self) -> usize {
        self.groups.iter().map(|g| g.kernel).max().unwrap_or(1)
    }

    /// Checks an `(N, C, H, W)` shape against this geometry's input side.
    pub fn check_input(&self, what: &str, dims: &[usize]) -> Result<usize, MixConvError> {
        self.check_plane(what, dims, self.in_h, self.in_w)
    }

    /// Checks an `(N, C, OH, OW)` shape against this geometry's output side.
    pub fn check_output(&self, what: &str, dims: &[usize]) -> Result<usize, MixConvError> {
        self.check_plane(what, dims, self.out_h, self.out_w)
    }

    fn check_plane(&self, what: &str, dims: &[usize], h: usize, w: usize) -> Result<usize, MixConvError> {
        match dims {
            &[n, c, hh, ww] if c == self.channels && hh == h && ww == w => Ok(n),
            _ => Err(MixConvError::Input(format!(
                "{what} has shape {dims:?}, expected (N, {}, {h}, {w})",
                self.channels
            ))),
        }
    }

    /// Checks the packed weight (or weight-gradient) length.
    pub fn check_weights(&self, what: &str, len: usize) -> Result<(), MixConvError> {
        if len == self.weight_len {
            Ok(())
        } else {
            Err(MixConvError::Input(format!("{what} holds {len} values, expected {}", self.weight_len)))
        }
    }
}
