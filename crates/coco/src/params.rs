//! Evaluation parameters, as pycocotools' `Params` for `iouType='bbox'`.

use serde::Serialize;

use crate::dataset::GroundTruth;
use crate::error::{CocoError, Result};

/// COCO's object sizes by area (`small` below 32², `medium` below 96², `large` above): the one
/// definition the evaluator, the error analysis and `mixdet anchors` share.
pub const SIZE_BUCKETS: [(&str, f64, f64); 3] =
    [("small", 0.0, 32.0 * 32.0), ("medium", 32.0 * 32.0, 96.0 * 96.0), ("large", 96.0 * 96.0, f64::INFINITY)];

/// pycocotools' upper area bound (`1e5 ** 2`) of the `all` and `large` ranges.
pub const MAX_AREA: f64 = 1e10;

/// One object-area range, inclusive at both ends, with the label `summarize` looks it up by.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AreaRange {
    /// `all`, `small`, `medium`, `large` by default.
    pub label: String,
    /// Lower bound (inclusive).
    pub lo: f64,
    /// Upper bound (inclusive).
    pub hi: f64,
}

impl AreaRange {
    /// A labelled range.
    pub fn new(label: impl Into<String>, lo: f64, hi: f64) -> Self {
        Self { label: label.into(), lo, hi }
    }

    /// Whether `area` lies outside the range (pycocotools: `area < lo or area > hi`).
    #[inline]
    pub fn excludes(&self, area: f64) -> bool {
        area < self.lo || area > self.hi
    }
}

/// Evaluation parameters (pycocotools `Params` with `iouType='bbox'`).
///
/// [`Params::for_ground_truth`] gives pycocotools' defaults. Every field may be changed before
/// evaluating; [`Params::normalized`] then applies what `COCOeval.evaluate` does to them
/// (image ids sorted and deduplicated, category ids too when `use_cats`, max-dets sorted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Params {
    /// Images to evaluate (default: every GT image id).
    pub img_ids: Vec<i64>,
    /// Categories to evaluate (default: every GT category id, sorted). With `use_cats == false`
    /// the list is kept as given, as pycocotools does: its order (duplicates included) is the
    /// order in which each image's per-category GT and detections are concatenated.
    pub cat_ids: Vec<i64>,
    /// IoU thresholds, default `np.linspace(.5, .95, 10)`.
    pub iou_thrs: Vec<f64>,
    /// Recall thresholds, default `np.linspace(0, 1, 101)`.
    pub rec_thrs: Vec<f64>,
    /// Maximum detections per image and category, default `[1, 10, 100]`.
    pub max_dets: Vec<usize>,
    /// Object-area ranges, default all / small / medium / large.
    pub area_rngs: Vec<AreaRange>,
    /// Evaluate per category (`true`) or pool all categories (`false`, proposal scoring).
    pub use_cats: bool,
}

/// `numpy.linspace(start, stop, num)` (endpoint included), bit for bit: `i * step + start`,
/// with the last value set to `stop`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| (i as f64 / div) * delta + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    y[num - 1] = stop;
    y
}

impl Params {
    /// pycocotools' default IoU thresholds `np.linspace(.5, .95, 10)`.
    pub fn default_iou_thrs() -> Vec<f64> {
        linspace(0.5, 0.95, 10)
    }

    /// pycocotools' default recall thresholds `np.linspace(0, 1, 101)`.
    pub fn default_rec_thrs() -> Vec<f64> {
        linspace(0.0, 1.0, 101)
    }

    /// pycocotools' default area ranges (`[0, 1e5**2]`, `[0, 32**2]`, `[32**2, 96**2]`,
    /// `[96**2, 1e5**2]`).
    pub fn default_area_rngs() -> Vec<AreaRange> {
        std::iter::once(AreaRange::new("all", 0.0, MAX_AREA))
            .chain(SIZE_BUCKETS.iter().map(|&(name, lo, hi)| AreaRange::new(name, lo, hi.min(MAX_AREA))))
            .collect()
    }

