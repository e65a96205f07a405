//! Precision-recall plot as a PNG: interpolated precision over the 101 recall thresholds at
//! IoU .50, IoU .75 and averaged over all IoU thresholds (area `all`, largest max-dets,
//! averaged over categories), with axes, labels and a legend.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{CocoError, Result};
use crate::evaluation::{Evaluation, IouSelection};

const WIDTH: u32 = 800;
const HEIGHT: u32 = 600;
const LEFT: f32 = 80.0;
const RIGHT: f32 = 30.0;
const TOP: f32 = 50.0;
const BOTTOM: f32 = 70.0;
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// One curve of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PrSeries {
    /// Legend text.
    pub label: String,
    /// `(recall, precision)` points.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: [u8; 3],
}

/// The three standard curves of `eval` (those that exist: a curve is left out when its IoU
/// threshold is not evaluated or nothing has GT), labelled with their AP.
pub fn standard_series(eval: &Evaluation) -> Vec<PrSeries> {
    let p = eval.params();
    let a = p.area_rngs.iter().position(|r| r.label == "all").unwrap_or(0);
    let m = p.max_dets.iter().enumerate().max_by_key(|(_, d)| **d).map_or(0, |(i, _)| i);
    let specs = [
        (IouSelection::At(0.5), "IoU=0.50", [31, 119, 180]),
        (IouSelection::At(0.75), "IoU=0.75", [255, 127, 14]),
        (IouSelection::Mean, "IoU=0.50:0.95 (mean)", [44, 160, 44]),
    ];
    specs
        .into_iter()
        .filter_map(|(iou, name, color)| {
            let points = eval.pr_curve(iou, None, a, m)?;
            let ap = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
            let name =
                if matches!(iou, IouSelection::Mean) && p.iou_thrs.len() != 10 { "mean over IoUs" } else { name };
            Some(PrSeries { label: format!("{name}  AP={ap:.3}"), points, color })
        })
        .collect()
}

/// Draws [`standard_series`] of `eval` into a PNG file.
pub fn write_pr_plot(eval: &Evaluation, path: impl AsRef<Path>) -> Result<()> {
    let p = eval.params();
    let title = format!("Precision-recall, area=all, maxDets={}", p.max_det());
    let img = render(&title, &standard_series(eval))?;
    let path = path.as_ref();
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| CocoError::Plot { path: path.to_path_buf(), message: e.to_string() })
}

