//! `mixdet eval`: COCO bbox evaluation, a thin layer over `mixdet_coco`: of a results file
//! (`--gt/--results`), or of a detector run over a COCO-format data set (`--images/--annotations`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use mixdet_coco::{
    analyze_errors, check_detections, evaluate, load_results, CategoryMetrics, ErrorParams, ErrorReport, Evaluation,
    GroundTruth, Params,
};

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
    /// Also break the lost AP down by error type (TIDE: Cls, Loc, Both, Dupe, Bkg, Miss at IoU
    /// 0.5), with missed objects per size and the most frequent class confusions. It covers the
    /// evaluated images and every category.
    #[arg(long)]
    pub errors: bool,
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
    /// Data-set mode: folder holding the images named in `--annotations`.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Data-set mode: the COCO instances file of those images (also the ground truth).
    #[arg(long, value_name = "FILE")]
    pub annotations: Option<PathBuf>,
    /// Data-set mode: detector (built-in name or config .json); label i is category id i.
    #[arg(long, default_value = crate::shipped::DEFAULT_DETECTOR)]
    pub model: String,
    /// Data-set mode: detector weights (.safetensors, .pth or a TF frozen graph .pb); optional for
    /// the detectors with built-in weights.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Data-set mode: device (cpu, cuda, cuda:N).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Data-set mode: evaluate the first N images (by id) only.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Data-set mode: images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Data-set mode: where to write the detections (COCO results JSON).
    #[arg(long, value_name = "FILE", default_value = "runs/eval/detections.json")]
    pub save_results: PathBuf,
    /// Data-set mode, sharded: each shard detects its share of the images (by id) into a part;
    /// `mixdet merge DIR --json FILE --gt <annotations>` then evaluates them all.
    #[command(flatten)]
    pub sharding: super::detect::ShardArgs,
}

/// Runs `mixdet eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if args.images.is_some() || args.annotations.is_some() {
        return run_dataset(&args);
    }
    let (Some(gt_path), Some(results_path)) = (args.gt.as_deref(), args.results.as_deref()) else {
        bail!(
            "mixdet eval needs --gt <instances.json> and --results <detections.json>, \
             or --images <DIR> --annotations <instances.json> [--model M --weights FILE] to run a detector"
        );
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
    evaluate_and_print(&args, &gt, &dets, params)?;
    Ok(ExitCode::SUCCESS)
}

/// Evaluates and prints the summary, the per-category table, and the optional JSON and plot.
fn evaluate_and_print(
    args: &EvalArgs,
    gt: &GroundTruth,
    dets: &[mixdet_coco::Detection],
    params: Params,
) -> anyhow::Result<()> {
    let eval = evaluate(gt, dets, &params).context("evaluating")?;

    match eval.summary_lines() {
        Some(lines) => lines.iter().for_each(|l| println!("{l}")),
        None => eprintln!("note: the 12-line summary needs at least three --max-dets values"),
    }
    let per_category = eval.per_category(&gt.category_names());
    if !per_category.is_empty() {
        println!();
        print!("{}", category_table(&per_category, eval.params().max_det()));
    }
    let errors = args.errors.then(|| {
        let params = ErrorParams { img_ids: Some(eval.params().img_ids.clone()), ..ErrorParams::default() };
        analyze_errors(gt, dets, &params)
    });
    if let Some(report) = &errors {
        println!();
        print!("{}", error_table(report, &gt.category_names()));
    }
    if let Some(path) = &args.json_out {
        write_json(path, &eval, &per_category, errors.as_ref())?;
    }
    if let Some(path) = &args.plot_pr {
        mixdet_coco::plot::write_pr_plot(&eval, path)
            .with_context(|| format!("drawing the PR plot into {}", path.display()))?;
    }
    Ok(())
}

