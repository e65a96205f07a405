//! Loading state dicts: real PyTorch pickles, strict key/shape checking, clear reports.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use mixdet_backbones::synthetic_weights::{synthetic_tensor, synthetic_values};
use mixdet_backbones::{read_state_dict, ModelOptions, ModelSpec, WeightsError};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/backbones").join(name)
}

fn mixnet_s_state_dict() -> HashMap<String, Tensor> {
    let spec = ModelSpec::by_name("mixnet_s", None).expect("known");
    spec.state_dict_shapes(&ModelOptions::default())
        .expect("shapes")
        .into_iter()
        .map(|(k, s)| {
            let t = synthetic_tensor(&k, &s, &Device::Cpu).expect("tensor");
            (k, t)
        })
        .collect()
}

#[test]
fn reads_a_torch_save_pickle_with_exact_values() {
    // torch.save() of the first 40 tensors of timm's mixnet_s state dict (synthetic values).
    let sd = read_state_dict(&fixture("mixnet_s_first40.pth")).expect("readable pickle");
    assert_eq!(sd.len(), 40);
    let w = &sd["conv_stem.weight"];
    assert_eq!(w.dims(), &[16, 3, 3, 3]);
    assert_eq!(
        w.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32"),
        synthetic_values("conv_stem.weight", &[16, 3, 3, 3])
    );
    assert_eq!(sd["bn1.num_batches_tracked"].dtype(), DType::I64);
}

#[test]
fn partial_pickle_reports_missing_keys_and_builds_nothing() {
    let spec = ModelSpec::by_name("mixnet_s", None).expect("known");
    let err = spec
        .load_file(&ModelOptions::default(), &fixture("mixnet_s_first40.pth"), &Device::Cpu)
        .expect_err("40 of 396 tensors cannot build mixnet_s");
    match &err {
        WeightsError::Mismatch { report, .. } => {
            assert!(report.unexpected.is_empty() && report.wrong_shape.is_empty(), "{report}");
            assert!(report.missing.iter().any(|(k, s)| k == "classifier.weight" && s == &vec![1000, 1536]));
            assert_eq!(report.missing.len(), 396 - 40 - 43, "every parameter and buffer except BN counters");
        }
        other => panic!("expected a mismatch report, got {other}"),
    }
    assert!(err.to_string().contains("mixnet_s_first40.pth"), "the error names the file: {err}");
}

#[test]
fn reports_wrong_shapes_and_unexpected_keys_together() {
    let mut sd = mixnet_s_state_dict();
    sd.insert("blocks.2.0.conv_dw.1.weight".into(), Tensor::zeros((48, 1, 3, 3), DType::F32, &Device::Cpu).expect("t"));
    sd.insert("extra.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).expect("t"));
    sd.remove("bn2.running_var");
    let spec = ModelSpec::by_name("mixnet_s", None).expect("known");
    let err =
        spec.load_state_dict(&ModelOptions::default(), sd, "test.safetensors", &Device::Cpu).expect_err("mismatch");
    let msg = err.to_string();
    assert!(msg.contains("1 missing keys [bn2.running_var [1536]]"), "{msg}");
    assert!(msg.contains("1 unexpected keys [extra.weight]"), "{msg}");
    assert!(msg.contains("blocks.2.0.conv_dw.1.weight: file [48, 1, 3, 3], model [48, 1, 5, 5]"), "{msg}");
}

#[test]
fn features_only_model_ignores_the_classifier_head() {
    let spec = ModelSpec::by_name("mixnet_s", None).expect("known");
    let opts = ModelOptions { num_classes: 0, features_only: true };
    let net = spec.load_state_dict(&opts, mixnet_s_state_dict(), "full", &Device::Cpu).expect("head keys are ignored");
    let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).expect("t");
    let out = net.forward(&x).expect("forward");
    assert!(out.logits.is_none());
    let shapes: Vec<_> = out.features.iter().map(|f| f.dims().to_vec()).collect();
    assert_eq!(
        shapes,
        vec![vec![1, 16, 32, 32], vec![1, 24, 16, 16], vec![1, 40, 8, 8], vec![1, 120, 4, 4], vec![1, 200, 2, 2]]
    );
}

#[test]
fn unknown_extension_and_missing_file_are_errors() {
    assert!(matches!(read_state_dict(&fixture("mixnet_s.json")), Err(WeightsError::UnknownFormat(_))));
    let err = read_state_dict(&fixture("does_not_exist.safetensors")).expect_err("missing file");
    assert!(err.to_string().contains("does_not_exist.safetensors"));
}
