//! pycocotools' `summarize` (the 12 numbers and their printed lines) and per-category metrics.

use serde::Serialize;

use crate::evaluation::Evaluation;

/// `np.sum` of a contiguous float64 array: numpy's pairwise summation (8-way unrolled blocks of
/// at most 128 values, halves split on multiples of 8), so that means match bit for bit.
pub fn numpy_sum(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 8 {
        let mut res = 0.0;
        for v in x {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&x[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += x[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += x[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&x[..n2]) + numpy_sum(&x[n2..])
    }
}

/// pycocotools' `np.mean(s[s > -1])`, or `-1` when nothing is left.
pub fn mean_of_valid(values: &[f64]) -> f64 {
    let valid: Vec<f64> = values.iter().copied().filter(|&v| v > -1.0).collect();
    if valid.is_empty() {
        -1.0
    } else {
        // Adding the sum to numpy's reduction identity 0.0 changes nothing but -0.0.
        (0.0 + numpy_sum(&valid)) / valid.len() as f64
    }
}

/// Which number of `summarize` a line is: AP or AR, IoU threshold (`None`: all), area label and
/// max-dets value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// Average precision (`true`) or average recall.
    pub ap: bool,
    /// One IoU threshold, or `None` for the mean over all of them.
    pub iou_thr: Option<f64>,
    /// Area-range label.
    pub area: &'static str,
    /// Max-dets value.
    pub max_dets: usize,
}

/// Per-category metrics at area `all` and the largest max-dets (100 by default): AP averaged
/// over the IoU thresholds, AP at IoU 0.50 and 0.75, and AR. `-1` where the category has no GT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryMetrics {
    /// Category id.
    pub id: i64,
    /// Category name (the id as text when the dataset has none).
    pub name: String,
    /// AP @[.50:.95].
    pub ap: f64,
    /// AP @.50.
    pub ap50: f64,
    /// AP @.75.
    pub ap75: f64,
    /// AR @[.50:.95] at the largest max-dets.
    pub ar100: f64,
}

impl Evaluation {
    /// The 12 specifications of pycocotools' `_summarizeDets`, or `None` when there are fewer than
    /// three max-dets values (pycocotools indexes `maxDets[2]`). The first uses max-dets 100
    /// literally, as pycocotools does.
    pub fn stat_specs(&self) -> Option<[MetricSpec; 12]> {
        let md = &self.params().max_dets;
        if md.len() < 3 {
            return None;
        }
        let s = |ap, iou_thr, area, max_dets| MetricSpec { ap, iou_thr, area, max_dets };
        Some([
            s(true, None, "all", 100),
            s(true, Some(0.5), "all", md[2]),
            s(true, Some(0.75), "all", md[2]),
            s(true, None, "small", md[2]),
            s(true, None, "medium", md[2]),
            s(true, None, "large", md[2]),
            s(false, None, "all", md[0]),
            s(false, None, "all", md[1]),
            s(false, None, "all", md[2]),
            s(false, None, "small", md[2]),
            s(false, None, "medium", md[2]),
            s(false, None, "large", md[2]),
        ])
    }

    /// One number of `summarize`: the mean of the selected precision (or recall) entries that
    /// are `> -1`, over IoU thresholds, recall thresholds and categories; `-1` if there are none.
    pub fn metric(&self, spec: &MetricSpec) -> f64 {
        self.metric_for(spec, None)
    }

    /// Like [`Evaluation::metric`] restricted to category position `k` when given.
    pub fn metric_for(&self, spec: &MetricSpec, k: Option<usize>) -> f64 {
        let p = self.params();
        let sh = self.shape();
        let ts: Vec<usize> = match spec.iou_thr {
            None => (0..sh.t).collect(),
            Some(thr) => (0..sh.t).filter(|&t| p.iou_thrs[t] == thr).collect(),
        };
        let a = p.area_rngs.iter().position(|r| r.label == spec.area);
        let m = p.max_dets.iter().position(|&d| d == spec.max_dets);
        let (Some(a), Some(m)) = (a, m) else {
            return -1.0;
        };
        let ks: Vec<usize> = match k {
            Some(k) => vec![k],
            None => (0..sh.k).collect(),
        };
        // Same element order as numpy's C-order slice, so the pairwise sum is the same.
        let mut values = Vec::new();
        for &t in &ts {
            if spec.ap {
                for r in 0..sh.r {
                    values.extend(ks.iter().map(|&k| self.precision_at(t, r, k, a, m)));
                }
            } else {
                values.extend(ks.iter().map(|&k| self.recall_at(t, k, a, m)));
            }
        }
        mean_of_valid(&values)
    }

    /// The 12 numbers of pycocotools' `summarize`, in its order (see [`Evaluation::stat_specs`]).
    pub fn stats(&self) -> Option<[f64; 12]> {
        let specs = self.stat_specs()?;
        Some(specs.map(|s| self.metric(&s)))
    }

    /// One line of `summarize`, formatted exactly as pycocotools prints it.
    pub fn format_metric(&self, spec: &MetricSpec, value: f64) -> String {
        let p = self.params();
        let (title, kind) = if spec.ap { ("Average Precision", "(AP)") } else { ("Average Recall", "(AR)") };
        let iou = match spec.iou_thr {
            None => format!("{:.2}:{:.2}", p.iou_thrs[0], p.iou_thrs[p.iou_thrs.len() - 1]),
            Some(t) => format!("{t:.2}"),
        };
        format!(
            " {title:<18} {kind} @[ IoU={iou:<9} | area={:>6} | maxDets={:>3} ] = {value:.3}",
            spec.area, spec.max_dets
        )
    }

    /// The 12 lines `summarize` prints, or `None` as for [`Evaluation::stats`].
    pub fn summary_lines(&self) -> Option<Vec<String>> {
        let specs = self.stat_specs()?;
        Some(specs.iter().map(|s| self.format_metric(s, self.metric(s))).collect())
    }

    /// AP, AP50, AP75 and AR per category in category-id order; empty when categories are pooled.
    /// `names` maps ids to display names (e.g. [`crate::GroundTruth::category_names`]).
    pub fn per_category(&self, names: &std::collections::HashMap<i64, String>) -> Vec<CategoryMetrics> {
        let p = self.params();
        if !p.use_cats {
            return Vec::new();
        }
        let max_dets = p.max_det();
        let spec = |ap, iou_thr| MetricSpec { ap, iou_thr, area: "all", max_dets };
        self.category_ids()
            .iter()
            .enumerate()
            .map(|(k, &id)| CategoryMetrics {
                id,
                name: names.get(&id).cloned().unwrap_or_else(|| id.to_string()),
                ap: self.metric_for(&spec(true, None), Some(k)),
                ap50: self.metric_for(&spec(true, Some(0.5)), Some(k)),
                ap75: self.metric_for(&spec(true, Some(0.75)), Some(k)),
                ar100: self.metric_for(&spec(false, None), Some(k)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_shape() {
        // Below 8 values: plain left-to-right.
        assert_eq!(numpy_sum(&[0.1, 0.2, 0.3]), (0.1 + 0.2) + 0.3);
        // 8..=128: eight interleaved accumulators.
        let x: Vec<f64> = (0..20).map(|i| 0.1 * i as f64).collect();
        let mut r = [0.0; 8];
        r.copy_from_slice(&x[..8]);
        for j in 0..8 {
            r[j] += x[8 + j];
        }
        let expected =
            ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + x[16] + x[17] + x[18] + x[19];
        assert_eq!(numpy_sum(&x), expected);
        assert_eq!(mean_of_valid(&[-1.0, -1.0]), -1.0);
        assert_eq!(mean_of_valid(&[-1.0, 0.5, 0.25]), 0.375);
    }
}
