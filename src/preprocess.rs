//! The classification preprocessing of timm's pretrained configs.

use anyhow::Result;
use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::RgbImage;
use mixdet_backbones::{Interpolation, PretrainedConfig};

fn filter(i: Interpolation) -> FilterType {
    match i {
        Interpolation::Bicubic => FilterType::CatmullRom,
        Interpolation::Bilinear => FilterType::Triangle,
    }
}

/// timm's eval transform: resize the short side to `floor(size / crop_pct)`, centre-crop
/// `size x size`, scale to [0, 1], normalise. Returns a `(1, 3, size, size)` tensor.
pub fn classification_input(img: &RgbImage, cfg: &PretrainedConfig, device: &Device) -> Result<Tensor> {
    let size = cfg.input_size as u32;
    let scale_size = (cfg.input_size as f64 / cfg.crop_pct).floor() as u32;
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        anyhow::bail!("empty image");
    }
    // torchvision's Resize(int): the short side becomes scale_size, the long side keeps the ratio.
    let (nw, nh) = if w <= h {
        (scale_size, ((scale_size as u64 * h as u64) / w as u64) as u32)
    } else {
        (((scale_size as u64 * w as u64) / h as u64) as u32, scale_size)
    };
    let resized = image::imageops::resize(img, nw.max(size), nh.max(size), filter(cfg.interpolation));
    // torchvision's CenterCrop rounds the offset: int(round((H - size) / 2)).
    let top = ((resized.height() - size) as f64 / 2.0).round() as u32;
    let left = ((resized.width() - size) as f64 / 2.0).round() as u32;
    let crop = image::imageops::crop_imm(&resized, left, top, size, size).to_image();
    to_normalized_tensor(&crop, cfg.mean, cfg.std, device)
}

/// `(1, 3, H, W)` f32 tensor of `(pixel / 255 - mean) / std`.
pub fn to_normalized_tensor(img: &RgbImage, mean: [f32; 3], std: [f32; 3], device: &Device) -> Result<Tensor> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, h as usize, w as usize), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_input_has_model_size_and_normalised_values() -> Result<()> {
        let img = RgbImage::from_pixel(300, 200, image::Rgb([255, 0, 128]));
        let cfg = PretrainedConfig {
            input_size: 224,
            crop_pct: 0.875,
            interpolation: Interpolation::Bicubic,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
        };
        let t = classification_input(&img, &cfg, &Device::Cpu)?;
        assert_eq!(t.dims(), &[1, 3, 224, 224]);
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        assert!((v[0] - 1.0).abs() < 1e-5, "red channel of a red image is 1 after (1-0.5)/0.5");
        assert!((v[224 * 224] + 1.0).abs() < 1e-5, "green channel is -1");
        Ok(())
    }
}
