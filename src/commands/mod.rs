//! One module per subcommand; each exposes `XxxArgs` (clap) and `run(args) -> anyhow::Result<ExitCode>`.

pub mod anchors;
pub mod backbone_args;
pub mod bench;
pub mod classify;
pub mod convert;
pub mod detect;
pub mod detector_args;
pub mod eval;
pub mod export;
pub mod forward;
pub mod merge;
pub mod models;
pub mod synth;
pub mod train;

/// A progress bar over `len` images (drawn on a terminal only).
pub fn image_progress(len: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}
