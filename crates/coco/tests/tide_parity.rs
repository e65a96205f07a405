//! Parity of the error analysis with tidecv 1.0.1 on the committed fixtures
//! (coco_tools/fixtures/make_tide_fixtures.py writes each case's `tide.json`).

use std::path::{Path, PathBuf};

use mixdet_coco::{analyze_errors, load_results, ErrorParams, GroundTruth};
use serde_json::Value;

/// tidecv reports percent; the analysis returns fractions. Sums over classes may round in a
/// different order, so allow a few ulps.
const TOL: f64 = 1e-9;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/coco")
}

fn percent(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number")) / 100.0
}

#[test]
fn all_cases_match_tidecv() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/coco")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("tide.json").exists())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 4, "expected the four committed TIDE fixtures, found {cases:?}");
    for case in cases {
        let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let gt = GroundTruth::from_path(case.join("gt.json")).expect("gt.json");
        let dets = load_results(case.join("dt.json")).expect("dt.json");
        let text = std::fs::read_to_string(case.join("tide.json")).expect("tide.json");
        let want: Value = serde_json::from_str(&text).expect("tide.json parses");
        let got = analyze_errors(&gt, &dets, &ErrorParams::default());

        let check = |what: &str, got: f64, want: f64| {
            assert!((got - want).abs() <= TOL, "{name}: {what}: got {got}, tidecv {want}");
        };
        check("AP50", got.ap, percent(&want, "ap"));
        for share in &got.main {
            let kind = share.kind.name();
            check(&format!("dAP {kind}"), share.delta_ap, percent(&want["main_dap"], kind));
            assert_eq!(share.count as u64, want["counts"][kind].as_u64().expect("count"), "{name}: count {kind}");
        }
        check("FalsePos", got.false_pos_delta_ap, percent(&want["special_dap"], "FalsePos"));
        check("FalseNeg", got.false_neg_delta_ap, percent(&want["special_dap"], "FalseNeg"));
    }
}