/// Runs the detector over the images of a COCO-format data set, then evaluates its detections.
fn run_dataset(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let (Some(images), Some(annotations)) = (args.images.as_deref(), args.annotations.as_deref()) else {
        bail!("the data-set mode needs both --images <DIR> and --annotations <instances.json>");
    };
    let gt = GroundTruth::from_path(annotations).with_context(|| format!("loading {}", annotations.display()))?;
    let mut entries: Vec<(i64, PathBuf)> = Vec::with_capacity(gt.images.len());
    for img in &gt.images {
        let Some(name) = &img.file_name else {
            bail!("{}: image {} has no file_name", annotations.display(), img.id);
        };
        entries.push((img.id, images.join(name)));
    }
    entries.sort_by_key(|e| e.0);
    if let Some(n) = args.limit {
        entries.truncate(n);
    }
    if entries.is_empty() {
        bail!("{}: no images to evaluate", annotations.display());
    }
    let detector_args = super::detector_args::DetectorArgs {
        model: args.model.clone(),
        weights: args.weights.clone(),
        device: args.device.clone(),
    };
    let shard = args.sharding.shard()?;
    match (&args.sharding.parts, shard) {
        (Some(parts), shard) => {
            let files: Vec<PathBuf> = entries.iter().map(|(_, p)| p.clone()).collect();
            return super::detect::run_shard_of(&detector_args, args.batch, files, shard, &args.sharding, parts);
        }
        (None, Some(shard)) => bail!(
            "shard {} of {} needs --parts DIR: each shard writes its part, then `mixdet merge DIR --json FILE --gt {}` \
             evaluates them together",
            shard.index,
            shard.count,
            annotations.display()
        ),
        (None, None) => {}
    }
    let detector = detector_args.load()?;
    let (model, device) = (detector.model(), detector.device());
    let post = model.config().postprocess;
    let progress = super::image_progress(entries.len());
    let run = mixdet_train::evaluate::detect_dataset(model, device, &entries, args.batch, &post, |o, image_id| {
        progress.inc(1);
        if let Err(e) = &o.result {
            progress.suspend(|| eprintln!("error: {e:#} (image id {image_id}; left out of the evaluation)"));
        }
    })?;
    progress.finish_and_clear();
    let (dets, mut evaluated, failures, timings) = (run.detections, run.evaluated, run.failures.len(), run.timings);
    if let Some(dir) = args.save_results.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    crate::output::write_json(&args.save_results, &dets)?;
    let n = timings.images.max(1) as f64;
    println!(
        "{} images, {} detections written to {}; speed: {:.1}ms preprocess, {:.1}ms inference, {:.1}ms postprocess per image",
        timings.images,
        dets.len(),
        args.save_results.display(),
        timings.preprocess_ms / n,
        timings.inference_ms / n,
        timings.postprocess_ms / n
    );
    let mut params = params_from_args(args, &gt);
    // Only the images that went through the detector are evaluated (a --limit, unreadable files).
    if args.img_ids.is_none() {
        evaluated.sort_unstable();
        params.img_ids = evaluated;
    }
    evaluate_and_print(args, &gt, &dets, params)?;
    if failures > 0 {
        eprintln!("{failures} of {} images failed", entries.len());
        return Ok(ExitCode::FAILURE);
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

/// The `--errors` report, in TIDE's units (AP points) so that it reads like tidecv's summary.
fn error_table(r: &ErrorReport, names: &std::collections::HashMap<i64, String>) -> String {
    let name = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("category {id}"));
    let mut out = format!(
        "Error analysis (TIDE: IoU 0.50, background IoU 0.10, 100 detections per image)\n\
         TIDE AP50 {:.2}; dAP = AP50 points gained by fixing only that error type\n",
        r.ap * 100.0
    );
    out += &format!("{:<9} {:>6} {:>6}\n", "type", "count", "dAP");
    for s in &r.main {
        out += &format!("{:<9} {:>6} {:>6.2}\n", s.kind.name(), s.count, s.delta_ap * 100.0);
    }
    out += &format!("{:<9} {:>6} {:>6.2}\n", "FalsePos", "", r.false_pos_delta_ap * 100.0);
    out += &format!("{:<9} {:>6} {:>6.2}\n", "FalseNeg", "", r.false_neg_delta_ap * 100.0);
    out += "objects not found at IoU 0.50 (of which Miss: nothing even close):\n";
    for s in &r.by_size {
        let share = if s.objects > 0 { 100.0 * s.not_found as f64 / s.objects as f64 } else { 0.0 };
        out += &format!("  {:<6} {:>5} of {:>5} ({share:>4.1}%), {} Miss\n", s.size, s.not_found, s.objects, s.missed);
    }
    if !r.confusions.is_empty() {
        out += "most frequent Cls errors (GT -> detected):\n";
        for c in r.confusions.iter().take(8) {
            out += &format!("  {} -> {}: {}\n", name(c.gt_category), name(c.detected_category), c.count);
        }
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
    /// `--errors`: the TIDE breakdown (fractions, not percent).
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a ErrorReport>,
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

fn write_json(
    path: &Path,
    eval: &Evaluation,
    per_category: &[CategoryMetrics],
    errors: Option<&ErrorReport>,
) -> anyhow::Result<()> {
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
        errors,
    };
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
