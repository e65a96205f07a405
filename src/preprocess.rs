//! The classification preprocessing of timm's pretrained configs, as a tensor.

use anyhow::Result;
use candle_core::{Device, Tensor};
use image::RgbImage;
use mixdet_backbones::transforms::eval_input;
use mixdet_backbones::PretrainedConfig;

/// timm's eval transform (`mixdet_backbones::transforms`, byte-exact with timm on the same
/// pixels): a `(1, 3, size, size)` tensor.
pub fn classification_input(img: &RgbImage, cfg: &PretrainedConfig, device: &Device) -> Result<Tensor> {
    let Some(data) = eval_input(img, cfg) else { anyhow::bail!("empty image") };
    let size = cfg.input_size;
    Ok(Tensor::from_vec(data, (1, 3, size, size), device)?)
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
            interpolation: mixdet_backbones::Interpolation::Bicubic,
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
