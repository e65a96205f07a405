//! COCO mAP of a detector on a COCO-format data set, through the library: the same loop as
//! `mixdet eval --images` and the trainer's evaluation (`mixdet::train::evaluate`).
//!
//! `cargo run --release --example evaluate -- IMAGES_DIR INSTANCES_JSON [MODEL [WEIGHTS]]`
//! (default model: `ssdlite512_mixnet_s_c3_shapes`; try it on `mixdet synth --out d --train 0 --val 50`).

use std::path::PathBuf;

use mixdet::coco::{evaluate, GroundTruth, Params};
use mixdet::prelude::*;
use mixdet::train::evaluate::detect_dataset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(images), Some(annotations)) = (args.first(), args.get(1)) else {
        return Err("usage: evaluate IMAGES_DIR INSTANCES_JSON [MODEL [WEIGHTS]]".into());
    };
    let model = args.get(2).map_or("ssdlite512_mixnet_s_c3_shapes", String::as_str);
    let detector = Detector::from_config(model, args.get(3).map(std::path::Path::new), &Device::Cpu)?;
    let gt = GroundTruth::from_path(std::path::Path::new(annotations))?;
    let files: Vec<(i64, PathBuf)> =
        gt.images.iter().filter_map(|i| i.file_name.as_ref().map(|f| (i.id, PathBuf::from(images).join(f)))).collect();
    // A low score threshold, so that the precision-recall curves are complete.
    let post = mixdet::detect::PostprocessConfig { score_thresh: 0.01, ..detector.model().config().postprocess };
    let run = detect_dataset(detector.model(), detector.device(), &files, 8, &post, |_, _| {})?;
    let mut params = Params::for_ground_truth(&gt);
    params.img_ids = run.evaluated.clone();
    let eval = evaluate(&gt, &run.detections, &params)?;
    for line in eval.summary_lines().unwrap_or_default() {
        println!("{line}");
    }
    println!("{} images, {} detections, {} unreadable", run.evaluated.len(), run.detections.len(), run.failures.len());
    Ok(())
}
