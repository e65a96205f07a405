//! Per image and category matching: pycocotools' `_prepare`, `computeIoU` and `evaluateImg`.
//!
//! The output is deliberately lean: for every (image, category) cell that has GT or detections
//! (pycocotools' non-`None` `evalImgs`), the scores of its kept detections in score order, the
//! number of non-ignored GT per area range, and one [`outcome`] byte per (detection, area range,
//! IoU threshold). That is all `accumulate` reads.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::dataset::{Annotation, GroundTruth};
use crate::ids::IdMap;
use crate::iou::bbox_iou;
use crate::params::Params;
use crate::results::Detection;

/// What a detection counts as at one IoU threshold and area range. Plain bytes rather than an
/// enum so that the large outcome buffer can be allocated zeroed (lazily, by the OS).
pub(crate) mod outcome {
    /// Matched to an ignored GT, or unmatched and outside the area range.
    pub const IGNORED: u8 = 0;
    /// Matched to a non-ignored GT (with a non-zero id, see [`crate::Annotation::id`]).
    pub const TRUE_POSITIVE: u8 = 1;
    /// Neither.
    pub const FALSE_POSITIVE: u8 = 2;
}

/// One evaluated (image, category) cell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    /// Position in the category axis (0 when categories are pooled).
    pub k: u32,
    /// Offset of this cell's detections in [`Matches::scores`].
    pub dt_start: usize,
    /// Number of detections kept (at most the largest max-dets).
    pub dt_len: u32,
    gt_range: (u32, u32),
    dt_range: (u32, u32),
}

/// The matching of every cell, in pycocotools' `evalImgs` order (category, then image).
pub(crate) struct Matches {
    /// Cells with GT or detections, sorted by (k, image).
    pub cells: Vec<Cell>,
    /// Detection scores per cell, highest first (stable), concatenated.
    pub scores: Vec<f64>,
    /// `outcomes[d][a][t]` per cell, concatenated: detection `d` of a cell starts at
    /// `A * T * (dt_start + d)`.
    pub outcomes: Vec<u8>,
    /// Non-ignored GT count per (cell, area range).
    pub npig: Vec<u32>,
}

/// Indices of annotations (or detections) sorted by cell key, file order within a key.
struct Sorted {
    entries: Vec<(u64, u32)>,
}

impl Sorted {
    fn new(n: usize, key: impl Fn(usize) -> Option<u64> + Sync) -> Self {
        let mut entries: Vec<(u64, u32)> =
            (0..n).into_par_iter().with_min_len(4096).filter_map(|i| key(i).map(|k| (k, i as u32))).collect();
        // The index is part of the tuple, so an unstable sort yields the stable order.
        entries.par_sort_unstable();
        Self { entries }
    }
}

struct Layout<'a> {
    gt: &'a [Annotation],
    dets: &'a [Detection],
    p: &'a Params,
    /// Number of distinct evaluated categories (buckets).
    nb: u64,
    /// Bucket of each position of `p.cat_ids` (pooled mode: the concatenation order).
    list_buckets: Vec<u64>,
    gts: Sorted,
    dts: Sorted,
}

#[derive(Default)]
struct Scratch {
    gts: Vec<u32>,
    dts: Vec<u32>,
    ious: Vec<f64>,
    ignore: Vec<bool>,
    order: Vec<u32>,
    taken: Vec<bool>,
}

