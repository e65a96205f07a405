//! `mixdet`: the command-line interface of the mixdet toolkit.

mod commands;

use clap::{Parser, Subcommand};

/// MixConv object detection toolkit.
#[derive(Parser)]
#[command(name = "mixdet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate COCO bbox detections against ground truth (pycocotools semantics).
    Eval(commands::eval::EvalArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => commands::eval::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
