//! timm's evaluation transform (timm 1.0.31, torchvision 0.29.2, Pillow 13.0.0) against
//! `mixdet_backbones::transforms`, from the same pixels (`coco_tools/fixtures/make_transform_fixtures.py`):
//! the 8-bit resized and cropped image is identical, byte for byte (its FNV-1a hash and channel
//! sums), and the normalised tensor's first values and sum equal timm's (its arithmetic is the
//! same f32 operations).

use std::path::PathBuf;

use mixdet_backbones::transforms::{eval_crop, to_normalized};
use mixdet_backbones::{Interpolation, PretrainedConfig};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn input(name: &str) -> image::RgbImage {
    let photo = fixtures().join("tf_ssd/inputs").join(format!("{name}.png"));
    if photo.is_file() {
        return image::open(photo).expect("photo").to_rgb8();
    }
    image::open(fixtures().join("transforms").join(format!("{name}_input.png"))).expect("synthetic input").to_rgb8()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

#[test]
fn eval_crop_and_tensor_equal_timm_s() {
    let text = std::fs::read_to_string(fixtures().join("transforms/manifest.json")).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = manifest["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["input"].as_str().expect("input");
        let interp = case["interpolation"].as_str().expect("interpolation");
        let cfg = PretrainedConfig {
            input_size: 224,
            crop_pct: 0.875,
            interpolation: if interp == "bicubic" { Interpolation::Bicubic } else { Interpolation::Bilinear },
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        };
        let img = input(name);
        let ours = eval_crop(&img, &cfg).expect("crop");
        let sums: Vec<u64> = (0..3).map(|c| ours.as_raw().iter().skip(c).step_by(3).map(|&v| v as u64).sum()).collect();
        let expected: Vec<u64> =
            case["crop_channel_sums"].as_array().expect("sums").iter().map(|v| v.as_u64().expect("u64")).collect();
        assert_eq!(sums, expected, "{name} {interp}: channel sums of the crop");
        let hash = format!("{:016x}", fnv1a64(ours.as_raw()));
        assert_eq!(
            hash,
            case["crop_fnv1a64"].as_str().expect("hash"),
            "{name} {interp}: crop bytes differ from timm's"
        );
        let tensor = to_normalized(&ours, cfg.mean, cfg.std);
        let first: Vec<f32> =
            case["first"].as_array().expect("first").iter().map(|v| v.as_f64().expect("f") as f32).collect();
        assert_eq!(&tensor[..16], first.as_slice(), "{name} {interp}: normalised values");
        let sum: f64 = tensor.iter().map(|&v| v as f64).sum();
        let expected = case["sum"].as_f64().expect("sum");
        assert!((sum - expected).abs() <= 1e-6 * expected.abs().max(1.0), "{name} {interp}: sum {sum} vs {expected}");
    }
}
