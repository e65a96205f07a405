//! Gradients of the fused op (its own backward kernels) against candle's autograd through the
//! reference path and against finite differences.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::{multi_group, rand_tensor, rel_err, sweep, Case};
use mixdet_kernels::{FusedAct, MixedConv2d, PaddingMode, SplitRule};

/// Gradients of `sum(y * r)` with respect to the input and each group's weights.
struct Grads {
    x: Tensor,
    weights: Vec<Tensor>,
}

fn gradients(case: &Case, fused: bool, dev: &Device) -> Result<Grads> {
    let x = Var::from_tensor(&case.input(dev)?)?;
    let ws = case.weights(7, dev)?.iter().map(Var::from_tensor).collect::<Result<Vec<_>>>()?;
    let layer = MixedConv2d::new(case.config(), ws.iter().map(|w| w.as_tensor().clone()).collect(), None)?;
    let y = if fused {
        assert!(layer.uses_fused_op(x.as_tensor()));
        layer.forward(x.as_tensor())?
    } else {
        let y = reference_cropped(&layer, x.as_tensor())?;
        assert!(common::max_abs_diff(&y, &layer.forward_reference(x.as_tensor())?)? < 1e-5);
        y
    };
    let r = rand_tensor(y.dims(), 1.0, 99, dev)?;
    let grads = y.mul(&r)?.sum_all()?.backward()?;
    let get = |t: &Tensor| grads.get(t).cloned().ok_or_else(|| candle_core::Error::Msg("no gradient".into()));
    Ok(Grads { x: get(x.as_tensor())?, weights: ws.iter().map(|w| get(w.as_tensor())).collect::<Result<_>>()? })
}

/// The reference path (per-group candle `conv2d`, concatenated) with each group's input padded
/// explicitly and cropped to the rows and columns its windows cover.
///
/// candle 0.11.1's `conv2d` backward derives the transposed convolution's output padding from the
/// height alone and applies it to the width too, so its input gradient has the wrong width when
/// the two dimensions leave different remainders under the stride (e.g. 9x20, stride 2). With no
/// remainder left, both dimensions come out right.
fn reference_cropped(layer: &MixedConv2d, x: &Tensor) -> Result<Tensor> {
    let c = layer.config();
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = layer.output_size(h, w)?;
    let mut outs = Vec::new();
    let mut start = 0;
    for ((&k, channels), wt) in c.kernel_sizes.iter().zip(c.in_splits()).zip(layer.weights()) {
        let (ph, pw) = (c.padding.resolve(h, k, c.stride, c.dilation), c.padding.resolve(w, k, c.stride, c.dilation));
        let span = (k - 1) * c.dilation + 1;
        let xg = x
            .narrow(1, start, channels)?
            .pad_with_zeros(2, ph.before, ph.after)?
            .pad_with_zeros(3, pw.before, pw.after)?
            .narrow(2, 0, (oh - 1) * c.stride + span)?
            .narrow(3, 0, (ow - 1) * c.stride + span)?;
        outs.push(xg.conv2d(wt, 0, c.stride, c.dilation, channels)?);
        start += channels;
    }
    Tensor::cat(&outs, 1)
}

#[test]
fn gradients_match_autograd_through_the_reference() -> Result<()> {
    let dev = Device::Cpu;
    let cases = sweep(&[(13, 11), (12, 10), (9, 20)]);
    let (mut worst_x, mut worst_w) = (0f32, 0f32);
    for case in &cases {
        let fast = gradients(case, true, &dev)?;
        let reference = gradients(case, false, &dev)?;
        let ex = rel_err(&fast.x, &reference.x)?;
        assert!(ex <= 1e-4, "{case:?}: input gradient relative error {ex}");
        worst_x = worst_x.max(ex);
        for (g, (a, b)) in fast.weights.iter().zip(&reference.weights).enumerate() {
            let ew = rel_err(a, b)?;
            assert!(ew <= 1e-4, "{case:?}: group {g} weight gradient relative error {ew}");
            worst_w = worst_w.max(ew);
        }
    }
    println!("{} configurations, max relative error: input {worst_x:e}, weights {worst_w:e}", cases.len());
    Ok(())
}

/// `sum(y * r)` in f64, so that a difference quotient is not swamped by the sum's rounding.
fn loss(layer: &MixedConv2d, x: &Tensor, r: &Tensor) -> Result<f64> {
    layer.forward(x)?.to_dtype(DType::F64)?.mul(r)?.sum_all()?.to_scalar::<f64>()
}

/// Replaces element `i` of a tensor.
fn with_element(t: &Tensor, i: usize, v: f32) -> Result<Tensor> {
    let mut values = t.flatten_all()?.to_vec1::<f32>()?;
    values[i] = v;
    Tensor::from_vec(values, t.dims(), t.device())
}

