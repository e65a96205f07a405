//! One module per subcommand; each exposes `XxxArgs` (clap) and `run(args) -> anyhow::Result<ExitCode>`.

pub mod eval;
