//! Where a detector's AP goes: the error analysis of TIDE (Bolya et al., "TIDE: A General Toolbox
//! for Identifying Object Detection Errors", ECCV 2020), with the semantics of `tidecv` 1.0.1.
//!
//! Every false positive gets one cause, tested in this order: **Loc** (IoU with a GT of its class
//! in `[bg, fg]`), **Cls** (IoU `>= fg` with a GT of another class), **Dupe** (IoU `>= fg` with an
//! already matched GT of its class), **Bkg** (IoU `<= bg` with every GT), else **Both**. A GT that
//! nothing matched and no Cls/Loc error could claim is **Miss**. Each type's dAP is the AP gained
//! by fixing only that type (Cls and Loc errors become true positives, one per GT, the highest
//! score winning; Dupe, Bkg and Both are removed; a Miss leaves the GT count), clamped at zero.
//! `FalsePos` and `FalseNeg` are the gains of perfect precision and of perfect recall.
//!
//! The AP here is TIDE's, not COCOeval's: one IoU threshold, 101-point interpolation over every
//! detection (no area ranges), the mean over every class that has GT or detections, including a
//! class that has only detections (AP 0). tidecv's tie-breaking is kept: equal scores keep their
//! insertion order, which differs between the measured run and the fixed runs, so a fix that
//! changes nothing can move AP slightly (TIDE clamps the main errors' dAP at 0, not the special
//! ones). tidecv also assigns a cause to a detection that a crowd region made ignored (it stays
//! out of the AP unless a Cls or Loc fix makes it a true positive); this too is kept. Figures are fractions (tidecv prints them as percent).

use std::collections::HashMap;

use serde::Serialize;

use crate::dataset::{Annotation, GroundTruth};
use crate::iou::bbox_iou;
use crate::results::Detection;

/// Thresholds of the analysis (tidecv's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorParams {
    /// Foreground IoU: a detection at or above it with a GT of its class is a true positive.
    pub fg_iou: f64,
    /// Background IoU: a detection at or below it with every GT is a background error.
    pub bg_iou: f64,
    /// Detections kept per image, best scores first.
    pub max_dets: usize,
    /// Analyse only these images (all GT images when `None`).
    pub img_ids: Option<Vec<i64>>,
}

impl Default for ErrorParams {
    fn default() -> Self {
        ErrorParams { fg_iou: 0.5, bg_iou: 0.1, max_dets: 100, img_ids: None }
    }
}

/// TIDE's six main error types, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorKind {
    /// Localised (IoU >= fg) on a GT of another class.
    Cls,
    /// Right class, IoU between bg and fg.
    Loc,
    /// Wrong class and poorly localised.
    Both,
    /// Right class and place, but the GT was already matched by a higher score.
    Dupe,
    /// Overlaps no GT (IoU <= bg).
    Bkg,
    /// A GT that no detection found or came close to.
    Miss,
}

impl ErrorKind {
    /// All types in TIDE's order.
    pub const ALL: [ErrorKind; 6] =
        [ErrorKind::Cls, ErrorKind::Loc, ErrorKind::Both, ErrorKind::Dupe, ErrorKind::Bkg, ErrorKind::Miss];

    /// TIDE's short name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Cls => "Cls",
            ErrorKind::Loc => "Loc",
            ErrorKind::Both => "Both",
            ErrorKind::Dupe => "Dupe",
            ErrorKind::Bkg => "Bkg",
            ErrorKind::Miss => "Miss",
        }
    }
}

/// One error type's share of the lost AP.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorShare {
    /// The type.
    pub kind: ErrorKind,
    /// How many detections (or, for Miss, GTs) have this cause.
    pub count: usize,
    /// AP gained by fixing only these errors, clamped at 0.
    pub delta_ap: f64,
}

/// GTs of one COCO size bucket (by the annotation's `area`) and how many were not found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeRecall {
    /// `small`, `medium` or `large`.
    pub size: &'static str,
    /// Non-crowd GTs in the bucket.
    pub objects: usize,
    /// Of those, matched by no detection at the foreground IoU (TIDE's false negatives).
    pub not_found: usize,
    /// Of those, Miss errors (nothing even close).
    pub missed: usize,
}

/// How often GTs of one class were found at their place with another class's label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// The GT's category.
    pub gt_category: i64,
    /// The detection's category.
    pub detected_category: i64,
    /// Cls errors with this pair.
    pub count: usize,
}

