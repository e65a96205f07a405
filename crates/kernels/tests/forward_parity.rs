//! The fused op against the reference path (candle's per-group `conv2d`), forward only.

mod common;

use candle_core::{DType, Device, Result};
use common::{max_abs, max_abs_diff, rand_tensor, sweep, Case};
use mixdet_kernels::{FusedAct, MixedConv2d, PaddingMode, SplitRule};

#[test]
fn fused_op_matches_reference_on_every_configuration() -> Result<()> {
    let dev = Device::Cpu;
    // Odd, even, and planes wide enough for full 4-row x 16-column register tiles plus tails.
    let cases = sweep(&[(13, 11), (12, 10), (21, 38)]);
    let mut worst = 0f32;
    for case in &cases {
        let layer = case.layer(&dev)?;
        let x = case.input(&dev)?;
        assert!(layer.uses_fused_op(&x));
        let fast = layer.forward(&x)?;
        let reference = layer.forward_reference(&x)?;
        assert_eq!(fast.dims(), reference.dims(), "{case:?}");
        let err = max_abs_diff(&fast, &reference)?;
        assert!(err < 1e-5, "{case:?}: max abs diff {err}");
        worst = worst.max(err);
    }
    println!("{} configurations, max abs diff {worst:e}", cases.len());
    Ok(())
}

#[test]
fn fixed_padding_and_planes_smaller_than_the_kernel() -> Result<()> {
    let dev = Device::Cpu;
    for (padding, h, w) in [(PaddingMode::Fixed(0), 12, 11), (PaddingMode::Fixed(3), 5, 6), (PaddingMode::TfSame, 2, 3)]
    {
        for stride in [1, 2] {
            let case = Case {
                channels: 9,
                kernels: vec![3, 5, 7],
                stride,
                dilation: 1,
                padding,
                split: SplitRule::Equal,
                batch: 2,
                h,
                w,
            };
            let layer = case.layer(&dev)?;
            let x = case.input(&dev)?;
            match (layer.forward(&x), layer.forward_reference(&x)) {
                (Ok(fast), Ok(reference)) => {
                    let err = max_abs_diff(&fast, &reference)?;
                    assert!(err < 1e-5, "{case:?}: max abs diff {err}");
                }
                (Err(_), Err(_)) => {}
                (fast, reference) => panic!("{case:?}: fused {:?} vs reference {:?}", fast.err(), reference.err()),
            }
        }
    }
    Ok(())
}

#[test]
fn fused_bias_and_activations_match_candle_ops() -> Result<()> {
    let dev = Device::Cpu;
    let case = Case {
        channels: 14,
        kernels: vec![3, 5, 7, 9],
        stride: 2,
        dilation: 1,
        padding: PaddingMode::TfSame,
        split: SplitRule::Equal,
        batch: 2,
        h: 17,
        w: 20,
    };
    let layer = case.layer(&dev)?;
    let x = case.input(&dev)?;
    let bias = rand_tensor(&[14], 1.5, 3, &dev)?;
    let reference = layer.forward_reference(&x)?.broadcast_add(&bias.reshape((1, 14, 1, 1))?)?;
    for act in [FusedAct::None, FusedAct::Relu, FusedAct::Relu6, FusedAct::Silu, FusedAct::HardSwish] {
        let fused = layer.forward_fused(&x, Some(&bias), act)?;
        let expected = act.apply_tensor(&reference)?;
        // The kernel starts from the bias and candle adds it last: the roundings differ by an ulp
        // of the output, so the bound scales with the output's magnitude.
        let tol = 1e-5 * max_abs(&expected)?.max(1.0);
        let err = max_abs_diff(&fused, &expected)?;
        assert!(err < tol, "{act:?}: max abs diff {err}");
        // Without the extra bias as well.
        let fused = layer.forward_fused(&x, None, act)?;
        let err = max_abs_diff(&fused, &act.apply_tensor(&layer.forward_reference(&x)?)?)?;
        assert!(err < 1e-5, "{act:?} without bias: max abs diff {err}");
    }
    Ok(())
}

#[test]
fn layer_bias_and_fused_bias_add_up() -> Result<()> {
    let dev = Device::Cpu;
    let config = mixdet_kernels::MixedConv2dConfig::depthwise(6, vec![3, 5], 1);
    let weights = config
        .weight_shapes()
        .iter()
        .enumerate()
        .map(|(i, s)| rand_tensor(s, 0.5, i as u64, &dev))
        .collect::<Result<Vec<_>>>()?;
    let own = rand_tensor(&[6], 1.0, 4, &dev)?;
    let extra = rand_tensor(&[6], 1.0, 5, &dev)?;
    let layer = MixedConv2d::new(config, weights, Some(own.clone()))?;
    let x = rand_tensor(&[1, 6, 9, 9], 1.5, 6, &dev)?;
    let fused = layer.forward_fused(&x, Some(&extra), FusedAct::Relu)?;
    let expected = layer.forward_reference(&x)?.broadcast_add(&extra.reshape((1, 6, 1, 1))?)?.relu()?;
    assert!(max_abs_diff(&fused, &expected)? < 1e-5);
    assert!(max_abs_diff(&layer.forward(&x)?, &layer.forward_reference(&x)?)? < 1e-5);
    Ok(())
}

#[test]
fn half_precision_inputs_convert_around_the_kernel() -> Result<()> {
    let dev = Device::Cpu;
    let config = mixdet_kernels::MixedConv2dConfig::depthwise(8, vec![3, 5], 2);
    let weights = config.weight_shapes().iter().map(|s| rand_tensor(s, 0.3, 8, &dev)).collect::<Result<Vec<_>>>()?;
    let layer = MixedConv2d::new(config, weights, None)?;
    let x = rand_tensor(&[2, 8, 10, 11], 1.5, 9, &dev)?;
    let reference = layer.forward_reference(&x)?;
    for dtype in [DType::F16, DType::BF16] {
        let y = layer.forward(&x.to_dtype(dtype)?)?;
        assert_eq!(y.dtype(), dtype);
        let rel = max_abs_diff(&y, &reference)? / max_abs(&reference)?;
        assert!(rel < 2e-2, "{dtype:?}: relative diff {rel}");
    }
    Ok(())
}

#[test]
fn non_contiguous_input_gives_the_same_result() -> Result<()> {
    let dev = Device::Cpu;
    let layer = MixedConv2d::randn(mixdet_kernels::MixedConv2dConfig::depthwise(6, vec![3, 7], 1), 0.5, &dev)?;
    let x = rand_tensor(&[2, 6, 9, 13], 1.5, 10, &dev)?;
    let xt = x.transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
    assert!(!xt.is_contiguous());
    assert!(max_abs_diff(&layer.forward(&xt)?, &layer.forward(&x)?)? == 0.0);
    Ok(())
}
