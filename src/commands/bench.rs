//! `mixdet bench`: latency of a backbone or detector forward pass (synthetic weights unless
//! `--weights` is given), with warm-up, median/min/max and throughput.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use mixdet_backbones::synthetic::synthetic_tensor;
use mixdet_backbones::weights::ShapeRecorder;
use mixdet_backbones::{ModelOptions, ModelSpec};
use mixdet_detect::{DetectorConfig, SsdLite};

/// Arguments of `mixdet bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Backbone (`mixdet models`) or detector (built-in name or config .json).
    #[arg(long)]
    pub model: String,
    /// Square input size (detectors: default their own input size).
    #[arg(long)]
    pub input: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Worker threads (rayon and candle); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed iterations.
    #[arg(long, default_value_t = 50)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Weights file; default deterministic synthetic weights (speed does not depend on values).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Time the training-capable layers (BatchNorm not folded) instead of the inference form.
    #[arg(long)]
    pub unfused: bool,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

fn synthetic(shapes: impl IntoIterator<Item = (String, Vec<usize>)>) -> Result<HashMap<String, Tensor>> {
    shapes.into_iter().map(|(k, s)| Ok((k.clone(), synthetic_tensor(&k, &s, &Device::Cpu)?))).collect()
}

type Step = Box<dyn Fn() -> Result<()>>;

fn backbone_step(args: &BenchArgs, spec: ModelSpec, device: &Device) -> Result<(Step, [usize; 4])> {
    let opts = ModelOptions::default();
    let mut net = match &args.weights {
        Some(w) => spec.load_file(&opts, w, device)?,
        None => spec.load_state_dict(&opts, synthetic(spec.state_dict_shapes(&opts)?)?, "synthetic", device)?,
    };
    if !args.unfused {
        net.fuse_for_inference()?;
    }
    let size = args.input.unwrap_or(spec.pretrained.input_size);
    let shape = [args.batch, 3, size, size];
    let x = Tensor::randn(0f32, 1.0, shape.as_slice(), device)?;
    let dev = device.clone();
    Ok((
        Box::new(move || {
            let out = net.forward(&x)?;
            if let Some(l) = out.logits {
                l.to_device(&Device::Cpu)?;
            }
            dev.synchronize()?;
            Ok(())
        }),
        shape,
    ))
}

fn detector_step(args: &BenchArgs, cfg: DetectorConfig, device: &Device) -> Result<(Step, [usize; 4])> {
    let mut model = match &args.weights {
        Some(w) => SsdLite::from_file(cfg, w, device)?,
        None => {
            let recorder = ShapeRecorder::default();
            SsdLite::load(cfg.clone(), recorder.var_builder(&Device::Cpu))?;
            SsdLite::from_state_dict(cfg, synthetic(recorder.shapes())?, "synthetic", device)?
        }
    };
    if !args.unfused {
        model.fuse_for_inference()?;
    }
    let [h, w] = model.config().input_size;
    let (h, w) = args.input.map_or((h, w), |s| (s, s));
    let shape = [args.batch, 3, h, w];
    let x = Tensor::randn(0f32, 1.0, shape.as_slice(), device)?;
    let post = model.config().postprocess;
    Ok((
        Box::new(move || {
            let out = model.forward_t(&x, false)?;
            model.postprocess(&out, &post)?;
            Ok(())
        }),
        shape,
    ))
}

/// Median of a sorted slice.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Runs `mixdet bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(t) = args.threads {
        crate::threads::set_threads(t)?;
    }
    let device = crate::device::parse_device(&args.device)?;
    let (step, shape) = match ModelSpec::by_name(&args.model, None) {
        Ok(spec) => backbone_step(&args, spec, &device)?,
        Err(_) => {
            let cfg = DetectorConfig::resolve(&args.model).with_context(|| {
                format!(
                    "{:?} is neither a backbone ({}) nor a detector",
                    args.model,
                    mixdet_backbones::MODEL_NAMES.join(", ")
                )
            })?;
            detector_step(&args, cfg, &device)?
        }
    };
    for _ in 0..args.warmup {
        step()?;
    }
    let mut times = Vec::with_capacity(args.iters.max(1));
    for _ in 0..args.iters.max(1) {
        let start = Instant::now();
        step()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let (med, min, max) = (median(&times), times[0], times[times.len() - 1]);
    let throughput = shape[0] as f64 * 1e3 / med;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{}: input {:?}, {} threads, {} iters: median {med:.2} ms, min {min:.2} ms, max {max:.2} ms, {throughput:.1} images/s",
        args.model,
        shape,
        threads,
        times.len()
    );
    if args.json {
        let line = serde_json::json!({
            "model": args.model, "input": shape, "threads": threads, "iters": times.len(),
            "median_ms": med, "min_ms": min, "max_ms": max, "images_per_s": throughput,
            "dtype": format!("{:?}", DType::F32),
        });
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
