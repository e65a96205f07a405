//! `mixdet train`: trains a detector as a training config (`configs/train/*.json`) describes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mixdet_train::{train, RunOptions, TrainConfig};

/// Arguments of `mixdet train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training config (JSON): detector, data, schedule, optimiser, output folder.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Override a config field: `--set lr=0.003 --set optimizer.kind=adamw --set
    /// init_weights=runs/a/model.safetensors` (values are JSON when they parse, else strings).
    /// The resolved config is written to the run folder as `config.json`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Continue from the checkpoint in the config's output folder.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many optimiser steps (the schedule still spans the configured epochs).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// Write the output here instead of the config's `output_dir`.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Use this many threads for the model and the data pipeline (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Device for the model, loss and optimiser: cpu, cuda or cuda:N (data loading stays on the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `mixdet train`.
pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = TrainConfig::from_file_with(&args.config, &args.overrides)?;
    if let Some(dir) = args.output_dir {
        cfg.output_dir = dir;
    }
    let device = crate::device::parse_device(&args.device)?;
    let opts = RunOptions { resume: args.resume, progress: !args.quiet, max_steps: args.max_steps, device };
    let summary = train(&cfg, &opts).with_context(|| format!("training with {}", args.config.display()))?;
    println!(
        "{} steps, last loss {:.4}, {:.1} images/s (model step, median), {:.1} images/s (with data loading)",
        summary.steps, summary.last_loss, summary.step_images_per_sec, summary.wall_images_per_sec
    );
    if let Some(e) = &summary.last_eval {
        println!("val: AP {:.4} AP50 {:.4} AP75 {:.4} on {} images", e.stats[0], e.stats[1], e.stats[2], e.images);
    }
    if !summary.issues.is_empty() {
        println!("{} records skipped (see the warnings above and log.jsonl)", summary.issues.len());
    }
    println!("weights: {}", summary.weights.display());
    Ok(ExitCode::SUCCESS)
}
