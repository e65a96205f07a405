//! `mixdet eval --images --annotations`: a detector run over a COCO-format data set, evaluated.
//!
//! The ground truth is made from the detector's own confident detections, so the evaluation of the
//! same detector must find every GT box at every IoU threshold: AR@100 = 1. (AP stays below 1
//! only because the degenerate, zero-width boxes left out of the GT still count as false positives.)

mod common;

use common::{mixdet, root, synthetic_ssdlite};

#[test]
fn dataset_mode_runs_the_detector_and_evaluates_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = synthetic_ssdlite(dir.path());
    let names = ["cat.jpg", "coffee.jpg", "astronaut.jpg"];
    let images = root().join("examples/photos");
    // 1. Confident detections of the detector itself...
    let dets_path = dir.path().join("confident.json");
    let run = mixdet()
        .arg("detect")
        .args(names.iter().map(|n| images.join(n)))
        .args(["--model", "ssdlite320_mobilenet_v3_large", "--weights"])
        .arg(&weights)
        .args(["--no-overlay", "--score-threshold", "0.4", "--json"])
        .arg(&dets_path)
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let dets: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&dets_path).expect("read")).expect("json");
    assert!(dets.len() >= 3, "the synthetic detector is confident about something");
    // ...become the ground truth (image ids are the 1-based input positions). Boxes clipped to
    // (almost) nothing at the image border are left out: a zero-area GT can never be matched.
    let annotations: Vec<serde_json::Value> = dets
        .iter()
        .filter(|d| d["bbox"][2].as_f64().unwrap_or(0.0) >= 1.0 && d["bbox"][3].as_f64().unwrap_or(0.0) >= 1.0)
        .enumerate()
        .map(|(i, d)| {
            let b = d["bbox"].as_array().expect("bbox");
            let area = b[2].as_f64().expect("w") * b[3].as_f64().expect("h");
            serde_json::json!({"id": i + 1, "image_id": d["image_id"], "category_id": d["category_id"],
                               "bbox": d["bbox"], "area": area, "iscrowd": 0})
        })
        .collect();
    let mut gt_images: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| serde_json::json!({"id": i + 1, "file_name": n, "width": 1, "height": 1}))
        .collect();
    gt_images.push(serde_json::json!({"id": 4, "file_name": "missing.jpg", "width": 1, "height": 1}));
    let categories: Vec<serde_json::Value> =
        (1..=90).map(|id| serde_json::json!({"id": id, "name": format!("c{id}")})).collect();
    let gt = dir.path().join("instances.json");
    std::fs::write(
        &gt,
        serde_json::json!({"images": gt_images, "annotations": annotations, "categories": categories}).to_string(),
    )
    .expect("write");

    // 2. Evaluating the same detector on that data set.
    let metrics = dir.path().join("metrics.json");
    let saved = dir.path().join("dets.json");
    let run = mixdet()
        .arg("eval")
        .arg("--images")
        .arg(&images)
        .arg("--annotations")
        .arg(&gt)
        .args(["--model", "ssdlite320_mobilenet_v3_large", "--weights"])
        .arg(&weights)
        .args(["--batch", "1", "--json-out"])
        .arg(&metrics)
        .arg("--save-results")
        .arg(&saved)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "the missing image makes the exit status non-zero");
    assert!(stderr.contains("missing.jpg"), "{stderr}");
    assert!(
        stdout.contains("Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000"),
        "{stdout}"
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).expect("metrics")).expect("json");
    assert_eq!(m["stats"][8].as_f64(), Some(1.0), "AR@100: every GT box found at every IoU threshold");
    assert!(m["stats"][1].as_f64().expect("AP50") > 0.9, "{}", m["stats"]);
    assert_eq!(m["params"]["imgIds"], serde_json::json!([1, 2, 3]), "the unreadable image is left out");
    let saved: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&saved).expect("dets")).expect("json");
    assert!(saved.len() >= dets.len());

    // 3. --limit evaluates a prefix of the images.
    let run = mixdet()
        .arg("eval")
        .arg("--images")
        .arg(&images)
        .arg("--annotations")
        .arg(&gt)
        .args(["--model", "ssdlite320_mobilenet_v3_large", "--weights"])
        .arg(&weights)
        .args(["--limit", "1", "--json-out"])
        .arg(&metrics)
        .arg("--save-results")
        .arg(dir.path().join("one.json"))
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).expect("metrics")).expect("json");
    assert_eq!(m["params"]["imgIds"], serde_json::json!([1]));
}
