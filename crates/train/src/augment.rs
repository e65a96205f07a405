//! SSD's training augmentations as torchvision's detection reference applies them:
//! photometric distortion, zoom-out (expand onto a mean-coloured canvas), random IoU crop,
//! horizontal flip; then the resize to the network input.

use mixdet_detect::preprocess::{normalize, resize_bilinear};
use mixdet_detect::PlanarImage;
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Which augmentations run (each with torchvision's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Brightness, contrast, saturation, hue and channel order, each with probability 0.5.
    #[serde(default = "yes")]
    pub photometric: bool,
    /// Place the image on a canvas 1–4x its size with probability 0.5.
    #[serde(default = "yes")]
    pub zoom_out: bool,
    /// SSD's random crop with a minimum IoU with some box.
    #[serde(default = "yes")]
    pub iou_crop: bool,
    /// Mirror with probability 0.5.
    #[serde(default = "yes")]
    pub hflip: bool,
}

fn yes() -> bool {
    true
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { photometric: true, zoom_out: true, iou_crop: true, hflip: true }
    }
}

/// An image in [0, 1] with its boxes (`[x1, y1, x2, y2]` pixels) and labels.
#[derive(Debug, Clone)]
pub struct Example {
    /// Planar RGB in [0, 1].
    pub image: PlanarImage,
    /// Boxes.
    pub boxes: Vec<[f32; 4]>,
    /// One label per box.
    pub labels: Vec<u32>,
}

fn gray(img: &PlanarImage) -> Vec<f32> {
    let plane = img.height * img.width;
    (0..plane).map(|i| 0.2989 * img.data[i] + 0.587 * img.data[plane + i] + 0.114 * img.data[2 * plane + i]).collect()
}

fn blend_with(img: &mut PlanarImage, other: impl Fn(usize) -> f32, factor: f32) {
    let plane = img.height * img.width;
    for c in 0..3 {
        for i in 0..plane {
            let v = &mut img.data[c * plane + i];
            *v = (factor * *v + (1.0 - factor) * other(i)).clamp(0.0, 1.0);
        }
    }
}

/// torchvision's `RandomPhotometricDistort` with its default ranges.
pub fn photometric(img: &mut PlanarImage, rng: &mut Rng) {
    let plane = img.height * img.width;
    let contrast_first = rng.chance(0.5);
    let contrast = |img: &mut PlanarImage, rng: &mut Rng| {
        if rng.chance(0.5) {
            let f = rng.uniform(0.5, 1.5);
            let mean = gray(img).iter().sum::<f32>() / plane.max(1) as f32;
            blend_with(img, |_| mean, f);
        }
    };
    if rng.chance(0.5) {
        let f = rng.uniform(0.875, 1.125);
        img.data.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
    }
    if contrast_first {
        contrast(img, rng);
    }
    if rng.chance(0.5) {
        let f = rng.uniform(0.5, 1.5);
        let g = gray(img);
        blend_with(img, |i| g[i], f);
    }
    if rng.chance(0.5) {
        // Hue rotation in YIQ space: a cheap equivalent of an HSV hue shift for small angles.
        let theta = rng.uniform(-0.05, 0.05) * std::f32::consts::TAU;
        let (c, s) = (theta.cos(), theta.sin());
        for i in 0..plane {
            let (r, g, b) = (img.data[i], img.data[plane + i], img.data[2 * plane + i]);
            let y = 0.299 * r + 0.587 * g + 0.114 * b;
            let ii = 0.596 * r - 0.274 * g - 0.322 * b;
            let q = 0.211 * r - 0.523 * g + 0.312 * b;
            let (i2, q2) = (c * ii - s * q, s * ii + c * q);
            img.data[i] = (y + 0.956 * i2 + 0.621 * q2).clamp(0.0, 1.0);
            img.data[plane + i] = (y - 0.272 * i2 - 0.647 * q2).clamp(0.0, 1.0);
            img.data[2 * plane + i] = (y - 1.106 * i2 + 1.703 * q2).clamp(0.0, 1.0);
        }
    }
    if !contrast_first {
        contrast(img, rng);
    }
    if rng.chance(0.5) {
        let mut order = [0usize, 1, 2];
        rng.shuffle(&mut order);
        let old = img.data.clone();
        for (dst, &src) in order.iter().enumerate() {
            img.data[dst * plane..(dst + 1) * plane].copy_from_slice(&old[src * plane..(src + 1) * plane]);
        }
    }
}

