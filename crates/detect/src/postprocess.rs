//! From head outputs to detections, as torchvision's SSD `postprocess_detections` and
//! `GeneralizedRCNNTransform.postprocess`: softmax, decode, clip, per-class threshold and top-k,
//! class-aware NMS, `detections_per_img`, and rescaling to the original image.

use crate::box_coder::BoxCoder;
use crate::config::PostprocessConfig;
use crate::nms::batched_nms;

/// Detections of one image, sorted by descending score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detections {
    /// `[x1, y1, x2, y2]` in pixels.
    pub boxes: Vec<[f32; 4]>,
    /// Class probabilities.
    pub scores: Vec<f32>,
    /// Class indices (1.., 0 is the background).
    pub labels: Vec<i64>,
}

impl Detections {
    /// Number of detections.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when nothing was detected.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Rescales boxes from the network input size to the original image size (`[height, width]`),
    /// per axis, as torchvision's `resize_boxes`.
    pub fn rescale(&mut self, from: [usize; 2], to: [usize; 2]) {
        let ry = to[0] as f32 / from[0] as f32;
        let rx = to[1] as f32 / from[1] as f32;
        for b in &mut self.boxes {
            *b = [b[0] * rx, b[1] * ry, b[2] * rx, b[3] * ry];
        }
    }

    /// Each detection as COCO's results fields: `(category_id, [x, y, width, height], score)`
    /// (the label is the category id, as in torchvision's COCO models).
    pub fn coco_boxes(&self) -> impl Iterator<Item = (i64, [f64; 4], f64)> + '_ {
        self.boxes.iter().zip(&self.scores).zip(&self.labels).map(|((b, &score), &label)| {
            (label, [b[0] as f64, b[1] as f64, (b[2] - b[0]) as f64, (b[3] - b[1]) as f64], score as f64)
        })
    }

    /// Keeps the detections for which `keep(label, score)` holds, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(i64, f32) -> bool) {
        let keep: Vec<usize> = (0..self.len()).filter(|&i| keep(self.labels[i], self.scores[i])).collect();
        self.boxes = keep.iter().map(|&i| self.boxes[i]).collect();
        self.scores = keep.iter().map(|&i| self.scores[i]).collect();
        self.labels = keep.iter().map(|&i| self.labels[i]).collect();
    }
}

/// Softmax over one anchor's logits (f32, max-subtracted).
pub(crate) fn softmax(logits: &[f32], out: &mut [f32]) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = (l - m).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Post-processes one image: `cls_logits` is `anchors x classes`, `regression` `anchors x 4`,
/// `image_size` the network input `[height, width]` (boxes are clipped to it).
pub fn postprocess_image(
    cls_logits: &[f32],
    regression: &[f32],
    anchors: &[[f32; 4]],
    num_classes: usize,
    image_size: [usize; 2],
    cfg: &PostprocessConfig,
    coder: &BoxCoder,
) -> Detections {
    let n = anchors.len();
    let mut scores = vec![0f32; n * num_classes];
    for a in 0..n {
        softmax(
            &cls_logits[a * num_classes..(a + 1) * num_classes],
            &mut scores[a * num_classes..(a + 1) * num_classes],
        );
    }
    let (h, w) = (image_size[0] as f32, image_size[1] as f32);
    let boxes: Vec<[f32; 4]> = (0..n)
        .map(|a| {
            let r = [regression[4 * a], regression[4 * a + 1], regression[4 * a + 2], regression[4 * a + 3]];
            let b = coder.decode(r, anchors[a]);
            [b[0].clamp(0.0, w), b[1].clamp(0.0, h), b[2].clamp(0.0, w), b[3].clamp(0.0, h)]
        })
        .collect();
    let mut cand_boxes = Vec::new();
    let mut cand_scores = Vec::new();
    let mut cand_labels = Vec::new();
    for label in 1..num_classes {
        if cfg.classes.is_some_and(|c| !c.contains(label)) {
            continue;
        }
        let mut idx: Vec<usize> = (0..n).filter(|&a| scores[a * num_classes + label] > cfg.score_thresh).collect();
        // top-k by score; ties keep anchor order.
        idx.sort_by(|&x, &y| scores[y * num_classes + label].total_cmp(&scores[x * num_classes + label]));
        idx.truncate(cfg.topk_candidates);
        for a in idx {
            cand_boxes.push(boxes[a]);
            cand_scores.push(scores[a * num_classes + label]);
            cand_labels.push(label as i64);
        }
    }
    let mut keep = batched_nms(&cand_boxes, &cand_scores, &cand_labels, cfg.nms_thresh);
    keep.truncate(cfg.detections_per_img);
    Detections {
        boxes: keep.iter().map(|&i| cand_boxes[i]).collect(),
        scores: keep.iter().map(|&i| cand_scores[i]).collect(),
        labels: keep.iter().map(|&i| cand_labels[i]).collect(),
    }
}
