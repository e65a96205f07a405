//! Writing result files so that an interrupted run never leaves a truncated file under the final
//! name: everything is written to a temporary file beside the target, then renamed over it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;

/// Calls `write` on a temporary path beside `path`, then renames the result to `path`.
fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    write(&tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

/// Writes `tensors` (moved to the CPU) as a safetensors file.
pub fn write_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let cpu: HashMap<String, Tensor> =
        tensors.iter().map(|(k, t)| Ok((k.clone(), t.to_device(&candle_core::Device::Cpu)?))).collect::<Result<_>>()?;
    write_atomic(path, |tmp| Ok(candle_core::safetensors::save(&cpu, tmp)?))
}

/// Serialises `value` as JSON.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |tmp| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        serde_json::to_writer(&mut w, value)?;
        w.flush()?;
        Ok(())
    })
}

/// Writes `bytes` to `path`.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
}