/// The analysis of one set of detections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReport {
    /// TIDE's AP at the foreground IoU.
    pub ap: f64,
    /// The six main types, in TIDE's order.
    pub main: Vec<ErrorShare>,
    /// AP gained if every false positive scored below every true positive.
    pub false_pos_delta_ap: f64,
    /// AP gained if every GT missed at the foreground IoU left the GT count.
    pub false_neg_delta_ap: f64,
    /// Found and missed GTs per size bucket.
    pub by_size: Vec<SizeRecall>,
    /// Cls errors by (GT class, detected class), most frequent first.
    pub confusions: Vec<Confusion>,
}

/// A detection's data point in the AP computation: its class, score and whether it is a TP.
#[derive(Debug, Clone, Copy)]
struct Point {
    class: i64,
    score: f64,
    correct: bool,
}

/// What fixing an error does.
#[derive(Debug, Clone, Copy)]
enum Fix {
    /// The detection leaves the evaluation.
    Remove,
    /// The detection becomes a true positive of this class.
    TruePositive(i64),
    /// The GT leaves the count of this class.
    DropGt(i64),
}

#[derive(Debug)]
struct ErrorRecord {
    kind: ErrorKind,
    /// The detection (None for Miss).
    detection: Option<Point>,
    /// Its data point in the measured run: None for Miss and for a detection inside a crowd
    /// region, which tidecv classifies but leaves out unless a fix makes it a true positive.
    original: Option<Point>,
    /// Global GT index: for Cls and Loc the GT the detection sits on, for Miss the missed GT.
    target: Option<usize>,
}

impl ErrorRecord {
    /// What fixing this error (the `index`-th record) does. Only the best-scoring Cls or Loc
    /// error on a GT that nothing matched becomes a true positive; the others vanish.
    fn fix(&self, index: usize, state: &[GtState], gt: &GroundTruth) -> Fix {
        let class_of = |g: usize| gt.annotations[g].category_id;
        match (self.kind, self.target, self.detection) {
            (ErrorKind::Miss, Some(g), _) => Fix::DropGt(class_of(g)),
            (ErrorKind::Cls, Some(g), Some(_)) if state[g].best_error == Some(index) => Fix::TruePositive(class_of(g)),
            (ErrorKind::Loc, Some(g), Some(p)) if state[g].best_error == Some(index) => Fix::TruePositive(p.class),
            _ => Fix::Remove,
        }
    }
}

/// Per-GT state across the analysis.
#[derive(Debug, Clone, Copy)]
struct GtState {
    used: bool,
    /// A Cls or Loc error points at it while it is unmatched: not a Miss.
    usable: bool,
    best_score: f64,
    best_error: Option<usize>,
}

/// AP bookkeeping: classes in first-touched order (the mean's summation order), their GT counts
/// and data points in insertion order (which breaks score ties).
#[derive(Debug, Default, Clone)]
struct ApData {
    order: Vec<i64>,
    gt: HashMap<i64, i64>,
    points: HashMap<i64, Vec<(f64, bool)>>,
}

impl ApData {
    fn touch(&mut self, class: i64) {
        if !self.gt.contains_key(&class) {
            self.order.push(class);
            self.gt.insert(class, 0);
            self.points.insert(class, Vec::new());
        }
    }

    fn add_gt(&mut self, class: i64, n: i64) {
        self.touch(class);
        *self.gt.entry(class).or_insert(0) += n;
    }

    fn push(&mut self, p: Point) {
        self.touch(p.class);
        self.points.entry(p.class).or_default().push((p.score, p.correct));
    }

    /// Mean over non-empty classes of the 101-point interpolated AP.
    fn map(&self) -> f64 {
        let aps: Vec<f64> = self
            .order
            .iter()
            .filter_map(|c| {
                let n_gt = self.gt[c];
                let points = &self.points[c];
                (!(points.is_empty() && n_gt == 0)).then(|| class_ap(points, n_gt))
            })
            .collect();
        if aps.is_empty() {
            return 0.0;
        }
        aps.iter().sum::<f64>() / aps.len() as f64
    }
}

