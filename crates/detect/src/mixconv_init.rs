//! Starting a MixConv detector from a trained single-kernel one: each depthwise kernel of the
//! source (e.g. 3x3) is split by channels into the target's MixConv groups and placed at the
//! centre of each group's larger, otherwise zero, kernel. With odd kernels and either padding
//! rule (symmetric, or TF "SAME", whose extra padding grows by half the kernel growth on each
//! side) every output position sees the same inputs with the same weights, so the MixConv
//! detector computes the source detector's outputs; fine-tuning then grows the larger kernels.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Result, Tensor};

use crate::config::DetectorConfig;
use crate::SsdLite;

/// The source key and group index of a MixConv group weight: `{base}_{g}` for TF names
/// (`.../depthwise_weights_1` from `.../depthwise_weights`), `{prefix}.{g}.weight` for PyTorch
/// names (`conv_dw.1.weight` from `conv_dw.weight`).
fn group_of(key: &str) -> Option<(String, usize)> {
    if let Some((base, g)) = key.rsplit_once('_') {
        if base.ends_with("depthwise_weights") {
            return Some((base.to_string(), g.parse().ok()?));
        }
    }
    let prefix = key.strip_suffix(".weight")?;
    let (base, g) = prefix.rsplit_once('.')?;
    Some((format!("{base}.weight"), g.parse().ok()?))
}

/// `kernel` (`C x 1 x k x k`) zero-padded to `size x size`, centred.
fn embed(kernel: &Tensor, size: usize) -> Result<Tensor> {
    let k = kernel.dim(3)?;
    if size < k || !(size - k).is_multiple_of(2) {
        candle_core::bail!("cannot centre a {k}x{k} kernel in a {size}x{size} one");
    }
    let p = (size - k) / 2;
    kernel.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)
}

/// The state dict of `target` built from `source`: tensors whose key and shape the target uses
/// are taken as they are; the target's MixConv group weights are cut from the source's
/// single-kernel depthwise weight of the same layer (channels in group order, each kernel centred
/// in the group's size). Source tensors the target does not use are kept, so that a strict load
/// still reports them; target tensors with no source are left out (reported as missing).
pub fn embed_depthwise_kernels(
    target: &DetectorConfig,
    source: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let shapes = SsdLite::state_dict_shapes(target)?;
    let mut out: HashMap<String, Tensor> = HashMap::with_capacity(shapes.len());
    // Source key -> the groups that take their channels from it, by group index.
    let mut groups: BTreeMap<String, BTreeMap<usize, (String, Vec<usize>)>> = BTreeMap::new();
    for (key, shape) in &shapes {
        match source.get(key) {
            Some(t) if t.dims() == shape.as_slice() => {
                out.insert(key.clone(), t.clone());
            }
            _ => {
                if let Some((base, g)) = group_of(key).filter(|(base, _)| source.contains_key(base)) {
                    groups.entry(base).or_default().insert(g, (key.clone(), shape.clone()));
                }
            }
        }
    }
    for (base, parts) in &groups {
        let src = &source[base];
        let channels = src.dim(0)?;
        let needed: usize = parts.values().map(|(_, s)| s[0]).sum();
        if needed != channels || parts.keys().copied().ne(0..parts.len()) {
            candle_core::bail!("{base}: {channels} channels cannot feed MixConv groups of {needed}");
        }
        let mut offset = 0;
        for (key, shape) in parts.values() {
            let part = src.narrow(0, offset, shape[0])?;
            out.insert(key.clone(), embed(&part, shape[3])?);
            offset += shape[0];
        }
    }
    let used: std::collections::HashSet<&String> = groups.keys().collect();
    for (key, t) in source {
        if !shapes.contains_key(key) && !used.contains(key) {
            out.insert(key.clone(), t.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_point_at_their_source() {
        assert_eq!(group_of("a/depthwise/depthwise_weights_2"), Some(("a/depthwise/depthwise_weights".into(), 2)));
        assert_eq!(group_of("blocks.1.0.conv_dw.1.weight"), Some(("blocks.1.0.conv_dw.weight".into(), 1)));
        assert_eq!(group_of("a/BatchNorm/moving_mean"), None);
        assert_eq!(group_of("conv_stem.weight"), None);
    }

    #[test]
    fn kernels_are_centred() -> Result<()> {
        let k = Tensor::arange(1f32, 10.0, &candle_core::Device::Cpu)?.reshape((1, 1, 3, 3))?;
        let e = embed(&k, 5)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(&e[..5], &[0.0; 5]);
        assert_eq!(&e[5..10], &[0.0, 1.0, 2.0, 3.0, 0.0]);
        assert_eq!(&e[15..20], &[0.0, 7.0, 8.0, 9.0, 0.0]);
        assert!(embed(&k, 4).is_err() && embed(&k, 1).is_err());
        Ok(())
    }
}
