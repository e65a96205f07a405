//! `mixdet detect`'s filters and outputs: `--classes`, per-class `--score-threshold`, paths from
//! standard input with `--jsonl`, `--save-txt` and `--save-crops`, and their bad values.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::mixdet;

const MODEL: &str = "ssdlite512_mixnet_s_c3_shapes";

fn shapes(dir: &Path, n: usize) -> Vec<PathBuf> {
    let data = dir.join("data");
    let out = mixdet()
        .args(["synth", "--train", "0", "--seed", "9", "--size", "96", "--val", &n.to_string(), "--out"])
        .arg(&data)
        .output()
        .expect("synth");
    assert!(out.status.success());
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(data.join("val")).expect("ls").map(|e| e.expect("e").path()).collect();
    files.sort();
    files
}

/// `detect - --jsonl -` over `files` fed on standard input, with `extra` flags: the JSON lines.
fn jsonl(files: &[PathBuf], extra: &[&str]) -> Vec<serde_json::Value> {
    let mut child = mixdet()
        .args(["detect", "-", "--model", MODEL, "--no-overlay", "--jsonl", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    for f in files {
        writeln!(stdin, "{}", f.display()).expect("write path");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn stdin_paths_stream_one_json_line_per_image_and_filters_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = shapes(dir.path(), 6);
    let all = jsonl(&files, &[]);
    assert_eq!(all.len(), 6, "one line per image, the summaries on stderr");
    for (i, line) in all.iter().enumerate() {
        assert_eq!(line["index"], i);
        assert_eq!(line["path"], files[i].display().to_string());
        assert_eq!(line["size"], serde_json::json!([96, 96]));
    }
    let dets = |lines: &[serde_json::Value]| -> Vec<(String, f64)> {
        lines
            .iter()
            .flat_map(|l| l["detections"].as_array().cloned().unwrap_or_default())
            .map(|d| (d["name"].as_str().unwrap_or("").to_string(), d["score"].as_f64().unwrap_or(0.0)))
            .collect()
    };
    let everything = dets(&all);
    assert!(everything.iter().all(|(_, s)| *s >= 0.3));
    let names: std::collections::HashSet<&str> = everything.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.len() >= 2, "{names:?}");

    // One class kept, by name; a stricter threshold for it, by label index.
    let keep = everything.iter().map(|(n, _)| n.clone()).next().expect("a detection");
    let label =
        ["circle", "square", "triangle", "star", "hexagon", "ring"].iter().position(|n| *n == keep).expect("class") + 1;
    let filtered = dets(&jsonl(&files, &["--classes", &keep, "--score-threshold", &format!("0.3,{label}=0.9")]));
    let expected: Vec<(String, f64)> = everything.iter().filter(|(n, s)| *n == keep && *s >= 0.9).cloned().collect();
    assert_eq!(filtered, expected);
}

#[test]
fn yolo_labels_and_crops_match_the_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = shapes(dir.path(), 3);
    let out_dir = dir.path().join("out");
    let crops = dir.path().join("crops");
    let results = dir.path().join("r.json");
    let out = mixdet()
        .args(["detect", "--model", MODEL, "--save-txt", "--no-overlay", "--out"])
        .arg(&out_dir)
        .arg("--save-crops")
        .arg(&crops)
        .arg("--json")
        .arg(&results)
        .args(&files)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&results).expect("json")).expect("json");
    let classes = std::fs::read_to_string(out_dir.join("labels/classes.txt")).expect("classes");
    assert_eq!(classes.lines().collect::<Vec<_>>(), ["circle", "square", "triangle", "star", "hexagon", "ring"]);
    let mut crops_expected = 0;
    for (i, f) in files.iter().enumerate() {
        let stem = f.file_stem().expect("stem").to_string_lossy().to_string();
        let text = std::fs::read_to_string(out_dir.join(format!("labels/{stem}.txt"))).expect("labels");
        let mine: Vec<&serde_json::Value> = records.iter().filter(|r| r["image_id"] == i + 1).collect();
        assert_eq!(text.lines().count(), mine.len(), "{stem}");
        for (line, r) in text.lines().zip(&mine) {
            let v: Vec<f64> = line.split(' ').map(|x| x.parse().expect("number")).collect();
            assert_eq!(v[0] as i64, r["category_id"].as_i64().expect("id") - 1);
            let b: Vec<f64> = r["bbox"].as_array().expect("bbox").iter().map(|x| x.as_f64().expect("f")).collect();
            assert!(
                (v[1] - (b[0] + b[2] / 2.0) / 96.0).abs() < 1e-5 && (v[3] - b[2] / 96.0).abs() < 1e-5,
                "{line} {b:?}"
            );
            assert!(v[1..].iter().all(|x| (0.0..=1.0).contains(x)));
        }
        crops_expected += mine.len();
    }
    let crop_files: Vec<PathBuf> = std::fs::read_dir(&crops)
        .expect("crops")
        .flat_map(|d| std::fs::read_dir(d.expect("class").path()).expect("ls").map(|e| e.expect("e").path()))
        .collect();
    assert_eq!(crop_files.len(), crops_expected);
    assert!(crop_files.iter().all(|p| image::open(p).is_ok()));
}

