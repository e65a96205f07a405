//! CPU kernels of the mixed depthwise convolution (f32): forward with fused bias and activation,
//! input gradient and weight gradient, each one pass over all channel groups, parallel with rayon
//! and vectorised with AVX2/FMA where the CPU has it.

mod backward;
mod engine;
mod forward;
mod layout;
mod scratch;
pub(crate) mod simd;

use rayon::prelude::*;

use crate::fused_act::FusedAct;
use crate::geometry::MixedGeometry;
use backward::{grad_input_plane, grad_weight_channel, ChannelPlanes};
use forward::{forward_plane, ForwardPlane};
use scratch::{with_scratch, Scratch};
use simd::{Isa, Portable};

/// Multiply-adds below which splitting work into another rayon task costs more than it saves.
const MIN_TASK_WORK: usize = 32 * 1024;

/// Planes per rayon task for planes of `plane_work` multiply-adds.
fn min_planes(plane_work: usize) -> usize {
    MIN_TASK_WORK.div_ceil(plane_work.max(1)).max(1)
}

/// The forward pass over a contiguous `(N, C, H, W)` input and packed weights; `bias` holds one
/// value per channel. Returns the `(N, C, OH, OW)` output.
pub(crate) fn forward(
    isa: Isa,
    geom: &MixedGeometry,
    batch: usize,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    act: FusedAct,
) -> Vec<f32> {
    let (c, plane_in, plane_out) = (geom.channels, geom.in_h * geom.in_w, geom.out_h * geom.out_w);
    let len = batch * c * plane_out;
    // Not zero-filled first: every plane is written whole.
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let work = plane_out * geom.max_kernel().pow(2);
    let planes = &mut out.spare_capacity_mut()[..len];
    planes.par_chunks_mut(plane_out.max(1)).with_min_len(min_planes(work)).enumerate().for_each(|(plane, dst)| {
        let channel = plane % c;
        let p = ForwardPlane {
            geom,
            channel,
            input: &input[plane * plane_in..(plane + 1) * plane_in],
            weights,
            bias: bias.map_or(0.0, |b| b[channel]),
            act,
        };
        with_scratch(|scratch| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` is only chosen after detecting AVX2 and FMA.
            Isa::Avx2Fma => unsafe { avx2::forward_plane(&p, dst, scratch) },
            // SAFETY: the portable instruction set runs everywhere.
            _ => unsafe { forward_plane::<Portable>(&p, dst, scratch) },
        });
    });
    // SAFETY: `forward_plane` wrote every plane (it returns only after writing all of `dst`);
    // a panic in a task propagates out of `for_each` before this line.
    unsafe { out.set_len(len) };
    out
}

/// The input gradient from a contiguous `(N, C, OH, OW)` output gradient; returns `(N, C, H, W)`.
pub(crate) fn grad_input(isa: Isa, geom: &MixedGeometry, batch: usize, grad_out: &[f32], weights: &[f32]) -> Vec<f32> {
    let (c, plane_in, plane_out) = (geom.channels, geom.in_h * geom.in_w, geom.out_h * geom.out_w);
    let mut dx = vec![0f32; batch * c * plane_in];
    let work = plane_in * geom.max_kernel().pow(2) / (geom.stride * geom.stride);
    dx.par_chunks_mut(plane_in).with_min_len(min_planes(work)).enumerate().for_each(|(plane, dst)| {
        let channel = plane % c;
        let grad = &grad_out[plane * plane_out..(plane + 1) * plane_out];
        with_scratch(|scratch| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` is only chosen after detecting AVX2 and FMA.
            Isa::Avx2Fma => unsafe { avx2::grad_input_plane(geom, channel, grad, weights, dst, scratch) },
            // SAFETY: the portable instruction set runs everywhere.
            _ => unsafe { grad_input_plane::<Portable>(geom, channel, grad, weights, dst, scratch) },
        });
    });
    dx
}

/// The packed weight gradient from a contiguous input and output gradient, reduced over the batch.
pub(crate) fn grad_weight(isa: Isa, geom: &MixedGeometry, batch: usize, input: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let mut dw = vec![0f32; geom.weight_len];
    let work = batch * geom.out_h * geom.out_w;
    rayon::scope(|scope| {
        let mut rest = dw.as_mut_slice();
        for g in &geom.groups {
            let (group_dw, tail) = rest.split_at_mut(g.channels * g.taps());
            rest = tail;
            scope.spawn(move |_| {
                let min_len = min_planes(work * g.taps());
                group_dw.par_chunks_mut(g.taps()).with_min_len(min_len).enumerate().for_each(|(i, dst)| {
                    let p = ChannelPlanes { geom, channel: g.channel_start + i, batch, input, grad_out };
                    with_scratch(|scratch: &mut Scratch| match isa {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `Isa::Avx2Fma` is only chosen after detecting AVX2 and FMA.
                        Isa::Avx2Fma => unsafe { avx2::grad_weight_channel(&p, dst, scratch) },
                        // SAFETY: the portable instruction set runs everywhere.
                        _ => unsafe { grad_weight_channel::<Portable>(&p, dst, scratch) },
                    });
                });
            });
        }
    });
    dw
}

