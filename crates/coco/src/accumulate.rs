//! pycocotools' `accumulate`: precision / recall / score arrays from the per-cell matches.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::evaluate::{Matches, Outcome};
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

/// Precision and scores `[m][t][r]`, recall `[m][t]`, for one (category, area range).
struct Block {
    k: usize,
    a: usize,
    precision: Vec<f64>,
    scores: Vec<f64>,
    recall: Vec<f64>,
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
    // Per category, every kept detection across images by descending score, stable over
    // (image, rank) as np.argsort(-scores, kind='mergesort') of the concatenation is. Truncating
    // to a smaller max-dets later just skips entries: filtering commutes with a stable sort.
    let sorted: Vec<Vec<Entry>> = runs
        .par_iter()
        .map(|&(s, e)| {
            let mut v: Vec<Entry> = Vec::new();
            for (ci, cell) in cells.iter().enumerate().take(e).skip(s) {
                let sc = &matches.scores[cell.dt_start..cell.dt_start + cell.dt_len as usize];
                v.extend(sc.iter().enumerate().map(|(r, &x)| (x, ci as u32, r as u32)));
            }
            v.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(Ordering::Equal));
            v
        })
        .collect();

    let jobs: Vec<(usize, usize)> = (0..nk).flat_map(|k| (0..shape.a).map(move |a| (k, a))).collect();
    let blocks: Vec<Block> =
        jobs.par_iter().filter_map(|&(k, a)| accumulate_block(matches, p, &shape, runs[k], &sorted[k], k, a)).collect();

    let mut precision = vec![-1.0; shape.t * shape.r * shape.k * shape.a * shape.m];
    let mut scores = precision.clone();
    let mut recall = vec![-1.0; shape.t * shape.k * shape.a * shape.m];
    for b in blocks {
        for m in 0..shape.m {
            for t in 0..shape.t {
                recall[shape.recall_index(t, b.k, b.a, m)] = b.recall[m * shape.t + t];
                for r in 0..shape.r {
                    let i = shape.precision_index(t, r, b.k, b.a, m);
                    let j = (m * shape.t + t) * shape.r + r;
                    precision[i] = b.precision[j];
                    scores[i] = b.scores[j];
                }
            }
        }
    }
    Accumulated { shape, precision, recall, scores }
}

fn accumulate_block(
    matches: &Matches,
    p: &Params,
    shape: &Shape,
    run: (usize, usize),
    entries: &[Entry],
    k: usize,
    a: usize,
) -> Option<Block> {
    let cells = &matches.cells;
    if run.0 == run.1 {
        return None; // every evalImg is None: stays -1
    }
    let npig: u64 = (run.0..run.1).map(|c| matches.npig[c * shape.a + a] as u64).sum();
    if npig == 0 {
        return None;
    }
    let (nt, nr) = (shape.t, shape.r);
    let mut block = Block {
        k,
        a,
        precision: vec![0.0; shape.m * nt * nr],
        scores: vec![0.0; shape.m * nt * nr],
        recall: vec![0.0; shape.m * nt],
    };
    let (mut rc, mut pr, mut sc) = (Vec::new(), Vec::new(), Vec::new());
    for (m, &max_det) in p.max_dets.iter().enumerate() {
        for t in 0..nt {
            rc.clear();
            pr.clear();
            sc.clear();
            let (mut tp, mut fp) = (0u64, 0u64);
            for &(score, c, rank) in entries {
                if rank as usize >= max_det {
                    continue;
                }
                let cell = &cells[c as usize];
                let n = cell.dt_len as usize;
                match matches.outcomes[cell.dt_start * shape.a * nt + (a * nt + t) * n + rank as usize] {
                    Outcome::TruePositive => tp += 1,
                    Outcome::FalsePositive => fp += 1,
                    Outcome::Ignored => {}
                }
                // rc = tp / npig; pr = tp / (fp + tp + np.spacing(1)), in float64 as numpy does.
                let (tpf, fpf) = (tp as f64, fp as f64);
                rc.push(tpf / npig as f64);
                pr.push(tpf / (fpf + tpf + f64::EPSILON));
                sc.push(score);
            }
            let nd = rc.len();
            block.recall[m * nt + t] = if nd > 0 { rc[nd - 1] } else { 0.0 };
            for i in (1..nd).rev() {
                if pr[i] > pr[i - 1] {
                    pr[i - 1] = pr[i];
                }
            }
            let base = (m * nt + t) * nr;
            for (ri, &thr) in p.rec_thrs.iter().enumerate() {
                // np.searchsorted(rc, recThrs, side='left'); the first index past the end ends
                // the loop (pycocotools' bare `except: pass`), leaving zeros behind it.
                let pi = rc.partition_point(|&x| x < thr);
                if pi >= nd {
                    break;
                }
                block.precision[base + ri] = pr[pi];
                block.scores[base + ri] = sc[pi];
            }
        }
    }
    Some(block)
}
