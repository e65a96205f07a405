//! Parity with the reference implementations (timm 1.0.31, torchvision 0.29.2).
//!
//! Fixtures come from `coco_tools/fixtures/make_backbone_fixtures.py`: the reference model's state dict is
//! filled with the synthetic values of `mixdet_backbones::synthetic_weights` (so no weights are stored),
//! and the fixture holds the state-dict manifest plus the reference logits and feature maps for a
//! square (37x37) and a non-square (32x48) input. Tolerance: max |ours - reference| <= 1e-4 times
//! the largest |reference| value of that output.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use mixdet_backbones::synthetic_weights::{state_dict_from_manifest, synthetic_tensor};
use mixdet_backbones::{ModelOptions, ModelSpec};

const REL_TOL: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/backbones")
}

struct Manifest {
    params: usize,
    cases: Vec<(String, Vec<usize>)>,
    features: Vec<(usize, usize)>,
    state_dict_len: usize,
}

fn read_manifest(model: &str) -> Manifest {
    let path = fixture_dir().join(format!("{model}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let dims = |x: &serde_json::Value| -> Vec<usize> {
        x.as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect()
    };
    Manifest {
        params: v["params"].as_u64().expect("params") as usize,
        cases: v["cases"].as_object().expect("cases").iter().map(|(k, s)| (k.clone(), dims(s))).collect(),
        features: v["features"]
            .as_array()
            .expect("features")
            .iter()
            .map(|f| (f["channels"].as_u64().expect("ch") as usize, f["stride"].as_u64().expect("s") as usize))
            .collect(),
        state_dict_len: v["state_dict"].as_array().expect("state_dict").len(),
    }
}

fn relative_error(ours: &Tensor, reference: &Tensor) -> f32 {
    assert_eq!(ours.dims(), reference.dims(), "shape");
    let scale = reference.abs().and_then(|t| t.flatten_all()).and_then(|t| t.max(0)).and_then(|t| t.to_scalar::<f32>());
    let err = (ours - reference)
        .and_then(|t| t.abs())
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.max(0))
        .and_then(|t| t.to_scalar::<f32>());
    err.expect("diff") / scale.expect("scale").max(1e-6)
}

fn check_model(model: &str) {
    let dev = Device::Cpu;
    let manifest = read_manifest(model);
    let spec = ModelSpec::by_name(model, None).expect("known model");
    let opts = ModelOptions::default();
    assert_eq!(spec.parameter_count(&opts).expect("count"), manifest.params, "{model}: parameter count");

    let state_dict = state_dict_from_manifest(&fixture_dir().join(format!("{model}.json")), &dev).expect("manifest");
    assert_eq!(state_dict.len(), manifest.state_dict_len);
    let net = spec
        .load_state_dict(&opts, state_dict, model, &dev)
        .unwrap_or_else(|e| panic!("{model}: the reference state dict must load strictly: {e}"));
    let info: Vec<_> = net.feature_info().iter().map(|f| (f.channels, f.stride)).collect();
    assert_eq!(info, manifest.features, "{model}: feature channels/strides");

    let refs = candle_core::safetensors::load(fixture_dir().join(format!("{model}.safetensors")), &dev)
        .expect("reference outputs");
    // The training-capable layers first, then the inference form (BatchNorm folded, fused kernels).
    let mut net = net;
    for fused in [false, true] {
        if fused {
            net.fuse_for_inference().expect("fuse");
        }
        let path = if fused { "fused" } else { "unfused" };
        for (case, shape) in &manifest.cases {
            let x = synthetic_tensor(&format!("input.{case}"), shape, &dev).expect("input");
            let out = net.forward(&x).expect("forward");
            let logits = out.logits.expect("classifier output");
            let err = relative_error(&logits, &refs[&format!("{case}.logits")]);
            eprintln!("{model} {case} {path}: logits relative error {err:.2e}");
            assert!(err <= REL_TOL, "{model} {case} {path}: logits relative error {err:.2e}");
            assert_eq!(out.features.len(), manifest.features.len(), "{model}: number of feature maps");
            for (i, f) in out.features.iter().enumerate() {
                let err = relative_error(f, &refs[&format!("{case}.features.{i}")]);
                assert!(err <= REL_TOL, "{model} {case} {path}: features.{i} relative error {err:.2e}");
            }
            assert_eq!(x.dtype(), DType::F32);
        }
    }
}

macro_rules! parity_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_model(stringify!($name));
            }
        )*
    };
}

parity_tests!(
    mixnet_s,
    mixnet_m,
    mixnet_l,
    mixnet_xl,
    tf_mixnet_s,
    tf_mixnet_m,
    tf_mixnet_l,
    mobilenetv2_100,
    mobilenetv2_100_mixconv,
    mobilenet_v3_large,
    mobilenet_v3_large_mixconv,
);
