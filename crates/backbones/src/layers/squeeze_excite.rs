//! Squeeze-excitation (timm's `SqueezeExcite`, torchvision's `SqueezeExcitation`).

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::Activation;
use crate::onnx::OnnxValue;

/// Squeeze-excitation: global average, 1x1 reduce (bias), activation, 1x1 expand (bias), gate.
/// timm names the convs `conv_reduce`/`conv_expand`, torchvision `fc1`/`fc2`.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    reduce_w: Tensor,
    reduce_b: Tensor,
    expand_w: Tensor,
    expand_b: Tensor,
    act: Activation,
    gate: Activation,
    /// Constant copies of the weights for the inference path (see [`SqueezeExcite::fuse`]).
    fused: Option<SeValues>,
}

/// The squeeze-excitation weights as plain values: the gate (a mean per channel and two small
/// matrix-vector products) costs less computed on slices than as the ten candle ops, each with
/// its own buffer, that compute it otherwise.
#[derive(Debug, Clone)]
struct SeValues {
    /// `(reduced, channels)`.
    reduce_w: Vec<f32>,
    reduce_b: Vec<f32>,
    /// `(channels, reduced)`.
    expand_w: Vec<f32>,
    expand_b: Vec<f32>,
}

/// `sum(a[i] * b[i])` over eight partial sums, which the compiler vectorises (a single running
/// sum fixes the order of the additions and stays scalar).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

impl SeValues {
    /// The gate of every channel of every image of `x` (`n` images of `channels` planes).
    fn gate(&self, x: &[f32], n: usize, plane: usize, act: Activation, gate: Activation) -> Vec<f32> {
        let channels = self.expand_b.len();
        let reduced = self.reduce_b.len();
        let pooled: Vec<f32> = x
            .par_chunks(plane)
            .map(|p| {
                // Eight partial sums so that the loop vectorises, then the mean.
                let mut lanes = [0f32; 8];
                let chunks = p.chunks_exact(8);
                let tail: f32 = chunks.remainder().iter().sum();
                for c in chunks {
                    lanes.iter_mut().zip(c).for_each(|(l, v)| *l += v);
                }
                (lanes.iter().sum::<f32>() + tail) / plane as f32
            })
            .collect();
        let mut out = Vec::with_capacity(n * channels);
        for img in pooled.chunks(channels) {
            let mut s: Vec<f32> =
                self.reduce_w.chunks(channels).zip(&self.reduce_b).map(|(w, b)| b + dot(w, img)).collect();
            act.apply_slice(&mut s);
            let mut g: Vec<f32> =
                self.expand_w.chunks(reduced).zip(&self.expand_b).map(|(w, b)| b + dot(w, &s)).collect();
            gate.apply_slice(&mut g);
            out.extend(g);
        }
        out
    }
}

impl SqueezeExcite {
    /// Loads the two 1x1 convs under `vb.pp(names.0)` and `vb.pp(names.1)`.
    pub fn load(
        channels: usize,
        reduced: usize,
        act: Activation,
        gate: Activation,
        names: (&str, &str),
        vb: VarBuilder,
    ) -> Result<Self> {
        let r = vb.pp(names.0);
        let e = vb.pp(names.1);
        Ok(Self {
            reduce_w: r.get((reduced, channels, 1, 1), "weight")?.flatten_from(1)?,
            reduce_b: r.get(reduced, "bias")?,
            expand_w: e.get((channels, reduced, 1, 1), "weight")?.flatten_from(1)?,
            expand_b: e.get(channels, "bias")?,
            act,
            gate,
            fused: None,
        })
    }

    /// Keeps constant copies of the weights for [`SqueezeExcite::forward_inplace`] (call again
    /// after changing the weights).
    pub fn fuse(&mut self) -> Result<()> {
        let values = |t: &Tensor| t.detach().flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>();
        self.fused = Some(SeValues {
            reduce_w: values(&self.reduce_w)?,
            reduce_b: values(&self.reduce_b)?,
            expand_w: values(&self.expand_w)?,
            expand_b: values(&self.expand_b)?,
        });
        Ok(())
    }

    fn gate(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?; // (N, C)
        crate::macs::add(|| {
            pooled.dims().first().copied().unwrap_or(0) * (self.reduce_w.elem_count() + self.expand_w.elem_count())
        });
        let s = pooled.matmul(&self.reduce_w.t()?)?.broadcast_add(&self.reduce_b)?;
        let s = self.act.apply(&s)?;
        let s = s.matmul(&self.expand_w.t()?)?.broadcast_add(&self.expand_b)?;
        self.gate.apply(&s)
    }

    /// Writes the gate into an ONNX graph: `GlobalAveragePool`, two 1x1 `Conv`s with their
    /// activations, `Mul`.
    pub fn to_onnx(&self, g: &mut mixdet_onnx::Graph, x: &OnnxValue) -> Result<OnnxValue> {
        use crate::onnx::{conv, values, wrap};
        let (r, c) = self.reduce_w.dims2()?;
        let pooled = g.op("GlobalAveragePool", &[&x.name], &[]).map_err(wrap)?;
        let pooled = OnnxValue { name: pooled, channels: c, hw: [1, 1] };
        let sym = mixdet_kernels::PaddingMode::Symmetric;
        let rb = values(&self.reduce_b)?;
        let s = conv(g, &pooled, &values(&self.reduce_w)?, [r, c, 1, 1], Some(&rb), 1, 1, 1, sym)?;
        let s = self.act.to_onnx(g, s)?;
        let eb = values(&self.expand_b)?;
        let e = conv(g, &s, &values(&self.expand_w)?, [c, r, 1, 1], Some(&eb), 1, 1, 1, sym)?;
        let gate = self.gate.to_onnx(g, e)?;
        let y = g.op("Mul", &[&x.name, &gate.name], &[]).map_err(wrap)?;
        Ok(x.renamed(y))
    }

    /// Rescales the channels of `x` `(N, C, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&self.gate(x)?.unsqueeze(2)?.unsqueeze(3)?)
    }

    /// Inference form of [`SqueezeExcite::forward`]: scales `x` in place when it can (so `x` must
    /// not be needed afterwards, nor be part of an autograd graph).
    pub fn forward_inplace(&self, x: Tensor) -> Result<Tensor> {
        if let (Some(values), true) = (&self.fused, crate::fused::supported(&x) && !x.track_op()) {
            let (n, _, h, w) = x.dims4()?;
            let gates = {
                let (storage, layout) = x.storage_and_layout();
                let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)), Some((a, b))) =
                    (&*storage, layout.contiguous_offsets())
                else {
                    candle_core::bail!("squeeze-excitation: expected a contiguous f32 CPU tensor");
                };
                values.gate(&data[a..b], n, h * w, self.act, self.gate)
            };
            crate::fused::scale_channels_values_inplace(&x, gates)?;
            crate::macs::add(|| n * (self.reduce_w.elem_count() + self.expand_w.elem_count()));
            return Ok(x);
        }
        let g = self.gate(&x)?;
        if crate::fused::supported(&x) {
            crate::fused::scale_channels_inplace(&x, &g)?;
            Ok(x)
        } else {
            x.broadcast_mul(&g.unsqueeze(2)?.unsqueeze(3)?)
        }
    }
}
