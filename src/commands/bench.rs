//! `mixdet bench`: latency of a backbone or detector forward pass (synthetic weights unless
//! `--weights` is given), with warm-up, median/min/max and throughput.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use mixdet_backbones::{macs, ModelOptions, ModelSpec};
use mixdet_detect::{DetectorConfig, SsdLite};

/// Arguments of `mixdet bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Backbone (`mixdet models`) or detector (built-in name or config .json).
    #[arg(long, required_unless_present = "nms")]
    pub model: Option<String>,
    /// Instead of a model, time class-aware NMS (IoU 0.5) on this many synthetic boxes, the same
    /// boxes as `coco_tools/peers/bench_nms.py` gives torchvision's `batched_nms`.
    #[arg(long, value_name = "BOXES")]
    pub nms: Option<usize>,
    /// Classes of the synthetic NMS boxes.
    #[arg(long, default_value_t = 80)]
    pub classes: usize,
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
    /// Detectors: time the whole per-image path on this image (RGB conversion, normalisation and
    /// resize, forward, post-processing, rescaling to the image), as `mixdet detect` runs it after
    /// decoding.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Detectors: time backbone, extra layers and head only (no post-processing).
    #[arg(long)]
    pub forward_only: bool,
    /// Time the training-capable layers (BatchNorm not folded) instead of the inference form.
    #[arg(long)]
    pub unfused: bool,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

type Step = Box<dyn Fn() -> Result<()> + Sync>;

/// A timed step, its input shape and the multiply-adds of one image's forward pass (counted on
/// the unfused model: folding BatchNorm does not change them).
type Prepared = (Step, [usize; 4], Option<u64>);

fn backbone_step(args: &BenchArgs, spec: ModelSpec, device: &Device) -> Result<Prepared> {
    let opts = ModelOptions::default();
    let mut net = super::backbone_args::load_backbone(&spec, &opts, args.weights.as_deref(), device)?;
    let size = args.input.unwrap_or(spec.pretrained.input_size);
    let one = Tensor::zeros((1, 3, size, size), DType::F32, device)?;
    let macs = macs::count(|| net.forward(&one)).1;
    if !args.unfused {
        net.fuse_for_inference()?;
    }
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
        Some(macs),
    ))
}

/// Synthetic boxes shared with `coco_tools/peers/bench_nms.py`: corners from `uniform01` keyed by the
/// box count, 640-pixel image, sides 8..136 px, scores uniform, classes uniform.
fn nms_step(n: usize, classes: usize) -> Result<Prepared> {
    use mixdet_backbones::synthetic_weights::uniform01;
    let u = uniform01(&format!("bench.nms.boxes.{n}"), n * 4);
    let boxes: Vec<[f32; 4]> = u
        .chunks(4)
        .map(|r| {
            let (x, y) = (r[0] * 640.0, r[1] * 640.0);
            [x as f32, y as f32, (x + 8.0 + r[2] * 128.0) as f32, (y + 8.0 + r[3] * 128.0) as f32]
        })
        .collect();
    let scores: Vec<f32> = uniform01(&format!("bench.nms.scores.{n}"), n).into_iter().map(|s| s as f32).collect();
    let labels: Vec<i64> = uniform01(&format!("bench.nms.classes.{n}"), n)
        .into_iter()
        .map(|c| (c * classes as f64).floor() as i64)
        .collect();
    Ok((
        Box::new(move || {
            std::hint::black_box(mixdet_detect::nms::batched_nms(&boxes, &scores, &labels, 0.5));
            Ok(())
        }),
        [n, 4, 1, 1],
        None,
    ))
}

fn detector_step(args: &BenchArgs, cfg: DetectorConfig, device: &Device) -> Result<Prepared> {
    let mut model = match &args.weights {
        Some(w) => SsdLite::from_file(cfg, w, device)?,
        None => super::backbone_args::synthetic_detector(cfg, device)?,
    };
    let [h, w] = model.config().input_size;
    let (h, w) = args.input.map_or((h, w), |s| (s, s));
    let one = Tensor::zeros((1, 3, h, w), DType::F32, device)?;
    let macs = macs::count(|| model.forward_t(&one, false)).1;
    if !args.unfused {
        model.fuse_for_inference()?;
    }
    let shape = [args.batch, 3, h, w];
    let post = model.config().postprocess;
    if let Some(path) = &args.image {
        let img = mixdet_detect::load_rgb(path)?;
        let dev = device.clone();
        return Ok((
            Box::new(move || {
                let (iw, ih) = img.dimensions();
                let x = Tensor::from_vec(model.preprocess_rgb(&img), (1, 3, h, w), &dev)?;
                let out = model.forward_t(&x, false)?;
                for mut d in model.postprocess(&out, &post)? {
                    d.rescale(model.config().input_size, [ih as usize, iw as usize]);
                    std::hint::black_box(d);
                }
                Ok(())
            }),
            [1, 3, h, w],
            Some(macs),
        ));
    }
    let x = Tensor::randn(0f32, 1.0, shape.as_slice(), device)?;
    let forward_only = args.forward_only;
    Ok((
        Box::new(move || {
            let out = model.forward_t(&x, false)?;
            if forward_only {
                out.cls_logits.to_device(&Device::Cpu)?;
            } else {
                model.postprocess(&out, &post)?;
            }
            Ok(())
        }),
        shape,
        Some(macs),
    ))
}

/// Runs `mixdet bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let device = crate::device::parse_device(&args.device)?;
    let (name, (step, shape, macs)) = match (&args.model, args.nms) {
        (_, Some(n)) => (format!("batched_nms({n} boxes, {} classes)", args.classes), nms_step(n, args.classes)?),
        (Some(model), None) => {
            let prepared = match ModelSpec::by_name(model, None) {
                Ok(spec) => backbone_step(&args, spec, &device)?,
                Err(_) => {
                    let cfg = DetectorConfig::resolve(model).with_context(|| {
                        let names = mixdet_backbones::MODEL_NAMES.join(", ");
                        format!("{model:?} is neither a backbone ({names}) nor a detector")
                    })?;
                    detector_step(&args, cfg, &device)?
                }
            };
            (model.clone(), prepared)
        }
        (None, None) => anyhow::bail!("give --model NAME or --nms BOXES"),
    };
    // Each pass starts on a pool worker, as in `mixdet detect` (see `on_worker`); on CUDA the
    // input was made on this thread's stream, which the workers' streams do not wait for.
    device.synchronize()?;
    let step = || mixdet_detect::on_worker(&step);
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
    let (med, min, max) = (crate::stats::median(&times), times[0], times[times.len() - 1]);
    let throughput = shape[0] as f64 * 1e3 / med;
    let threads = candle_core::utils::get_num_threads();
    let macs_note = macs.map_or(String::new(), |m| format!(", {:.1} M multiply-adds per image", m as f64 / 1e6));
    println!(
        "{name}: input {:?}, {} threads, {} iters: median {med:.2} ms, min {min:.2} ms, max {max:.2} ms, {throughput:.1} images/s{macs_note}",
        shape,
        threads,
        times.len()
    );
    if args.json {
        let line = serde_json::json!({
            "model": name, "input": shape, "threads": threads, "iters": times.len(),
            "median_ms": med, "min_ms": min, "max_ms": max, "images_per_s": throughput,
            "dtype": format!("{:?}", DType::F32), "macs_per_image": macs,
        });
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
