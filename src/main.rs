//! `mixdet`: the command-line interface of the mixdet toolkit.

mod commands;
mod device;
mod inputs;
mod output;
mod preprocess;
mod shipped;
mod stats;
mod threads;

use clap::{Parser, Subcommand};

/// MixConv object detection toolkit: MixNet / MobileNet backbones, COCO evaluation.
#[derive(Parser)]
#[command(name = "mixdet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect objects in images, folders and globs; write overlays and COCO results.
    Detect(commands::detect::DetectArgs),
    /// Join the parts of a sharded `detect --parts` run into one COCO results file (and evaluate).
    Merge(commands::merge::MergeArgs),
    /// Classify images with an ImageNet backbone (timm preprocessing), printing the top-k classes.
    Classify(commands::classify::ClassifyArgs),
    /// Run a model on a stored NCHW tensor and store its logits and feature maps (for parity checks).
    Forward(commands::forward::ForwardArgs),
    /// Time a backbone's or detector's forward pass (median, min, max, throughput).
    Bench(commands::bench::BenchArgs),
    /// Write a synthetic shapes detection data set in COCO layout.
    Synth(commands::synth::SynthArgs),
    /// Train a detector from a training config (COCO-format data).
    Train(commands::train::TrainArgs),
    /// List the models with their parameter counts and feature maps.
    Models(commands::models::ModelsArgs),
    /// Convert a state dict (.pth / .safetensors) or a TensorFlow frozen graph (.pb) to safetensors, optionally to f16 / bf16.
    Convert(commands::convert::ConvertArgs),
    /// Evaluate COCO bbox detections against ground truth (pycocotools semantics).
    Eval(commands::eval::EvalArgs),
    /// Export a backbone or detector to ONNX (BatchNorm folded, decoding and optional NMS in the graph).
    Export(commands::export::ExportArgs),
    /// Report how well a detector's anchors fit the boxes of a COCO-format data set.
    Anchors(commands::anchors::AnchorsArgs),
}

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any thread starts, so that
    // `mixdet models | head` ends quietly like other Unix tools instead of panicking in println!.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    threads::tune_allocator();
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Bench(args) => args.threads,
        Command::Train(args) => args.threads,
        _ => None,
    };
    if let Err(err) = threads::set_threads(threads) {
        eprintln!("error: {}", one_line(&err));
        return std::process::ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Detect(args) => commands::detect::run(args),
        Command::Merge(args) => commands::merge::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::Forward(args) => commands::forward::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Anchors(args) => commands::anchors::run(args),
        Command::Export(args) => commands::export::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: typed errors that already print
/// their source (`{path}: {source}`) also expose it as the next cause, which `{:#}` would repeat.
fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