#[test]
fn bad_filter_values_are_one_line_errors_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = shapes(dir.path(), 1);
    let out_dir = dir.path().join("out");
    for (flags, message) in [
        (vec!["--classes", "bus"], "--classes: unknown class \"bus\" (this detector's classes: circle, square"),
        (vec!["--classes", "0"], "--classes: class 0 is not a label of this detector (1..6)"),
        (vec!["--score-threshold", "1.5"], "--score-threshold: score threshold 1.5 is not in [0, 1]"),
        (vec!["--score-threshold", "0.3,star=-1"], "score threshold -1 is not in [0, 1]"),
        (vec!["--score-threshold", "0.3,dog=0.5"], "unknown class \"dog\""),
        (vec!["--score-threshold", "high"], "\"high\" is not a number"),
        (vec!["--tile", "16"], "--tile: tile size 16 is below 32 pixels"),
        (vec!["--tile", "64", "--tile-overlap", "1"], "--tile: tile overlap 1 is not in [0, 1)"),
    ] {
        let out = mixdet()
            .args(["detect", "--model", MODEL, "--out"])
            .arg(&out_dir)
            .args(&flags)
            .args(&files)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(message), "{flags:?}: {err}");
        assert!(!out_dir.exists(), "{flags:?}: nothing written");
    }
}

#[test]
fn tiled_detections_are_in_image_pixels_and_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = shapes(dir.path(), 2);
    let run = |extra: &[&str]| -> Vec<serde_json::Value> {
        let json = dir.path().join("t.json");
        let out = mixdet()
            .args(["detect", "--model", MODEL, "--no-overlay", "--json"])
            .arg(&json)
            .args(extra)
            .args(&files)
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("json")
    };
    let tiled = run(&["--tile", "64", "--tile-overlap", "0.5", "--tile-full"]);
    assert!(!tiled.is_empty());
    for r in &tiled {
        let b: Vec<f64> = r["bbox"].as_array().expect("bbox").iter().map(|x| x.as_f64().expect("f")).collect();
        assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[0] + b[2] <= 96.0 + 1e-3 && b[1] + b[3] <= 96.0 + 1e-3, "{b:?}");
    }
    // Merged across tiles: no two kept boxes of one class in one image overlap much.
    let iou = |a: &[f64], b: &[f64]| {
        let (x0, y0) = (a[0].max(b[0]), a[1].max(b[1]));
        let (x1, y1) = ((a[0] + a[2]).min(b[0] + b[2]), (a[1] + a[3]).min(b[1] + b[3]));
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        inter / (a[2] * a[3] + b[2] * b[3] - inter)
    };
    for (i, a) in tiled.iter().enumerate() {
        for b in &tiled[i + 1..] {
            if a["image_id"] == b["image_id"] && a["category_id"] == b["category_id"] {
                let v = |r: &serde_json::Value| -> Vec<f64> {
                    r["bbox"].as_array().expect("bbox").iter().map(|x| x.as_f64().expect("f")).collect()
                };
                assert!(
                    iou(&v(a), &v(b)) <= 0.5 + 1e-6,
                    "intersection over the smaller box is at most 0.5, so the IoU is too"
                );
            }
        }
    }
    // A tile at least the image's size is the whole image.
    assert_eq!(run(&["--tile", "96"]), run(&[]));
}

/// Classes left out take none of the `--max-detections` places: the filter runs inside
/// post-processing, not after it.
#[test]
fn class_filter_applies_before_the_detection_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = shapes(dir.path(), 8);
    let all = jsonl(&files, &[]);
    let names = |l: &serde_json::Value| -> Vec<String> {
        l["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .map(|d| d["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (i, wanted) = all
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let n = names(l);
            n.iter().skip(1).find(|c| **c != n[0]).map(|c| (i, c.clone()))
        })
        .expect("an image where the best detection is of another class");
    let capped = jsonl(&files[i..=i], &["--max-detections", "1", "--classes", &wanted]);
    assert_eq!(names(&capped[0]), [wanted]);
}
