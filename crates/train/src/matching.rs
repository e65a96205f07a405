//! Anchor matching as torchvision's SSD does it (`SSDMatcher(0.5)`): each anchor takes its
//! best-overlapping ground-truth box when the IoU reaches 0.5, then each ground-truth box is forced
//! onto its best anchor; matched anchors get the box encoded with the detector's `BoxCoder`.

use mixdet_detect::boxes::box_iou;
use mixdet_detect::BoxCoder;

/// For each anchor, the index of its ground-truth box, or -1 (background).
pub fn match_anchors(gt: &[[f32; 4]], anchors: &[[f32; 4]], iou_threshold: f32) -> Vec<i64> {
    let mut matches = vec![-1i64; anchors.len()];
    if gt.is_empty() {
        return matches;
    }
    let mut best_anchor = vec![(f32::NEG_INFINITY, 0usize); gt.len()];
    for (a, anchor) in anchors.iter().enumerate() {
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (g, b) in gt.iter().enumerate() {
            let iou = box_iou(b, anchor);
            // Strict comparisons keep the first maximum, as torch's `max` on CPU does.
            if iou > best.0 {
                best = (iou, g);
            }
            if iou > best_anchor[g].0 {
                best_anchor[g] = (iou, a);
            }
        }
        if best.0 >= iou_threshold {
            matches[a] = best.1 as i64;
        }
    }
    for (g, &(_, a)) in best_anchor.iter().enumerate() {
        matches[a] = g as i64;
    }
    matches
}

/// Training targets of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Class per anchor (0 = background).
    pub labels: Vec<u32>,
    /// Encoded box per anchor (zeros for the background).
    pub regression: Vec<[f32; 4]>,
    /// Number of matched anchors.
    pub num_positive: usize,
}

/// Matches and encodes the boxes of one image against the anchors.
pub fn build_targets(
    boxes: &[[f32; 4]],
    labels: &[u32],
    anchors: &[[f32; 4]],
    coder: &BoxCoder,
    iou_threshold: f32,
) -> Targets {
    let matches = match_anchors(boxes, anchors, iou_threshold);
    let mut t = Targets { labels: vec![0; anchors.len()], regression: vec![[0.0; 4]; anchors.len()], num_positive: 0 };
    for (a, &m) in matches.iter().enumerate() {
        if m >= 0 {
            let g = m as usize;
            t.labels[a] = labels[g];
            t.regression[a] = coder.encode(boxes[g], anchors[a]);
            t.num_positive += 1;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_forced_best_anchor() {
        let anchors =
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60.0, 60.0], [80.0, 80.0, 90.0, 90.0]];
        // Box 0 overlaps anchors 0 and 1 well; box 1 overlaps anchor 2 only a little (forced).
        let gt = [[0.0, 0.0, 10.0, 10.0], [55.0, 55.0, 70.0, 70.0]];
        let m = match_anchors(&gt, &anchors, 0.5);
        assert_eq!(m, vec![0, 0, 1, -1]);
        let t = build_targets(&gt, &[3, 5], &anchors, &BoxCoder::default(), 0.5);
        assert_eq!(t.labels, vec![3, 3, 5, 0]);
        assert_eq!(t.num_positive, 3);
        assert_eq!(t.regression[0], [0.0, 0.0, 0.0, 0.0]);
        assert!(match_anchors(&[], &anchors, 0.5).iter().all(|&x| x == -1));
    }
}
