//! From head outputs to detections as a TF Object Detection API frozen graph computes them
//! (`ssd_meta_arch.postprocess` with `batch_multiclass_non_max_suppression`):
//! 1. decode `(ty, tx, th, tw) / (10, 10, 5, 5)` against the normalised anchors
//!    (`FasterRcnnBoxCoder`, no clamping of the size terms);
//! 2. sigmoid scores, background column dropped;
//! 3. per class, `NonMaxSuppressionV3`: candidates scoring above the score threshold, visited by
//!    descending score (ties: lower anchor first), a box dropped when its IoU with a kept box of
//!    the class is above the IoU threshold, at most `max_per_class` kept;
//! 4. all classes' boxes concatenated in class order and sorted by score (stable, as `TopKV2`);
//! 5. boxes clipped to the image window `[0, 1]` and those left with no area dropped
//!    (`ClipToWindow` with `filter_nonoverlapping`);
//! 6. the first `detections_per_img` kept.
//!
//! Boxes come out in network-input pixels `[x1, y1, x2, y2]`, labels as class indices (1..),
//! which is TF's `detection_classes` (`label_id_offset` 1).

use crate::config::PostprocessConfig;
use crate::postprocess::Detections;

/// The box code's scale factors `(y, x, h, w)`.
const SCALE: [f32; 4] = [10.0, 10.0, 5.0, 5.0];

/// Decodes `(ty, tx, th, tw)` against `anchor = [ymin, xmin, ymax, xmax]` (normalised) into a
/// normalised `[ymin, xmin, ymax, xmax]`, in the frozen graph's order of f32 operations.
pub fn decode(code: [f32; 4], anchor: [f32; 4]) -> [f32; 4] {
    let wa = anchor[3] - anchor[1];
    let ha = anchor[2] - anchor[0];
    let yca = anchor[0] + ha / 2.0;
    let xca = anchor[1] + wa / 2.0;
    let ty = code[0] / SCALE[0];
    let tx = code[1] / SCALE[1];
    let th = code[2] / SCALE[2];
    let tw = code[3] / SCALE[3];
    let w = tw.exp() * wa;
    let h = th.exp() * ha;
    let yc = ty * ha + yca;
    let xc = tx * wa + xca;
    [yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]
}

/// Encodes a normalised `[ymin, xmin, ymax, xmax]` box against an anchor (the inverse of
/// [`decode`], with the `1e-8` TF adds to sizes before dividing and taking logs).
pub fn encode(gt: [f32; 4], anchor: [f32; 4]) -> [f32; 4] {
    const EPS: f32 = 1e-8;
    let ha = anchor[2] - anchor[0] + EPS;
    let wa = anchor[3] - anchor[1] + EPS;
    let yca = anchor[0] + (anchor[2] - anchor[0]) / 2.0;
    let xca = anchor[1] + (anchor[3] - anchor[1]) / 2.0;
    let h = gt[2] - gt[0] + EPS;
    let w = gt[3] - gt[1] + EPS;
    let yc = gt[0] + (gt[2] - gt[0]) / 2.0;
    let xc = gt[1] + (gt[3] - gt[1]) / 2.0;
    [SCALE[0] * (yc - yca) / ha, SCALE[1] * (xc - xca) / wa, SCALE[2] * (h / ha).ln(), SCALE[3] * (w / wa).ln()]
}

/// TF's `IOU` of `NonMaxSuppressionV3` for `[y1, x1, y2, x2]` boxes (corners in any order).
fn tf_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ay0, ax0, ay1, ax1) = (a[0].min(a[2]), a[1].min(a[3]), a[0].max(a[2]), a[1].max(a[3]));
    let (by0, bx0, by1, bx1) = (b[0].min(b[2]), b[1].min(b[3]), b[0].max(b[2]), b[1].max(b[3]));
    let area_a = (ay1 - ay0) * (ax1 - ax0);
    let area_b = (by1 - by0) * (bx1 - bx0);
    if area_a <= 0.0 || area_b <= 0.0 {
        return 0.0;
    }
    let inter = (ay1.min(by1) - ay0.max(by0)).max(0.0) * (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
    inter / (area_a + area_b - inter)
}

/// `NonMaxSuppressionV3`: indices of the kept boxes in selection order (descending score, ties by
/// lower index). A NaN score never passes the threshold.
pub fn non_max_suppression(
    boxes: &[[f32; 4]],
    scores: &[f32],
    max_output: usize,
    iou_threshold: f32,
    score_threshold: f32,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > score_threshold).collect();
    // Stable: equal scores keep the lower index first, as TF's priority queue orders them.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut selected: Vec<usize> = Vec::new();
    for i in order {
        if selected.len() >= max_output {
            break;
        }
        // TF compares with the most recent selections first; for hard NMS the order only
        // changes when it stops, not the outcome.
        if selected.iter().rev().all(|&s| tf_iou(&boxes[i], &boxes[s]) <= iou_threshold) {
            selected.push(i);
        }
    }
    selected
}

