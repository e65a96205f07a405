//! Non-maximum suppression with torchvision's rules: continuous coordinates (no +1), a box is
//! suppressed when its IoU with a kept box is strictly above the threshold, candidates visited in
//! descending score order (stable), computed in f32 in torchvision's order.

/// Indices of the boxes kept by greedy NMS, in descending score order.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Stable sort, descending; NaN scores go last instead of panicking.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let areas: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = boxes[i];
        for &j in &order[oi + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            if inter / (areas[i] + areas[j] - inter) > iou_threshold {
                suppressed[j] = true;
            }
        }
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
    let mut keep: Vec<usize> = Vec::new();
    for idx in by_class.values() {
        let b: Vec<[f32; 4]> = idx.iter().map(|&i| boxes[i]).collect();
        let s: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
        keep.extend(nms(&b, &s, iou_threshold).into_iter().map(|k| idx[k]));
    }
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