/// torchvision's `RandomZoomOut(fill=mean, side_range=(1, 4), p=0.5)`.
pub fn zoom_out(ex: &mut Example, fill: [f32; 3], rng: &mut Rng) {
    if rng.chance(0.5) {
        return;
    }
    let r = rng.uniform(1.0, 4.0);
    let (h, w) = (ex.image.height, ex.image.width);
    let (nh, nw) = ((h as f32 * r) as usize, (w as f32 * r) as usize);
    let top = ((nh - h) as f32 * rng.f32()) as usize;
    let left = ((nw - w) as f32 * rng.f32()) as usize;
    let mut data = vec![0f32; 3 * nh * nw];
    for c in 0..3 {
        data[c * nh * nw..(c + 1) * nh * nw].fill(fill[c]);
        for y in 0..h {
            let src = &ex.image.data[c * h * w + y * w..c * h * w + (y + 1) * w];
            let d = c * nh * nw + (y + top) * nw + left;
            data[d..d + w].copy_from_slice(src);
        }
    }
    ex.image = PlanarImage { data, height: nh, width: nw };
    for b in &mut ex.boxes {
        *b = [b[0] + left as f32, b[1] + top as f32, b[2] + left as f32, b[3] + top as f32];
    }
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// torchvision's `RandomIoUCrop` (scale 0.3–1, aspect 0.5–2, 40 trials per option): a crop with
/// at least the drawn IoU with some box; boxes whose centre leaves the crop are dropped.
pub fn iou_crop(ex: &mut Example, rng: &mut Rng) {
    const OPTIONS: [f32; 7] = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 2.0];
    let (h, w) = (ex.image.height as f32, ex.image.width as f32);
    // torchvision loops until it succeeds; an image without boxes only ends on the "no crop"
    // option, so a bound on the attempts changes nothing but the worst case.
    for _ in 0..64 {
        let min_iou = OPTIONS[rng.below(OPTIONS.len())];
        if min_iou >= 1.0 {
            return;
        }
        for _ in 0..40 {
            let (sw, sh) = (rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0));
            let (nw, nh) = ((w * sw).floor(), (h * sh).floor());
            let aspect = nw / nh.max(1.0);
            if !(0.5..=2.0).contains(&aspect) {
                continue;
            }
            let left = ((w - nw) * rng.f32()).floor();
            let top = ((h - nh) * rng.f32()).floor();
            let (right, bottom) = (left + nw, top + nh);
            if nw < 1.0 || nh < 1.0 {
                continue;
            }
            let crop = [left, top, right, bottom];
            let keep: Vec<usize> = (0..ex.boxes.len())
                .filter(|&i| {
                    let b = ex.boxes[i];
                    let (cx, cy) = (0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]));
                    left < cx && cx < right && top < cy && cy < bottom
                })
                .collect();
            if keep.is_empty() {
                continue;
            }
            let best = keep.iter().map(|&i| iou(&ex.boxes[i], &crop)).fold(0.0f32, f32::max);
            if best < min_iou {
                continue;
            }
            let (l, t, cw, ch) = (left as usize, top as usize, nw as usize, nh as usize);
            let (iw, ih) = (ex.image.width, ex.image.height);
            let mut data = Vec::with_capacity(3 * cw * ch);
            for c in 0..3 {
                for y in t..t + ch {
                    let row = c * ih * iw + y * iw;
                    data.extend_from_slice(&ex.image.data[row + l..row + l + cw]);
                }
            }
            ex.image = PlanarImage { data, height: ch, width: cw };
            ex.boxes = keep
                .iter()
                .map(|&i| {
                    let b = ex.boxes[i];
                    [
                        b[0].clamp(left, right) - left,
                        b[1].clamp(top, bottom) - top,
                        b[2].clamp(left, right) - left,
                        b[3].clamp(top, bottom) - top,
                    ]
                })
                .collect();
            ex.labels = keep.iter().map(|&i| ex.labels[i]).collect();
            return;
        }
    }
}

