//! Initial values for a detector built from an empty `VarMap` (whose plain `get`s start at zero):
//! torchvision's SSDLite scheme — N(0, 0.03) for the extra layers and the head, Kaiming-normal
//! fan-out for backbone convs and the top-down merge's conv (timm's and torchvision's MobileNet
//! init), BatchNorm weight 1 (0 in the top-down merge) / bias 0 / running mean 0 / running
//! variance 1, other biases 0 — and timm backbone weights. Variables may carry PyTorch names or,
//! for the TF Object Detection API family, TF names (`BatchNorm/gamma`, `beta`, `moving_mean`,
//! `moving_variance`, `biases`; extra layers `layer_19_*`, head `BoxPredictor_*`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;

use crate::rng::Rng;

/// Whether a state-dict entry is a BatchNorm running statistic (not trained by the optimiser).
pub fn is_running_stat(name: &str) -> bool {
    ["running_mean", "running_var", "num_batches_tracked", "moving_mean", "moving_variance"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// A BatchNorm running variance (starts at 1).
fn is_running_var(name: &str) -> bool {
    name.ends_with("running_var") || name.ends_with("moving_variance")
}

/// A bias or BatchNorm shift (starts at 0).
fn is_bias(name: &str) -> bool {
    name.ends_with("bias") || name.ends_with("biases") || name.ends_with("BatchNorm/beta")
}

/// The extra layers and the head, which SSDLite initialises with N(0, 0.03).
fn is_ssd_layer(name: &str) -> bool {
    name.starts_with("head.")
        || name.starts_with("backbone.extra.")
        || name.starts_with("BoxPredictor_")
        || name.contains("/layer_19_")
}

fn normal(var: &Var, std: f32, rng: &mut Rng) -> Result<()> {
    let n = var.elem_count();
    let data: Vec<f32> = (0..n).map(|_| std * rng.normal()).collect();
    var.set(&Tensor::from_vec(data, var.shape(), var.device())?)
}

fn fill(var: &Var, value: f32) -> Result<()> {
    var.set(&Tensor::full(value, var.shape(), var.device())?)
}

/// Initialises every variable of the map; `seed` makes it reproducible. Names are visited in
/// sorted order so that the values do not depend on the map's iteration order.
pub fn initialise(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| candle_core::Error::Msg("variable map poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let mut rng = Rng::for_item(seed, 0x1417, i as u64);
        if is_running_var(name) {
            fill(var, 1.0)?;
        } else if is_running_stat(name) || is_bias(name) {
            fill(var, 0.0)?;
        } else if dims.len() == 1 && name.starts_with("neck.") {
            // The top-down merge's BatchNorm scale: zero, so the merge starts as the identity
            // (the zero-init residual trick) and a detector without it carries over unchanged.
            fill(var, 0.0)?;
        } else if dims.len() == 1 {
            // A rank-1 weight is a BatchNorm scale.
            fill(var, 1.0)?;
        } else if is_ssd_layer(name) {
            normal(var, 0.03, &mut rng)?;
        } else if dims.len() == 4 {
            // (out, in / groups, kh, kw): a depthwise weight has one input channel per group.
            let (out, inp, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
            let fan_out = if inp == 1 && out > 1 { kh * kw } else { out * kh * kw };
            normal(var, (2.0 / fan_out as f32).sqrt(), &mut rng)?;
        } else {
            normal(var, 0.01, &mut rng)?;
        }
    }
    Ok(())
}

/// What loading a backbone checkpoint did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackboneLoad {
    /// Tensors copied into the detector.
    pub loaded: usize,
    /// Checkpoint keys the detector has no place for (a classifier head, `conv_head`, ...).
    pub unused: Vec<String>,
    /// Detector backbone variables the checkpoint did not provide (left initialised).
    pub missing: Vec<String>,
}

/// Copies a backbone state dict (timm names such as `blocks.0.0.conv_dw.weight`) into the
/// detector's variables under `prefix` (`backbone.body.` for MixNet). A shape mismatch is an error.
pub fn load_backbone(
    varmap: &VarMap,
    state_dict: &HashMap<String, Tensor>,
    prefix: &str,
    source: &Path,
) -> Result<BackboneLoad> {
    let data = varmap.data().lock().map_err(|_| candle_core::Error::Msg("variable map poisoned".into()))?;
    let mut report = BackboneLoad::default();
    let mut keys: Vec<&String> = state_dict.keys().collect();
    keys.sort();
    for k in keys {
        let t = &state_dict[k];
        match data.get(&format!("{prefix}{k}")) {
            Some(var) if var.dims() == t.dims() => {
                var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
                report.loaded += 1;
            }
            Some(var) => candle_core::bail!(
                "{}: {k} has shape {:?}, the detector's {prefix}{k} {:?}",
                source.display(),
                t.dims(),
                var.dims()
            ),
            None => report.unused.push(k.clone()),
        }
    }
    let mut missing: Vec<String> = data
        .keys()
        .filter_map(|n| n.strip_prefix(prefix))
        .filter(|n| !state_dict.contains_key(*n) && !n.ends_with("num_batches_tracked"))
        .map(str::to_string)
        .collect();
    missing.sort();
    report.missing = missing;
    Ok(report)
}
