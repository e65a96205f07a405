//! A PNG of the run: training loss over steps (top) and validation AP / AP50 (bottom).

use std::path::Path;

use image::{Rgb, RgbImage};
use mixdet_viz::{class_color, draw_line, draw_text, fill_rect, hollow_rect};

use crate::error::{Result, TrainError};

const W: u32 = 900;
const H: u32 = 640;

/// A named series of (step, value) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in step order.
    pub points: Vec<(f64, f64)>,
}

fn panel(
    img: &mut RgbImage,
    top: i64,
    height: i64,
    title: &str,
    series: &[Series],
    x_max: f64,
    y_fixed: Option<(f64, f64)>,
) {
    let (left, right) = (70i64, W as i64 - 20);
    let (pt, pb) = (top + 28, top + height - 30);
    let black = Rgb([0, 0, 0]);
    let grey = Rgb([200, 200, 200]);
    draw_text(img, title, left as f32, top as f32 + 4.0, 16.0, black);
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if let Some((a, b)) = y_fixed {
        lo = a;
        hi = b;
    }
    if !lo.is_finite() || !hi.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let x_max = x_max.max(1.0);
    let to_px = |x: f64, y: f64| -> (f32, f32) {
        let px = left as f64 + (right - left) as f64 * x / x_max;
        let py = pb as f64 - (pb - pt) as f64 * (y - lo) / (hi - lo);
        (px as f32, py as f32)
    };
    for i in 0..=4 {
        let y = lo + (hi - lo) * i as f64 / 4.0;
        let (_, py) = to_px(0.0, y);
        draw_line(img, (left as f32, py), (right as f32, py), 1.0, grey);
        draw_text(img, &format!("{y:.3}"), 4.0, py - 7.0, 12.0, black);
    }
    hollow_rect(img, left, pt, right, pb, 1, black);
    draw_text(img, "0", left as f32, pb as f32 + 4.0, 12.0, black);
    draw_text(img, &format!("step {}", x_max as u64), right as f32 - 80.0, pb as f32 + 4.0, 12.0, black);
    for (k, s) in series.iter().enumerate() {
        let color = class_color(k + 1);
        for w in s.points.windows(2) {
            draw_line(img, to_px(w[0].0, w[0].1), to_px(w[1].0, w[1].1), 2.0, color);
        }
        if s.points.len() == 1 {
            let (x, y) = to_px(s.points[0].0, s.points[0].1);
            fill_rect(img, x as i64 - 3, y as i64 - 3, x as i64 + 4, y as i64 + 4, color);
        }
        let lx = right as f32 - 200.0 + 100.0 * (k % 2) as f32;
        fill_rect(img, lx as i64, top + 8, lx as i64 + 14, top + 20, color);
        draw_text(img, &s.name, lx + 18.0, top as f32 + 4.0, 13.0, black);
    }
}

/// Draws the loss series and the mAP series (AP in [0, 1]) into `path`.
pub fn write_plot(path: &Path, loss: &[Series], map: &[Series], x_max: f64) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let half = H as i64 / 2;
    panel(&mut img, 0, half, "training loss", loss, x_max, None);
    panel(&mut img, half, half, "validation COCO AP", map, x_max, Some((0.0, 1.0)));
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|source| TrainError::Image { path: path.display().to_string(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| TrainError::Io { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_series_in_their_colour() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plot.png");
        let loss = [Series { name: "loss".into(), points: vec![(0.0, 5.0), (50.0, 2.0), (100.0, 1.0)] }];
        let map = [Series { name: "AP".into(), points: vec![(100.0, 0.5)] }];
        write_plot(&p, &loss, &map, 100.0).unwrap();
        let img = image::open(&p).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (W, H));
        let c = class_color(1);
        assert!(img.pixels().filter(|&&px| px == c).count() > 100);
    }
}
