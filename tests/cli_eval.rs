//! End-to-end tests of `mixdet eval` against the committed pycocotools fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(case: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coco").join(case).join(file)
}

fn mixdet(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mixdet")).arg("eval").args(args).output().expect("run mixdet")
}

fn run_eval(gt: &Path, results: &Path, extra: &[&std::ffi::OsStr]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["--gt".as_ref(), gt.as_os_str(), "--results".as_ref(), results.as_os_str()];
    args.extend_from_slice(extra);
    mixdet(&args)
}

fn expected(case: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(case, "expected.json")).expect("expected.json")).expect("json")
}

#[test]
fn prints_summary_table_and_writes_json_and_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (json_out, png) = (dir.path().join("out.json"), dir.path().join("pr.png"));
    let out = run_eval(
        &fixture("golden", "gt.json"),
        &fixture("golden", "dt.json"),
        &["--json-out".as_ref(), json_out.as_os_str(), "--plot-pr".as_ref(), png.as_os_str()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));

    let want = expected("golden");
    let stats: Vec<f64> =
        want["runs"][0]["stats"].as_array().expect("stats").iter().map(|v| v.as_f64().expect("f64")).collect();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.430");
    assert_eq!(lines[11], " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000");
    for (line, s) in lines.iter().zip(&stats) {
        assert!(line.ends_with(&format!("] = {s:.3}")), "{line} vs {s}");
    }
    // Per-category table: names, best AP first, the category without GT last.
    let table: Vec<&str> = lines[13..].iter().map(|l| l.split_whitespace().next().unwrap_or("")).collect();
    assert_eq!(table, ["category", "a", "b", "c"]);

    let doc: Value = serde_json::from_slice(&std::fs::read(&json_out).expect("json-out")).expect("valid json");
    let got: Vec<f64> = doc["stats"].as_array().expect("stats").iter().map(|v| v.as_f64().expect("f64")).collect();
    assert_eq!(got, stats);
    let cats = doc["per_category"].as_array().expect("per_category");
    assert_eq!(cats.len(), 3);
    for (g, w) in cats.iter().zip(want["runs"][0]["per_category"].as_array().expect("per_category")) {
        assert_eq!(g["id"], w["id"]);
        for key in ["ap", "ap50", "ap75", "ar100"] {
            assert_eq!(g[key].as_f64(), w[key].as_f64(), "{key}");
        }
    }
    assert_eq!(cats[0]["name"], "a");
    assert_eq!(doc["params"]["maxDets"], serde_json::json!([1, 10, 100]));
    assert_eq!(doc["params"]["useCats"], 1);

    let img = image::open(&png).expect("a PNG");
    assert_eq!((img.width(), img.height()), (800, 600));
}

#[test]
fn parameter_flags_match_pycocotools_variants() {
    // tied_scores' second run is pycocotools with maxDets=[5, 1, 50].
    let dir = tempfile::tempdir().expect("tempdir");
    let json_out = dir.path().join("out.json");
    let out = run_eval(
        &fixture("tied_scores", "gt.json"),
        &fixture("tied_scores", "dt.json"),
        &["--max-dets".as_ref(), "5,1,50".as_ref(), "--json-out".as_ref(), json_out.as_os_str()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&json_out).expect("json-out")).expect("json");
    assert_eq!(doc["stats"], expected("tied_scores")["runs"][1]["stats"]);

    let out = run_eval(
        &fixture("crowds", "gt.json"),
        &fixture("crowds", "dt.json"),
        &["--class-agnostic".as_ref(), "--json-out".as_ref(), json_out.as_os_str()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&json_out).expect("json-out")).expect("json");
    assert_eq!(doc["stats"], expected("crowds")["runs"][1]["stats"]);
    assert_eq!(doc["per_category"], serde_json::json!([]));
}