/// Renders curves on recall / precision axes spanning [0, 1].
pub fn render(title: &str, series: &[PrSeries]) -> Result<RgbImage> {
    let mut c = Canvas { img: RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255])) };
    let (x0, x1, y0, y1) = (LEFT, WIDTH as f32 - RIGHT, HEIGHT as f32 - BOTTOM, TOP);
    let px = |r: f64| x0 + (x1 - x0) * r as f32;
    let py = |p: f64| y0 + (y1 - y0) * p as f32;
    for i in 0..=10 {
        let v = i as f64 / 10.0;
        c.line(px(v), y0, px(v), y1, 1.0, GRID);
        c.line(x0, py(v), x1, py(v), 1.0, GRID);
        c.line(px(v), y0, px(v), y0 + 5.0, 1.0, BLACK);
        c.line(x0 - 5.0, py(v), x0, py(v), 1.0, BLACK);
        if i % 2 == 0 {
            let label = format!("{v:.1}");
            let w = c.text_width(&label, 14.0);
            c.text(&label, px(v) - w / 2.0, y0 + 8.0, 14.0, BLACK);
            c.text(&label, x0 - 10.0 - w, py(v) - 8.0, 14.0, BLACK);
        }
    }
    for (a, b, d, e) in [(x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)] {
        c.line(a, b, d, e, 1.0, BLACK);
    }
    let w = c.text_width("Recall", 16.0);
    c.text("Recall", (x0 + x1) / 2.0 - w / 2.0, y0 + 32.0, 16.0, BLACK);
    let w = c.text_width("Precision", 16.0);
    c.vertical_text("Precision", 18.0, (y0 + y1) / 2.0 + w / 2.0, 16.0, BLACK);
    let w = c.text_width(title, 18.0);
    c.text(title, WIDTH as f32 / 2.0 - w / 2.0, 14.0, 18.0, BLACK);
    for s in series {
        for pair in s.points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            c.line(px(a.0), py(a.1), px(b.0), py(b.1), 2.5, Rgb(s.color));
        }
    }
    // Legend in the lower left, where PR curves rarely go.
    let lw = series.iter().map(|s| c.text_width(&s.label, 14.0)).fold(0.0, f32::max) + 60.0;
    let lh = 24.0 * series.len() as f32 + 10.0;
    let (lx, ly) = (x0 + 15.0, y0 - 15.0 - lh);
    if !series.is_empty() {
        c.fill_rect(lx, ly, lw, lh, Rgb([255, 255, 255]));
        for (a, b, d, e) in [
            (lx, ly, lx + lw, ly),
            (lx, ly + lh, lx + lw, ly + lh),
            (lx, ly, lx, ly + lh),
            (lx + lw, ly, lx + lw, ly + lh),
        ] {
            c.line(a, b, d, e, 1.0, Rgb([150, 150, 150]));
        }
    }
    for (i, s) in series.iter().enumerate() {
        let y = ly + 17.0 + 24.0 * i as f32;
        c.line(lx + 10.0, y, lx + 45.0, y, 3.0, Rgb(s.color));
        c.text(&s.label, lx + 52.0, y - 9.0, 14.0, BLACK);
    }
    if series.is_empty() {
        let msg = "no category has ground truth: nothing to plot";
        let w = c.text_width(msg, 16.0);
        c.text(msg, (x0 + x1) / 2.0 - w / 2.0, (y0 + y1) / 2.0, 16.0, BLACK);
    }
    Ok(c.img)
}

struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb<u8>) {
        mixdet_viz::fill_rect(&mut self.img, x as i64, y as i64, (x + w) as i64, (y + h) as i64, color);
    }

    fn line(&mut self, xa: f32, ya: f32, xb: f32, yb: f32, width: f32, color: Rgb<u8>) {
        mixdet_viz::draw_line(&mut self.img, (xa, ya), (xb, yb), width, color);
    }

    fn text_width(&self, s: &str, size: f32) -> f32 {
        mixdet_viz::text_size(s, size).0 as f32
    }

    fn text(&mut self, s: &str, x: f32, y: f32, size: f32, color: Rgb<u8>) {
        mixdet_viz::draw_text(&mut self.img, s, x, y, size, color);
    }

    /// Text rotated 90° counter-clockwise, its baseline start at (x, y) reading upwards.
    fn vertical_text(&mut self, s: &str, x: f32, y: f32, size: f32, color: Rgb<u8>) {
        let img = &mut self.img;
        mixdet_viz::raster_text(s, size, |px, py, cov| {
            mixdet_viz::blend(img, x as i64 + py, y as i64 - px, color, cov)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_curves_text_and_legend() {
        let series = vec![PrSeries {
            label: "IoU=0.50  AP=0.500".into(),
            points: (0..=100).map(|i| (i as f64 / 100.0, 1.0 - i as f64 / 100.0)).collect(),
            color: [255, 0, 0],
        }];
        let img = render("title", &series).unwrap();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        // The diagonal curve passes through the middle of the plot area in pure red.
        let (mx, my) = ((LEFT + (WIDTH as f32 - RIGHT)) / 2.0, (TOP + (HEIGHT as f32 - BOTTOM)) / 2.0);
        assert_eq!(img.get_pixel(mx as u32, my as u32).0, [255, 0, 0]);
        // Text was drawn: dark pixels left of the y axis (tick labels and the axis label).
        let dark = (0..LEFT as u32 - 6)
            .flat_map(|x| (0..HEIGHT).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
            .count();
        assert!(dark > 100, "{dark}");
    }
}
