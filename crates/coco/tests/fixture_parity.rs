//! Parity with pycocotools on the committed fixtures (coco_tools/fixtures/make_coco_fixtures.py).

use std::path::{Path, PathBuf};

use mixdet_coco::{evaluate, load_results, AreaRange, GroundTruth, Params};
use serde_json::Value;

const TOL: f64 = 1e-9;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/coco")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// Applies an `expected.json` run's pycocotools Params overrides.
fn apply_overrides(p: &mut Params, overrides: &Value) {
    let o = overrides.as_object().expect("params object");
    for (key, v) in o {
        match key.as_str() {
            "useCats" => p.use_cats = v.as_i64().expect("useCats") != 0,
            "maxDets" => p.max_dets = f64s(v).into_iter().map(|x| x as usize).collect(),
            "iouThrs" => p.iou_thrs = f64s(v),
            "recThrs" => p.rec_thrs = f64s(v),
            "imgIds" => p.img_ids = f64s(v).into_iter().map(|x| x as i64).collect(),
            "catIds" => p.cat_ids = f64s(v).into_iter().map(|x| x as i64).collect(),
            "areaRng" => {
                // pycocotools keeps its default labels; the fixtures give four ranges.
                let labels = ["all", "small", "medium", "large"];
                p.area_rngs = v
                    .as_array()
                    .expect("areaRng")
                    .iter()
                    .zip(labels)
                    .map(|(r, l)| {
                        let r = f64s(r);
                        AreaRange::new(l, r[0], r[1])
                    })
                    .collect();
            }
            other => panic!("unknown override {other}"),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL * b.abs().max(1.0)
}

#[test]
fn all_fixtures_match_pycocotools() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/coco")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "expected the committed fixtures, found {cases:?}");
    let (mut numbers, mut bit_exact, mut runs) = (0usize, 0usize, 0usize);
    for case in &cases {
        let gt = GroundTruth::from_path(case.join("gt.json")).expect("gt");
        let dets = load_results(case.join("dt.json")).expect("dt");
        let expected: Value =
            serde_json::from_slice(&std::fs::read(case.join("expected.json")).expect("expected")).expect("json");
        for run in expected["runs"].as_array().expect("runs") {
            runs += 1;
            let what = format!("{} {}", case.display(), run["params"]);
            let mut params = Params::for_ground_truth(&gt);
            apply_overrides(&mut params, &run["params"]);
            let eval = evaluate(&gt, &dets, &params).expect("evaluate");
            let shape = eval.shape();
            assert_eq!(
                f64s(&run["shape"]),
                vec![shape.t as f64, shape.r as f64, shape.k as f64, shape.a as f64, shape.m as f64],
                "{what}"
            );

            let mut check = |name: String, got: f64, want: f64| {
                assert!(close(got, want), "{what}: {name}: got {got:e}, pycocotools {want:e}");
                // Checksums are summed in a different order on each side: never bit-exact.
                if !name.ends_with(" sum") {
                    numbers += 1;
                    bit_exact += usize::from(got.to_bits() == want.to_bits());
                }
            };
            let stats = eval.stats().expect("stats");
            for (i, (g, w)) in stats.iter().zip(f64s(&run["stats"])).enumerate() {
                check(format!("stats[{i}]"), *g, w);
            }
            let per_cat = eval.per_category(&gt.category_names());
            let want_cats = run["per_category"].as_array().expect("per_category");
            assert_eq!(per_cat.len(), want_cats.len(), "{what}");
            for (g, w) in per_cat.iter().zip(want_cats) {
                assert_eq!(g.id, w["id"].as_i64().expect("id"), "{what}");
                check(format!("cat {} ap", g.id), g.ap, w["ap"].as_f64().expect("ap"));
                check(format!("cat {} ap50", g.id), g.ap50, w["ap50"].as_f64().expect("ap50"));
                check(format!("cat {} ap75", g.id), g.ap75, w["ap75"].as_f64().expect("ap75"));
                check(format!("cat {} ar100", g.id), g.ar100, w["ar100"].as_f64().expect("ar100"));
            }
            let recall = f64s(&run["recall"]);
            assert_eq!(recall.len(), eval.recall().len(), "{what}");
            for (i, (g, w)) in eval.recall().iter().zip(&recall).enumerate() {
                check(format!("recall[{i}]"), *g, *w);
            }
            let weighted: f64 = eval.precision().iter().enumerate().map(|(i, p)| p * ((i % 97) + 1) as f64).sum();
            check("precision sum".into(), eval.precision().iter().sum(), run["precision_sum"].as_f64().expect("sum"));
            check("precision weighted sum".into(), weighted, run["precision_weighted_sum"].as_f64().expect("sum"));
            check("scores sum".into(), eval.scores().iter().sum(), run["scores_sum"].as_f64().expect("sum"));
        }
    }
    println!("{} fixtures, {runs} runs, {numbers} numbers (stats, per-category, recall) within {TOL:e} of pycocotools, {bit_exact} of them bit-exact; precision/scores checksums within {TOL:e}", cases.len());
}
