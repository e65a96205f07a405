//! Line charts as PNG images: one or more panels stacked vertically, each with a title, axes with
//! ticks and grid, axis labels, coloured series and a legend. The evaluator's precision-recall
//! plot and the trainer's loss / AP plot are both drawn here.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{draw_line, draw_text, draw_text_vertical, fill_rect, hollow_rect, text_size};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const LEGEND_FRAME: Rgb<u8> = Rgb([150, 150, 150]);
const LEFT: f32 = 80.0;
const RIGHT: f32 = 30.0;
const TOP: f32 = 40.0;
const BOTTOM: f32 = 60.0;

/// A named curve of `(x, y)` points, drawn in order; non-finite points are skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: Rgb<u8>,
}

/// Where a panel's legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Legend {
    /// Upper right corner (curves that fall, such as losses).
    #[default]
    UpperRight,
    /// Lower left corner (precision-recall curves rarely go there).
    LowerLeft,
}

/// One plot area.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Panel {
    /// Title above the plot area.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label left of the y axis (drawn vertically).
    pub y_label: String,
    /// Axis range; `None` fits the data.
    pub x_range: Option<(f64, f64)>,
    /// Axis range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Tick intervals on each axis (labels on every tick).
    pub ticks: (usize, usize),
    /// The curves.
    pub series: Vec<Series>,
    /// Legend position.
    pub legend: Legend,
    /// Shown in the middle of the plot area when no series has a point.
    pub empty_message: String,
}

/// A chart: `panels` stacked top to bottom, sharing the image's height equally.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// The panels.
    pub panels: Vec<Panel>,
}

/// The data range of `values`, widened when empty or flat.
fn fit<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    match (lo.is_finite(), hi - lo < 1e-12) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo, lo + 1.0),
        (true, false) => (lo, hi),
    }
}

/// A tick label with as many decimals as the tick spacing needs.
fn tick_label(value: f64, step: f64) -> String {
    let mut decimals = (-step.log10().floor()).max(0.0) as usize;
    let scaled = step * 10f64.powi(decimals as i32);
    if (scaled - scaled.round()).abs() > 1e-6 {
        decimals += 1;
    }
    format!("{value:.decimals$}")
}

impl Panel {
    fn draw(&self, img: &mut RgbImage, top: f32, height: f32) {
        let width = img.width() as f32;
        let (x0, x1, y0, y1) = (LEFT, width - RIGHT, top + height - BOTTOM, top + TOP);
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        let (xa, xb) = self.x_range.unwrap_or_else(|| fit(all().map(|p| &p.0)));
        let (ya, yb) = self.y_range.unwrap_or_else(|| fit(all().map(|p| &p.1)));
        let px = |x: f64| x0 + (x1 - x0) * ((x - xa) / (xb - xa)) as f32;
        let py = |y: f64| y0 + (y1 - y0) * ((y - ya) / (yb - ya)) as f32;
        let (nx, ny) = (self.ticks.0.max(1), self.ticks.1.max(1));
        for i in 0..=nx {
            let v = xa + (xb - xa) * i as f64 / nx as f64;
            draw_line(img, (px(v), y0), (px(v), y1), 1.0, GRID);
            draw_line(img, (px(v), y0), (px(v), y0 + 5.0), 1.0, BLACK);
            let label = tick_label(v, (xb - xa) / nx as f64);
            let w = text_size(&label, 14.0).0 as f32;
            draw_text(img, &label, px(v) - w / 2.0, y0 + 8.0, 14.0, BLACK);
        }
        for i in 0..=ny {
            let v = ya + (yb - ya) * i as f64 / ny as f64;
            draw_line(img, (x0, py(v)), (x1, py(v)), 1.0, GRID);
            draw_line(img, (x0 - 5.0, py(v)), (x0, py(v)), 1.0, BLACK);
            let label = tick_label(v, (yb - ya) / ny as f64);
            let w = text_size(&label, 14.0).0 as f32;
            draw_text(img, &label, x0 - 10.0 - w, py(v) - 8.0, 14.0, BLACK);
        }
        hollow_rect(img, x0 as i64, y1 as i64, x1 as i64, y0 as i64, 1, BLACK);
        let w = text_size(&self.x_label, 16.0).0 as f32;
        draw_text(img, &self.x_label, (x0 + x1) / 2.0 - w / 2.0, y0 + 30.0, 16.0, BLACK);
        let w = text_size(&self.y_label, 16.0).0 as f32;
        draw_text_vertical(img, &self.y_label, 10.0, (y0 + y1) / 2.0 - w / 2.0, 16.0, BLACK, WHITE);
        let tw = text_size(&self.title, 18.0).0 as f32;
        draw_text(img, &self.title, (x0 + x1) / 2.0 - tw / 2.0, top + 10.0, 18.0, BLACK);

        let inside = |x: f64, y: f64| x.is_finite() && y.is_finite();
        let mut drawn = 0;
        for s in &self.series {
            let pts: Vec<(f32, f32)> =
                s.points.iter().filter(|p| inside(p.0, p.1)).map(|p| (px(p.0), py(p.1))).collect();
            drawn += pts.len();
            for pair in pts.windows(2) {
                draw_line(img, pair[0], pair[1], 2.5, s.color);
            }
            if let [(x, y)] = pts.as_slice() {
                fill_rect(img, *x as i64 - 3, *y as i64 - 3, *x as i64 + 4, *y as i64 + 4, s.color);
            }
        }
        if drawn == 0 && !self.empty_message.is_empty() {
            let w = text_size(&self.empty_message, 16.0).0 as f32;
            draw_text(img, &self.empty_message, (x0 + x1) / 2.0 - w / 2.0, (y0 + y1) / 2.0, 16.0, BLACK);
        }
        self.draw_legend(img, (x0, x1, y0, y1));
    }