/// Mirrors the image and boxes with probability 0.5.
pub fn hflip(ex: &mut Example, rng: &mut Rng) {
    if rng.chance(0.5) {
        return;
    }
    let (h, w) = (ex.image.height, ex.image.width);
    for row in ex.image.data.chunks_exact_mut(w).take(3 * h) {
        row.reverse();
    }
    let wf = w as f32;
    for b in &mut ex.boxes {
        *b = [wf - b[2], b[1], wf - b[0], b[3]];
    }
}

/// Resizes to the network input (`[height, width]`) and normalises; boxes follow the resize.
/// Boxes that shrink below a tenth of a pixel are dropped (nothing left to regress to).
pub fn to_network_input(ex: Example, input_size: [usize; 2], mean: [f32; 3], std: [f32; 3]) -> Example {
    let [oh, ow] = input_size;
    let (sy, sx) = (oh as f32 / ex.image.height as f32, ow as f32 / ex.image.width as f32);
    let mut image = resize_bilinear(&ex.image, oh, ow);
    normalize(&mut image, mean, std);
    let mut boxes = Vec::with_capacity(ex.boxes.len());
    let mut labels = Vec::with_capacity(ex.labels.len());
    for (b, &l) in ex.boxes.iter().zip(&ex.labels) {
        let nb = [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy];
        if nb[2] - nb[0] > 0.1 && nb[3] - nb[1] > 0.1 {
            boxes.push(nb);
            labels.push(l);
        }
    }
    Example { image, boxes, labels }
}

/// The full training pipeline for one example.
pub fn augment(mut ex: Example, cfg: &AugmentConfig, fill: [f32; 3], rng: &mut Rng) -> Example {
    if cfg.photometric {
        photometric(&mut ex.image, rng);
    }
    if cfg.zoom_out {
        zoom_out(&mut ex, fill, rng);
    }
    if cfg.iou_crop {
        iou_crop(&mut ex, rng);
    }
    if cfg.hflip {
        hflip(&mut ex, rng);
    }
    ex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Example {
        let (h, w) = (40, 60);
        let data = (0..3 * h * w).map(|i| (i % 97) as f32 / 97.0).collect();
        Example {
            image: PlanarImage { data, height: h, width: w },
            boxes: vec![[5.0, 6.0, 25.0, 30.0], [30.0, 2.0, 58.0, 20.0]],
            labels: vec![1, 2],
        }
    }

    fn boxes_inside(ex: &Example) -> bool {
        ex.boxes.iter().all(|b| {
            b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= ex.image.width as f32 && b[3] <= ex.image.height as f32 && b[0] < b[2]
        })
    }

    #[test]
    fn geometric_augmentations_keep_boxes_on_their_pixels() {
        // A box marks a constant patch; after every transform the patch must still sit under it.
        for seed in 0..40 {
            let mut ex = example();
            let plane = ex.image.height * ex.image.width;
            for c in 0..3 {
                for y in 6..30 {
                    for x in 5..25 {
                        ex.image.data[c * plane + y * 60 + x] = 2.0;
                    }
                }
            }
            let mut rng = Rng::new(seed);
            let cfg = AugmentConfig { photometric: false, ..AugmentConfig::default() };
            let out = augment(ex, &cfg, [0.5; 3], &mut rng);
            assert!(boxes_inside(&out), "seed {seed}: {:?}", out.boxes);
            assert_eq!(out.boxes.len(), out.labels.len());
            if let Some(i) = out.labels.iter().position(|&l| l == 1) {
                let b = out.boxes[i];
                let (cx, cy) = (((b[0] + b[2]) / 2.0) as usize, ((b[1] + b[3]) / 2.0) as usize);
                assert_eq!(out.image.data[cy * out.image.width + cx], 2.0, "seed {seed}");
            }
        }
    }

    #[test]
    fn photometric_stays_in_range_and_resize_scales_boxes() {
        let mut ex = example();
        let mut rng = Rng::new(5);
        for _ in 0..5 {
            photometric(&mut ex.image, &mut rng);
        }
        assert!(ex.image.data.iter().all(|v| (0.0..=1.0).contains(v)));
        let out = to_network_input(ex, [20, 30], [0.0; 3], [1.0; 3]);
        assert_eq!((out.image.height, out.image.width), (20, 30));
        assert_eq!(out.boxes[0], [2.5, 3.0, 12.5, 15.0]);
    }
}
