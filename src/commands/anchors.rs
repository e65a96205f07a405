//! `mixdet anchors`: how well a detector's anchors fit the boxes of a COCO-format data set, the
//! check to run before training on new data or changing a detector's anchor scales.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use mixdet_coco::GroundTruth;
use mixdet_detect::anchor_fit::{fit_boxes, AnchorSet, BoxFit};
use mixdet_detect::{anchors, DetectorConfig, SsdLite};

use crate::shipped;

/// Arguments of `mixdet anchors`.
#[derive(clap::Args, Debug)]
pub struct AnchorsArgs {
    /// COCO instances file whose boxes the anchors should fit (images need `width` and `height`).
    #[arg(long, value_name = "FILE")]
    pub annotations: PathBuf,
    /// Detector name or config .json whose anchors to check.
    #[arg(long, default_value = shipped::DEFAULT_DETECTOR)]
    pub model: String,
    /// IoU at which an anchor becomes a positive in training (torchvision's SSD matcher: 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub iou: f32,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// All boxes, then COCO's size buckets by the annotation's `area` field, as the evaluator buckets
/// objects.
fn buckets() -> impl Iterator<Item = (&'static str, f64, f64)> {
    std::iter::once(("all", 0.0, f64::INFINITY)).chain(mixdet_coco::params::SIZE_BUCKETS)
}

/// Summary of the boxes of one size bucket.
#[derive(Debug, serde::Serialize)]
struct BucketFit {
    bucket: &'static str,
    boxes: usize,
    /// Share of boxes with an anchor at the threshold.
    covered: f64,
    median_best_iou: f64,
    mean_anchors_at_threshold: f64,
}

fn summarise(bucket: &'static str, fits: &[BoxFit]) -> BucketFit {
    let n = fits.len();
    let mut best: Vec<f64> = fits.iter().map(|f| f.best_iou as f64).collect();
    best.sort_by(f64::total_cmp);
    let median = if n == 0 { f64::NAN } else { crate::stats::median(&best) };
    let share = |count: usize| if n == 0 { f64::NAN } else { count as f64 / n as f64 };
    BucketFit {
        bucket,
        boxes: n,
        covered: share(fits.iter().filter(|f| f.anchors_at_threshold > 0).count()),
        median_best_iou: median,
        mean_anchors_at_threshold: share(fits.iter().map(|f| f.anchors_at_threshold).sum()),
    }
}

/// Runs `mixdet anchors`.
pub fn run(args: AnchorsArgs) -> Result<ExitCode> {
    if !(args.iou > 0.0 && args.iou <= 1.0) {
        bail!("--iou must be in (0, 1], got {}", args.iou);
    }
    let cfg = DetectorConfig::resolve(&args.model)?;
    let grid_sizes = SsdLite::summary(&cfg).with_context(|| format!("building {}", cfg.name))?.grid_sizes;
    let per_location = cfg.anchors_per_location();
    let per_level: Vec<usize> = grid_sizes.iter().zip(&per_location).map(|(g, a)| g[0] * g[1] * a).collect();
    let all_anchors = anchors::generate(&cfg.anchors, &grid_sizes, cfg.input_size);
    let set = AnchorSet::new(all_anchors, &per_level).context("anchor counts do not add up over the levels")?;

    let origin = args.annotations.display().to_string();
    let gt = GroundTruth::from_path(&args.annotations).with_context(|| format!("reading {origin}"))?;
    let sizes: HashMap<i64, (Option<f64>, Option<f64>)> =
        gt.images.iter().map(|im| (im.id, (im.width, im.height))).collect();
    let [in_h, in_w] = cfg.input_size;
    let (mut boxes, mut areas, mut skipped) = (Vec::new(), Vec::new(), 0usize);
    for a in gt.annotations.iter().filter(|a| !a.iscrowd) {
        let (w, h) = match sizes.get(&a.image_id) {
            Some(&(Some(w), Some(h))) if w > 0.0 && h > 0.0 => (w, h),
            Some(_) => bail!(
                "{origin}: image {} has no positive width and height (needed to scale its boxes to the {in_w}x{in_h} input)",
                a.image_id
            ),
            None => bail!("{origin}: annotation {} refers to image {}, which is not in the file", a.id, a.image_id),
        };
        let [x, y, bw, bh] = a.bbox;
        if bw <= 0.0 || bh <= 0.0 {
            skipped += 1;
            continue;
        }
        // The detector stretches every image to its input size, and so does training.
        let (sx, sy) = (in_w as f64 / w, in_h as f64 / h);
        boxes.push([(x * sx) as f32, (y * sy) as f32, ((x + bw) * sx) as f32, ((y + bh) * sy) as f32]);
        areas.push(a.area);
    }
    if boxes.is_empty() {
        bail!("{origin}: no non-crowd boxes with a positive width and height to check");
    }
    let fits = fit_boxes(&set, &boxes, args.iou);
    let buckets: Vec<BucketFit> = buckets()
        .map(|(name, lo, hi)| {
            let sel: Vec<BoxFit> =
                fits.iter().zip(&areas).filter(|(_, &area)| area >= lo && area < hi).map(|(f, _)| *f).collect();
            summarise(name, &sel)
        })
        .collect();
    let mut best_on_level = vec![0usize; per_level.len()];
    for f in &fits {
        best_on_level[f.best_level] += 1;
    }

    if args.json {
        let levels: Vec<_> = grid_sizes
            .iter()
            .zip(&per_level)
            .zip(&best_on_level)
            .map(|((g, n), b)| serde_json::json!({"grid": g, "anchors": n, "best_anchor_for": b}))
            .collect();
        let out = serde_json::json!({
            "model": cfg.name, "annotations": origin, "input_size": cfg.input_size, "iou_threshold": args.iou,
            "anchors": set.anchors.len(), "skipped_zero_area": skipped, "buckets": buckets, "levels": levels,
        });
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} anchors on {} levels at {in_w}x{in_h}; {} boxes from {origin}{}",
        cfg.name,
        set.anchors.len(),
        per_level.len(),
        boxes.len(),
        if skipped > 0 { format!(" ({skipped} zero-area boxes skipped)") } else { String::new() }
    );
    let thr = args.iou;
    println!(
        "\n{:<8} {:>7} {:>16} {:>16} {:>18}",
        "boxes",
        "count",
        format!("anchor IoU>={thr}"),
        "median best IoU",
        format!("anchors>={thr}/box")
    );
    for b in &buckets {
        println!(
            "{:<8} {:>7} {:>15.1}% {:>16.3} {:>18.2}",
            b.bucket,
            b.boxes,
            100.0 * b.covered,
            b.median_best_iou,
            b.mean_anchors_at_threshold
        );
    }
    println!("\n{:<6} {:>8} {:>8} {:>22}", "level", "grid", "anchors", "best anchor for boxes");
    for (k, ((g, n), b)) in grid_sizes.iter().zip(&per_level).zip(&best_on_level).enumerate() {
        println!("{k:<6} {:>8} {n:>8} {b:>22}", format!("{}x{}", g[0], g[1]));
    }
    Ok(ExitCode::SUCCESS)
}
