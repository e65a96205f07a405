//! The TF Object Detection API's SSD anchors (`anchor_generators/multiple_grid_anchor_generator.py`:
//! `create_ssd_anchors` and `MultipleGridAnchorGenerator._generate`, with
//! `grid_anchor_generator.tile_anchors`), computed in f32 in TensorFlow's order of operations so
//! that they equal the anchors of a frozen graph bit for bit or to the last place.

use crate::config::TfAnchorConfig;

/// `(scale, aspect_ratio)` of each box of each level, as the Python builder makes them in double
/// precision and the graph stores them (`float32` constants).
pub fn box_specs(cfg: &TfAnchorConfig, levels: usize) -> Vec<Vec<(f32, f32)>> {
    // Python: `min_scale + (max_scale - min_scale) * i / (num_layers - 1)`, then 1.0.
    let mut scales: Vec<f64> = (0..levels)
        .map(|i| {
            if levels > 1 {
                cfg.min_scale + (cfg.max_scale - cfg.min_scale) * i as f64 / (levels - 1) as f64
            } else {
                cfg.min_scale
            }
        })
        .collect();
    scales.push(1.0);
    (0..levels)
        .map(|l| {
            let (scale, next) = (scales[l], scales[l + 1]);
            let specs: Vec<(f64, f64)> = if l == 0 && cfg.reduce_boxes_in_lowest_layer {
                vec![(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
            } else {
                let mut s: Vec<(f64, f64)> = cfg.aspect_ratios.iter().map(|&ar| (scale, ar)).collect();
                if cfg.interpolated_scale_aspect_ratio > 0.0 {
                    s.push(((scale * next).sqrt(), cfg.interpolated_scale_aspect_ratio));
                }
                s
            };
            specs.into_iter().map(|(s, a)| (s as f32, a as f32)).collect()
        })
        .collect()
}

/// Normalised anchors `[ymin, xmin, ymax, xmax]` for feature grids `[height, width]` of an
/// `input_size = [height, width]` image. Order: level, row, column, box (TF's reshape order).
pub fn generate_normalized(cfg: &TfAnchorConfig, grid_sizes: &[[usize; 2]], input_size: [usize; 2]) -> Vec<[f32; 4]> {
    let specs = box_specs(cfg, grid_sizes.len());
    let (im_h, im_w) = (input_size[0] as f32, input_size[1] as f32);
    let min_im = im_h.min(im_w);
    // The base anchor is relative to the shorter side.
    let base_h = (min_im / im_h) * cfg.base_anchor_size[0] as f32;
    let base_w = (min_im / im_w) * cfg.base_anchor_size[1] as f32;
    let mut out = Vec::with_capacity(grid_sizes.iter().zip(&specs).map(|(g, s)| g[0] * g[1] * s.len()).sum());
    for (&[gh, gw], level) in grid_sizes.iter().zip(&specs) {
        let (stride_y, stride_x) = (1.0 / gh as f32, 1.0 / gw as f32);
        let (offset_y, offset_x) = (0.5 * stride_y, 0.5 * stride_x);
        let sizes: Vec<(f32, f32)> = level
            .iter()
            .map(|&(scale, ar)| {
                let sqrt = ar.sqrt();
                ((scale / sqrt) * base_h, (scale * sqrt) * base_w)
            })
            .collect();
        for i in 0..gh {
            let yc = i as f32 * stride_y + offset_y;
            for j in 0..gw {
                let xc = j as f32 * stride_x + offset_x;
                for &(h, w) in &sizes {
                    let (hh, hw) = (0.5 * h, 0.5 * w);
                    out.push([yc - hh, xc - hw, yc + hh, xc + hw]);
                }
            }
        }
    }
    out
}

/// The same anchors as `[x1, y1, x2, y2]` in input pixels (for matching and reports).
pub fn generate(cfg: &TfAnchorConfig, grid_sizes: &[[usize; 2]], input_size: [usize; 2]) -> Vec<[f32; 4]> {
    let (h, w) = (input_size[0] as f32, input_size[1] as f32);
    generate_normalized(cfg, grid_sizes, input_size)
        .into_iter()
        .map(|[y0, x0, y1, x1]| [x0 * w, y0 * h, x1 * w, y1 * h])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssdlite() -> TfAnchorConfig {
        TfAnchorConfig {
            min_scale: 0.2,
            max_scale: 0.95,
            aspect_ratios: vec![1.0, 2.0, 0.5, 3.0, 0.3333],
            interpolated_scale_aspect_ratio: 1.0,
            reduce_boxes_in_lowest_layer: true,
            base_anchor_size: [1.0, 1.0],
        }
    }

    #[test]
    fn ssdlite_mobilenet_v2_has_1917_anchors() {
        let grids = [[19, 19], [10, 10], [5, 5], [3, 3], [2, 2], [1, 1]];
        let a = generate_normalized(&ssdlite(), &grids, [300, 300]);
        assert_eq!(a.len(), 19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6);
        // First box: scale 0.1, ratio 1, centred on the first 19x19 cell.
        let c = 0.5 / 19.0;
        for (got, want) in a[0].iter().zip([c - 0.05, c - 0.05, c + 0.05, c + 0.05]) {
            assert!((got - want).abs() < 1e-6, "{:?}", a[0]);
        }
        let specs = box_specs(&ssdlite(), 6);
        assert_eq!(specs[0], vec![(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)]);
        // Level 1: the five ratios at 0.35, then sqrt(0.35 * 0.5) at ratio 1.
        assert_eq!(specs[1].len(), 6);
        let close = |got: (f32, f32), want: (f64, f32)| (got.0 - want.0 as f32).abs() < 1e-7 && got.1 == want.1;
        assert!(close(specs[1][5], ((0.35f64 * 0.5).sqrt(), 1.0)), "{:?}", specs[1]);
        assert!(close(specs[5][5], (0.95f64.sqrt(), 1.0)), "{:?}", specs[5]);
    }
}
