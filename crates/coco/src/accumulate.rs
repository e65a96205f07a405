//! pycocotools' `accumulate`: precision / recall / score arrays from the per-cell matches.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::matching::{outcome, Matches};
use crate::params::Params;

/// Dimensions of the accumulated arrays: IoU thresholds `t`, recall thresholds `r`,
/// categories `k` (1 when pooled), area ranges `a`, max-dets `m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    /// IoU thresholds.
    pub t: usize,
    /// Recall thresholds.
    pub r: usize,
    /// Categories.
    pub k: usize,
    /// Area ranges.
    pub a: usize,
    /// Max-dets values.
    pub m: usize,
}

impl Shape {
    /// Flat C-order index into a `[T, R, K, A, M]` array (precision, scores).
    #[inline]
    pub fn precision_index(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        (((t * self.r + r) * self.k + k) * self.a + a) * self.m + m
    }

    /// Flat C-order index into a `[T, K, A, M]` array (recall).
    #[inline]
    pub fn recall_index(&self, t: usize, k: usize, a: usize, m: usize) -> usize {
        ((t * self.k + k) * self.a + a) * self.m + m
    }
}

/// The arrays of `COCOeval.eval`; `-1` where a setting has no (non-ignored) GT.
pub(crate) struct Accumulated {
    pub shape: Shape,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub scores: Vec<f64>,
}

/// One detection in a category's score-sorted list: score, cell, rank within the cell.
type Entry = (f64, u32, u32);

/// Precision and scores `[a][m][t][r]`, recall `[a][m][t]`, for one category; `None` per area
/// range left at -1.
struct Block {
    k: usize,
    per_area: Vec<Option<AreaBlock>>,
}

struct AreaBlock {
    precision: Vec<f64>,
    scores: Vec<f64>,
    recall: Vec<f64>,
}

/// True positives met so far in one (area, threshold, max-dets) walk down the score order.
#[derive(Default, Clone)]
struct Walk {
    tp: u32,
    fp: u32,
    /// pr = tp / (fp + tp + eps) at each true positive, and that detection's score.
    at_tp: Vec<(f64, f64)>,
}

pub(crate) fn accumulate(matches: &Matches, p: &Params, nk: usize) -> Accumulated {
    let shape = Shape { t: p.iou_thrs.len(), r: p.rec_thrs.len(), k: nk, a: p.area_rngs.len(), m: p.max_dets.len() };
    let cells = &matches.cells;
    // Cells are sorted by category: find each category's run.
    let mut runs = vec![(0usize, 0usize); nk];
    let mut start = 0;
    while start < cells.len() {
        let k = cells[start].k as usize;
        let mut end = start;
        while end < cells.len() && cells[end].k as usize == k {
            end += 1;
        }
        runs[k] = (start, end);
        start = end;
    }
    let blocks: Vec<Block> = runs
        .par_iter()
        .enumerate()
        .filter(|(_, run)| run.0 < run.1) // every evalImg None: stays -1
        .map(|(k, &run)| accumulate_category(matches, p, &shape, run, k))
        .collect();

    let mut precision = vec![-1.0; shape.t * shape.r * shape.k * shape.a * shape.m];
    let mut scores = precision.clone();
    let mut recall = vec![-1.0; shape.t * shape.k * shape.a * shape.m];
    for b in blocks {
        for (a, block) in b.per_area.iter().enumerate() {
            let Some(block) = block else { continue };
            for m in 0..shape.m {
                for t in 0..shape.t {
                    recall[shape.recall_index(t, b.k, a, m)] = block.recall[m * shape.t + t];
                    for r in 0..shape.r {
                        let i = shape.precision_index(t, r, b.k, a, m);
                        let j = (m * shape.t + t) * shape.r + r;
                        precision[i] = block.precision[j];
                        scores[i] = block.scores[j];
                    }
                }
            }
        }
    }
    Accumulated { shape, precision, recall, scores }
}

