//! Every thread that runs a forward pass's kernels flushes subnormal floats to zero: after a
//! forward pass, every worker of rayon's global pool, of candle's rayon pool and of candle's
//! element-wise pool flushes, and the calling thread, which flushes during the pass, is back to
//! its own setting. (Speed with subnormal-driving weights: `benches/denormals.rs`.)

use candle_core::{Device, Tensor};
use mixdet_backbones::synthetic_weights::synthetic_tensor;
use mixdet_backbones::{ModelOptions, ModelSpec};
use mixdet_kernels::denormals;

#[test]
fn a_forward_pass_makes_every_kernel_thread_flush() {
    if !denormals::SUPPORTED || !denormals::enabled() {
        eprintln!("subnormal flushing not available here (architecture or MIXDET_DENORMALS=keep)");
        return;
    }
    let spec = ModelSpec::by_name("mixnet_s", None).expect("model");
    let opts = ModelOptions::default();
    let sd = spec
        .state_dict_shapes(&opts)
        .expect("shapes")
        .into_iter()
        .map(|(k, s)| {
            let t = synthetic_tensor(&k, &s, &Device::Cpu).expect("tensor");
            (k, t)
        })
        .collect();
    let mut net = spec.load_state_dict(&opts, sd, "synthetic", &Device::Cpu).expect("load");
    let caller_before = denormals::flushing();
    let x = Tensor::randn(0f32, 1.0, (1, 3, 48, 48), &Device::Cpu).expect("input");
    net.forward(&x).expect("forward");
    net.fuse_for_inference().expect("fuse");
    net.forward(&x).expect("fused forward");
    net.forward_t(&x, true).expect("training forward");
    let (global, candle, elementwise) = denormals::pools_flushing();
    assert!(!global.is_empty() && global.iter().all(|&f| f), "rayon's global pool: {global:?}");
    assert!(!candle.is_empty() && candle.iter().all(|&f| f), "candle's rayon pool: {candle:?}");
    assert!(elementwise.iter().all(|&f| f), "candle's element-wise pool: {elementwise:?}");
    assert_eq!(denormals::flushing(), caller_before, "the calling thread keeps its own setting");
    // Inside a forward pass's guard the calling thread flushes too.
    let guard = denormals::FlushDenormals::new();
    assert!(denormals::flushing());
    drop(guard);
    assert_eq!(denormals::flushing(), caller_before);
}