fn failing(gt: &Path, results_json: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dets.json");
    std::fs::write(&path, results_json).expect("write");
    let out = run_eval(gt, &path, &[]);
    assert_eq!(out.status.code(), Some(1), "should fail: {results_json}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("dets.json"), "no file name in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_input_gives_clear_errors() {
    let gt = fixture("golden", "gt.json");
    let ok = r#"{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}"#;
    let e = failing(&gt, &format!("[{ok}, {ok}, {{\"image_id\": 1"));
    assert!(e.contains("results[2]") && e.contains("EOF"), "{e}");
    let e = failing(&gt, &format!(r#"[{ok}, {{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}}]"#));
    assert!(e.contains("results[1]: missing field `score`"), "{e}");
    let e =
        failing(&gt, &format!(r#"[{ok}, {{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": NaN}}]"#));
    assert!(e.contains("results[1]"), "{e}");
    let e =
        failing(&gt, &format!(r#"[{ok}, {{"image_id": 99, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}}]"#));
    assert!(e.contains("results[1]: field `image_id`: image 99 is not in the ground truth"), "{e}");
    let e = failing(&gt, "[]");
    assert!(e.contains("empty"), "{e}");
    let e = failing(&gt, &format!(r#"[{ok}, {{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10], "score": 0.5}}]"#));
    assert!(e.contains("results[1]: invalid length 3"), "{e}");

    let out = mixdet(&["--gt".as_ref(), gt.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--results"));
}

#[test]
fn accepted_oddities_warn_and_evaluate_like_pycocotools() {
    // quirks holds a detection of an unknown category and one with a negative width.
    let out = run_eval(&fixture("quirks", "gt.json"), &fixture("quirks", "dt.json"), &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("category unknown to the ground truth"), "{stderr}");
    assert!(stderr.contains("negative width or height"), "{stderr}");
    let stats = expected("quirks")["runs"][0]["stats"][0].as_f64().expect("AP");
    let first = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    assert!(first.ends_with(&format!("= {stats:.3}")), "{first}");
}

#[test]
fn errors_flag_prints_and_writes_the_tide_breakdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json_out = dir.path().join("out.json");
    let out = run_eval(
        &fixture("mixed", "gt.json"),
        &fixture("mixed", "dt.json"),
        &["--errors".as_ref(), "--json-out".as_ref(), json_out.as_os_str()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let tide: Value =
        serde_json::from_slice(&std::fs::read(fixture("mixed", "tide.json")).expect("tide.json")).expect("json");
    let ap = tide["ap"].as_f64().expect("ap");
    assert!(stdout.contains(&format!("TIDE AP50 {ap:.2};")), "{stdout}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json_out).expect("json-out")).expect("valid json");
    let main = doc["errors"]["main"].as_array().expect("errors.main");
    assert_eq!(main.len(), 6);
    for share in main {
        let kind = share["kind"].as_str().expect("kind");
        let (count, dap) =
            (tide["counts"][kind].as_u64().expect("count"), tide["main_dap"][kind].as_f64().expect("dap"));
        assert_eq!(share["count"].as_u64(), Some(count), "{kind}");
        assert!((share["delta_ap"].as_f64().expect("delta_ap") * 100.0 - dap).abs() < 1e-9, "{kind}");
        // The table row: type, count, dAP in points.
        let row = format!("{kind:<9} {count:>6} {dap:>6.2}");
        assert!(stdout.lines().any(|l| l == row), "no row {row:?} in\n{stdout}");
    }
    let sizes = doc["errors"]["by_size"].as_array().expect("by_size");
    assert_eq!(
        sizes.iter().map(|s| s["size"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        ["small", "medium", "large"]
    );

    // Without the flag the JSON has no errors section.
    let plain = run_eval(
        &fixture("mixed", "gt.json"),
        &fixture("mixed", "dt.json"),
        &["--json-out".as_ref(), json_out.as_os_str()],
    );
    assert!(plain.status.success());
    let doc: Value = serde_json::from_slice(&std::fs::read(&json_out).expect("json-out")).expect("valid json");
    assert!(doc.get("errors").is_none());
}
