//! `mixdet classify`: ImageNet top-k classes of images with timm's pretrained preprocessing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use candle_core::D;

use super::backbone_args::BackboneArgs;
use crate::preprocess::classification_input;
use mixdet_detect::load_rgb;

/// ImageNet-1k class names in index order (torchvision's list).
const IMAGENET_LABELS: &str = include_str!("../../configs/labels/imagenet1k.txt");

/// Arguments of `mixdet classify`.
#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Image files (JPEG, PNG, WebP, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mixdet classify`; the exit status is non-zero when any image failed.
pub fn run(args: ClassifyArgs) -> Result<ExitCode> {
    let (spec, net, device) = args.backbone.load()?;
    let labels: Vec<&str> = IMAGENET_LABELS.lines().collect();
    let mut failures = 0;
    for path in &args.images {
        let result = (|| -> Result<Vec<(usize, f32)>> {
            let img = load_rgb(path)?;
            let x = classification_input(&img, &spec.pretrained, &device)?;
            let logits = net.forward(&x)?.logits.ok_or_else(|| anyhow::anyhow!("the model has no classifier"))?;
            let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.squeeze(0)?.to_vec1::<f32>()?;
            let mut ranked: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(args.top_k);
            Ok(ranked)
        })();
        match result {
            Ok(ranked) => {
                let label = |i: usize| labels.get(i).copied().unwrap_or("?");
                if args.json {
                    let preds: Vec<_> = ranked
                        .iter()
                        .map(|&(i, p)| serde_json::json!({"class": i, "label": label(i), "probability": p}))
                        .collect();
                    println!("{}", serde_json::json!({"image": path.display().to_string(), "top_k": preds}));
                } else {
                    println!("{}:", path.display());
                    for (i, p) in ranked {
                        println!("  {:>6.2}%  {:>4}  {}", p * 100.0, i, label(i));
                    }
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} of {} images failed", args.images.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