impl Layout<'_> {
    /// Members of one cell in pycocotools' order: file order within a category and, when
    /// categories are pooled, categories concatenated in `p.cat_ids` order.
    fn gather(&self, sorted: &Sorted, range: (u32, u32), out: &mut Vec<u32>) {
        out.clear();
        let s = &sorted.entries[range.0 as usize..range.1 as usize];
        if self.p.use_cats {
            out.extend(s.iter().map(|e| e.1));
        } else {
            for &b in &self.list_buckets {
                let lo = s.partition_point(|e| e.0 % self.nb < b);
                let hi = s.partition_point(|e| e.0 % self.nb <= b);
                out.extend(s[lo..hi].iter().map(|e| e.1));
            }
        }
    }

    fn evaluate_cell(&self, cell: &Cell, s: &mut Scratch, outcomes: &mut [u8], scores: &mut [f64], npig: &mut [u32]) {
        let p = self.p;
        let (gt, dets) = (self.gt, self.dets);
        let mut gts = std::mem::take(&mut s.gts);
        let mut dts = std::mem::take(&mut s.dts);
        self.gather(&self.gts, cell.gt_range, &mut gts);
        self.gather(&self.dts, cell.dt_range, &mut dts);
        // np.argsort(-score, kind='mergesort'): stable, highest score first.
        dts.sort_by(|&a, &b| dets[b as usize].score.partial_cmp(&dets[a as usize].score).unwrap_or(Ordering::Equal));
        dts.truncate(p.max_det());
        let (nd, ng) = (dts.len(), gts.len());
        debug_assert_eq!(nd, cell.dt_len as usize);
        for (s, &d) in scores.iter_mut().zip(&dts) {
            *s = dets[d as usize].score;
        }
        s.ious.clear();
        for &d in &dts {
            let db = &dets[d as usize].bbox;
            s.ious.extend(gts.iter().map(|&g| {
                let g = &gt[g as usize];
                bbox_iou(db, &g.bbox, g.iscrowd)
            }));
        }
        let has_ious = nd > 0 && ng > 0;
        let (na, nt) = (p.area_rngs.len(), p.iou_thrs.len());
        for (a, rng) in p.area_rngs.iter().enumerate() {
            // pycocotools: ignore = iscrowd (the dataset's `ignore` is overwritten) or area
            // outside the range; GT stably reordered, non-ignored first.
            s.ignore.clear();
            s.ignore.extend(gts.iter().map(|&g| {
                let g = &gt[g as usize];
                g.iscrowd || rng.excludes(g.area)
            }));
            s.order.clear();
            s.order.extend((0..ng as u32).filter(|&g| !s.ignore[g as usize]));
            npig[a] = s.order.len() as u32;
            s.order.extend((0..ng as u32).filter(|&g| s.ignore[g as usize]));
            if !has_ious {
                // Nothing to match: every detection is a false positive unless outside the range.
                for (di, &d) in dts.iter().enumerate() {
                    let code =
                        if rng.excludes(dets[d as usize].area()) { outcome::IGNORED } else { outcome::FALSE_POSITIVE };
                    outcomes[(di * na + a) * nt..(di * na + a + 1) * nt].fill(code);
                }
                continue;
            }
            for (t, &thr) in p.iou_thrs.iter().enumerate() {
                s.taken.clear();
                s.taken.resize(ng, false);
                for (di, &d) in dts.iter().enumerate() {
                    let mut best = thr.min(1.0 - 1e-10);
                    let mut m: Option<usize> = None;
                    {
                        let row = &s.ious[di * ng..(di + 1) * ng];
                        for (pos, &g) in s.order.iter().enumerate() {
                            let g = g as usize;
                            if s.taken[pos] && !gt[gts[g] as usize].iscrowd {
                                continue;
                            }
                            // Once matched to a regular GT, stop at the first ignored one.
                            if let Some(mp) = m {
                                if !s.ignore[s.order[mp] as usize] && s.ignore[g] {
                                    break;
                                }
                            }
                            if row[g] < best {
                                continue;
                            }
                            best = row[g];
                            m = Some(pos);
                        }
                    }
                    let (ignored, matched) = match m {
                        Some(pos) => {
                            s.taken[pos] = true;
                            let g = s.order[pos] as usize;
                            // dtMatches holds the GT id and 0 means "unmatched" downstream.
                            (s.ignore[g], gt[gts[g] as usize].id != 0)
                        }
                        None => (false, false),
                    };
                    let out_of_range = !matched && rng.excludes(dets[d as usize].area());
                    outcomes[(di * na + a) * nt + t] = if ignored || out_of_range {
                        outcome::IGNORED
                    } else if matched {
                        outcome::TRUE_POSITIVE
                    } else {
                        outcome::FALSE_POSITIVE
                    };
                }
            }
        }
        s.gts = gts;
        s.dts = dts;
    }
}

