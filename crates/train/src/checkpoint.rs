//! Checkpoints: one safetensors file holding the model (`model.<name>`), the optimiser state
//! (`optim.<entry>`) and the position in the run (`trainer.*`), plus a weights-only file that
//! `mixdet detect` loads. Both are written to a temporary file and renamed, so an interrupted
//! write leaves the previous checkpoint intact.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::error::{Result, TrainError};
use crate::optim::Optimizer;

/// Where training stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Optimiser steps taken.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Batches of that epoch already consumed.
    pub batch_in_epoch: u64,
}

/// The model's variables by name (running statistics included).
pub fn model_tensors(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap.data().lock().map_err(|_| TrainError::Invalid("variable map poisoned".into()))?;
    // Copies, so that a later optimiser step cannot change what is being written.
    data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect()
}

fn write_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|source| TrainError::Io { path: path.display().to_string(), source })
}

/// Writes `weights` (model only) and `checkpoint` (model, optimiser, position).
pub fn save(varmap: &VarMap, optimizer: &Optimizer, pos: Position, weights: &Path, checkpoint: &Path) -> Result<()> {
    let model = model_tensors(varmap)?;
    write_atomic(&model, weights)?;
    let mut all: HashMap<String, Tensor> = model.into_iter().map(|(k, v)| (format!("model.{k}"), v)).collect();
    for (k, v) in optimizer.state_tensors()? {
        all.insert(format!("optim.{k}"), v);
    }
    let position = [pos.step as i64, pos.epoch as i64, pos.batch_in_epoch as i64];
    all.insert("trainer.position".into(), Tensor::new(&position, &Device::Cpu)?);
    write_atomic(&all, checkpoint)
}

/// Restores model variables and optimiser state from `checkpoint`; every model variable must be
/// present with its shape.
pub fn load(varmap: &VarMap, optimizer: &mut Optimizer, checkpoint: &Path) -> Result<Position> {
    let origin = checkpoint.display().to_string();
    let tensors = candle_core::safetensors::load(checkpoint, &Device::Cpu)?;
    let bad = |m: String| TrainError::Invalid(format!("{origin}: {m}"));
    {
        let data = varmap.data().lock().map_err(|_| TrainError::Invalid("variable map poisoned".into()))?;
        for (name, var) in data.iter() {
            let t = tensors.get(&format!("model.{name}")).ok_or_else(|| bad(format!("missing model.{name}")))?;
            if t.dims() != var.dims() {
                return Err(bad(format!("model.{name} has shape {:?}, the model {:?}", t.dims(), var.dims())));
            }
            var.set(&t.to_device(var.device())?)?;
        }
    }
    let optim: HashMap<String, Tensor> =
        tensors.iter().filter_map(|(k, v)| k.strip_prefix("optim.").map(|n| (n.to_string(), v.clone()))).collect();
    optimizer.load_state(&optim).map_err(|e| bad(e.to_string()))?;
    let pos = tensors.get("trainer.position").ok_or_else(|| bad("no trainer.position".into()))?;
    let p = pos.to_vec1::<i64>()?;
    let [step, epoch, batch] = p.as_slice() else { return Err(bad("trainer.position must hold 3 values".into())) };
    Ok(Position { step: *step as u64, epoch: *epoch as u64, batch_in_epoch: *batch as u64 })
}
