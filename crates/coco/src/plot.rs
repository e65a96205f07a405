//! Precision-recall plot as a PNG: interpolated precision over the 101 recall thresholds at
//! IoU .50, IoU .75 and averaged over all IoU thresholds (area `all`, largest max-dets,
//! averaged over categories), drawn by `mixdet_viz::chart`.

use std::path::Path;

use image::Rgb;
use mixdet_viz::chart::{Chart, Legend, Panel, Series};

use crate::error::{CocoError, Result};
use crate::evaluation::{Evaluation, IouSelection};

/// The three standard curves of `eval` (those that exist: a curve is left out when its IoU
/// threshold is not evaluated or nothing has GT), labelled with their AP.
pub fn standard_series(eval: &Evaluation) -> Vec<Series> {
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
            Some(Series { label: format!("{name}  AP={ap:.3}"), points, color: Rgb(color) })
        })
        .collect()
}

/// The precision-recall chart of `eval` (800 x 600, recall and precision axes over [0, 1]).
pub fn pr_chart(eval: &Evaluation) -> Chart {
    let panel = Panel {
        title: format!("Precision-recall, area=all, maxDets={}", eval.params().max_det()),
        x_label: "Recall".into(),
        y_label: "Precision".into(),
        x_range: Some((0.0, 1.0)),
        y_range: Some((0.0, 1.0)),
        ticks: (10, 10),
        series: standard_series(eval),
        legend: Legend::LowerLeft,
        empty_message: "no category has ground truth: nothing to plot".into(),
    };
    Chart { width: 800, height: 600, panels: vec![panel] }
}

/// Draws [`pr_chart`] of `eval` into a PNG file (written atomically).
pub fn write_pr_plot(eval: &Evaluation, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    pr_chart(eval).save_png(path).map_err(|e| CocoError::Plot { path: path.to_path_buf(), message: e.to_string() })
}