/// tidecv's `APDataObject.get_ap`, as a fraction.
fn class_ap(points: &[(f64, bool)], n_gt: i64) -> f64 {
    if n_gt == 0 {
        return 0.0;
    }
    let mut sorted: Vec<(f64, bool)> = points.to_vec();
    // Stable: equal scores keep insertion order, as Python's sort.
    sorted.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut precision = Vec::with_capacity(sorted.len());
    let mut recall = Vec::with_capacity(sorted.len());
    for &(_, correct) in &sorted {
        if correct {
            tp += 1;
        } else {
            fp += 1;
        }
        precision.push(tp as f64 / (tp + fp) as f64);
        recall.push(tp as f64 / n_gt as f64);
    }
    for i in (1..precision.len()).rev() {
        if precision[i] > precision[i - 1] {
            precision[i - 1] = precision[i];
        }
    }
    let mut sum = 0.0;
    for bar in 0..=100u32 {
        let x = f64::from(bar) / 100.0;
        let at = recall.partition_point(|&r| r < x);
        if at < precision.len() {
            sum += precision[at];
        }
    }
    sum / 101.0
}

/// First index of the largest value (NumPy's `argmax`); `(0, 0.0)` for no values.
fn argmax(values: impl Iterator<Item = f64>) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    let mut any = false;
    for (i, v) in values.enumerate() {
        any = true;
        if v > best.1 {
            best = (i, v);
        }
    }
    if any {
        best
    } else {
        (0, 0.0)
    }
}

use crate::params::SIZE_BUCKETS as SIZES;

fn size_bucket(area: f64) -> Option<usize> {
    SIZES.iter().position(|&(_, lo, hi)| area >= lo && area < hi)
}

