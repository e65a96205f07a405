//! Randomised differential test against hotcoco (an independent pycocotools-exact Rust
//! implementation): hundreds of generated datasets, several parameter sets each, every entry of
//! the precision and recall arrays and the 12 stats compared.

use hotcoco::params::IouType;
use hotcoco::{COCOeval, COCO};
use mixdet_coco::{evaluate, AreaRange, Detection, GroundTruth, Params};

const TOL: f64 = 1e-9;

/// SplitMix64: small, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Coordinates on a coarse grid make exact IoU ties between GTs likely.
    fn coord(&mut self, lo: f64, hi: f64, coarse: bool) -> f64 {
        let v = self.uniform(lo, hi);
        if coarse {
            (v * 0.25).round() * 4.0
        } else {
            (v * 100.0).round() / 100.0
        }
    }
}

struct Case {
    gt: GroundTruth,
    dets: Vec<Detection>,
}

fn generate(seed: u64) -> Case {
    let mut rng = Rng(seed);
    let n_img = 1 + rng.below(25) as usize;
    let n_cat = 1 + rng.below(7) as usize;
    let coarse = rng.chance(0.4);
    let score_step = [0.1, 0.01, 0.001, 0.0][rng.below(4) as usize];
    let mut cat_ids: Vec<i64> = Vec::new();
    while cat_ids.len() < n_cat {
        let c = 1 + rng.below(90) as i64;
        if !cat_ids.contains(&c) {
            cat_ids.push(c);
        }
    }
    let mut gt = GroundTruth::default();
    for &c in &cat_ids {
        gt.categories.push(mixdet_coco::Category { id: c, name: Some(format!("c{c}")) });
    }
    let mut dets = Vec::new();
    let mut ann_id = 1 + rng.below(5) as i64;
    let score = |rng: &mut Rng| {
        let s = rng.f64();
        if score_step > 0.0 {
            (s / score_step).round() * score_step
        } else {
            s
        }
    };
    for i in 0..n_img {
        let img_id = 1 + 3 * i as i64 + rng.below(3) as i64;
        gt.images.push(mixdet_coco::Image { id: img_id, file_name: None, width: None, height: None });
        let n_gt = if rng.chance(0.2) { 0 } else { rng.below(12) as usize };
        let mut boxes = Vec::new();
        for _ in 0..n_gt {
            let scale = [8.0, 30.0, 80.0, 250.0][rng.below(4) as usize];
            let (w, h) = (rng.coord(1.0, scale, coarse), rng.coord(1.0, scale, coarse));
            let (x, y) = (rng.coord(0.0, 400.0, coarse), rng.coord(0.0, 400.0, coarse));
            let bbox = if rng.chance(0.1) && !boxes.is_empty() {
                boxes[rng.below(boxes.len() as u64) as usize]
            } else {
                [x, y, w, h]
            };
            let area = match rng.below(12) {
                0 => 1024.0,
                1 => 9216.0,
                _ => bbox[2] * bbox[3] * rng.uniform(0.4, 1.1),
            };
            let cat = cat_ids[rng.below(n_cat as u64) as usize];
            gt.annotations.push(mixdet_coco::Annotation {
                id: ann_id,
                image_id: img_id,
                category_id: cat,
                bbox,
                area,
                iscrowd: rng.chance(0.08),
            });
            ann_id += 1 + rng.below(3) as i64;
            boxes.push(bbox);
            // Detections around this object, sometimes with the wrong category.
            for _ in 0..rng.below(4) {
                let j = |rng: &mut Rng, v: f64, s: f64| {
                    if coarse {
                        v + 4.0 * (rng.uniform(-s, s)).round()
                    } else {
                        v + rng.uniform(-s, s) * v.max(4.0)
                    }
                };
                let b = [
                    j(&mut rng, bbox[0], 0.1),
                    j(&mut rng, bbox[1], 0.1),
                    j(&mut rng, bbox[2], 0.2),
                    j(&mut rng, bbox[3], 0.2),
                ];
                let c = if rng.chance(0.1) { cat_ids[rng.below(n_cat as u64) as usize] } else { cat };
                dets.push(Detection { image_id: img_id, category_id: c, bbox: b, score: score(&mut rng) });
            }
        }
        let n_fp = if rng.chance(0.1) { 100 + rng.below(40) } else { rng.below(6) };
        let fp_cats: Vec<i64> = if n_fp > 100 { vec![cat_ids[0]] } else { cat_ids.clone() };
        for _ in 0..n_fp {
            let scale = [8.0, 30.0, 80.0, 250.0][rng.below(4) as usize];
            let b = [
                rng.coord(0.0, 400.0, coarse),
                rng.coord(0.0, 400.0, coarse),
                rng.coord(0.0, scale, coarse),
                rng.coord(0.0, scale, coarse),
            ];
            let c = fp_cats[rng.below(fp_cats.len() as u64) as usize];
            dets.push(Detection { image_id: img_id, category_id: c, bbox: b, score: score(&mut rng) });
        }
    }
    // Results files are in no particular order.
    for i in (1..dets.len()).rev() {
        dets.swap(i, rng.below(i as u64 + 1) as usize);
    }
    Case { gt, dets }
}