    fn draw_legend(&self, img: &mut RgbImage, (x0, x1, y0, y1): (f32, f32, f32, f32)) {
        if self.series.is_empty() {
            return;
        }
        let lw = self.series.iter().map(|s| text_size(&s.label, 14.0).0 as f32).fold(0.0, f32::max) + 60.0;
        let lh = 24.0 * self.series.len() as f32 + 10.0;
        let (lx, ly) = match self.legend {
            Legend::LowerLeft => (x0 + 15.0, y0 - 15.0 - lh),
            Legend::UpperRight => (x1 - 15.0 - lw, y1 + 15.0),
        };
        fill_rect(img, lx as i64, ly as i64, (lx + lw) as i64, (ly + lh) as i64, WHITE);
        hollow_rect(img, lx as i64, ly as i64, (lx + lw) as i64, (ly + lh) as i64, 1, LEGEND_FRAME);
        for (i, s) in self.series.iter().enumerate() {
            let y = ly + 17.0 + 24.0 * i as f32;
            draw_line(img, (lx + 10.0, y), (lx + 45.0, y), 3.0, s.color);
            draw_text(img, &s.label, lx + 52.0, y - 9.0, 14.0, BLACK);
        }
    }
}

impl Chart {
    /// Draws the chart.
    pub fn render(&self) -> RgbImage {
        let mut img = RgbImage::from_pixel(self.width, self.height, WHITE);
        let n = self.panels.len().max(1);
        let h = self.height as f32 / n as f32;
        for (i, panel) in self.panels.iter().enumerate() {
            panel.draw(&mut img, h * i as f32, h);
        }
        img
    }

    /// Draws the chart into a PNG file, written atomically (a temporary file, then a rename).
    pub fn save_png(&self, path: &Path) -> Result<(), image::ImageError> {
        let tmp = path.with_extension("png.tmp");
        self.render().save_with_format(&tmp, image::ImageFormat::Png)?;
        std::fs::rename(&tmp, path).map_err(image::ImageError::IoError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagonal() -> Panel {
        Panel {
            title: "title".into(),
            x_label: "Recall".into(),
            y_label: "Precision".into(),
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            ticks: (10, 10),
            series: vec![Series {
                label: "IoU=0.50  AP=0.500".into(),
                points: (0..=100).map(|i| (i as f64 / 100.0, 1.0 - i as f64 / 100.0)).collect(),
                color: Rgb([255, 0, 0]),
            }],
            legend: Legend::LowerLeft,
            empty_message: String::new(),
        }
    }

    #[test]
    fn curves_text_and_legend_are_drawn() {
        let img = Chart { width: 800, height: 600, panels: vec![diagonal()] }.render();
        assert_eq!(img.dimensions(), (800, 600));
        // The diagonal passes through the middle of the plot area in pure red.
        let (mx, my) = ((LEFT + (800.0 - RIGHT)) / 2.0, (TOP + (600.0 - BOTTOM)) / 2.0);
        assert_eq!(img.get_pixel(mx as u32, my as u32).0, [255, 0, 0]);
        // Text left of the y axis: tick labels and the vertical axis label.
        let dark = (0..LEFT as u32 - 6)
            .flat_map(|x| (0..600).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
            .count();
        assert!(dark > 100, "{dark}");
    }

    #[test]
    fn panels_stack_and_fit_their_data() {
        let loss = Panel {
            title: "training loss".into(),
            series: vec![Series {
                label: "loss".into(),
                points: vec![(0.0, 5.0), (50.0, 2.0), (100.0, f64::NAN)],
                color: Rgb([0, 0, 255]),
            }],
            ticks: (4, 4),
            ..Panel::default()
        };
        let empty = Panel { title: "AP".into(), empty_message: "no evaluation yet".into(), ..Panel::default() };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plot.png");
        Chart { width: 900, height: 640, panels: vec![loss, empty] }.save_png(&path).expect("saved");
        let img = image::open(&path).expect("png").into_rgb8();
        let blue = |y0: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (0..900).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0 == [0, 0, 255])
                .count()
        };
        assert!(blue(0, 320) > 100, "the loss curve is in the top panel");
        assert_eq!(blue(320, 640), 0);
        assert!(!dir.path().join("plot.png.tmp").exists());
    }

    #[test]
    fn tick_labels_have_the_decimals_their_spacing_needs() {
        assert_eq!(tick_label(0.2, 0.1), "0.2");
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(400.0, 100.0), "400");
        assert_eq!(tick_label(1.325, 1.325), "1.3");
    }
}
