//! End-to-end tests of `mixdet forward`, `classify` and `models` through the built binary.

mod common;

use common::{mixdet, root};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mixdet_backbones::synthetic_weights::synthetic_tensor;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backbones")
}

/// Writes the reference model's synthetic state dict (keys from the fixture manifest) as safetensors.
fn write_synthetic_weights(model: &str, dir: &Path) -> PathBuf {
    common::synthetic_weights(&format!("backbones/{model}.json"), dir, model)
}

fn max_rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let scale = b.abs().and_then(|t| t.flatten_all()).and_then(|t| t.max(0)).and_then(|t| t.to_scalar::<f32>());
    let err = (a - b)
        .and_then(|t| t.abs())
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.max(0))
        .and_then(|t| t.to_scalar::<f32>());
    err.expect("diff") / scale.expect("scale")
}

#[test]
fn forward_reproduces_timm_outputs_from_a_weights_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for model in ["mixnet_s", "tf_mixnet_s"] {
        let weights = write_synthetic_weights(model, dir.path());
        let refs = candle_core::safetensors::load(fixtures().join(format!("{model}.safetensors")), &Device::Cpu)
            .expect("reference");
        let input = synthetic_tensor("input.nonsquare", &[1, 3, 32, 48], &Device::Cpu).expect("input");
        let input_path = dir.path().join("in.safetensors");
        candle_core::safetensors::save(&HashMap::from([("input".to_string(), input)]), &input_path).expect("write");
        let out_path = dir.path().join(format!("{model}.out.safetensors"));
        let status = mixdet()
            .args(["forward", "--model", model, "--weights"])
            .arg(&weights)
            .arg("--input")
            .arg(&input_path)
            .arg("--output")
            .arg(&out_path)
            .status()
            .expect("run mixdet");
        assert!(status.success(), "{model}: mixdet forward failed");
        let out = candle_core::safetensors::load(&out_path, &Device::Cpu).expect("output");
        assert_eq!(out.len(), 6, "logits + 5 feature maps");
        assert!(max_rel_err(&out["logits"], &refs["nonsquare.logits"]) <= 1e-4);
        for i in 0..5 {
            let key = format!("features.{i}");
            assert!(max_rel_err(&out[&key], &refs[&format!("nonsquare.{key}")]) <= 1e-4, "{model} {key}");
        }
    }
}

#[test]
fn forward_refuses_bad_inputs_with_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = write_synthetic_weights("mixnet_s", dir.path());
    let bad_input = dir.path().join("bad.safetensors");
    let t = Tensor::zeros((3, 8, 8), candle_core::DType::F32, &Device::Cpu).expect("t");
    candle_core::safetensors::save(&HashMap::from([("x".to_string(), t)]), &bad_input).expect("write");
    let out = mixdet()
        .args(["forward", "--model", "mixnet_s", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(&bad_input)
        .arg("--output")
        .arg(dir.path().join("o.safetensors"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no tensor named `input`") && err.lines().count() == 1, "{err}");

    // Weights of another model: a strict mismatch, reported before anything runs.
    let good_input = dir.path().join("good.safetensors");
    let t = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).expect("t");
    candle_core::safetensors::save(&HashMap::from([("input".to_string(), t)]), &good_input).expect("write");
    let out = mixdet()
        .args(["forward", "--model", "mixnet_m", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(&good_input)
        .arg("--output")
        .arg(dir.path().join("o.safetensors"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weights do not match") && err.contains("wrong shape"), "{err}");

    // --output equal to --input never overwrites the user's file.
    let before = std::fs::read(&bad_input).expect("read");
    let out = mixdet()
        .args(["forward", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(&bad_input)
        .arg("--output")
        .arg(&bad_input)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&bad_input).expect("read"), before);
}

#[test]
fn classify_reports_bad_images_and_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = write_synthetic_weights("mixnet_s", dir.path());
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 definitely not a jpeg").expect("write");
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "hello").expect("write");
    let cat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/photos/cat.jpg");
    let out = mixdet()
        .arg("classify")
        .arg(&corrupt)
        .arg(&cat)
        .arg(&text)
        .args(["--model", "mixnet_s", "--top-k", "3", "--json", "--weights"])
        .arg(&weights)
        .output()
        .expect("run");
    assert!(!out.status.success(), "failures make the exit status non-zero");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 1, "the good image is still classified: {stdout}");
    let top = lines[0]["top_k"].as_array().expect("top_k");
    assert_eq!(top.len(), 3);
    let p: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().expect("p")).collect();
    assert!(p[0] >= p[1] && p[1] >= p[2] && p[0] <= 1.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt.jpg") && stderr.contains("notes.png"), "{stderr}");
    assert!(stderr.contains("2 of 3 images failed"), "{stderr}");
}

#[test]
fn models_lists_every_model_with_parameter_counts_and_macs() {
    let out = mixdet().args(["models", "--json"]).output().expect("run");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), mixdet_backbones::MODEL_NAMES.len() + mixdet_detect::BUILTIN_NAMES.len());
    let s = lines.iter().find(|l| l["model"] == "mixnet_s").expect("mixnet_s listed");
    // timm: sum(p.numel() for p in timm.create_model("mixnet_s").parameters()), and
    // torch.utils.flop_counter.FlopCounterMode at 224x224 (FLOPs / 2).
    assert_eq!(s["params"], 4_134_606);
    assert_eq!(s["macs"], 239_173_360);
    let d = lines.iter().find(|l| l["detector"] == "ssdlite320_mobilenet_v3_large").expect("detector listed");
    assert_eq!((d["params"].as_u64(), d["macs"].as_u64()), (Some(3_440_060), Some(583_171_904)));
    assert_eq!(s["features"].as_array().expect("features").len(), 5);

    // A built-in's own file is not listed twice; an edited copy is listed besides it.
    let dir = tempfile::tempdir().expect("tempdir");
    let edited = dir.path().join("edited.json");
    let builtin = root().join("crates/detect/configs/ssdlite320_mixnet_s_c3_shapes.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&builtin).expect("config")).expect("json");
    cfg["input_size"] = serde_json::json!([384, 384]);
    std::fs::write(&edited, cfg.to_string()).expect("write");
    let out = mixdet()
        .args(["models", "--json", "--detector"])
        .arg(&builtin)
        .arg("--detector")
        .arg(&edited)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|l| l["detector"] == "ssdlite320_mixnet_s_c3_shapes")
        .collect();
    let inputs: Vec<&serde_json::Value> = listed.iter().map(|l| &l["input"]).collect();
    assert_eq!(inputs, [&serde_json::json!([320, 320]), &serde_json::json!([384, 384])]);
}

#[test]
fn unknown_model_is_a_one_line_error() {
    let out = mixdet().args(["models-nope"]).output().expect("run");
    assert!(!out.status.success());
    let out = mixdet()
        .args(["classify", "x.jpg", "--model", "resnet50", "--weights", "w.safetensors"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown model \"resnet50\"") && err.lines().count() == 1, "{err}");
}