    /// pycocotools' defaults for `gt`: every image id, every category id (sorted), per-category.
    pub fn for_ground_truth(gt: &GroundTruth) -> Self {
        let mut img_ids: Vec<i64> = gt.images.iter().map(|im| im.id).collect();
        img_ids.sort_unstable();
        img_ids.dedup();
        let mut cat_ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
        cat_ids.sort_unstable();
        cat_ids.dedup();
        Self {
            img_ids,
            cat_ids,
            iou_thrs: Self::default_iou_thrs(),
            rec_thrs: Self::default_rec_thrs(),
            max_dets: vec![1, 10, 100],
            area_rngs: Self::default_area_rngs(),
            use_cats: true,
        }
    }

    /// The parameters as `COCOeval.evaluate` rewrites them, after checking that they are usable.
    pub fn normalized(&self) -> Result<Self> {
        let mut p = self.clone();
        p.img_ids.sort_unstable();
        p.img_ids.dedup();
        if p.use_cats {
            p.cat_ids.sort_unstable();
            p.cat_ids.dedup();
        }
        p.max_dets.sort_unstable();
        let bad = |msg: String| Err(CocoError::InvalidParams(msg));
        if p.iou_thrs.is_empty() || p.iou_thrs.iter().any(|t| !t.is_finite()) {
            return bad(format!("iou_thrs must be non-empty and finite, got {:?}", p.iou_thrs));
        }
        if p.rec_thrs.is_empty() || p.rec_thrs.iter().any(|t| !t.is_finite()) {
            return bad(format!("rec_thrs must be non-empty and finite, got {:?}", p.rec_thrs));
        }
        if p.max_dets.is_empty() || p.max_dets.windows(2).any(|w| w[0] == w[1]) {
            return bad(format!("max_dets must be non-empty and distinct, got {:?}", p.max_dets));
        }
        if p.area_rngs.is_empty() {
            return bad("area_rngs must not be empty".into());
        }
        for (i, a) in p.area_rngs.iter().enumerate() {
            if a.lo.is_nan() || a.hi.is_nan() {
                return bad(format!("area range `{}` has a NaN bound", a.label));
            }
            if p.area_rngs[..i].iter().any(|b| b.label == a.label) {
                return bad(format!("area range label `{}` is used twice", a.label));
            }
        }
        Ok(p)
    }

    /// The largest max-dets value (the one detections are truncated to per image and category).
    pub fn max_det(&self) -> usize {
        self.max_dets.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_values() {
        // The values numpy 2.x prints with repr() for these calls.
        let iou = Params::default_iou_thrs();
        let expected = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95];
        assert_eq!(iou, expected);
        let rec = Params::default_rec_thrs();
        assert_eq!(rec.len(), 101);
        assert_eq!(rec[35], 0.35000000000000003);
        assert_eq!(rec[100], 1.0);
        for (i, r) in rec.iter().enumerate().take(100) {
            assert_eq!(*r, i as f64 * 0.01);
        }
    }

    #[test]
    fn normalization_sorts_and_rejects_bad_values() {
        let mut p = Params {
            img_ids: vec![3, 1, 3],
            cat_ids: vec![5, 2, 5],
            iou_thrs: vec![0.5],
            rec_thrs: vec![0.0, 1.0],
            max_dets: vec![100, 1],
            area_rngs: Params::default_area_rngs(),
            use_cats: true,
        };
        let n = p.normalized().unwrap();
        assert_eq!(n.img_ids, vec![1, 3]);
        assert_eq!(n.cat_ids, vec![2, 5]);
        assert_eq!(n.max_dets, vec![1, 100]);
        p.use_cats = false;
        assert_eq!(p.normalized().unwrap().cat_ids, vec![5, 2, 5]);
        p.iou_thrs = vec![f64::NAN];
        assert!(matches!(p.normalized(), Err(CocoError::InvalidParams(_))));
        p.iou_thrs = vec![0.5];
        p.max_dets = vec![10, 10];
        assert!(matches!(p.normalized(), Err(CocoError::InvalidParams(_))));
    }
}