/// Matches `dets` to `gt` under normalised parameters `p`.
pub(crate) fn match_all(gt: &GroundTruth, dets: &[Detection], p: &Params) -> Matches {
    let img_pos: IdMap<u64> = p.img_ids.iter().enumerate().map(|(i, &id)| (id, i as u64)).collect();
    let mut distinct = p.cat_ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let cat_pos: IdMap<u64> = distinct.iter().enumerate().map(|(i, &id)| (id, i as u64)).collect();
    let (ni, nb) = (p.img_ids.len() as u64, distinct.len() as u64);
    // Per-category cells are keyed (category, image), pooled ones (image, category), so that a
    // cell is one contiguous run of keys either way.
    let key = |img: i64, cat: i64| -> Option<u64> {
        let (i, b) = (*img_pos.get(&img)?, *cat_pos.get(&cat)?);
        Some(if p.use_cats { b * ni + i } else { i * nb + b })
    };
    let anns = &gt.annotations;
    let (gts, dts) = rayon::join(
        || Sorted::new(anns.len(), |i| key(anns[i].image_id, anns[i].category_id)),
        || Sorted::new(dets.len(), |i| key(dets[i].image_id, dets[i].category_id)),
    );
    let layout = Layout {
        gt: anns,
        dets,
        p,
        nb,
        list_buckets: p.cat_ids.iter().filter_map(|c| cat_pos.get(c).copied()).collect(),
        gts,
        dts,
    };
    // In pooled mode a category listed twice contributes its detections twice.
    let mut multiplicity = vec![0usize; nb as usize];
    for &b in &layout.list_buckets {
        multiplicity[b as usize] += 1;
    }
    let cell_of = |k: u64| if p.use_cats { k } else { k / nb.max(1) };
    let max_det = p.max_det();

    // Merge the two sorted key streams into the list of non-empty cells.
    let mut cells = Vec::new();
    let (ge, de) = (&layout.gts.entries, &layout.dts.entries);
    let (mut gi, mut di, mut dt_start) = (0usize, 0usize, 0usize);
    while gi < ge.len() || di < de.len() {
        let next = match (ge.get(gi), de.get(di)) {
            (Some(g), Some(d)) => cell_of(g.0).min(cell_of(d.0)),
            (Some(g), None) => cell_of(g.0),
            (None, Some(d)) => cell_of(d.0),
            (None, None) => unreachable!(),
        };
        let g0 = gi;
        while gi < ge.len() && cell_of(ge[gi].0) == next {
            gi += 1;
        }
        let d0 = di;
        let mut n_dt = 0usize;
        while di < de.len() && cell_of(de[di].0) == next {
            n_dt += if p.use_cats { 1 } else { multiplicity[(de[di].0 % nb) as usize] };
            di += 1;
        }
        let dt_len = n_dt.min(max_det);
        cells.push(Cell {
            k: if p.use_cats { (next / ni.max(1)) as u32 } else { 0 },
            dt_start,
            dt_len: dt_len as u32,
            gt_range: (g0 as u32, gi as u32),
            dt_range: (d0 as u32, di as u32),
        });
        dt_start += dt_len;
    }

    let (na, nt) = (p.area_rngs.len(), p.iou_thrs.len());
    let mut scores = vec![0.0; dt_start];
    let mut outcomes = vec![outcome::IGNORED; dt_start * na * nt];
    let mut npig = vec![0u32; cells.len() * na];
    // Hand every cell its own disjoint output slices so that cells run in parallel.
    let mut jobs = Vec::with_capacity(cells.len());
    {
        let (mut sc, mut oc, mut np) = (&mut scores[..], &mut outcomes[..], &mut npig[..]);
        for cell in &cells {
            let n = cell.dt_len as usize;
            let (s, rest) = std::mem::take(&mut sc).split_at_mut(n);
            sc = rest;
            let (o, rest) = std::mem::take(&mut oc).split_at_mut(n * na * nt);
            oc = rest;
            let (g, rest) = std::mem::take(&mut np).split_at_mut(na);
            np = rest;
            jobs.push((cell, o, s, g));
        }
    }
    jobs.into_par_iter()
        .with_min_len(64)
        .for_each_init(Scratch::default, |scratch, (cell, o, s, g)| layout.evaluate_cell(cell, scratch, o, s, g));
    Matches { cells, scores, outcomes, npig }
}