/// Runs the analysis over the GT file's images (or `params.img_ids` of them). Detections and
/// annotations on other image ids are left out; detections of categories unknown to the GT count
/// as their own class, as in tidecv.
pub fn analyze_errors(gt: &GroundTruth, dets: &[Detection], params: &ErrorParams) -> ErrorReport {
    let wanted: Option<std::collections::HashSet<i64>> = params.img_ids.as_ref().map(|v| v.iter().copied().collect());
    let mut images: Vec<i64> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for img in &gt.images {
        if wanted.as_ref().is_none_or(|w| w.contains(&img.id)) && seen.insert(img.id) {
            images.push(img.id);
        }
    }
    let mut gts_of: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, a) in gt.annotations.iter().enumerate() {
        gts_of.entry(a.image_id).or_default().push(i);
    }
    let mut dets_of: HashMap<i64, Vec<&Detection>> = HashMap::new();
    for d in dets {
        dets_of.entry(d.image_id).or_default().push(d);
    }

    let mut state: Vec<GtState> =
        vec![GtState { used: false, usable: false, best_score: -1.0, best_error: None }; gt.annotations.len()];
    let mut measured = ApData::default();
    let mut true_positives: Vec<Point> = Vec::new();
    let mut errors: Vec<ErrorRecord> = Vec::new();
    let mut false_negatives: Vec<usize> = Vec::new();

    for image in &images {
        let all_gt: &[usize] = gts_of.get(image).map(Vec::as_slice).unwrap_or(&[]);
        let truths: Vec<usize> = all_gt.iter().copied().filter(|&i| !gt.annotations[i].iscrowd).collect();
        let regions: Vec<&Annotation> = all_gt.iter().map(|&i| &gt.annotations[i]).filter(|a| a.iscrowd).collect();
        for &g in &truths {
            measured.add_gt(gt.annotations[g].category_id, 1);
        }
        let mut preds: Vec<&Detection> = dets_of.get(image).cloned().unwrap_or_default();
        preds.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal));
        preds.truncate(params.max_dets);

        let iou: Vec<Vec<f64>> = preds
            .iter()
            .map(|p| truths.iter().map(|&g| bbox_iou(&p.bbox, &gt.annotations[g].bbox, false)).collect())
            .collect();
        let class_of = |g: usize| gt.annotations[truths[g]].category_id;

        // Greedy matching in score order: the best-overlapping unmatched GT of the same class.
        // `Some(true)` matched, `Some(false)` unmatched, `None` ignored (inside a crowd region).
        let mut used: Vec<Option<bool>> = vec![Some(false); preds.len()];
        for (p, pred) in preds.iter().enumerate() {
            let (g, v) = argmax((0..truths.len()).map(|g| {
                if class_of(g) == pred.category_id && !state[truths[g]].used {
                    iou[p][g]
                } else {
                    0.0
                }
            }));
            if !truths.is_empty() && v >= params.fg_iou {
                used[p] = Some(true);
                state[truths[g]].used = true;
            }
        }
        for region in &regions {
            for (p, pred) in preds.iter().enumerate() {
                if used[p] != Some(true)
                    && bbox_iou(&pred.bbox, &region.bbox, true) > params.fg_iou
                    && region.category_id == pred.category_id
                {
                    used[p] = None;
                }
            }
        }

        for (p, pred) in preds.iter().enumerate() {
            let correct = used[p] == Some(true);
            let point = Point { class: pred.category_id, score: pred.score, correct };
            if used[p].is_some() {
                measured.push(point);
            }
            // tidecv 1.0.1 also gives a cause to detections a crowd region made ignored.
            if correct {
                true_positives.push(point);
                continue;
            }
            let (kind, target) = if truths.is_empty() {
                (ErrorKind::Bkg, None)
            } else {
                let same = |g: usize| class_of(g) == pred.category_id;
                let (g_cls, v_cls) = argmax((0..truths.len()).map(|g| if same(g) { iou[p][g] } else { 0.0 }));
                let (g_other, v_other) = argmax((0..truths.len()).map(|g| if same(g) { 0.0 } else { iou[p][g] }));
                let (_, v_used) =
                    argmax((0..truths.len()).map(|g| if same(g) && state[truths[g]].used { iou[p][g] } else { 0.0 }));
                let (_, v_any) = argmax(iou[p].iter().copied());
                if params.bg_iou <= v_cls && v_cls <= params.fg_iou {
                    (ErrorKind::Loc, Some(g_cls))
                } else if v_other >= params.fg_iou {
                    (ErrorKind::Cls, Some(g_other))
                } else if v_used >= params.fg_iou {
                    (ErrorKind::Dupe, None)
                } else if v_any <= params.bg_iou {
                    (ErrorKind::Bkg, None)
                } else {
                    (ErrorKind::Both, None)
                }
            };
            let target = target.map(|g| truths[g]);
            if let Some(g) = target {
                let s = &mut state[g];
                if !s.used {
                    s.usable = true;
                    if s.best_score < pred.score {
                        s.best_score = pred.score;
                        s.best_error = Some(errors.len());
                    }
                }
            }
            errors.push(ErrorRecord { kind, detection: Some(point), original: used[p].map(|_| point), target });
        }

        for &g in &truths {
            if state[g].used {
                continue;
            }
            false_negatives.push(g);
            if !state[g].usable {
                errors.push(ErrorRecord { kind: ErrorKind::Miss, detection: None, original: None, target: Some(g) });
            }
        }
    }

    let ap = measured.map();
    // tidecv adds the true positives back class by class, in the measured run's class order.
    let true_positives_by_class: Vec<Point> =
        measured.order.iter().flat_map(|c| true_positives.iter().filter(move |p| p.class == *c).copied()).collect();
    let rebuilt = |fix: &dyn Fn(&ErrorRecord) -> bool, transform: &dyn Fn(Point) -> Point, drop_fn: bool| {
        let mut data = ApData::default();
        // Classes enter in the measured run's order so the mean sums in the same order.
        let mut gt_count: HashMap<i64, i64> = measured.gt.clone();
        for (i, e) in errors.iter().enumerate() {
            let point = if fix(e) {
                match e.fix(i, &state, gt) {
                    Fix::Remove => None,
                    Fix::TruePositive(class) => e.detection.map(|p| Point { class, correct: true, ..p }),
                    Fix::DropGt(class) => {
                        *gt_count.entry(class).or_insert(0) -= 1;
                        None
                    }
                }
            } else {
                e.original
            };
            if let Some(p) = point {
                data.push(transform(p));
            }
        }
        for p in &true_positives_by_class {
            data.push(transform(*p));
        }
        if drop_fn {
            for &g in &false_negatives {
                *gt_count.entry(gt.annotations[g].category_id).or_insert(0) -= 1;
            }
        }
        for c in &measured.order {
            data.add_gt(*c, gt_count[c]);
        }
        data.map()
    };
    let identity = |p: Point| p;
    let main = ErrorKind::ALL
        .iter()
        .map(|&kind| {
            let count = errors.iter().filter(|e| e.kind == kind).count();
            let fixed = rebuilt(&|e: &ErrorRecord| e.kind == kind, &identity, false);
            ErrorShare { kind, count, delta_ap: (fixed - ap).max(0.0) }
        })
        .collect();
    let perfect_precision = |p: Point| Point { score: if p.correct { 1.0 } else { 0.0 }, ..p };
    let false_pos_delta_ap = rebuilt(&|_| false, &perfect_precision, false) - ap;
    let false_neg_delta_ap = rebuilt(&|_| false, &identity, true) - ap;

    let mut by_size: Vec<SizeRecall> =
        SIZES.iter().map(|&(size, _, _)| SizeRecall { size, objects: 0, not_found: 0, missed: 0 }).collect();
    for image in &images {
        for &g in gts_of.get(image).map(Vec::as_slice).unwrap_or(&[]) {
            let a = &gt.annotations[g];
            let Some(b) = (!a.iscrowd).then(|| size_bucket(a.area)).flatten() else { continue };
            by_size[b].objects += 1;
            if !state[g].used {
                by_size[b].not_found += 1;
            }
            if !state[g].used && !state[g].usable {
                by_size[b].missed += 1;
            }
        }
    }

    let mut pairs: HashMap<(i64, i64), usize> = HashMap::new();
    for e in errors.iter().filter(|e| e.kind == ErrorKind::Cls) {
        if let (Some(p), Some(g)) = (e.detection, e.target) {
            *pairs.entry((gt.annotations[g].category_id, p.class)).or_insert(0) += 1;
        }
    }
    let mut confusions: Vec<Confusion> =
        pairs.into_iter().map(|((g, d), count)| Confusion { gt_category: g, detected_category: d, count }).collect();
    confusions.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.gt_category.cmp(&b.gt_category))
            .then(a.detected_category.cmp(&b.detected_category))
    });

    ErrorReport { ap, main, false_pos_delta_ap, false_neg_delta_ap, by_size, confusions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Category, Image};

    fn ann(id: i64, category_id: i64, bbox: [f64; 4]) -> Annotation {
        Annotation { id, image_id: 1, category_id, bbox, area: bbox[2] * bbox[3], iscrowd: false }
    }

    fn det(category_id: i64, bbox: [f64; 4], score: f64) -> Detection {
        Detection { image_id: 1, category_id, bbox, score }
    }

    /// One found object, one labelled as the wrong class, one missed: the extras TIDE does not
    /// report (sizes and confusions) and the dAPs worked out by hand.
    #[test]
    fn hand_case() {
        let gt = GroundTruth {
            images: vec![Image { id: 1, file_name: None, width: None, height: None }],
            categories: vec![Category { id: 1, name: None }, Category { id: 2, name: None }],
            annotations: vec![
                ann(1, 1, [0.0, 0.0, 20.0, 20.0]),
                ann(2, 1, [100.0, 100.0, 20.0, 20.0]),
                ann(3, 2, [200.0, 200.0, 120.0, 120.0]),
            ],
        };
        let dets = vec![det(1, [0.0, 0.0, 20.0, 20.0], 0.9), det(2, [100.0, 100.0, 20.0, 20.0], 0.8)];
        let r = analyze_errors(&gt, &dets, &ErrorParams::default());
        // Class 1: one TP of two GTs, AP 0.5 (51 of 101 bars at precision 1); class 2: one FP, no
        // TP, AP 0.
        assert!((r.ap - (51.0 / 101.0) / 2.0).abs() < 1e-12, "{}", r.ap);
        let count = |k: ErrorKind| r.main.iter().find(|s| s.kind == k).map(|s| s.count);
        assert_eq!(count(ErrorKind::Cls), Some(1));
        assert_eq!(count(ErrorKind::Miss), Some(1));
        assert_eq!(count(ErrorKind::Bkg), Some(0));
        // Fixing the Cls error makes class 1 perfect and leaves class 2 with GT and no detection.
        let cls = r.main.iter().find(|s| s.kind == ErrorKind::Cls).map(|s| s.delta_ap).unwrap_or(-1.0);
        assert!((cls - (1.0 - r.ap * 2.0) / 2.0).abs() < 1e-12, "{cls}");
        assert_eq!(r.confusions, vec![Confusion { gt_category: 1, detected_category: 2, count: 1 }]);
        let sizes: Vec<(usize, usize, usize)> = r.by_size.iter().map(|s| (s.objects, s.not_found, s.missed)).collect();
        assert_eq!(sizes, vec![(2, 1, 0), (0, 0, 0), (1, 1, 1)]);
    }
}
