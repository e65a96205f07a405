//! Running a detector over a data set and scoring it with the project's pycocotools-exact
//! evaluator: the one loop behind `mixdet eval --images`, the trainer's evaluation and library users.

use std::path::PathBuf;

use candle_core::Device;
use mixdet_coco::{evaluate, Detection, Params};
use mixdet_detect::{PostprocessConfig, SsdLite};

use crate::dataset::{Dataset, Issue};
use crate::error::{Result, TrainError};

/// Detections of a data set's images in COCO's results form, with what happened to each image.
#[derive(Debug)]
pub struct DatasetDetections {
    /// One record per detection (`image_id` from the data set, `category_id` = the label).
    pub detections: Vec<Detection>,
    /// Ids of the images that went through the detector, in input order.
    pub evaluated: Vec<i64>,
    /// Images that could not be read: id, file and why.
    pub failures: Vec<(i64, PathBuf, mixdet_detect::ImageFileError)>,
    /// Time per stage.
    pub timings: mixdet_detect::batch::Timings,
}

/// The one loop that runs a detector over a data set's images (`(image id, file)` pairs) through
/// detection's batch pipeline and collects COCO result records: `mixdet eval --images`, the
/// trainer's periodic evaluation and library users share it. `each` sees every image's outcome
/// as it is done (progress, logging).
pub fn detect_dataset(
    model: &SsdLite,
    device: &Device,
    images: &[(i64, PathBuf)],
    batch_size: usize,
    post: &PostprocessConfig,
    mut each: impl FnMut(&mixdet_detect::batch::ImageOutcome, i64),
) -> Result<DatasetDetections> {
    let files: Vec<PathBuf> = images.iter().map(|(_, p)| p.clone()).collect();
    let mut out = DatasetDetections {
        detections: Vec::new(),
        evaluated: Vec::with_capacity(images.len()),
        failures: Vec::new(),
        timings: Default::default(),
    };
    out.timings = mixdet_detect::batch::run(model, device, &files, batch_size, post, false, |o| {
        let image_id = images[o.index].0;
        each(&o, image_id);
        match o.result {
            Ok(d) => {
                out.evaluated.push(image_id);
                out.detections.extend(d.detections.coco_boxes().map(|(category_id, bbox, score)| Detection {
                    image_id,
                    category_id,
                    bbox,
                    score,
                }));
            }
            Err(e) => out.failures.push((image_id, o.path, e)),
        }
    })?;
    Ok(out)
}

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

/// Runs `model` (eval mode, on `device`) on the data set's usable images through detection's
/// batch pipeline (the one `mixdet detect` and `mixdet eval` use) and evaluates against its ground
/// truth. Detections are kept above `score_thresh` (low, so that the precision-recall curve is
/// complete).
pub fn evaluate_detector(
    model: &SsdLite,
    device: &Device,
    data: &Dataset,
    batch_size: usize,
    score_thresh: f32,
) -> Result<EvalResult> {
    let (gt, samples) = (&data.ground_truth, &data.samples);
    let pp = PostprocessConfig { score_thresh, ..model.config().postprocess };
    let images: Vec<(i64, PathBuf)> = samples.iter().map(|s| (s.image_id, s.path.clone())).collect();
    let run = detect_dataset(model, device, &images, batch_size, &pp, |_, _| {})?;
    let issues = run
        .failures
        .iter()
        .map(|(image_id, path, e)| Issue {
            file: path.display().to_string(),
            record: format!("image {image_id}"),
            message: e.reason(),
        })
        .collect();
    let (dets, timings) = (run.detections, run.timings);
    let eval = evaluate(gt, &dets, &Params::for_ground_truth(gt))?;
    let stats = eval
        .stats()
        .ok_or_else(|| TrainError::Invalid(format!("{}: evaluation has no summary", data.annotations.display())))?;
    Ok(EvalResult { stats, images: timings.images, detections: dets.len(), issues })
}
