//! Box overlap exactly as pycocotools' C `bbIou` computes it.

/// IoU of a detection box and a GT box, both `[x, y, w, h]`, as `maskApi.c:bbIou`: no `+1`,
/// zero when either overlap extent is `<= 0`, and for a crowd GT the intersection over the
/// detection's area. Areas are `w * h` of the boxes (not the annotation's `area`).
#[inline]
pub fn bbox_iou(dt: &[f64; 4], gt: &[f64; 4], gt_is_crowd: bool) -> f64 {
    // Same operation order as the C code so that results are bit-identical.
    let w = (dt[2] + dt[0]).min(gt[2] + gt[0]) - dt[0].max(gt[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (dt[3] + dt[1]).min(gt[3] + gt[1]) - dt[1].max(gt[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let da = dt[2] * dt[3];
    let union = if gt_is_crowd { da } else { da + gt[2] * gt[3] - inter };
    inter / union
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_cases() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(bbox_iou(&a, &a, false), 1.0);
        assert_eq!(bbox_iou(&[5.0, 0.0, 10.0, 10.0], &a, false), 50.0 / 150.0);
        // Touching boxes do not overlap.
        assert_eq!(bbox_iou(&[10.0, 0.0, 10.0, 10.0], &a, false), 0.0);
        // Crowd: intersection over the detection area.
        assert_eq!(bbox_iou(&[5.0, 5.0, 10.0, 10.0], &[0.0, 0.0, 100.0, 100.0], true), 1.0);
        assert_eq!(bbox_iou(&[-5.0, 0.0, 10.0, 10.0], &a, true), 0.5);
        // Negative extents never overlap anything.
        assert_eq!(bbox_iou(&[8.0, 0.0, -5.0, 10.0], &a, false), 0.0);
        assert_eq!(bbox_iou(&a, &[8.0, 0.0, -5.0, 10.0], true), 0.0);
    }
}
