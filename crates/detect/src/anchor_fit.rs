//! How well a detector's anchors fit a data set's boxes. Training (torchvision's SSD matcher)
//! makes every anchor at IoU ≥ 0.5 with a box a positive and forces each box onto its single best
//! anchor otherwise, so a box whose best anchor is far below 0.5 is learnt from one ill-fitting
//! anchor. This reports, per box, the best IoU any anchor reaches, the pyramid level of that
//! anchor and how many anchors reach the threshold.

use rayon::prelude::*;

use crate::boxes::box_iou;

/// The anchors of one detector input, with the level each belongs to.
#[derive(Debug, Clone)]
pub struct AnchorSet {
    /// `[x1, y1, x2, y2]` in input pixels, level by level (the generator's order).
    pub anchors: Vec<[f32; 4]>,
    /// One past the last anchor index of each level.
    pub level_ends: Vec<usize>,
}

impl AnchorSet {
    /// Groups `anchors` into levels of `per_level[k]` anchors each; `None` when the counts do not
    /// add up to the number of anchors.
    pub fn new(anchors: Vec<[f32; 4]>, per_level: &[usize]) -> Option<Self> {
        let level_ends: Vec<usize> = per_level
            .iter()
            .scan(0usize, |end, &n| {
                *end += n;
                Some(*end)
            })
            .collect();
        (level_ends.last().copied().unwrap_or(0) == anchors.len()).then_some(Self { anchors, level_ends })
    }

    /// The level of anchor `index`.
    pub fn level_of(&self, index: usize) -> usize {
        self.level_ends.partition_point(|&end| end <= index)
    }
}

/// How one box is covered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxFit {
    /// Best IoU of the box with any anchor.
    pub best_iou: f32,
    /// Level of that anchor (the first one on ties, as the matcher picks it).
    pub best_level: usize,
    /// Anchors whose IoU with the box is at least the threshold.
    pub anchors_at_threshold: usize,
}

/// The fit of each box (`[x1, y1, x2, y2]` in input pixels) to the anchors.
pub fn fit_boxes(set: &AnchorSet, boxes: &[[f32; 4]], iou_threshold: f32) -> Vec<BoxFit> {
    boxes
        .par_iter()
        .map(|b| {
            let (mut best, mut best_index, mut count) = (f32::NEG_INFINITY, 0usize, 0usize);
            for (i, a) in set.anchors.iter().enumerate() {
                let iou = box_iou(b, a);
                if iou > best {
                    (best, best_index) = (iou, i);
                }
                count += (iou >= iou_threshold) as usize;
            }
            BoxFit { best_iou: best.max(0.0), best_level: set.level_of(best_index), anchors_at_threshold: count }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_best_anchor() {
        let anchors = vec![[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 40.0, 40.0]];
        assert!(AnchorSet::new(anchors.clone(), &[1, 1]).is_none(), "counts must add up");
        let set = AnchorSet::new(anchors, &[2, 1]).expect("3 anchors");
        assert_eq!((set.level_of(0), set.level_of(1), set.level_of(2)), (0, 0, 1));
        let fits =
            fit_boxes(&set, &[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 30.0, 30.0], [100.0, 100.0, 110.0, 110.0]], 0.5);
        assert_eq!(fits[0], BoxFit { best_iou: 1.0, best_level: 0, anchors_at_threshold: 1 });
        // 30x30 against 20x20: 400/900; against 40x40: 900/1600, the better one, on level 1.
        assert_eq!(fits[1], BoxFit { best_iou: 900.0 / 1600.0, best_level: 1, anchors_at_threshold: 1 });
        assert_eq!(fits[2], BoxFit { best_iou: 0.0, best_level: 0, anchors_at_threshold: 0 });
    }
}
