//! timm's evaluation transform, exactly: torchvision's `Resize(short side)` on a PIL image
//! (Pillow's antialiased resampling, with its fixed-point arithmetic and 8-bit rounding after
//! each pass), `CenterCrop` (offsets rounded half to even, as Python's `round`), `ToTensor`
//! (`x / 255`) and `Normalize` (`(x - mean) / std`), all in the same f32/integer operations.
//!
//! Pillow (`libImaging/Resample.c`): per axis, output pixel `i` takes input pixels around
//! `center = (i + 0.5) * scale` with a filter stretched by `max(scale, 1)` (so downscaling
//! averages, which is the antialiasing), weights normalised to sum 1 and converted to 22-bit
//! fixed point; the horizontal pass runs first and is rounded and clipped to 8 bits, then the
//! vertical pass.

use image::RgbImage;

use crate::registry::{Interpolation, PretrainedConfig};

/// Fixed-point fraction bits of Pillow's 8-bit resampling (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's filters: (kernel, support).
fn filter(interpolation: Interpolation) -> (fn(f64) -> f64, f64) {
    match interpolation {
        Interpolation::Bilinear => (bilinear, 1.0),
        Interpolation::Bicubic => (bicubic, 2.0),
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Keys' cubic with a = -0.5, in Pillow's form.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One axis: for each output pixel its first input pixel and fixed-point weights.
struct Coefficients {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` then `normalize_coeffs_8bpc`, for the box `0..in_size`.
fn coefficients(in_size: usize, out_size: usize, interpolation: Interpolation) -> Coefficients {
    let (kernel, base_support) = filter(interpolation);
    // `(double)(in1 - in0) / outSize` with the box as floats.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = base_support * filterscale;
    let ss = 1.0 / filterscale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; both ends are clamped to the image.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax).map(|x| kernel((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * (1u32 << PRECISION_BITS) as f64;
                (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Coefficients { first, weights }
}

/// Pillow's `clip8`: the 22-bit fixed-point sum (which started at one half) to 0..=255.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an 8-bit RGB image as Pillow's `Image.resize((width, height), filter)` does.
pub fn pil_resize(img: &RgbImage, width: u32, height: u32, interpolation: Interpolation) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let src = img.as_raw();
    // Horizontal pass (skipped when the width does not change), over every input row.
    let horizontal: Vec<u8> = if out_w != in_w {
        let c = coefficients(in_w, out_w, interpolation);
        let mut out = vec![0u8; in_h * out_w * 3];
        for y in 0..in_h {
            let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for x in 0..out_w {
                let (x0, k) = (c.first[x], &c.weights[x]);
                for ch in 0..3 {
                    let mut sum = 1i32 << (PRECISION_BITS - 1);
                    for (j, &w) in k.iter().enumerate() {
                        sum += row[(x0 + j) * 3 + ch] as i32 * w;
                    }
                    out[(y * out_w + x) * 3 + ch] = clip8(sum);
                }
            }
        }
        out
    } else {
        src.clone()
    };
    if out_h == in_h {
        return RgbImage::from_raw(width, height, horizontal).unwrap_or_else(|| RgbImage::new(width, height));
    }
    let c = coefficients(in_h, out_h, interpolation);
    let mut out = vec![0u8; out_h * out_w * 3];
    let stride = out_w * 3;
    for y in 0..out_h {
        let (y0, k) = (c.first[y], &c.weights[y]);
        for i in 0..stride {
            let mut sum = 1i32 << (PRECISION_BITS - 1);
            for (j, &w) in k.iter().enumerate() {
                sum += horizontal[(y0 + j) * stride + i] as i32 * w;
            }
            out[y * stride + i] = clip8(sum);
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// torchvision's `Resize(int)` size: the short side becomes `short`, the long side
/// `int(short * long / short_side)`.
pub fn short_side_size(width: u32, height: u32, short: u32) -> (u32, u32) {
    if width <= height {
        (short, (short as f64 * height as f64 / width as f64) as u32)
    } else {
        ((short as f64 * width as f64 / height as f64) as u32, short)
    }
}

/// timm's eval crop: `Resize(floor(size / crop_pct))` on the short side, then the centre
/// `size x size` (offsets `round((H - size) / 2)`, half to even). `None` for an empty image.
pub fn eval_crop(img: &RgbImage, cfg: &PretrainedConfig) -> Option<RgbImage> {
    if img.width() == 0 || img.height() == 0 {
        return None;
    }
    let size = cfg.input_size as u32;
    let scale_size = (cfg.input_size as f64 / cfg.crop_pct).floor() as u32;
    let (w, h) = short_side_size(img.width(), img.height(), scale_size);
    let resized = pil_resize(img, w.max(1), h.max(1), cfg.interpolation);
    // torchvision pads an image smaller than the crop with zeros, centred the same way.
    let offset = |full: u32| ((full as f64 - size as f64) / 2.0).round_ties_even() as i64;
    let (top, left) = (offset(resized.height()), offset(resized.width()));
    let mut crop = RgbImage::new(size, size);
    for y in 0..size as i64 {
        for x in 0..size as i64 {
            let (sy, sx) = (y + top, x + left);
            if sy >= 0 && sx >= 0 && (sy as u32) < resized.height() && (sx as u32) < resized.width() {
                crop.put_pixel(x as u32, y as u32, *resized.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    Some(crop)
}

/// `ToTensor` then `Normalize`: planar `3 x H x W` values `(x / 255 - mean) / std`.
pub fn to_normalized(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    data
}

/// The whole eval transform: planar `3 x size x size` network input, `None` for an empty image.
pub fn eval_input(img: &RgbImage, cfg: &PretrainedConfig) -> Option<Vec<f32>> {
    eval_crop(img, cfg).map(|crop| to_normalized(&crop, cfg.mean, cfg.std))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_identity_sizes_copy() {
        let c = coefficients(300, 256, Interpolation::Bicubic);
        for w in &c.weights {
            let sum: i64 = w.iter().map(|&v| v as i64).sum();
            assert!((sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{sum}");
        }
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 7]));
        assert_eq!(pil_resize(&img, 7, 5, Interpolation::Bicubic), img);
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        let cfg = PretrainedConfig {
            input_size: 4,
            crop_pct: 1.0,
            interpolation: Interpolation::Bilinear,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        // 4 -> short side 4, long side 9: offset round(2.5) = 2 (Python), not 3.
        let img = RgbImage::from_fn(9, 4, |x, _| image::Rgb([x as u8, 0, 0]));
        let crop = eval_crop(&img, &cfg).expect("crop");
        assert_eq!(crop.get_pixel(0, 0)[0], 2);
        assert_eq!(short_side_size(300, 451, 256), (256, 384));
    }
}
