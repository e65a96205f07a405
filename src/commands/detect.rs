//! `mixdet detect`: the main job. Detects objects in images, folders and globs; writes overlays,
//! COCO-format results and a per-image summary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::detector_args::DetectorArgs;
use mixdet::viz::draw_detections;
use mixdet::DetectOptions;
use mixdet_detect::batch::{self as pipeline, Detected, ImageOutcome};

/// Arguments of `mixdet detect`.
#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// Image files, folders (add -r for subfolders) or glob patterns; JPEG, PNG, WebP, BMP.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Descend into subfolders.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// Folder for the overlays (created if needed; inputs are never overwritten).
    #[arg(long, default_value = "runs/detect")]
    pub out: PathBuf,
    /// Keep detections scoring at least this (overlays, JSON and summary).
    #[arg(long, default_value_t = 0.3)]
    pub score_threshold: f32,
    /// NMS IoU threshold (default: the model's).
    #[arg(long)]
    pub iou_threshold: Option<f32>,
    /// Detections kept per image after NMS (default: the model's).
    #[arg(long)]
    pub max_detections: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Write the detections as a COCO results file (`[{image_id, category_id, bbox, score}]`).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// COCO instances file whose image ids (matched by file name) the JSON uses.
    #[arg(long, value_name = "FILE")]
    pub gt: Option<PathBuf>,
    /// Do not write overlay images.
    #[arg(long)]
    pub no_overlay: bool,
}

/// One COCO result record.
#[derive(serde::Serialize)]
struct ResultRecord<'a> {
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_name: Option<&'a str>,
}

/// Image ids by file name from a COCO instances file.
pub fn image_ids_by_file_name(gt: &Path) -> Result<HashMap<String, i64>> {
    let gt = mixdet_coco::GroundTruth::from_path(gt)?;
    Ok(gt.images.iter().filter_map(|i| i.file_name.as_ref().map(|f| (file_name_key(Path::new(f)), i.id))).collect())
}

fn file_name_key(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `cat.jpg: 1 cat, 2 dog` counts, in label order.
fn summary(det: &Detected, labels: &[String]) -> String {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for &l in &det.detections.labels {
        *counts.entry(l).or_default() += 1;
    }
    if counts.is_empty() {
        return "no detections".into();
    }
    counts
        .iter()
        .map(|(&l, &n)| format!("{n} {}", labels.get(l as usize).map_or("?", String::as_str)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks `out/<name>` (or `<stem>_<n>.<ext>` on a clash), never one of the inputs.
fn overlay_path(out: &Path, input: &Path, used: &mut HashSet<PathBuf>, inputs: &HashSet<PathBuf>) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let ext = match input.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some(e @ ("jpg" | "jpeg" | "png" | "bmp")) => e.to_string(),
        _ => "png".into(),
    };
    for n in 0.. {
        let name = if n == 0 { format!("{stem}.{ext}") } else { format!("{stem}_{n}.{ext}") };
        let p = out.join(name);
        let canonical = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if !used.contains(&p) && !inputs.contains(&canonical) {
            used.insert(p.clone());
            return p;
        }
    }
    unreachable!("an unbounded counter always finds a free name")
}

/// Runs `mixdet detect`.
pub fn run(args: DetectArgs) -> Result<ExitCode> {
    let files = crate::inputs::expand(&args.paths, args.recursive)?;
    let mut options = DetectOptions::default().with_score_threshold(args.score_threshold)?;
    if let Some(t) = args.iou_threshold {
        options = options.with_iou_threshold(t)?;
    }
    if let Some(m) = args.max_detections {
        options = options.with_max_detections(m)?;
    }
    let detector = args.detector.load()?.with_options(options);
    let (model, device) = (detector.model(), detector.device());
    let post = detector.options().postprocess(&model.config().postprocess);
    let ids = match &args.gt {
        Some(gt) => Some(image_ids_by_file_name(gt).with_context(|| format!("{}: reading image ids", gt.display()))?),
        None => None,
    };
    if !args.no_overlay {
        std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create folder", args.out.display()))?;
    }
    let inputs: HashSet<PathBuf> = files.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect();
    let labels = model.config().labels.clone();
    let progress = if files.len() > 4 {
        let pb = ProgressBar::new(files.len() as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let mut used = HashSet::new();
    let mut records: Vec<(usize, Vec<ResultRecord>)> = Vec::new();
    let mut failures = 0usize;
    let mut missing_ids = 0usize;
    let file_names: Vec<String> = files.iter().map(|f| file_name_key(f)).collect();
    let timings = pipeline::run(model, device, &files, args.batch, &post, !args.no_overlay, |o: ImageOutcome| {
        progress.inc(1);
        let name = o.path.display().to_string();
        let mut det = match o.result {
            Ok(d) => d,
            Err(e) => {
                failures += 1;
                progress.suspend(|| eprintln!("error: {e:#}"));
                return;
            }
        };
        det.detections.retain_score_at_least(args.score_threshold);
        let line = format!("{name}: {} ({:.1} ms)", summary(&det, &labels), o.total_ms);
        progress.suspend(|| println!("{line}"));
        if let Some(img) = det.image.as_mut() {
            draw_detections(img, &detector.detections(&det.detections));
            let path = overlay_path(&args.out, &o.path, &mut used, &inputs);
            if let Err(e) = img.save(&path) {
                failures += 1;
                progress.suspend(|| eprintln!("error: {}: cannot write overlay: {e}", path.display()));
            }
        }
        if args.json.is_some() {
            let file_name = &file_names[o.index];
            let image_id = match &ids {
                Some(map) => match map.get(file_name) {
                    Some(&id) => id,
                    None => {
                        missing_ids += 1;
                        return;
                    }
                },
                None => o.index as i64 + 1,
            };
            let recs = det
                .detections
                .coco_boxes()
                .map(|(category_id, bbox, score)| ResultRecord {
                    image_id,
                    category_id,
                    bbox,
                    score,
                    file_name: ids.is_none().then_some(file_name.as_str()),
                })
                .collect();
            records.push((o.index, recs));
        }
    })?;
    progress.finish_and_clear();
    if let Some(path) = &args.json {
        records.sort_by_key(|(i, _)| *i);
        let all: Vec<&ResultRecord> = records.iter().flat_map(|(_, r)| r).collect();
        crate::output::write_json(path, &all)?;
        println!("Results: {} detections written to {}", all.len(), path.display());
        if missing_ids > 0 {
            eprintln!("warning: {missing_ids} image(s) are not in the --gt file and were left out of the JSON");
        }
    }
    let n = timings.images.max(1) as f64;
    let [h, w] = model.config().input_size;
    println!(
        "Speed: {:.1}ms preprocess, {:.1}ms inference, {:.1}ms postprocess per image at shape ({}, 3, {h}, {w})",
        timings.preprocess_ms / n,
        timings.inference_ms / n,
        timings.postprocess_ms / n,
        args.batch
    );
    if !args.no_overlay {
        println!("Overlays saved to {}", args.out.display());
    }
    if failures > 0 {
        eprintln!("{failures} of {} images failed", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
