//! Helpers shared by the CLI end-to-end tests (each test file uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use mixdet_backbones::synthetic_weights::state_dict_from_manifest;

/// The `mixdet` binary under test.
pub fn mixdet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mixdet"))
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes the synthetic state dict of a fixture manifest (`tests/fixtures/<manifest>`) as
/// `dir/<name>.safetensors`.
pub fn synthetic_weights(manifest: &str, dir: &Path, name: &str) -> PathBuf {
    let sd = state_dict_from_manifest(&root().join("tests/fixtures").join(manifest), &Device::Cpu).expect("manifest");
    let path = dir.join(format!("{name}.safetensors"));
    candle_core::safetensors::save(&sd, &path).expect("write weights");
    path
}

/// torchvision's ssdlite320_mobilenet_v3_large with synthetic weights.
pub fn synthetic_ssdlite(dir: &Path) -> PathBuf {
    synthetic_weights("ssdlite/ssdlite320_mobilenet_v3_large.json", dir, "ssdlite")
}
