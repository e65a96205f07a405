//! End-to-end tests of `mixdet detect` with torchvision's SSDLite layout and synthetic weights.

mod common;

use common::{mixdet, root, synthetic_ssdlite};

use std::collections::HashMap;

use candle_core::{Device, Tensor};

#[test]
fn detect_writes_overlays_json_and_reports_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = synthetic_ssdlite(dir.path());
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    for f in ["cat.jpg", "coffee.jpg", "astronaut.jpg"] {
        std::fs::copy(root().join("examples/photos").join(f), images.join(f)).expect("copy");
    }
    std::fs::write(images.join("broken.png"), b"\x89PNG\r\n\x1a\n truncated").expect("write");
    let out = dir.path().join("out");
    let json = dir.path().join("dets.json");
    let run = mixdet()
        .arg("detect")
        .arg(&images)
        .args(["--model", "ssdlite320_mobilenet_v3_large", "--weights"])
        .arg(&weights)
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .arg(&json)
        .args(["--score-threshold", "0.05", "--batch", "2"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "a broken file makes the exit status non-zero");
    assert!(stderr.contains("broken.png"), "{stderr}");
    for f in ["cat.jpg", "coffee.jpg", "astronaut.jpg"] {
        assert!(stdout.contains(&format!("{f}: ")), "{stdout}");
        let overlay = image::open(out.join(f)).expect("overlay written");
        let original = image::open(images.join(f)).expect("input intact");
        assert_eq!((overlay.width(), overlay.height()), (original.width(), original.height()));
    }
    assert!(stdout.contains("Speed: ") && stdout.contains("at shape (2, 3, 320, 320)"), "{stdout}");
    let records: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("valid");
    assert!(!records.is_empty());
    for r in &records {
        let b = r["bbox"].as_array().expect("bbox");
        assert!(b[2].as_f64().expect("w") >= 0.0 && b[3].as_f64().expect("h") >= 0.0);
        assert!(r["score"].as_f64().expect("score") >= 0.05);
        assert!((1..=90).contains(&r["category_id"].as_i64().expect("category")));
    }
}

#[test]
fn detect_never_overwrites_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = synthetic_ssdlite(dir.path());
    let img = dir.path().join("cat.jpg");
    std::fs::copy(root().join("examples/photos/cat.jpg"), &img).expect("copy");
    let before = std::fs::read(&img).expect("read");
    let run = mixdet()
        .arg("detect")
        .arg(&img)
        .args(["--model", "ssdlite320_mobilenet_v3_large", "--weights"])
        .arg(&weights)
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(std::fs::read(&img).expect("read"), before, "the input is untouched");
    assert!(dir.path().join("cat_1.jpg").exists(), "the overlay takes another name");
}

#[test]
fn detect_errors_are_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let run = mixdet().arg("detect").arg(&empty).args(["--weights", "w.safetensors"]).output().expect("run");
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no images") && err.lines().count() == 1, "{err}");
    let run = mixdet()
        .arg("detect")
        .arg(root().join("examples/photos/cat.jpg"))
        .args(["--model", "nope", "--weights", "w.safetensors"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("unknown detector \"nope\""), "{err}");
}

#[test]
fn forward_serves_detectors_with_torchvision_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refs = candle_core::safetensors::load(
        root().join("tests/fixtures/ssdlite/ssdlite320_mobilenet_v3_large.safetensors"),
        &Device::Cpu,
    )
    .expect("fixture");
    // The fixture's calibrated BatchNorm statistics replace the synthetic ones.
    let weights = synthetic_ssdlite(dir.path());
    let mut sd = candle_core::safetensors::load(&weights, &Device::Cpu).expect("weights");
    for (k, t) in &refs {
        if let Some(key) = k.strip_prefix("bn.") {
            sd.insert(key.to_string(), t.clone());
        }
    }
    candle_core::safetensors::save(&sd, &weights).expect("write");
    let pixels: Vec<f32> = mixdet_backbones::synthetic_weights::synthetic_values("image.ssdlite", &[3, 320, 320])
        .into_iter()
        .map(|v| ((v + 1.0) * 0.5 - 0.5) / 0.5)
        .collect();
    let input = Tensor::from_vec(pixels, (1, 3, 320, 320), &Device::Cpu).expect("input");
    let input_path = dir.path().join("in.safetensors");
    candle_core::safetensors::save(&HashMap::from([("input".to_string(), input)]), &input_path).expect("write");
    let out_path = dir.path().join("out.safetensors");
    let run = mixdet()
        .args(["forward", "--model", "ssdlite320_mobilenet_v3_large", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(&input_path)
        .arg("--output")
        .arg(&out_path)
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let out = candle_core::safetensors::load(&out_path, &Device::Cpu).expect("output");
    let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    };
    assert_eq!(out["cls_logits"].dims(), &[1, 3234, 91]);
    assert!(max_diff(&out["cls_logits"], &refs["cls_logits"]) < 1e-4 * 10.0);
    assert!(max_diff(&out["anchors"], &refs["anchors"]) <= 1e-4);
    assert!(max_diff(&out["boxes.0"], &refs["det.boxes"]) <= 1e-3);
    assert_eq!(out["labels.0"].to_vec1::<i64>().expect("labels"), refs["det.labels"].to_vec1::<i64>().expect("labels"));
}
