//! One module per subcommand; each exposes `XxxArgs` (clap) and `run(args) -> anyhow::Result<ExitCode>`.

pub mod anchors;
pub mod backbone_args;
pub mod bench;
pub mod classify;
pub mod convert;
pub mod detect;
pub mod detector_args;
pub mod eval;
pub mod forward;
pub mod merge;
pub mod models;
pub mod synth;
pub mod train;
