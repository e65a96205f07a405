//! End-to-end tests of `mixdet anchors` on hand-made annotation files whose answers are known
//! from the anchor layout of `ssdlite320_mixnet_s_c3_shapes` (the shipped detector's layers and
//! anchor scales at a 320x320 input).

mod common;

use serde_json::{json, Value};

fn run(annotations: &serde_json::Value, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("instances.json");
    std::fs::write(&path, annotations.to_string()).expect("write annotations");
    let out = common::mixdet()
        .args(["anchors", "--model", "ssdlite320_mixnet_s_c3_shapes", "--annotations"])
        .arg(&path)
        .args(extra)
        .output()
        .expect("run mixdet anchors");
    (out, dir)
}

fn annotation(id: i64, image_id: i64, bbox: [f64; 4], iscrowd: u8) -> Value {
    json!({"id": id, "image_id": image_id, "category_id": 1, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": iscrowd})
}

#[test]
fn exact_anchor_tiny_box_scaling_and_crowds() {
    // The last level (1x1) of this detector has a square anchor of 0.88 x the input centred
    // in the frame: [19.2, 19.2, 300.8, 300.8] at 320x320, the same box at twice the size in a
    // 640x640 image after the resize.
    let gt = json!({
        "images": [{"id": 1, "width": 320, "height": 320}, {"id": 2, "width": 640, "height": 640}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            annotation(1, 1, [19.2, 19.2, 281.6, 281.6], 0),
            annotation(2, 2, [38.4, 38.4, 563.2, 563.2], 0),
            annotation(3, 1, [100.0, 100.0, 2.0, 2.0], 0),
            annotation(4, 1, [0.0, 0.0, 1.0, 1.0], 1),
        ],
    });
    let (out, _dir) = run(&gt, &["--json"]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["anchors"], 12834);
    let bucket =
        |name: &str| report["buckets"].as_array().expect("buckets").iter().find(|b| b["bucket"] == name).cloned();
    let all = bucket("all").expect("all");
    assert_eq!(all["boxes"], 3, "the crowd box is left out");
    assert!((all["covered"].as_f64().expect("covered") - 2.0 / 3.0).abs() < 1e-9);
    let large = bucket("large").expect("large");
    assert_eq!((large["boxes"].as_u64(), large["median_best_iou"].as_f64()), (Some(2), Some(1.0)));
    let small = bucket("small").expect("small");
    assert_eq!((small["boxes"].as_u64(), small["covered"].as_f64()), (Some(1), Some(0.0)));
    let levels = report["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 7);
    assert_eq!(levels[6], json!({"grid": [1, 1], "anchors": 6, "best_anchor_for": 2}));
    assert_eq!(levels[0]["best_anchor_for"], 1, "the 2-pixel box is closest to a stride-8 anchor");

    let (out, _dir) = run(&gt, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("12834 anchors on 7 levels") && text.contains("1x1"), "{text}");
}

#[test]
fn images_without_sizes_and_bad_thresholds_are_clear_errors() {
    let gt = json!({
        "images": [{"id": 7, "file_name": "a.png"}],
        "categories": [{"id": 1}],
        "annotations": [annotation(1, 7, [1.0, 1.0, 5.0, 5.0], 0)],
    });
    let (out, _dir) = run(&gt, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("instances.json") && err.contains("image 7") && err.contains("width"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let (out, _dir) = run(&gt, &["--iou", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--iou"));

    let (out, _dir) = run(&json!({"images": []}), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("instances.json"), "{err}");
}
