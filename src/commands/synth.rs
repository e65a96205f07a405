//! `mixdet synth`: writes the synthetic shapes data set in COCO's layout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mixdet_train::synth::{generate, SynthOptions, CLASS_NAMES};

/// Arguments of `mixdet synth`.
#[derive(clap::Args)]
pub struct SynthArgs {
    /// Output folder (train/, val/, annotations/ are created in it).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Training images (0 writes only the val split).
    #[arg(long, value_name = "N")]
    pub train: usize,
    /// Validation images.
    #[arg(long, value_name = "M")]
    pub val: usize,
    /// Seed; the same seed writes identical files.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Side of the square images in pixels.
    #[arg(long, value_name = "PX", default_value_t = 320)]
    pub size: u32,
}

/// Runs `mixdet synth`.
pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let opts =
        SynthOptions { out: args.out.clone(), train: args.train, val: args.val, seed: args.seed, size: args.size };
    let summary = generate(&opts).with_context(|| format!("writing the synthetic set to {}", args.out.display()))?;
    println!(
        "wrote {} train images ({} boxes) and {} val images ({} boxes) of {} classes ({}) to {}",
        summary.images[0],
        summary.annotations[0],
        summary.images[1],
        summary.annotations[1],
        CLASS_NAMES.len(),
        CLASS_NAMES.join(", "),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
