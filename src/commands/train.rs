//! `mixdet train`: trains a detector as a training config (`configs/train/*.json`) describes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mixdet_train::{train_observed, Messages, Observer, RunOptions, StepReport, TrainConfig};

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
    let opts = RunOptions { resume: args.resume, max_steps: args.max_steps, device };
    let mut bar = ProgressBar::default();
    let obs: &mut dyn Observer = if args.quiet { &mut Messages } else { &mut bar };
    let summary =
        train_observed(&cfg, &opts, obs).with_context(|| format!("training with {}", args.config.display()))?;
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

/// A progress bar on stderr, the run's messages printed above it.
#[derive(Default)]
struct ProgressBar(Option<indicatif::ProgressBar>);

impl Observer for ProgressBar {
    fn start(&mut self, first: u64, last: u64) {
        let pb = indicatif::ProgressBar::new(last);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]")
        {
            pb.set_style(style);
        }
        pb.set_position(first);
        self.0 = Some(pb);
    }

    fn message(&mut self, line: &str) {
        match &self.0 {
            Some(pb) => pb.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn step(&mut self, r: &StepReport) {
        if let Some(pb) = &self.0 {
            pb.set_position(r.step);
            pb.set_message(format!(
                "ep {} loss {:.3} (cls {:.3} reg {:.3}) lr {:.2e} {:.1} img/s",
                r.epoch + 1,
                r.stats.loss,
                r.stats.classification,
                r.stats.regression,
                r.lr,
                r.images_per_sec
            ));
        }
    }

    fn finish(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish();
        }
    }
}