#[test]
fn gradients_match_finite_differences() -> Result<()> {
    let dev = Device::Cpu;
    let cases = [
        Case {
            channels: 13,
            kernels: vec![3, 5, 7, 9, 11],
            stride: 2,
            dilation: 1,
            padding: PaddingMode::TfSame,
            split: SplitRule::Equal,
            batch: 2,
            h: 12,
            w: 11,
        },
        Case {
            channels: 7,
            kernels: vec![3, 5],
            stride: 1,
            dilation: 2,
            padding: PaddingMode::Symmetric,
            split: SplitRule::Exponential,
            batch: 3,
            h: 9,
            w: 10,
        },
    ];
    // The loss is linear in the input and in the weights, so a wide central difference is exact
    // up to rounding.
    let eps = 0.5f32;
    let mut worst = 0f64;
    for case in &cases {
        let analytic = gradients(case, true, &dev)?;
        let x = case.input(&dev)?;
        let weights = case.weights(7, &dev)?;
        let layer = MixedConv2d::new(case.config(), weights.clone(), None)?;
        let y_dims = layer.forward(&x)?.dims().to_vec();
        let r = rand_tensor(&y_dims, 1.0, 99, &dev)?.to_dtype(DType::F64)?;
        let gx = analytic.x.flatten_all()?.to_vec1::<f32>()?;
        let scale_x = gx.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        for i in (0..xv.len()).step_by(xv.len() / 23 + 1) {
            let plus = loss(&layer, &with_element(&x, i, xv[i] + eps)?, &r)?;
            let minus = loss(&layer, &with_element(&x, i, xv[i] - eps)?, &r)?;
            let fd = (plus - minus) / (2.0 * eps as f64);
            let err = (fd - gx[i] as f64).abs() / scale_x;
            assert!(err <= 1e-4, "{case:?}: input element {i}: finite difference {fd}, gradient {}", gx[i]);
            worst = worst.max(err);
        }
        for (g, w) in weights.iter().enumerate() {
            let gw = analytic.weights[g].flatten_all()?.to_vec1::<f32>()?;
            let scale_w = gw.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let wv = w.flatten_all()?.to_vec1::<f32>()?;
            for i in (0..wv.len()).step_by(wv.len() / 7 + 1) {
                let mut ws = weights.clone();
                ws[g] = with_element(w, i, wv[i] + eps)?;
                let plus = loss(&MixedConv2d::new(case.config(), ws.clone(), None)?, &x, &r)?;
                ws[g] = with_element(w, i, wv[i] - eps)?;
                let minus = loss(&MixedConv2d::new(case.config(), ws, None)?, &x, &r)?;
                let fd = (plus - minus) / (2.0 * eps as f64);
                let err = (fd - gw[i] as f64).abs() / scale_w;
                assert!(err <= 1e-4, "{case:?}: group {g} weight {i}: finite difference {fd}, gradient {}", gw[i]);
                worst = worst.max(err);
            }
        }
    }
    println!("max relative error against finite differences {worst:e}");
    Ok(())
}

#[test]
fn constant_input_gets_no_gradient_but_weights_do() -> Result<()> {
    let dev = Device::Cpu;
    let case = &multi_group(&[(10, 9)])[5];
    let x = case.input(&dev)?;
    let ws = case.weights(7, &dev)?.iter().map(Var::from_tensor).collect::<Result<Vec<_>>>()?;
    let layer = MixedConv2d::new(case.config(), ws.iter().map(|w| w.as_tensor().clone()).collect(), None)?;
    let grads = layer.forward(&x)?.sqr()?.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    let reference = layer.forward_reference(&x)?.sqr()?.sum_all()?.backward()?;
    for w in &ws {
        let (a, b) = (grads.get(w.as_tensor()), reference.get(w.as_tensor()));
        let (Some(a), Some(b)) = (a, b) else { panic!("missing weight gradient") };
        assert!(rel_err(a, b)? <= 1e-4);
    }
    Ok(())
}

#[test]
fn training_through_forward_fused_matches_candle_ops() -> Result<()> {
    let dev = Device::Cpu;
    let case = &multi_group(&[(11, 12)])[2];
    let x = Var::from_tensor(&case.input(&dev)?)?;
    let bias = Var::from_tensor(&rand_tensor(&[case.channels], 1.0, 5, &dev)?)?;
    let layer = case.layer(&dev)?;
    let fused = layer.forward_fused(x.as_tensor(), Some(bias.as_tensor()), FusedAct::HardSwish)?;
    let reference = FusedAct::HardSwish.apply_tensor(
        &layer.forward_reference(x.as_tensor())?.broadcast_add(&bias.as_tensor().reshape((1, (), 1, 1))?)?,
    )?;
    let ga = fused.sum_all()?.backward()?;
    let gb = reference.sum_all()?.backward()?;
    for t in [x.as_tensor(), bias.as_tensor()] {
        let (Some(a), Some(b)) = (ga.get(t), gb.get(t)) else { panic!("missing gradient") };
        assert!(rel_err(a, b)? <= 1e-4);
    }
    Ok(())
}