/// Logistic function as `1 / (1 + exp(-x))`.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Post-processes one image. `cls_logits` is `anchors x num_classes` (column 0 the background),
/// `codes` `anchors x 4` in TF order, `anchors` normalised `[ymin, xmin, ymax, xmax]`,
/// `input_size` the network input `[height, width]`.
pub fn postprocess_image(
    cls_logits: &[f32],
    codes: &[f32],
    anchors: &[[f32; 4]],
    num_classes: usize,
    input_size: [usize; 2],
    cfg: &PostprocessConfig,
) -> Detections {
    let n = anchors.len();
    let boxes: Vec<[f32; 4]> = (0..n)
        .map(|a| decode([codes[4 * a], codes[4 * a + 1], codes[4 * a + 2], codes[4 * a + 3]], anchors[a]))
        .collect();
    let per_class = cfg.topk_candidates.min(n);
    // (box, score, label) of every class's NMS survivors, class by class.
    let mut found: Vec<([f32; 4], f32, i64)> = Vec::new();
    let mut scores = vec![0f32; n];
    for label in 1..num_classes {
        if cfg.classes.is_some_and(|c| !c.contains(label)) {
            continue;
        }
        for (a, s) in scores.iter_mut().enumerate() {
            *s = sigmoid(cls_logits[a * num_classes + label]);
        }
        for i in non_max_suppression(&boxes, &scores, per_class, cfg.nms_thresh, cfg.score_thresh) {
            found.push((boxes[i], scores[i], label as i64));
        }
    }
    // Stable sort by descending score (TopKV2 keeps the lower index first on ties).
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (h, w) = (input_size[0] as f32, input_size[1] as f32);
    let mut out = Detections::default();
    for (b, score, label) in found {
        if out.len() == cfg.detections_per_img {
            break;
        }
        let clip = |v: f32| v.clamp(0.0, 1.0);
        let [y0, x0, y1, x1] = [clip(b[0]), clip(b[1]), clip(b[2]), clip(b[3])];
        // TF keeps `area > 0`, which also drops a NaN box.
        let area = (y1 - y0) * (x1 - x0);
        if area.is_nan() || area <= 0.0 {
            continue;
        }
        out.boxes.push([x0 * w, y0 * h, x1 * w, y1 * h]);
        out.scores.push(score);
        out.labels.push(label);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_round_trips() {
        let anchor = [0.1, 0.2, 0.5, 0.4];
        let gt = [0.12, 0.18, 0.6, 0.45];
        let back = decode(encode(gt, anchor), anchor);
        for (a, b) in back.iter().zip(gt) {
            assert!((a - b).abs() < 1e-5, "{back:?}");
        }
    }

    #[test]
    fn nms_keeps_ties_in_index_order_and_suppresses_above_the_threshold() {
        let boxes = [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.5, 1.0, 1.5], [2.0, 2.0, 3.0, 3.0]];
        let scores = [0.9, 0.9, 0.8, 0.7];
        // Box 1 duplicates box 0 (IoU 1); box 2 overlaps box 0 with IoU 1/3.
        assert_eq!(non_max_suppression(&boxes, &scores, 10, 0.5, 0.0), vec![0, 2, 3]);
        assert_eq!(non_max_suppression(&boxes, &scores, 10, 1.0 / 3.0 - 1e-6, 0.0), vec![0, 3]);
        assert_eq!(non_max_suppression(&boxes, &scores, 2, 0.5, 0.0), vec![0, 2]);
        assert_eq!(non_max_suppression(&boxes, &scores, 10, 0.5, 0.8), vec![0]);
        // Zero-area boxes have IoU 0 with everything and are never suppressed.
        let flat = [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]];
        assert_eq!(non_max_suppression(&flat, &[0.5, 0.5], 10, 0.1, 0.0), vec![0, 1]);
    }

    #[test]
    fn detections_are_clipped_sorted_and_capped() {
        // Two anchors, three columns (background, a, b).
        let anchors = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]];
        let logits = [0.0, 2.0, -1.0, 0.0, 1.0, 3.0];
        // The second box is pushed out of the image to the bottom right.
        let codes = [0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 0.0, 0.0];
        let cfg = PostprocessConfig {
            score_thresh: 0.5,
            nms_thresh: 0.6,
            detections_per_img: 10,
            topk_candidates: 100,
            classes: None,
        };
        let d = postprocess_image(&logits, &codes, &anchors, 3, [300, 200], &cfg);
        assert_eq!(d.labels, vec![2, 1, 1]);
        assert!((d.scores[0] - sigmoid(3.0)).abs() < 1e-7);
        // Clipped to the window: y from 0.75 to 1.0, x from 0.75 to 1.0 of a 300x200 input.
        assert_eq!(d.boxes[0], [150.0, 225.0, 200.0, 300.0]);
        assert_eq!(d.boxes[1], [0.0, 0.0, 100.0, 150.0]);
        let capped = postprocess_image(
            &logits,
            &codes,
            &anchors,
            3,
            [300, 200],
            &PostprocessConfig { detections_per_img: 1, ..cfg },
        );
        assert_eq!(capped.labels, vec![2]);
    }
}