fn to_hotcoco(case: &Case) -> (COCO, COCO) {
    let u = |v: i64| u64::try_from(v).expect("generated ids are positive");
    let dataset = hotcoco::Dataset {
        images: case.gt.images.iter().map(|im| hotcoco::Image { id: u(im.id), ..Default::default() }).collect(),
        categories: case
            .gt
            .categories
            .iter()
            .map(|c| hotcoco::Category { id: u(c.id), name: c.name.clone().unwrap_or_default(), ..Default::default() })
            .collect(),
        annotations: case
            .gt
            .annotations
            .iter()
            .map(|a| hotcoco::Annotation {
                id: u(a.id),
                image_id: u(a.image_id),
                category_id: u(a.category_id),
                bbox: Some(a.bbox),
                area: Some(a.area),
                iscrowd: a.iscrowd,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let gt = COCO::from_dataset(dataset);
    let anns = case
        .dets
        .iter()
        .map(|d| hotcoco::Annotation {
            image_id: u(d.image_id),
            category_id: u(d.category_id),
            bbox: Some(d.bbox),
            score: Some(d.score),
            ..Default::default()
        })
        .collect();
    let dt = gt.load_res_anns(anns).expect("hotcoco load_res");
    (gt, dt)
}

/// A parameter variant, applied to both evaluators.
fn variants(case: &Case, rng: &mut Rng) -> Vec<(&'static str, Params)> {
    let base = Params::for_ground_truth(&case.gt);
    let mut out = vec![("default", base.clone())];
    let mut pooled = base.clone();
    pooled.use_cats = false;
    out.push(("pooled", pooled));
    let mut custom = base.clone();
    custom.max_dets = vec![1, 3 + rng.below(5) as usize, 10 + rng.below(60) as usize];
    custom.iou_thrs = vec![0.3, 0.5, 0.75, 0.9];
    custom.area_rngs = vec![
        AreaRange::new("all", 0.0, 1e10),
        AreaRange::new("small", 0.0, 400.0),
        AreaRange::new("medium", 400.0, 4000.0),
        AreaRange::new("large", 4000.0, 1e10),
    ];
    // hotcoco reads an empty id list as "all", pycocotools as "none": keep at least one.
    custom.img_ids.retain(|_| rng.chance(0.7));
    if custom.img_ids.is_empty() {
        custom.img_ids.push(base.img_ids[0]);
    }
    custom.cat_ids.retain(|_| rng.chance(0.7));
    if custom.cat_ids.is_empty() {
        custom.cat_ids.push(base.cat_ids[0]);
    }
    out.push(("custom", custom));
    out
}

fn hotcoco_eval(gt: &COCO, dt: &COCO, p: &Params) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut ev = COCOeval::new(gt.clone(), dt.clone(), IouType::Bbox);
    ev.params.img_ids = p.img_ids.iter().map(|&v| v as u64).collect();
    ev.params.cat_ids = p.cat_ids.iter().map(|&v| v as u64).collect();
    ev.params.use_cats = p.use_cats;
    ev.params.iou_thrs = p.iou_thrs.clone();
    ev.params.rec_thrs = p.rec_thrs.clone();
    ev.params.max_dets = p.max_dets.clone();
    ev.params.area_ranges =
        p.area_rngs.iter().map(|a| hotcoco::AreaRange { label: a.label.clone(), range: [a.lo, a.hi] }).collect();
    ev.evaluate().expect("hotcoco evaluate");
    ev.accumulate();
    ev.summarize_lines();
    let acc = ev.accumulated().expect("accumulated");
    let stats = ev.stats().expect("stats").to_vec();
    (stats, acc.precision.clone(), acc.recall.clone())
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOL, "{what}[{i}]: mixdet {g:e}, hotcoco {w:e}");
    }
}

#[test]
fn random_cases_match_hotcoco() {
    let n_cases: u64 = std::env::var("MIXDET_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut rng = Rng(0xC0C0);
    let (mut evals, mut values) = (0usize, 0usize);
    for seed in 0..n_cases {
        let case = generate(seed);
        let (hgt, hdt) = to_hotcoco(&case);
        for (name, params) in variants(&case, &mut rng) {
            let what = format!("seed {seed} {name}");
            let ours = evaluate(&case.gt, &case.dets, &params).expect("evaluate");
            let (stats, precision, recall) = hotcoco_eval(&hgt, &hdt, &params);
            let mut our_stats = ours.stats().expect("three max-dets").to_vec();
            if !params.max_dets.contains(&100) {
                // pycocotools computes stats[0] at maxDets=100 literally, which gives -1 when 100
                // is not a max-dets value (the fixtures check that); hotcoco uses the largest.
                assert_eq!(our_stats[0], -1.0, "{what}");
                our_stats[0] = stats[0];
            }
            assert_close(&format!("{what} stats"), &our_stats, &stats);
            assert_close(&format!("{what} precision"), ours.precision(), &precision);
            assert_close(&format!("{what} recall"), ours.recall(), &recall);
            evals += 1;
            values += stats.len() + precision.len() + recall.len();
        }
    }
    println!("{n_cases} generated cases, {evals} evaluations, {values} values equal to hotcoco within {TOL:e}");
}
