//! The CUDA kernels against the CPU kernels (issue: CPU and CUDA outputs agree within 1e-4):
//! the fused forward with every epilogue, and the input and weight gradients, over the same
//! sweep of kernel sizes, strides, dilations, padding rules and sizes as the CPU tests.
//!
//! Built only with `--features cuda`, and then it needs a CUDA device: run on a GPU machine
//! with `cargo test -p mixdet-kernels --features cuda --test cuda_parity`.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{Device, Result, Tensor, Var};
use common::{max_abs_diff, rand_tensor, rel_err, sweep, Case};
use mixdet_kernels::{FusedAct, MixedConv2d};

const TOL: f32 = 1e-4;

fn gpu() -> Device {
    match Device::new_cuda(0) {
        Ok(d) => d,
        Err(e) => panic!("the cuda_parity tests need a CUDA device (built with --features cuda): {e}"),
    }
}

fn cases() -> Vec<Case> {
    sweep(&[(9, 20), (16, 16), (15, 7)])
}

#[test]
fn forward_with_every_epilogue_matches_cpu() -> Result<()> {
    let (cpu, gpu) = (Device::Cpu, gpu());
    for case in cases() {
        let x = case.input(&cpu)?;
        let bias = rand_tensor(&[case.channels], 0.5, 3, &cpu)?;
        let (layer_cpu, layer_gpu) = (case.layer(&cpu)?, case.layer(&gpu)?);
        assert!(layer_gpu.uses_fused_op(&x.to_device(&gpu)?), "{case:?}: CUDA runs the reference path");
        for act in [FusedAct::None, FusedAct::Relu, FusedAct::Relu6, FusedAct::Silu, FusedAct::HardSwish] {
            let want = layer_cpu.forward_fused(&x, Some(&bias), act)?;
            let got = layer_gpu.forward_fused(&x.to_device(&gpu)?, Some(&bias.to_device(&gpu)?), act)?;
            let err = max_abs_diff(&got.to_device(&cpu)?, &want)?;
            assert!(err <= TOL, "{case:?} {act:?}: max |cuda - cpu| = {err}");
        }
    }
    Ok(())
}

/// Gradients of `sum(y * r)` with respect to the input and each group's weights on `dev`.
fn gradients(case: &Case, dev: &Device) -> Result<(Tensor, Vec<Tensor>)> {
    let x = Var::from_tensor(&case.input(dev)?)?;
    let ws = case.weights(7, dev)?.iter().map(Var::from_tensor).collect::<Result<Vec<_>>>()?;
    let layer = MixedConv2d::new(case.config(), ws.iter().map(|w| w.as_tensor().clone()).collect(), None)?;
    let y = layer.forward(x.as_tensor())?;
    let r = rand_tensor(y.dims(), 1.0, 99, dev)?;
    let grads = y.mul(&r)?.sum_all()?.backward()?;
    let get = |t: &Tensor| -> Result<Tensor> {
        grads.get(t).ok_or_else(|| candle_core::Error::Msg("no gradient".into()))?.to_device(&Device::Cpu)
    };
    Ok((get(x.as_tensor())?, ws.iter().map(|w| get(w.as_tensor())).collect::<Result<_>>()?))
}

#[test]
fn gradients_match_cpu() -> Result<()> {
    let gpu = gpu();
    for case in cases() {
        let (gx_cpu, gw_cpu) = gradients(&case, &Device::Cpu)?;
        let (gx_gpu, gw_gpu) = gradients(&case, &gpu)?;
        let err = rel_err(&gx_gpu, &gx_cpu)?;
        assert!(err <= TOL, "{case:?}: input gradient, relative error {err}");
        for (g, (a, b)) in gw_gpu.iter().zip(&gw_cpu).enumerate() {
            let err = rel_err(a, b)?;
            assert!(err <= TOL, "{case:?}: weight gradient of group {g}, relative error {err}");
        }
    }
    Ok(())
}
