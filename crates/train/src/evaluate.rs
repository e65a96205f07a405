//! COCO mAP of a detector on a validation split, with the project's pycocotools-exact evaluator.

use std::path::Path;

use candle_core::Device;
use mixdet_coco::{evaluate, Detection, GroundTruth, Params};
use mixdet_detect::{PlanarImage, PostprocessConfig, SsdLite};
use rayon::prelude::*;

use crate::dataset::{decode, Issue, Sample};
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

/// Runs `model` (eval mode) on `samples` and evaluates against the instances file `annotations`.
/// Detections are kept above `score_thresh` (low, so that the precision-recall curve is complete).
pub fn evaluate_detector(
    model: &SsdLite,
    samples: &[Sample],
    annotations: &Path,
    batch_size: usize,
    score_thresh: f32,
) -> Result<EvalResult> {
    let gt = GroundTruth::from_path(annotations)?;
    let pp = PostprocessConfig { score_thresh, ..model.config().postprocess };
    let input = model.config().input_size;
    let mut dets = Vec::new();
    let mut issues = Vec::new();
    let mut images = 0;
    for chunk in samples.chunks(batch_size.max(1)) {
        let decoded: Vec<(i64, std::result::Result<PlanarImage, Issue>)> = chunk
            .par_iter()
            .map(|s| {
                let r = decode(&s.path).map(|d| PlanarImage::from_rgb8(&d.rgb, d.width, d.height)).map_err(|e| Issue {
                    file: s.path.display().to_string(),
                    record: format!("image {}", s.image_id),
                    message: e.to_string(),
                });
                (s.image_id, r)
            })
            .collect();
        let mut ids = Vec::new();
        let mut imgs = Vec::new();
        for (id, r) in decoded {
            match r {
                Ok(img) => {
                    ids.push(id);
                    imgs.push(img);
                }
                Err(issue) => issues.push(issue),
            }
        }
        if imgs.is_empty() {
            continue;
        }
        let x = model.preprocess_batch(&imgs, &Device::Cpu)?;
        let out = model.forward_t(&x, false)?;
        let results = model.postprocess(&out, &pp)?;
        for ((id, img), mut d) in ids.iter().zip(&imgs).zip(results) {
            d.rescale(input, [img.height, img.width]);
            for ((b, &score), &label) in d.boxes.iter().zip(&d.scores).zip(&d.labels) {
                dets.push(Detection {
                    image_id: *id,
                    category_id: label,
                    bbox: [b[0] as f64, b[1] as f64, (b[2] - b[0]) as f64, (b[3] - b[1]) as f64],
                    score: score as f64,
                });
            }
        }
        images += imgs.len();
    }
    let eval = evaluate(&gt, &dets, &Params::for_ground_truth(&gt))?;
    let stats = eval
        .stats()
        .ok_or_else(|| TrainError::Invalid(format!("{}: evaluation has no summary", annotations.display())))?;
    Ok(EvalResult { stats, images, detections: dets.len(), issues })
}
