//! Bad shapes and configurations come back as errors from every entry point, never as panics.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::rand_tensor;
use mixdet_kernels::{FusedAct, MixedConv2d, MixedConv2dConfig, PaddingMode, SplitRule};

fn layer(kernels: Vec<usize>, padding: PaddingMode) -> Result<MixedConv2d> {
    let config = MixedConv2dConfig { padding, ..MixedConv2dConfig::depthwise(6, kernels, 2) };
    MixedConv2d::randn(config, 0.5, &Device::Cpu)
}

/// Asserts that `r` is an error whose message contains `needle`.
fn assert_err<T: std::fmt::Debug>(r: Result<T>, needle: &str) {
    match r {
        Ok(v) => panic!("expected an error containing {needle:?}, got {v:?}"),
        Err(e) => assert!(e.to_string().contains(needle), "{needle:?} not in {e}"),
    }
}

#[test]
fn wrong_inputs_are_errors() -> Result<()> {
    let dev = Device::Cpu;
    let l = layer(vec![3, 5], PaddingMode::Symmetric)?;
    assert_err(l.forward(&Tensor::zeros((1, 5, 8, 8), DType::F32, &dev)?), "expected (N, 6, 8, 8)");
    assert_err(l.forward(&Tensor::zeros((6, 8, 8), DType::F32, &dev)?), "expected (N, C, H, W)");
    assert_err(l.forward(&Tensor::zeros((1, 6, 0, 8), DType::F32, &dev)?), "empty");
    let x = Tensor::zeros((1, 6, 8, 8), DType::F32, &dev)?;
    assert_err(l.forward_fused(&x, Some(&Tensor::zeros(5, DType::F32, &dev)?), FusedAct::Relu), "fused bias shape");
    // A kernel larger than the padded input.
    let tight = layer(vec![3, 11], PaddingMode::Fixed(0))?;
    assert_err(tight.forward(&Tensor::zeros((1, 6, 6, 20), DType::F32, &dev)?), "does not fit");
    // Integer inputs are not convolved by the fused op; the reference path reports them.
    assert!(l.forward(&Tensor::zeros((1, 6, 8, 8), DType::U32, &dev)?).is_err());
    Ok(())
}

#[test]
fn bad_configurations_and_weights_are_errors() -> Result<()> {
    let dev = Device::Cpu;
    let base = MixedConv2dConfig::depthwise(8, vec![3, 5], 1);
    for bad in [
        MixedConv2dConfig { kernel_sizes: vec![], ..base.clone() },
        MixedConv2dConfig { stride: 0, ..base.clone() },
        MixedConv2dConfig { dilation: 0, ..base.clone() },
        MixedConv2dConfig { kernel_sizes: vec![3, 0], ..base.clone() },
        MixedConv2dConfig { out_channels: 9, ..base.clone() },
        MixedConv2dConfig { kernel_sizes: vec![3, 4], ..base.clone() },
        MixedConv2dConfig {
            in_channels: 3,
            out_channels: 3,
            split: SplitRule::Exponential,
            kernel_sizes: vec![3, 5, 7],
            ..base.clone()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        assert!(MixedConv2d::randn(bad, 1.0, &dev).is_err());
    }
    let wrong_shape = vec![rand_tensor(&[4, 1, 3, 3], 1.0, 1, &dev)?, rand_tensor(&[4, 1, 3, 3], 1.0, 2, &dev)?];
    assert_err(MixedConv2d::new(base.clone(), wrong_shape, None).map(|_| ()), "weight shape");
    let ok = base.weight_shapes().iter().map(|s| rand_tensor(s, 1.0, 3, &dev)).collect::<Result<Vec<_>>>()?;
    assert_err(MixedConv2d::new(base, ok, Some(Tensor::zeros(3, DType::F32, &dev)?)).map(|_| ()), "bias shape");
    Ok(())
}

#[test]
fn backward_of_a_bad_shape_never_runs() -> Result<()> {
    // The shape checks run in the forward, before any gradient op is recorded.
    let dev = Device::Cpu;
    let l = layer(vec![3, 5], PaddingMode::TfSame)?;
    let x = Var::from_tensor(&Tensor::zeros((2, 7, 9, 9), DType::F32, &dev)?)?;
    assert!(l.forward(x.as_tensor()).is_err());
    Ok(())
}
