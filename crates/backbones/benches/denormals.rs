//! Speed must not depend on the values in the weights: mixnet_s (224x224, batch 1, inference
//! form) with its synthetic weights, whose activations decay into the subnormal range through
//! the network, against the same weights with BatchNorm statistics calibrated on a batch (every
//! layer's output normalised, no subnormals). mixdet flushes subnormals to zero
//! (`mixdet_kernels::denormals`), so the two should take the same time;
//! `MIXDET_DENORMALS=keep` shows what it costs without flushing.
//!
//! `RAYON_NUM_THREADS=2 CANDLE_NUM_THREADS=2 cargo bench -p mixdet-backbones --bench denormals`

use candle_core::{DType, Device, Result, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use mixdet_backbones::synthetic_weights::synthetic_tensor;
use mixdet_backbones::{Backbone, ModelOptions, ModelSpec};
use std::hint::black_box;
use std::time::Duration;

/// mixnet_s with its synthetic weights; `calibrate` first runs training-mode passes over a
/// random batch so that the running statistics follow the activations.
fn model(calibrate: bool) -> Result<Box<dyn Backbone>> {
    let spec = ModelSpec::by_name("mixnet_s", None).map_err(candle_core::Error::wrap)?;
    let opts = ModelOptions::default();
    let sd = spec
        .state_dict_shapes(&opts)?
        .into_iter()
        .map(|(k, s)| Ok((k.clone(), synthetic_tensor(&k, &s, &Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let mut net = spec.load_state_dict(&opts, sd, "synthetic", &Device::Cpu).map_err(candle_core::Error::wrap)?;
    if calibrate {
        let batch = Tensor::randn(0f32, 1.0, (8, 3, 224, 224), &Device::Cpu)?;
        // Momentum 0.1: 40 passes leave 1.5 % of the synthetic statistics.
        for _ in 0..40 {
            net.forward_t(&batch, true)?;
        }
    }
    net.fuse_for_inference()?;
    Ok(net)
}

/// The smallest absolute non-zero value of the logits' inputs is not observable from outside,
/// so report the share of exactly-zero logits (flushing turns subnormal logits into zeros).
fn describe(name: &str, net: &dyn Backbone, x: &Tensor) -> Result<()> {
    let logits = net.forward(x)?.logits.ok_or_else(|| candle_core::Error::Msg("no logits".into()))?;
    let max = logits.abs()?.max_all()?.to_scalar::<f32>()?;
    eprintln!("{name}: largest |logit| {max:.3e}");
    Ok(())
}

fn bench(c: &mut Criterion) {
    let x = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).and_then(|x| x.to_dtype(DType::F32));
    let (Ok(x), Ok(synthetic), Ok(calibrated)) = (x, model(false), model(true)) else {
        eprintln!("could not build the models");
        return;
    };
    for (name, net) in [("synthetic weights", &synthetic), ("calibrated statistics", &calibrated)] {
        if let Err(e) = describe(name, net.as_ref(), &x) {
            eprintln!("{name}: {e}");
        }
    }
    let (global, candle, elementwise) = mixdet_kernels::denormals::pools_flushing();
    eprintln!(
        "flushing: calling thread {}, rayon {global:?}, candle {candle:?}, element-wise {elementwise:?}",
        mixdet_kernels::denormals::flushing()
    );
    let mut group = c.benchmark_group("mixnet_s_224");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    group.bench_function("synthetic_weights", |b| b.iter(|| black_box(synthetic.forward(&x))));
    group.bench_function("calibrated_statistics", |b| b.iter(|| black_box(calibrated.forward(&x))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
