//! `mixdet eval`: COCO bbox evaluation of a results file, a thin layer over `mixdet_coco`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use mixdet_coco::{check_detections, evaluate, load_results, CategoryMetrics, Evaluation, GroundTruth, Params};

/// Arguments of `mixdet eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// COCO instances file holding the ground truth.
    #[arg(long, value_name = "FILE")]
    pub gt: Option<PathBuf>,
    /// COCO results file: a JSON array of {image_id, category_id, bbox, score}.
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Also write the stats, per-category metrics and parameters as JSON.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Draw precision-recall curves (IoU .50, .75 and the mean over IoUs) into a PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot_pr: Option<PathBuf>,
    /// Pool all categories (pycocotools `useCats=0`).
    #[arg(long)]
    pub class_agnostic: bool,
    /// Max detections per image, comma-separated (pycocotools `maxDets`; default 1,10,100).
    #[arg(long, value_name = "N,..", value_delimiter = ',')]
    pub max_dets: Option<Vec<usize>>,
    /// IoU thresholds, comma-separated (default 0.50:0.05:0.95).
    #[arg(long, value_name = "T,..", value_delimiter = ',')]
    pub iou_thrs: Option<Vec<f64>>,
    /// Evaluate only these image ids (comma-separated).
    #[arg(long, value_name = "ID,..", value_delimiter = ',')]
    pub img_ids: Option<Vec<i64>>,
    /// Evaluate only these category ids (comma-separated).
    #[arg(long, value_name = "ID,..", value_delimiter = ',')]
    pub cat_ids: Option<Vec<i64>>,
}

/// Runs `mixdet eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let (Some(gt_path), Some(results_path)) = (args.gt.as_deref(), args.results.as_deref()) else {
        bail!("mixdet eval needs --gt <instances.json> and --results <detections.json>");
    };
    // The two files parse independently: overlap them.
    let (gt, dets) = std::thread::scope(|s| {
        let gt = s.spawn(|| GroundTruth::from_path(gt_path));
        let dets = load_results(results_path);
        let gt = gt.join().map_err(|_| anyhow::anyhow!("ground-truth loader panicked"))?;
        anyhow::Ok((gt?, dets?))
    })
    .context("loading the evaluation inputs")?;
    let report = check_detections(&gt, &dets, &results_path.display().to_string())?;
    if let Some((index, id)) = report.first_unknown_category {
        eprintln!(
            "warning: {} detection(s) have a category unknown to the ground truth (first: results[{index}], category {id}); \
             they are not evaluated, as in pycocotools",
            report.unknown_category
        );
    }
    if report.negative_extent > 0 {
        eprintln!(
            "warning: {} detection(s) have a negative width or height; they overlap nothing (as in pycocotools)",
            report.negative_extent
        );
    }

    let params = params_from_args(&args, &gt);
    let eval = evaluate(&gt, &dets, &params).context("evaluating")?;
    drop(dets);

    match eval.summary_lines() {
        Some(lines) => lines.iter().for_each(|l| println!("{l}")),
        None => eprintln!("note: the 12-line summary needs at least three --max-dets values"),
    }
    let per_category = eval.per_category(&gt.category_names());
    if !per_category.is_empty() {
        println!();
        print!("{}", category_table(&per_category, eval.params().max_det()));
    }
    if let Some(path) = &args.json_out {
        write_json(path, &eval, &per_category)?;
    }
    if let Some(path) = &args.plot_pr {
        mixdet_coco::plot::write_pr_plot(&eval, path)
            .with_context(|| format!("drawing the PR plot into {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn params_from_args(args: &EvalArgs, gt: &GroundTruth) -> Params {
    let mut p = Params::for_ground_truth(gt);
    p.use_cats = !args.class_agnostic;
    if let Some(v) = &args.max_dets {
        p.max_dets = v.clone();
    }
    if let Some(v) = &args.iou_thrs {
        p.iou_thrs = v.clone();
    }
    if let Some(v) = &args.img_ids {
        p.img_ids = v.clone();
    }
    if let Some(v) = &args.cat_ids {
        p.cat_ids = v.clone();
    }
    p
}

/// Categories by AP, best first; categories without GT (AP -1) last, shown as `-`.
fn category_table(cats: &[CategoryMetrics], max_det: usize) -> String {
    let mut rows: Vec<&CategoryMetrics> = cats.iter().collect();
    rows.sort_by(|a, b| b.ap.total_cmp(&a.ap).then_with(|| a.name.cmp(&b.name)));
    let width = rows.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).max("category".len());
    let cell = |v: f64| if v < 0.0 { format!("{:>7}", "-") } else { format!("{v:>7.3}") };
    let ar = format!("AR{max_det}");
    let mut out = format!("{:<width$} {:>7} {:>7} {:>7} {ar:>7}\n", "category", "AP", "AP50", "AP75");
    for c in rows {
        out += &format!("{:<width$} {} {} {} {}\n", c.name, cell(c.ap), cell(c.ap50), cell(c.ap75), cell(c.ar100));
    }
    out
}

/// `--json-out` document; field order as written here (stats first).
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    /// The 12 numbers in pycocotools' order (null without three max-dets values).
    stats: Option<[f64; 12]>,
    per_category: &'a [CategoryMetrics],
    params: JsonParams<'a>,
}

/// The evaluation parameters under pycocotools' names.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonParams<'a> {
    iou_type: &'static str,
    img_ids: &'a [i64],
    cat_ids: &'a [i64],
    iou_thrs: &'a [f64],
    rec_thrs: &'a [f64],
    max_dets: &'a [usize],
    area_rng: Vec<[f64; 2]>,
    area_rng_lbl: Vec<&'a str>,
    use_cats: u8,
}

fn write_json(path: &Path, eval: &Evaluation, per_category: &[CategoryMetrics]) -> anyhow::Result<()> {
    let p = eval.params();
    let doc = JsonReport {
        stats: eval.stats(),
        per_category,
        params: JsonParams {
            iou_type: "bbox",
            img_ids: &p.img_ids,
            cat_ids: &p.cat_ids,
            iou_thrs: &p.iou_thrs,
            rec_thrs: &p.rec_thrs,
            max_dets: &p.max_dets,
            area_rng: p.area_rngs.iter().map(|a| [a.lo, a.hi]).collect(),
            area_rng_lbl: p.area_rngs.iter().map(|a| a.label.as_str()).collect(),
            use_cats: u8::from(p.use_cats),
        },
    };
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