/// pycocotools' per-(k, a, m) body, computed from true-positive events only.
///
/// pycocotools builds, over the score-sorted detections, rc = tp/npig and pr = tp/(tp+fp+eps),
/// takes the running maximum of pr from the end, and reads it at the first index where
/// rc >= each recall threshold. That index is where the running TP count first reaches
/// c = min{c : c/npig >= thr}: the c-th true positive (or index 0 when c = 0). And the maximum
/// of pr over a suffix starting at a true positive is attained at a true positive, because pr
/// only falls between true positives. So reading the suffix maximum of pr over the true
/// positives gives the same numbers bit for bit, without materialising rc and pr.
fn accumulate_category(matches: &Matches, p: &Params, shape: &Shape, run: (usize, usize), k: usize) -> Block {
    let cells = &matches.cells[run.0..run.1];
    let (na, nt, nm, nr) = (shape.a, shape.t, shape.m, shape.r);
    let at = na * nt;
    // Every kept detection across images by descending score, stable over (image, rank) as
    // np.argsort(-scores, kind='mergesort') of the concatenation is. A smaller max-dets just
    // skips entries: filtering commutes with a stable sort.
    let mut entries: Vec<Entry> = Vec::new();
    for (ci, cell) in cells.iter().enumerate() {
        let sc = &matches.scores[cell.dt_start..cell.dt_start + cell.dt_len as usize];
        entries.extend(sc.iter().enumerate().map(|(r, &x)| (x, ci as u32, r as u32)));
    }
    entries.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(Ordering::Equal));

    let npig: Vec<u64> = (0..na).map(|a| (run.0..run.1).map(|c| matches.npig[c * na + a] as u64).sum()).collect();
    // walks[(a * nt + t) * nm + m]
    let mut walks = vec![Walk::default(); at * nm];
    let mut nd = vec![0usize; nm];
    // Score of the first detection kept under each max-dets (what pycocotools reads at index 0).
    let mut first_score = vec![0.0f64; nm];
    for &(score, c, rank) in &entries {
        let cell = &cells[c as usize];
        let base = (cell.dt_start + rank as usize) * at;
        let codes = &matches.outcomes[base..base + at];
        for (m, &max_det) in p.max_dets.iter().enumerate() {
            if rank as usize >= max_det {
                continue;
            }
            if nd[m] == 0 {
                first_score[m] = score;
            }
            nd[m] += 1;
            for (i, &code) in codes.iter().enumerate() {
                let w = &mut walks[i * nm + m];
                match code {
                    outcome::TRUE_POSITIVE => {
                        w.tp += 1;
                        let (tp, fp) = (w.tp as f64, w.fp as f64);
                        w.at_tp.push((tp / (fp + tp + f64::EPSILON), score));
                    }
                    outcome::FALSE_POSITIVE => w.fp += 1,
                    _ => {}
                }
            }
        }
    }

    let mut per_area = Vec::with_capacity(na);
    for (a, &npig) in npig.iter().enumerate() {
        if npig == 0 {
            per_area.push(None);
            continue;
        }
        // c_r: TP count at which rc = c / npig first reaches each threshold (same float division).
        let needed: Vec<u64> = p.rec_thrs.iter().map(|&thr| tp_needed(thr, npig)).collect();
        let mut block = AreaBlock {
            precision: vec![0.0; nm * nt * nr],
            scores: vec![0.0; nm * nt * nr],
            recall: vec![0.0; nm * nt],
        };
        for m in 0..nm {
            for t in 0..nt {
                let w = &mut walks[(a * nt + t) * nm + m];
                let j = m * nt + t;
                block.recall[j] = if nd[m] > 0 { w.tp as f64 / npig as f64 } else { 0.0 };
                // Running maximum from the end over the true positives.
                for i in (1..w.at_tp.len()).rev() {
                    if w.at_tp[i].0 > w.at_tp[i - 1].0 {
                        w.at_tp[i - 1].0 = w.at_tp[i].0;
                    }
                }
                for (ri, &c) in needed.iter().enumerate() {
                    let (q, s) = if nd[m] == 0 || c > w.tp as u64 {
                        break; // searchsorted ran past the end: the rest stays 0
                    } else if c == 0 {
                        (w.at_tp.first().map_or(0.0, |x| x.0), first_score[m])
                    } else {
                        w.at_tp[c as usize - 1]
                    };
                    block.precision[j * nr + ri] = q;
                    block.scores[j * nr + ri] = s;
                }
            }
        }
        per_area.push(Some(block));
    }
    Block { k, per_area }
}

/// The smallest TP count c with `c / npig >= thr` in float64 (`u64::MAX` if none can reach it).
fn tp_needed(thr: f64, npig: u64) -> u64 {
    let n = npig as f64;
    if thr <= 0.0 {
        return 0;
    }
    if thr > 1.0 {
        return u64::MAX; // beyond npig true positives, which no walk reaches
    }
    let mut c = (thr * n).ceil().max(0.0) as u64;
    while c > 0 && ((c - 1) as f64) / n >= thr {
        c -= 1;
    }
    while (c as f64) / n < thr {
        c += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::tp_needed;

    #[test]
    fn tp_needed_is_the_float_threshold_crossing() {
        for npig in 1..300u64 {
            for i in 0..=100 {
                let thr = if i == 100 { 1.0 } else { i as f64 * 0.01 };
                let c = tp_needed(thr, npig);
                assert!(c as f64 / npig as f64 >= thr);
                assert!(c == 0 || ((c - 1) as f64 / npig as f64) < thr);
            }
        }
        assert_eq!(tp_needed(-0.5, 10), 0);
        assert_eq!(tp_needed(1.5, 10), u64::MAX);
    }
}
