//! The detectors shipped with weights compiled into the binary (the default person detector and
//! the shapes detector) and `mixdet convert`.

mod common;

use common::{mixdet, root, synthetic_ssdlite};

/// COCO AP@[.5:.95] of the shipped shapes detector on a shapes set it never saw must stay above this
/// floor: the shipped weights score 0.756 on this test's 24 images (seed 4242) and 0.738 on the
/// README's 500-image seed-7 set; the margin absorbs float differences between machines only.
const AP_FLOOR: f64 = 0.73;

/// `mixdet eval --images dir/data/val --annotations ann` with `extra` arguments, detections saved
/// to `dir/dets.json`; returns the `--json-out` report.
fn eval_images(dir: &std::path::Path, ann: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let report = dir.join("report.json");
    let run = mixdet()
        .arg("eval")
        .args(extra)
        .arg("--images")
        .arg(dir.join("data/val"))
        .arg("--annotations")
        .arg(ann)
        .arg("--save-results")
        .arg(dir.join("dets.json"))
        .arg("--json-out")
        .arg(&report)
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json")
}

#[test]
fn shipped_detector_runs_without_weights_and_finds_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = mixdet()
        .args(["synth", "--out"])
        .arg(&data)
        .args(["--train", "0", "--val", "24", "--seed", "4242"])
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report = eval_images(
        dir.path(),
        &data.join("annotations/instances_val.json"),
        &["--model", "ssdlite512_mixnet_s_c3_shapes"],
    );
    let ap = report["stats"][0].as_f64().expect("AP");
    assert!(ap >= AP_FLOOR, "AP {ap} below {AP_FLOOR}");

    // The shapes detector on the example scenes.
    let out = dir.path().join("overlays");
    let run = mixdet()
        .arg("detect")
        .arg(root().join("examples/images"))
        .args(["--model", "ssdlite512_mixnet_s_c3_shapes", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for f in ["shapes_02.png", "shapes_07.png", "shapes_08.png", "shapes_12.png"] {
        assert!(out.join(f).is_file(), "overlay of {f}");
        assert!(stdout.contains(&format!("{f}: ")), "{stdout}");
    }
}

/// The README's main job: the default (person) detector on the example photos boxes the people
/// and nothing in the photos without people, at the default score threshold.
#[test]
fn main_job_boxes_the_people_in_the_example_photos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("overlays");
    let json = dir.path().join("people.json");
    let run = mixdet()
        .arg("detect")
        .arg(root().join("examples/photos"))
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for (photo, summary) in [
        ("astronaut.jpg", "1 person"),
        ("camera.jpg", "1 person"),
        ("grace_hopper.jpg", "1 person"),
        ("cat.jpg", "no detections"),
        ("coffee.jpg", "no detections"),
        ("rocket.jpg", "no detections"),
    ] {
        assert!(stdout.contains(&format!("{photo}: {summary} (")), "{photo}: {stdout}");
        assert!(out.join(photo).is_file(), "overlay of {photo}");
    }
    // COCO results: category 1 (person), boxes covering most of each portrait.
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let results = results.as_array().expect("array");
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(r["category_id"], 1);
        assert!(r["score"].as_f64().expect("score") > 0.85, "{r}");
        assert!(r["bbox"][3].as_f64().expect("height") > 400.0, "{r}");
    }
}

#[test]
fn detector_without_builtin_weights_asks_for_them() {
    let run = mixdet()
        .arg("detect")
        .arg(root().join("examples/images/shapes_02.png"))
        .args(["--model", "ssdlite320_mixnet_s"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("--weights") && err.lines().count() == 1, "{err}");
}

#[test]
fn convert_writes_f16_and_never_replaces_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = synthetic_ssdlite(dir.path());
    let out = dir.path().join("half.safetensors");
    let run = mixdet()
        .arg("convert")
        .arg("--weights")
        .arg(&weights)
        .arg("--out")
        .arg(&out)
        .args(["--dtype", "f16"])
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let full = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).expect("f32");
    let half = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).expect("f16");
    assert_eq!(full.len(), half.len());
    for (k, t) in &full {
        let h = &half[k];
        assert_eq!(h.dims(), t.dims(), "{k}");
        if t.dtype().is_float() {
            assert_eq!(h.dtype(), candle_core::DType::F16, "{k}");
        }
    }
    // The converted file serves the detector like the original.
    let run = mixdet()
        .arg("detect")
        .arg(root().join("examples/photos/cat.jpg"))
        .args(["--model", "ssdlite320_mobilenet_v3_large", "--no-overlay", "--weights"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let before = std::fs::read(&out).expect("read");
    let again = mixdet().arg("convert").arg("--weights").arg(&weights).arg("--out").arg(&out).output().expect("run");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).expect("read"), before, "the existing file is untouched");
}

/// `mixdet eval --images` with the default (person) detector: a COCO-format set whose boxes are
/// all category 1 runs through the TF-family pipeline and is scored.
#[test]
fn eval_runs_with_the_default_person_detector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = mixdet()
        .args(["synth", "--out"])
        .arg(&data)
        .args(["--train", "0", "--val", "3", "--seed", "11", "--size", "160"])
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let ann = data.join("annotations/instances_val.json");
    let mut gt: serde_json::Value = serde_json::from_slice(&std::fs::read(&ann).expect("gt")).expect("json");
    for a in gt["annotations"].as_array_mut().expect("annotations") {
        a["category_id"] = 1.into();
    }
    gt["categories"] = serde_json::json!([{"id": 1, "name": "person"}]);
    std::fs::write(&ann, gt.to_string()).expect("write gt");
    let report = eval_images(dir.path(), &ann, &[]);
    let stats = report["stats"].as_array().expect("stats");
    assert_eq!(stats.len(), 12);
    assert!(stats.iter().all(|s| s.as_f64().is_some_and(|v| (-1.0..=1.0).contains(&v))), "{stats:?}");
    let dets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("dets.json")).expect("dets")).expect("json");
    assert!(dets.as_array().expect("array").iter().all(|d| d["category_id"] == 1), "person only");
}
