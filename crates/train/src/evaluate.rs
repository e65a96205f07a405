//! COCO mAP of a detector on a validation split, with the project's pycocotools-exact evaluator.

use std::path::{Path, PathBuf};

use candle_core::Device;
use mixdet_coco::{evaluate, Detection, GroundTruth, Params};
use mixdet_detect::{PostprocessConfig, SsdLite};

use crate::dataset::{Issue, Sample};
use crate::error::{Result, TrainError};

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// pycocotools' 12 summary numbers (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl).
    pub stats: [f64; 12],
    /// Images evaluated.
    pub images: usize,
    /// Detections produced.
    pub detections: usize,
    /// Images that could not be read.
    pub issues: Vec<Issue>,
}

/// Runs `model` (eval mode, on `device`) on `samples` through detection's batch pipeline (the one
/// `mixdet detect` and `mixdet eval` use) and evaluates against the instances file `annotations`.
/// Detections are kept above `score_thresh` (low, so that the precision-recall curve is complete).
pub fn evaluate_detector(
    model: &SsdLite,
    device: &Device,
    samples: &[Sample],
    annotations: &Path,
    batch_size: usize,
    score_thresh: f32,
) -> Result<EvalResult> {
    let gt = GroundTruth::from_path(annotations)?;
    let pp = PostprocessConfig { score_thresh, ..model.config().postprocess };
    let files: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
    let mut dets = Vec::new();
    let mut issues = Vec::new();
    let timings = mixdet_detect::batch::run(model, device, &files, batch_size, &pp, false, |o| {
        let image_id = samples[o.index].image_id;
        match o.result {
            Ok(d) => dets.extend(d.detections.coco_boxes().map(|(category_id, bbox, score)| Detection {
                image_id,
                category_id,
                bbox,
                score,
            })),
            Err(e) => issues.push(Issue {
                file: o.path.display().to_string(),
                record: format!("image {image_id}"),
                message: e.reason(),
            }),
        }
    })?;
    let eval = evaluate(&gt, &dets, &Params::for_ground_truth(&gt))?;
    let stats = eval
        .stats()
        .ok_or_else(|| TrainError::Invalid(format!("{}: evaluation has no summary", annotations.display())))?;
    Ok(EvalResult { stats, images: timings.images, detections: dets.len(), issues })
}
