//! Non-maximum suppression with torchvision's rules: continuous coordinates (no +1), a box is
//! suppressed when its IoU with a kept box is strictly above the threshold, candidates visited in
//! descending score order (stable), computed in f32 in torchvision's order.

/// Suppresses every box after `i` whose IoU with box `i` is above `thr`. Boxes are in score
/// order as structure-of-arrays so that the loop vectorises; the IoU is computed exactly as
/// torchvision's kernel computes it (f32, `inter / (area_i + area_j - inter)`), including for
/// boxes already suppressed, which keeps the loop branch-free.
#[inline(always)]
fn suppress_after(i: usize, c: &Columns, thr: f32, suppressed: &mut [u8]) {
    let (ix1, iy1, ix2, iy2, ia) = (c.x1[i], c.y1[i], c.x2[i], c.y2[i], c.area[i]);
    let n = c.x1.len();
    let range = i + 1..n;
    for ((((((s, &x1), &y1), &x2), &y2), &a), _) in suppressed[range.clone()]
        .iter_mut()
        .zip(&c.x1[range.clone()])
        .zip(&c.y1[range.clone()])
        .zip(&c.x2[range.clone()])
        .zip(&c.y2[range.clone()])
        .zip(&c.area[range.clone()])
        .zip(range)
    {
        let w = (ix2.min(x2) - ix1.max(x1)).max(0.0);
        let h = (iy2.min(y2) - iy1.max(y1)).max(0.0);
        let inter = w * h;
        *s |= (inter / (ia + a - inter) > thr) as u8;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn suppress_after_avx2(i: usize, c: &Columns, thr: f32, suppressed: &mut [u8]) {
    suppress_after(i, c, thr, suppressed)
}

/// Box corners and areas in score order.
struct Columns {
    x1: Vec<f32>,
    y1: Vec<f32>,
    x2: Vec<f32>,
    y2: Vec<f32>,
    area: Vec<f32>,
}

/// Indices of the boxes kept by greedy NMS, in descending score order.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Stable sort, descending; NaN scores go last instead of panicking.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let col = |f: fn(&[f32; 4]) -> f32| order.iter().map(|&i| f(&boxes[i])).collect::<Vec<f32>>();
    let c = Columns {
        x1: col(|b| b[0]),
        y1: col(|b| b[1]),
        x2: col(|b| b[2]),
        y2: col(|b| b[3]),
        area: col(|b| (b[2] - b[0]) * (b[3] - b[1])),
    };
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let mut suppressed = vec![0u8; order.len()];
    let mut keep = Vec::new();
    for i in 0..order.len() {
        if suppressed[i] != 0 {
            continue;
        }
        keep.push(order[i]);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe { suppress_after_avx2(i, &c, iou_threshold, &mut suppressed) };
            continue;
        }
        suppress_after(i, &c, iou_threshold, &mut suppressed);
    }
    keep
}

/// Class-aware NMS (torchvision's `batched_nms`): boxes of different classes never suppress each
/// other. Returns kept indices sorted by descending score (ties by index).
pub fn batched_nms(boxes: &[[f32; 4]], scores: &[f32], classes: &[i64], iou_threshold: f32) -> Vec<usize> {
    let mut by_class: std::collections::BTreeMap<i64, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, &c) in classes.iter().enumerate() {
        by_class.entry(c).or_default().push(i);
    }
    use rayon::prelude::*;
    let groups: Vec<&Vec<usize>> = by_class.values().collect();
    let mut keep: Vec<usize> = groups
        .par_iter()
        .flat_map_iter(|idx| {
            let b: Vec<[f32; 4]> = idx.iter().map(|&i| boxes[i]).collect();
            let s: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
            nms(&b, &s, iou_threshold).into_iter().map(|k| idx[k])
        })
        .collect();
    keep.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force oracle: a box survives if no higher-scored surviving box of its class
    /// overlaps it above the threshold (scores distinct).
    fn oracle(boxes: &[[f32; 4]], scores: &[f32], classes: &[i64], thr: f32) -> Vec<usize> {
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut kept: Vec<usize> = Vec::new();
        for &i in &order {
            let ok = kept.iter().all(|&k| {
                classes[k] != classes[i] || {
                    let (a, b) = (boxes[k], boxes[i]);
                    let inter = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
                    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
                    inter / union <= thr
                }
            });
            if ok {
                kept.push(i);
            }
        }
        kept
    }

    #[test]
    fn matches_brute_force_on_random_boxes() {
        let mut state = 12345u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        for _ in 0..20 {
            let n = 300;
            let boxes: Vec<[f32; 4]> = (0..n)
                .map(|_| {
                    let (x, y) = (rnd() * 100.0, rnd() * 100.0);
                    [x, y, x + 1.0 + rnd() * 40.0, y + 1.0 + rnd() * 40.0]
                })
                .collect();
            let scores: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let classes: Vec<i64> = (0..n).map(|_| (rnd() * 4.0) as i64).collect();
            assert_eq!(batched_nms(&boxes, &scores, &classes, 0.5), oracle(&boxes, &scores, &classes, 0.5));
        }
    }

    #[test]
    fn equal_iou_is_not_suppressed() {
        // IoU exactly 0.5: torchvision suppresses only when IoU > threshold.
        let boxes = [[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]];
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.5), vec![0, 1]);
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.49), vec![0]);
    }
}
