//! `mixdet export` through the built binary: a model is written whole with its metadata, bad
//! requests are refused with one line and write nothing, an existing file is kept; and the
//! committed onnxruntime check (`coco_tools/export/check_onnx.py`) covers every model.

mod common;

use common::{mixdet, root};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn exports_a_detector_with_nms_and_its_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("person.onnx");
    let out = mixdet()
        .args(["export", "--model", "ssdlite300_mobilenet_v2_person", "--nms", "--dynamic-batch", "--out"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let model = mixdet_onnx::decode(&std::fs::read(&path).expect("read")).expect("an ONNX model");
    assert_eq!(model.opset_import[0].version, 17);
    let meta: std::collections::HashMap<_, _> =
        model.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
    assert_eq!(meta["input_name"], "images");
    assert_eq!(meta["input_size"], "[300, 300]");
    assert_eq!(meta["num_anchors"], "1917");
    assert_eq!(meta["class_names"], r#"["__background__","person"]"#);
    let graph = model.graph.expect("graph");
    let outputs: Vec<_> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        outputs,
        ["boxes", "scores", "cls_logits", "bbox_regression", "det_boxes", "det_scores", "det_labels", "num_dets"]
    );
    assert!(graph.node.iter().any(|n| n.op_type == "NonMaxSuppression"));
    assert!(!graph.node.iter().any(|n| n.op_type == "BatchNormalization"), "BatchNorm is folded");
    assert!(
        !dir.path().read_dir().expect("dir").any(|e| e.expect("entry").file_name() != "person.onnx"),
        "temp files left"
    );
}

/// `--half` stores the layers' weights as float16 (each followed by a `Cast`): about half the file.
#[test]
fn half_weights_halve_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (full, half) = (dir.path().join("full.onnx"), dir.path().join("half.onnx"));
    for (path, extra) in [(&full, None), (&half, Some("--half"))] {
        let out = mixdet()
            .args(["export", "--model", "mixnet_s", "--synthetic-weights", "--out"])
            .arg(path)
            .args(extra)
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).expect("size").len() as f64;
    assert!(size(&half) < 0.55 * size(&full), "{} vs {}", size(&half), size(&full));
    let graph = mixdet_onnx::decode(&std::fs::read(&half).expect("read")).expect("model").graph.expect("graph");
    let float16 = mixdet_onnx::proto::DataType::Float16 as i32;
    let halves = graph.initializer.iter().filter(|t| t.data_type == float16).count();
    let casts = graph.node.iter().filter(|n| n.op_type == "Cast").count();
    assert!(halves > 100 && casts == halves, "{halves} float16 initializers, {casts} casts");
}

#[test]
fn bad_requests_get_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.onnx");
    let cases: [(&[&str], &str); 6] = [
        (&["--model", "nosuch", "--synthetic-weights"], "nosuch: not a backbone"),
        (&["--model", "mixnet_s", "--synthetic-weights", "--opset", "12"], "opset 12 is not supported"),
        (&["--model", "mobilenet_v3_large", "--synthetic-weights", "--opset", "13"], "HardSwish needs opset 14"),
        (&["--model", "mixnet_s", "--synthetic-weights", "--nms"], "--nms applies to detectors"),
        (&["--model", "ssdlite300_mobilenet_v2_person", "--features"], "--features applies to backbones"),
        (&["--model", "ssdlite300_mobilenet_v2_person", "--input", "320,320"], "exports at its 300x300 input"),
    ];
    for (args, expected) in cases {
        // The error stays one line even where the environment asks for backtraces.
        let out =
            mixdet().arg("export").args(args).arg("--out").arg(&path).env("RUST_BACKTRACE", "1").output().expect("run");
        let err = stderr_of(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!path.exists(), "{args:?} wrote a file");
    }
    std::fs::write(&path, b"mine").expect("write");
    let out = mixdet()
        .args(["export", "--model", "mixnet_s", "--synthetic-weights", "--out"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("already exists"), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(&path).expect("read"), b"mine");
}

/// The onnxruntime check's committed results: every model `mixdet models` lists was exported at
/// batch 1 and at a dynamic batch of 3 (backbones also on a non-square input, detectors also with
/// NMS), passed `onnx.checker`, and matched `mixdet forward` within its tolerance, or within the
/// float32 rounding that onnxruntime itself shows with and without its graph optimisations.
#[test]
fn onnxruntime_check_covers_every_model() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/onnx/onnxruntime_check.json")).expect("fixture");
    let check: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let cases = check["cases"].as_array().expect("cases");
    let names = mixdet_backbones::MODEL_NAMES.iter().chain(mixdet_detect::BUILTIN_NAMES.iter());
    for name in names {
        let mine: Vec<_> = cases.iter().filter(|c| c["model"] == *name).collect();
        let variants: Vec<&str> = mine.iter().filter_map(|c| c["variant"].as_str()).collect();
        assert!(variants.len() >= 3, "{name}: variants {variants:?}");
        for c in &mine {
            assert_eq!(c["checker"], "ok", "{name} {}: onnx.checker", c["variant"]);
            let verdict = c["verdict"].as_str().unwrap_or("");
            assert!(verdict == "pass" || verdict == "float-limited", "{name} {}: {verdict}", c["variant"]);
        }
        assert!(mine.iter().any(|c| c["input"][0] == 3), "{name}: no batch-3 case");
    }
    let requests = check["requests"].as_array().expect("requests");
    assert!(requests.len() >= 4 && requests.iter().all(|r| r["pass"] == true), "bad-request checks");
}