/// Entry points compiled with AVX2 and FMA enabled. The generic bodies are `inline(always)`, so
/// they (and the intrinsics inside) are compiled here with these features, not the baseline's.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::backward::ChannelPlanes;
    use super::forward::ForwardPlane;
    use super::scratch::Scratch;
    use super::simd::Avx2Fma;
    use crate::geometry::MixedGeometry;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_plane(
        p: &ForwardPlane,
        dst: &mut [std::mem::MaybeUninit<f32>],
        scratch: &mut Scratch,
    ) {
        // SAFETY: this function only runs where AVX2 and FMA were detected.
        unsafe { super::forward_plane::<Avx2Fma>(p, dst, scratch) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_input_plane(
        geom: &MixedGeometry,
        channel: usize,
        grad_out: &[f32],
        weights: &[f32],
        dst: &mut [f32],
        scratch: &mut Scratch,
    ) {
        // SAFETY: this function only runs where AVX2 and FMA were detected.
        unsafe { super::grad_input_plane::<Avx2Fma>(geom, channel, grad_out, weights, dst, scratch) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_weight_channel(p: &ChannelPlanes, dst: &mut [f32], scratch: &mut Scratch) {
        // SAFETY: this function only runs where AVX2 and FMA were detected.
        unsafe { super::grad_weight_channel::<Avx2Fma>(p, dst, scratch) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MixedConv2dConfig, PaddingMode, SplitRule};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Every `(channel, weight index, oy, ox, iy, ix)` whose input is in bounds: the textbook definition.
    fn taps(geom: &MixedGeometry) -> Vec<(usize, usize, usize, usize, usize, usize)> {
        let (s, d) = (geom.stride as isize, geom.dilation as isize);
        let mut out = Vec::new();
        for c in 0..geom.channels {
            let g = geom.group_of(c);
            let wbase = g.weight_offset + (c - g.channel_start) * g.taps();
            for oy in 0..geom.out_h {
                for ox in 0..geom.out_w {
                    for ky in 0..g.kernel {
                        for kx in 0..g.kernel {
                            let iy = oy as isize * s + ky as isize * d - g.pad_top as isize;
                            let ix = ox as isize * s + kx as isize * d - g.pad_left as isize;
                            if (0..geom.in_h as isize).contains(&iy) && (0..geom.in_w as isize).contains(&ix) {
                                out.push((c, wbase + ky * g.kernel + kx, oy, ox, iy as usize, ix as usize));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn assert_close(what: &str, a: &[f32], b: &[f64]) {
        let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((*x as f64 - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn every_instruction_set_matches_the_definition() {
        let geometries = [
            (vec![3, 5, 7], 2, 1, PaddingMode::TfSame, SplitRule::Equal, 13, 27),
            (vec![3, 5], 1, 2, PaddingMode::Symmetric, SplitRule::Exponential, 19, 9),
            (vec![9, 11], 2, 2, PaddingMode::Symmetric, SplitRule::Equal, 6, 35),
            (vec![5], 3, 1, PaddingMode::TfSame, SplitRule::Equal, 11, 10),
        ];
        let mut isas = vec![Isa::Portable];
        if Isa::detect() == Isa::Avx2Fma {
            isas.push(Isa::Avx2Fma);
        }
        for (kernels, stride, dilation, padding, split, h, w) in geometries {
            let config = MixedConv2dConfig {
                dilation,
                padding,
                split,
                ..MixedConv2dConfig::depthwise(7, kernels.clone(), stride)
            };
            let geom = MixedGeometry::resolve(&config, h, w).expect("valid geometry");
            let batch = 2;
            let (c, pin, pout) = (geom.channels, h * w, geom.out_h * geom.out_w);
            let x = values(batch * c * pin, 1);
            let wt = values(geom.weight_len, 2);
            let bias = values(c, 3);
            let gy = values(batch * c * pout, 4);
            let (mut y, mut dx, mut dw) =
                (vec![0f64; batch * c * pout], vec![0f64; batch * c * pin], vec![0f64; geom.weight_len]);
            for n in 0..batch {
                for (ch, wi, oy, ox, iy, ix) in taps(&geom) {
                    let (yi, xi) = ((n * c + ch) * pout + oy * geom.out_w + ox, (n * c + ch) * pin + iy * w + ix);
                    y[yi] += wt[wi] as f64 * x[xi] as f64;
                    dx[xi] += wt[wi] as f64 * gy[yi] as f64;
                    dw[wi] += x[xi] as f64 * gy[yi] as f64;
                }
            }
            for (i, v) in y.iter_mut().enumerate() {
                *v = (*v + bias[(i / pout) % c] as f64).max(0.0);
            }
            for isa in &isas {
                let what = format!("{kernels:?} s{stride} d{dilation} {padding:?} {h}x{w} {isa:?}");
                let fwd = forward(*isa, &geom, batch, &x, &wt, Some(&bias), FusedAct::Relu);
                assert_close(&format!("forward {what}"), &fwd, &y);
                assert_close(&format!("grad input {what}"), &grad_input(*isa, &geom, batch, &gy, &wt), &dx);
                assert_close(&format!("grad weight {what}"), &grad_weight(*isa, &geom, batch, &x, &gy), &dw);
            }
        }
    }
}
