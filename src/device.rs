//! `--device` parsing.

use anyhow::{Context, Result};
use candle_core::Device;

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).context("cannot open CUDA device 0 (was mixdet built with --features cuda?)"),
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..].parse().with_context(|| format!("bad device {s:?}: expected cuda:N"))?;
            Device::new_cuda(n)
                .with_context(|| format!("cannot open CUDA device {n} (was mixdet built with --features cuda?)"))
        }
        _ => anyhow::bail!("unknown device {s:?}: expected cpu, cuda or cuda:N"),
    }
}
