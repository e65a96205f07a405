//! Train a small detector on a freshly generated synthetic shapes set for a few steps, then
//! detect with the result: the library's training loop end to end.
//!
//! `cargo run --release --example train_shapes -- [STEPS] [OUT_DIR]` (default 20 steps into
//! `runs/example_train_shapes`). The shipped shapes detector's recipe is
//! `configs/train/shapes_mixnet_s.json` with `mixdet train`.

use std::path::PathBuf;

use mixdet::detect::{DetectorConfig, SsdLite};
use mixdet::prelude::*;
use mixdet::train::{synth, train, RunOptions, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "runs/example_train_shapes".into()));
    let data = out.join("data");
    synth::generate(&synth::SynthOptions { out: data.clone(), train: 64, val: 8, seed: 7, size: 160 })?;
    let config: TrainConfig = serde_json::from_value(serde_json::json!({
        "detector": "ssdlite320_mixnet_s_shapes",
        "train": {"images": data.join("train"), "annotations": data.join("annotations/instances_train.json")},
        "val": {"images": data.join("val"), "annotations": data.join("annotations/instances_val.json")},
        "output_dir": out.join("run"),
        "batch_size": 8,
        "epochs": 100,
        "lr": 0.02,
        "warmup_steps": 5,
        "optimizer": {"kind": "sgd", "momentum": 0.9, "weight_decay": 4e-5},
        "eval_every_epochs": 0,
        "log_every_steps": 5,
    }))?;
    config.validate()?;
    let summary = train(&config, &RunOptions { max_steps: Some(steps), ..RunOptions::default() })?;
    println!("{} steps, last loss {:.3}, weights {}", summary.steps, summary.last_loss, summary.weights.display());
    if let Some(e) = &summary.last_eval {
        println!("val AP {:.3} AP50 {:.3}", e.stats[0], e.stats[1]);
    }
    let model =
        SsdLite::from_file(DetectorConfig::resolve("ssdlite320_mixnet_s_shapes")?, &summary.weights, &Device::Cpu)?;
    let detector =
        Detector::new(model, &Device::Cpu)?.with_options(DetectOptions::default().with_score_threshold(0.05)?);
    let image = image::open(data.join("val/000001.png"))?.to_rgb8();
    println!("{} detections on val/000001.png", detector.detect(&image)?.len());
    Ok(())
}
