//! The mixed depthwise layer alone on MixNet-like shapes: candle's grouped `conv2d` (the
//! reference path) against the fused op, forward and forward + backward, on the same thread pool.
//! Also the training stem (a dense 3x3 stride-2 conv on a batch of 16 images at 320x320, the
//! image tracking no gradient): candle's `conv2d` against `dense_conv2d`, forward + backward.
//!
//! `RAYON_NUM_THREADS=2 CANDLE_NUM_THREADS=2 cargo bench -p mixdet-kernels`
//! (`MIXDET_MIXCONV_ISA=portable` times the fused op without AVX2/FMA).

use candle_core::{Device, Result, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mixdet_kernels::{dense_conv2d, MixedConv2d, MixedConv2dConfig, PaddingMode};
use std::hint::black_box;
use std::time::Duration;

struct Shape {
    name: &'static str,
    input: (usize, usize, usize, usize),
    kernels: &'static [usize],
    stride: usize,
    padding: PaddingMode,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "1x240x56x56_k3-5_s1",
        input: (1, 240, 56, 56),
        kernels: &[3, 5],
        stride: 1,
        padding: PaddingMode::Symmetric,
    },
    Shape {
        name: "1x720x14x14_k3-11_s2_tfsame",
        input: (1, 720, 14, 14),
        kernels: &[3, 5, 7, 9, 11],
        stride: 2,
        padding: PaddingMode::TfSame,
    },
    Shape {
        name: "8x240x40x40_k3-7_s1",
        input: (8, 240, 40, 40),
        kernels: &[3, 5, 7],
        stride: 1,
        padding: PaddingMode::Symmetric,
    },
    Shape {
        name: "1x1200x7x7_k3-9_s1",
        input: (1, 1200, 7, 7),
        kernels: &[3, 5, 7, 9],
        stride: 1,
        padding: PaddingMode::Symmetric,
    },
];

fn layer(shape: &Shape, dev: &Device) -> Result<(MixedConv2d, Vec<Var>)> {
    let config = MixedConv2dConfig {
        padding: shape.padding,
        ..MixedConv2dConfig::depthwise(shape.input.1, shape.kernels.to_vec(), shape.stride)
    };
    let vars =
        config.weight_shapes().iter().map(|s| Var::randn(0f32, 0.1, s.as_slice(), dev)).collect::<Result<Vec<_>>>()?;
    let weights = vars.iter().map(|v| v.as_tensor().clone()).collect();
    Ok((MixedConv2d::new(config, weights, None)?, vars))
}

fn forward_and_backward(layer: &MixedConv2d, x: &Var, fused: bool) -> Result<()> {
    let y = if fused { layer.forward(x.as_tensor())? } else { layer.forward_reference(x.as_tensor())? };
    black_box(y.sum_all()?.backward()?);
    Ok(())
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    for shape in SHAPES {
        let (trainable, _vars) = layer(shape, &dev).expect("layer");
        // Constant weights: the inference layer, its weights packed once.
        let inference = MixedConv2d::new(trainable.config().clone(), trainable.weights().to_vec(), None)
            .expect("layer")
            .with_impl(mixdet_kernels::MixConvImpl::Auto);
        let x = Tensor::randn(0f32, 1.0, shape.input, &dev).expect("input");
        let xv = Var::from_tensor(&x).expect("var");
        let slow = shape.input.0 > 1;

        let mut group = c.benchmark_group(format!("forward/{}", shape.name));
        group.sample_size(10).warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if slow { 8 } else { 3 }));
        group.bench_function(BenchmarkId::from_parameter("candle_grouped"), |b| {
            b.iter(|| black_box(inference.forward_reference(&x).expect("forward")))
        });
        group.bench_function(BenchmarkId::from_parameter("fused"), |b| {
            b.iter(|| black_box(inference.forward(&x).expect("forward")))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("forward_backward/{}", shape.name));
        group.sample_size(10).warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if slow { 30 } else { 5 }));
        group.bench_function(BenchmarkId::from_parameter("candle_grouped"), |b| {
            b.iter(|| forward_and_backward(&trainable, &xv, false).expect("backward"))
        });
        group.bench_function(BenchmarkId::from_parameter("fused"), |b| {
            b.iter(|| forward_and_backward(&trainable, &xv, true).expect("backward"))
        });
        group.finish();
    }
}

fn bench_stem(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (16, 3, 320, 320), &dev).expect("input");
    let w = Var::randn(0f32, 0.1, (16, 3, 3, 3), &dev).expect("weight");
    let mut group = c.benchmark_group("stem_forward_backward/16x3x320x320_k3_s2");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(10));
    group.bench_function(BenchmarkId::from_parameter("candle_conv2d"), |b| {
        b.iter(|| {
            let y = x.conv2d(w.as_tensor(), 1, 2, 1, 1).expect("forward");
            black_box(y.sum_all().expect("sum").backward().expect("backward"))
        })
    });
    group.bench_function(BenchmarkId::from_parameter("dense_conv2d"), |b| {
        b.iter(|| {
            let y = dense_conv2d(&x, w.as_tensor(), 2, PaddingMode::Symmetric).expect("forward");
            black_box(y.sum_all().expect("sum").backward().expect("backward"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_stem);
criterion_main!(benches);
