//! A direct CPU kernel for the mixed depthwise convolution: every channel group, each with its
//! own kernel size and padding, in one pass over the input (candle's grouped conv2d instead runs
//! one convolution per channel).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape};
use rayon::prelude::*;

/// Geometry of one kernel-size group inside [`MixedDepthwiseOp`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupGeometry {
    /// First channel of the group.
    pub channel_start: usize,
    /// Number of channels in the group.
    pub channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Zeros before the first row.
    pub pad_top: usize,
    /// Zeros before the first column.
    pub pad_left: usize,
    /// Offset of the group's first weight in the packed weight vector.
    pub weight_offset: usize,
}

/// Forward of a mixed depthwise convolution as one candle op: input `(N, C, H, W)` and the packed
/// weights (each group's `(c_g, 1, k_g, k_g)` weights flattened and concatenated in group order).
#[derive(Debug, Clone)]
pub(crate) struct MixedDepthwiseOp {
    pub groups: Vec<GroupGeometry>,
    pub stride: usize,
    pub dilation: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl MixedDepthwiseOp {
    fn channels(&self) -> usize {
        self.groups.iter().map(|g| g.channels).sum()
    }

    fn weight_len(&self) -> usize {
        self.groups.iter().map(|g| g.channels * g.kernel * g.kernel).sum()
    }
}

impl CustomOp2 for MixedDepthwiseOp {
    fn name(&self) -> &'static str {
        "mixed-depthwise-conv2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        if c != self.channels() {
            candle_core::bail!("mixed depthwise conv: input has {c} channels, the op expects {}", self.channels());
        }
        if wl.shape().elem_count() != self.weight_len() {
            candle_core::bail!(
                "mixed depthwise conv: {} packed weights, the op expects {}",
                wl.shape().elem_count(),
                self.weight_len()
            );
        }
        let (CpuStorage::F32(x), CpuStorage::F32(wt)) = (xs, ws) else {
            candle_core::bail!("mixed depthwise conv: the CPU kernel supports f32 only");
        };
        let x = match xl.contiguous_offsets() {
            Some((a, b)) => &x[a..b],
            None => candle_core::bail!("mixed depthwise conv: input must be contiguous"),
        };
        let wt = match wl.contiguous_offsets() {
            Some((a, b)) => &wt[a..b],
            None => candle_core::bail!("mixed depthwise conv: weights must be contiguous"),
        };
        let (oh, ow) = (self.out_h, self.out_w);
        let plane_out = oh * ow;
        let mut channel_group = Vec::with_capacity(c);
        for (gi, g) in self.groups.iter().enumerate() {
            channel_group.extend(std::iter::repeat_n(gi, g.channels));
        }
        let mut out = vec![0f32; n * c * plane_out];
        out.par_chunks_mut(plane_out).enumerate().for_each(|(plane, dst)| {
            let ch = plane % c;
            let g = &self.groups[channel_group[ch]];
            let kk = g.kernel * g.kernel;
            let wo = g.weight_offset + (ch - g.channel_start) * kk;
            let geom = PlaneGeometry {
                h,
                w,
                oh,
                ow,
                k: g.kernel,
                stride: self.stride,
                dilation: self.dilation,
                pad_top: g.pad_top,
                pad_left: g.pad_left,
            };
            depthwise_plane(&x[plane * h * w..(plane + 1) * h * w], &wt[wo..wo + kk], dst, &geom);
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

/// Sizes of one channel plane's convolution.
struct PlaneGeometry {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad_top: usize,
    pad_left: usize,
}

/// Range of output columns `ox` whose input column `ox * stride + offset` lies inside `[0, w)`.
fn valid_columns(offset: isize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 { 0 } else { ((-offset) + s - 1) / s };
    let last_in = w as isize - 1 - offset;
    let hi = if last_in < 0 { 0 } else { (last_in / s + 1).min(ow as isize) };
    (lo as usize, (hi.max(lo)) as usize)
}

/// Convolves one channel plane; `dst` must hold `oh * ow` zeros.
fn depthwise_plane(src: &[f32], wk: &[f32], dst: &mut [f32], g: &PlaneGeometry) {
    for oy in 0..g.oh {
        let row = &mut dst[oy * g.ow..(oy + 1) * g.ow];
        for ky in 0..g.k {
            let iy = (oy * g.stride + ky * g.dilation) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.h as isize {
                continue;
            }
            let src_row = &src[iy as usize * g.w..(iy as usize + 1) * g.w];
            for kx in 0..g.k {
                let wv = wk[ky * g.k + kx];
                let offset = (kx * g.dilation) as isize - g.pad_left as isize;
                let (lo, hi) = valid_columns(offset, g.stride, g.w, g.ow);
                if lo >= hi {
                    continue;
                }
                if g.stride == 1 {
                    let start = (lo as isize + offset) as usize;
                    for (o, i) in row[lo..hi].iter_mut().zip(&src_row[start..start + (hi - lo)]) {
                        *o += wv * *i;
                    }
                } else {
                    for (ox, o) in row.iter_mut().enumerate().take(hi).skip(lo) {
                        *o += wv * src_row[(ox as isize * g.stride as isize + offset) as usize];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_columns_clips_both_borders() {
        // w = 5, stride 1, offset -2: ox in [2, 5)
        assert_eq!(valid_columns(-2, 1, 5, 5), (2, 5));
        // offset +2: input ox+2 < 5 -> ox < 3
        assert_eq!(valid_columns(2, 1, 5, 5), (0, 3));
        // stride 2, offset -1: 2*ox-1 >= 0 -> ox >= 1; 2*ox-1 <= 4 -> ox <= 2
        assert_eq!(valid_columns(-1, 2, 5, 3), (1, 3));
        // kernel entirely outside
        assert_eq!(valid_columns(7, 1, 5, 5), (0, 0));
    }
}
