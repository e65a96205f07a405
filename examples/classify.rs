//! ImageNet top-5 of one image with a timm / torchvision classifier, preprocessed exactly as
//! timm's eval transform (`mixdet_backbones::transforms`).
//!
//! `cargo run --release --example classify -- IMAGE MODEL WEIGHTS` (e.g. `mixnet_s` with timm's
//! `mixnet_s` state dict as .safetensors or .pth; `mixdet models` lists the models).

use candle_core::{Device, Tensor, D};
use mixdet::backbones::transforms::eval_input;
use mixdet::backbones::{ModelOptions, ModelSpec};

const IMAGENET_LABELS: &str = include_str!("../configs/labels/imagenet1k.txt");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [image, model, weights] = args.as_slice() else { return Err("usage: classify IMAGE MODEL WEIGHTS".into()) };
    let spec = ModelSpec::by_name(model, None)?;
    let mut net = spec.load_file(&ModelOptions::default(), weights.as_ref(), &Device::Cpu)?;
    net.fuse_for_inference()?;
    let img = image::open(image)?.to_rgb8();
    let size = spec.pretrained.input_size;
    let x =
        Tensor::from_vec(eval_input(&img, &spec.pretrained).ok_or("empty image")?, (1, 3, size, size), &Device::Cpu)?;
    let logits = net.forward(&x)?.logits.ok_or("the model has no classifier")?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.squeeze(0)?.to_vec1::<f32>()?;
    let mut ranked: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let labels: Vec<&str> = IMAGENET_LABELS.lines().collect();
    for (class, p) in ranked.into_iter().take(5) {
        println!("{:>6.2}%  {}", p * 100.0, labels.get(class).unwrap_or(&"?"));
    }
    Ok(())
}
