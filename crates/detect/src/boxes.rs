//! Box geometry shared by training's anchor matching and the anchor-fit report.

/// torchvision's `box_iou` for one pair of `[x1, y1, x2, y2]` boxes, in f32 in its order.
pub fn box_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / (area_a + area_b - inter)
}

#[cfg(test)]
mod tests {
    use super::box_iou;

    #[test]
    fn overlap_touching_and_identical_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(box_iou(&a, &a), 1.0);
        assert_eq!(box_iou(&a, &[5.0, 0.0, 15.0, 10.0]), 50.0 / 150.0);
        assert_eq!(box_iou(&a, &[10.0, 0.0, 20.0, 10.0]), 0.0);
    }
}
