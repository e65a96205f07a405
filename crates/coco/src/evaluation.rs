//! The result of an evaluation and the pipeline producing it.

use crate::accumulate::{accumulate, Shape};
use crate::dataset::GroundTruth;
use crate::error::Result;
use crate::matching::match_all;
use crate::params::Params;
use crate::results::{check_detections, Detection};

/// pycocotools' `COCOeval.eval` after `evaluate()` + `accumulate()`: the precision
/// `[T, R, K, A, M]`, recall `[T, K, A, M]` and score `[T, R, K, A, M]` arrays (flat, C order,
/// `-1` where a setting has no GT), with the normalised parameters that index them.
#[derive(Debug, Clone)]
pub struct Evaluation {
    params: Params,
    category_ids: Vec<i64>,
    shape: Shape,
    precision: Vec<f64>,
    recall: Vec<f64>,
    scores: Vec<f64>,
}

/// Runs pycocotools' `evaluate`, `accumulate` over in-memory data.
///
/// `params` are normalised as `COCOeval.evaluate` does ([`Params::normalized`]). Detections are
/// checked as `loadRes` does ([`check_detections`]) and GT as [`GroundTruth::check`]. Unlike
/// `loadRes`, an empty `detections` slice is accepted: every category with GT then scores 0.
pub fn evaluate(gt: &GroundTruth, detections: &[Detection], params: &Params) -> Result<Evaluation> {
    gt.check("ground truth")?;
    check_detections(gt, detections, "detections")?;
    let p = params.normalized()?;
    let nk = if p.use_cats {
        let mut d = p.cat_ids.clone();
        d.dedup();
        d.len()
    } else {
        1
    };
    let matches = match_all(gt, detections, &p);
    let acc = accumulate(&matches, &p, nk);
    let category_ids = if p.use_cats { p.cat_ids.clone() } else { vec![-1] };
    Ok(Evaluation {
        params: p,
        category_ids,
        shape: acc.shape,
        precision: acc.precision,
        recall: acc.recall,
        scores: acc.scores,
    })
}

/// Reads a COCO instances file and a results file and evaluates them with pycocotools'
/// default parameters. Returns the ground truth too (for category names).
pub fn evaluate_files(
    gt_path: impl AsRef<std::path::Path>,
    results_path: impl AsRef<std::path::Path>,
) -> Result<(GroundTruth, Evaluation)> {
    let gt = GroundTruth::from_path(gt_path)?;
    let results_path = results_path.as_ref();
    let dets = crate::results::load_results(results_path)?;
    check_detections(&gt, &dets, &results_path.display().to_string())?;
    let eval = evaluate(&gt, &dets, &Params::for_ground_truth(&gt))?;
    Ok((gt, eval))
}

/// Which IoU thresholds a precision-recall curve averages over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IouSelection {
    /// All thresholds.
    Mean,
    /// The thresholds equal to this value (normally exactly one).
    At(f64),
}

impl Evaluation {
    /// The normalised parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The category id of each position of the K axis (`[-1]` when categories are pooled, as in
    /// pycocotools).
    pub fn category_ids(&self) -> &[i64] {
        &self.category_ids
    }

    /// Array dimensions.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Precision `[T, R, K, A, M]`, flat in C order (see [`Shape::precision_index`]).
    pub fn precision(&self) -> &[f64] {
        &self.precision
    }

    /// Recall `[T, K, A, M]`, flat in C order (see [`Shape::recall_index`]).
    pub fn recall(&self) -> &[f64] {
        &self.recall
    }

    /// Detection score at each precision point, `[T, R, K, A, M]`.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// One precision entry.
    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[self.shape.precision_index(t, r, k, a, m)]
    }

    /// One recall entry.
    pub fn recall_at(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[self.shape.recall_index(t, k, a, m)]
    }

    /// An interpolated precision-recall curve: `(recall threshold, precision)` pairs for area
    /// range `a` and max-dets position `m`, averaging the entries `> -1` over the selected IoU
    /// thresholds and over category position `k` (or all categories). `None` when no selected
    /// entry has GT.
    pub fn pr_curve(&self, iou: IouSelection, k: Option<usize>, a: usize, m: usize) -> Option<Vec<(f64, f64)>> {
        let sh = self.shape;
        let ts: Vec<usize> = match iou {
            IouSelection::Mean => (0..sh.t).collect(),
            IouSelection::At(thr) => (0..sh.t).filter(|&t| self.params.iou_thrs[t] == thr).collect(),
        };
        let ks: Vec<usize> = k.map_or_else(|| (0..sh.k).collect(), |k| vec![k]);
        if a >= sh.a || m >= sh.m || ks.iter().any(|&k| k >= sh.k) {
            return None;
        }
        let mut curve = Vec::with_capacity(sh.r);
        for r in 0..sh.r {
            let vals: Vec<f64> = ts
                .iter()
                .flat_map(|&t| ks.iter().map(move |&k| (t, k)))
                .map(|(t, k)| self.precision_at(t, r, k, a, m))
                .collect();
            let mean = crate::summary::mean_of_valid(&vals);
            if mean < 0.0 {
                return None;
            }
            curve.push((self.params.rec_thrs[r], mean));
        }
        Some(curve)
    }
}
