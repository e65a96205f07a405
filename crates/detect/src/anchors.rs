//! Default boxes as torchvision's `DefaultBoxGenerator` makes them (SSD paper, p. 6), computed in
//! f32 in the same order so that anchors match torchvision's to float rounding.

use crate::config::{AnchorConfig, AnchorGenerator};

/// Anchors in absolute `[x1, y1, x2, y2]` pixels of an `image_size = [height, width]` input for
/// the given feature grids, from whichever generator the detector uses.
pub fn generate(generator: &AnchorGenerator, grid_sizes: &[[usize; 2]], image_size: [usize; 2]) -> Vec<[f32; 4]> {
    match generator {
        AnchorGenerator::SsdDefaultBoxes(cfg) => default_boxes(cfg, grid_sizes, image_size),
        AnchorGenerator::TfMultipleGrid(cfg) => crate::tf_od_api::anchors::generate(cfg, grid_sizes, image_size),
    }
}

/// Per-level (w, h) pairs relative to the input size, before clipping.
pub fn wh_pairs(cfg: &AnchorConfig) -> Vec<Vec<(f32, f32)>> {
    let levels = cfg.aspect_ratios.len();
    let scales: Vec<f64> = match &cfg.scales {
        Some(s) => s.clone(),
        None if levels > 1 => {
            let range = cfg.max_ratio - cfg.min_ratio;
            let mut s: Vec<f64> =
                (0..levels).map(|k| cfg.min_ratio + range * k as f64 / (levels as f64 - 1.0)).collect();
            s.push(1.0);
            s
        }
        None => vec![cfg.min_ratio, cfg.max_ratio],
    };
    (0..levels)
        .map(|k| {
            let s_k = scales[k];
            let s_prime = (scales[k] * scales[k + 1]).sqrt();
            let mut pairs = vec![(s_k, s_k), (s_prime, s_prime)];
            for &ar in &cfg.aspect_ratios[k] {
                let sq = ar.sqrt();
                let (w, h) = (s_k * sq, s_k / sq);
                pairs.push((w, h));
                pairs.push((h, w));
            }
            pairs.into_iter().map(|(w, h)| (w as f32, h as f32)).collect()
        })
        .collect()
}

/// torchvision's default boxes in absolute `[x1, y1, x2, y2]` pixels of an `image_size =
/// [height, width]` input, for feature maps of the given `[height, width]` sizes. Order: level,
/// then row, column, box.
pub fn default_boxes(cfg: &AnchorConfig, grid_sizes: &[[usize; 2]], image_size: [usize; 2]) -> Vec<[f32; 4]> {
    let pairs = wh_pairs(cfg);
    let (img_h, img_w) = (image_size[0] as f32, image_size[1] as f32);
    let mut out = Vec::new();
    for (k, &[fh, fw]) in grid_sizes.iter().enumerate() {
        let (y_f, x_f) = match &cfg.steps {
            Some(steps) => (img_h / steps[k] as f32, img_w / steps[k] as f32),
            None => (fh as f32, fw as f32),
        };
        let level_pairs: Vec<(f32, f32)> = pairs[k]
            .iter()
            .map(|&(w, h)| if cfg.clip { (w.clamp(0.0, 1.0), h.clamp(0.0, 1.0)) } else { (w, h) })
            .collect();
        for i in 0..fh {
            let cy = (i as f32 + 0.5) / y_f;
            for j in 0..fw {
                let cx = (j as f32 + 0.5) / x_f;
                for &(w, h) in &level_pairs {
                    out.push([
                        (cx - 0.5 * w) * img_w,
                        (cy - 0.5 * h) * img_h,
                        (cx + 0.5 * w) * img_w,
                        (cy + 0.5 * h) * img_h,
                    ]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssdlite() -> AnchorConfig {
        AnchorConfig {
            aspect_ratios: vec![vec![2.0, 3.0]; 6],
            min_ratio: 0.2,
            max_ratio: 0.95,
            scales: None,
            steps: None,
            clip: true,
        }
    }

    #[test]
    fn ssdlite320_anchor_count_and_corners() {
        let grids = [[20, 20], [10, 10], [5, 5], [3, 3], [2, 2], [1, 1]];
        let a = default_boxes(&ssdlite(), &grids, [320, 320]);
        assert_eq!(a.len(), 3234);
        // torchvision: first box [-24, -24, 40, 40], last [72.2428, 0, 247.7572, 320].
        assert_eq!(a[0], [-24.0, -24.0, 40.0, 40.0]);
        let last = a[a.len() - 1];
        assert!(
            (last[0] - 72.2428).abs() < 1e-3 && last[1] == 0.0 && (last[2] - 247.7572).abs() < 1e-3 && last[3] == 320.0
        );
    }

    #[test]
    fn level_zero_pairs_match_torchvision() {
        let p = &wh_pairs(&ssdlite())[0];
        let expected =
            [(0.2, 0.2), (0.264575, 0.264575), (0.282843, 0.141421), (0.141421, 0.282843), (0.34641, 0.11547)];
        for (got, want) in p.iter().zip(expected) {
            assert!((got.0 - want.0).abs() < 1e-5 && (got.1 - want.1).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }
}
