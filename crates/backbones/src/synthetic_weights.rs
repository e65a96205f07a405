//! Deterministic synthetic weights (every tensor a function of its key and shape), bit-identical
//! to `coco_tools/fixtures/synthetic.py`.
//!
//! The parity fixtures do not store weights: every tensor is a function of its state-dict key and
//! shape, so the tests regenerate the reference model's weights here and the fixtures hold only
//! the reference outputs. See `coco_tools/fixtures/synthetic.py` for the value rules.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a64(key: &str) -> u64 {
    key.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` values in `[0, 1)` for `key`.
pub fn uniform01(key: &str, n: usize) -> Vec<f64> {
    let seed = fnv1a64(key);
    (1..=n as u64)
        .map(|i| (mix(seed.wrapping_add(i.wrapping_mul(GOLDEN))) >> 11) as f64 * (1.0 / (1u64 << 53) as f64))
        .collect()
}

/// The synthetic values of the tensor `key` with `shape`, as f32 (see the module docs).
pub fn synthetic_values(key: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product::<usize>();
    let u = uniform01(key, n);
    let rank = shape.len();
    let fan_in = shape.iter().skip(1).product::<usize>() as f64;
    u.into_iter()
        .map(|u| {
            let v = 2.0 * u - 1.0;
            // PyTorch names, and the TF OD API's (`moving_variance`, `gamma`, `biases`, `weights`).
            let x = if key.ends_with("running_var") || key.ends_with("moving_variance") {
                0.5 + u
            } else if key.ends_with("running_mean") || key.ends_with("moving_mean") {
                0.2 * v
            } else if key.ends_with("bias") || key.ends_with("biases") || key.ends_with("beta") {
                0.1 * v
            } else if (key.ends_with("weight") && rank == 1) || key.ends_with("gamma") {
                1.0 + 0.25 * v
            } else if key.ends_with("weight") || key.ends_with("weights") {
                v * (6.0 / fan_in).sqrt()
            } else {
                v
            };
            x as f32
        })
        .collect()
}

/// The synthetic tensor `key` with `shape` (f32; `num_batches_tracked` counters are i64 zeros).
pub fn synthetic_tensor(key: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
    if key.ends_with("num_batches_tracked") {
        return Tensor::zeros(shape, DType::I64, device);
    }
    Tensor::from_vec(synthetic_values(key, shape), shape, device)
}

/// A synthetic state dict for the given keys and shapes.
pub fn synthetic_state_dict<'a>(
    keys: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    keys.into_iter().map(|(k, s)| Ok((k.to_string(), synthetic_tensor(k, s, device)?))).collect()
}

/// The synthetic state dict described by a fixture manifest written by the `coco_tools/fixtures/make_*_fixtures.py`
/// scripts: a JSON object whose `state_dict` is a list of `[key, shape, dtype]` in the reference's order.
pub fn state_dict_from_manifest(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
    let entries = manifest["state_dict"]
        .as_array()
        .ok_or_else(|| candle_core::Error::Msg(format!("{}: no `state_dict` list", path.display())))?;
    let bad = |what: &str| candle_core::Error::Msg(format!("{}: malformed state_dict entry ({what})", path.display()));
    let mut out = HashMap::with_capacity(entries.len());
    for e in entries {
        let key = e[0].as_str().ok_or_else(|| bad("key"))?;
        let shape = e[1]
            .as_array()
            .ok_or_else(|| bad("shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(|| bad("dimension")))
            .collect::<Result<Vec<_>>>()?;
        out.insert(key.to_string(), synthetic_tensor(key, &shape, device)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_matches_python() {
        // Printed by coco_tools/fixtures/synthetic.py: uniform01("abc", 3), synthetic_array("x.weight", (2, 3)).
        assert_eq!(uniform01("abc", 3), vec![0.16362261886774687, 0.2869840674260956, 0.009036295911877046]);
        let w = synthetic_values("x.weight", &[2, 3]);
        let expected = [-1.0132629871368408f64 as f32, 0.27954062819480896f64 as f32, 0.7664997577667236f64 as f32];
        assert_eq!(&w[..3], &expected);
        assert_eq!(w[5], 1.2360554933547974f64 as f32);
    }
}
