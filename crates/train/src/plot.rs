//! The run's PNG: training loss over steps (top) and validation AP / AP50 (bottom), drawn by
//! `mixdet_viz::chart`.

use std::path::Path;

use mixdet_viz::chart::{Chart, Legend, Panel, Series};
use mixdet_viz::class_color;

use crate::error::{Result, TrainError};

/// A named series of (step, value) points.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend text.
    pub name: String,
    /// Points in step order.
    pub points: Vec<(f64, f64)>,
}

fn panel(title: &str, curves: &[Curve], x_max: f64, y_range: Option<(f64, f64)>) -> Panel {
    Panel {
        title: title.into(),
        x_label: "step".into(),
        y_label: String::new(),
        x_range: Some((0.0, x_max.max(1.0))),
        y_range,
        ticks: (4, 4),
        series: curves
            .iter()
            .enumerate()
            .map(|(k, c)| Series { label: c.name.clone(), points: c.points.clone(), color: class_color(k + 1) })
            .collect(),
        legend: Legend::UpperRight,
        empty_message: String::new(),
    }
}

/// Draws the loss curves and the AP curves (AP in [0, 1]) over steps `0..x_max` into `path`.
pub fn write_plot(path: &Path, loss: &[Curve], map: &[Curve], x_max: f64) -> Result<()> {
    let chart = Chart {
        width: 900,
        height: 640,
        panels: vec![
            panel("training loss", loss, x_max, None),
            panel("validation COCO AP", map, x_max, Some((0.0, 1.0))),
        ],
    };
    chart.save_png(path).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_curves_in_their_colour() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plot.png");
        let loss = [Curve { name: "loss".into(), points: vec![(0.0, 5.0), (50.0, 2.0), (100.0, 1.0)] }];
        let map = [Curve { name: "AP".into(), points: vec![(100.0, 0.5)] }];
        write_plot(&p, &loss, &map, 100.0).unwrap();
        let img = image::open(&p).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (900, 640));
        let c = class_color(1);
        assert!(img.pixels().filter(|&&px| px == c).count() > 100);
    }
}
