//! Anchor-relative box encoding with weights (10, 10, 5, 5): torchvision's `BoxCoder`, whose
//! codes are `(dx, dy, dw, dh)`, or the TF Object Detection API's `FasterRcnnBoxCoder`, whose
//! codes are the same numbers in the order `(ty, tx, th, tw)`.

use crate::config::Family;

/// The order of the four numbers of a box code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodeOrder {
    /// torchvision: `(dx, dy, dw, dh)`.
    #[default]
    Xywh,
    /// TensorFlow: `(ty, tx, th, tw)`.
    Yxhw,
}

/// `log(1000 / 16)`: torchvision's clamp of the decoded log-width/height.
pub const BBOX_XFORM_CLIP: f32 = 4.135_166_6;

/// Encodes and decodes boxes relative to anchors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxCoder {
    /// (wx, wy, ww, wh).
    pub weights: [f32; 4],
    /// Order of the code's numbers.
    pub order: CodeOrder,
}

impl Default for BoxCoder {
    fn default() -> Self {
        Self { weights: [10.0, 10.0, 5.0, 5.0], order: CodeOrder::Xywh }
    }
}

impl BoxCoder {
    /// The coder of a detector family (TF decodes at inference in normalised coordinates, see
    /// [`crate::tf_od_api::postprocess`]; the codes are the same numbers, since they are ratios).
    pub fn for_family(family: Family) -> Self {
        let order = match family {
            Family::Torchvision => CodeOrder::Xywh,
            Family::TfOdApi => CodeOrder::Yxhw,
        };
        Self { order, ..Self::default() }
    }

    fn swap_to_xywh(self, code: [f32; 4]) -> [f32; 4] {
        match self.order {
            CodeOrder::Xywh => code,
            CodeOrder::Yxhw => [code[1], code[0], code[3], code[2]],
        }
    }

    /// Decodes a code against `anchor` (`[x1, y1, x2, y2]`), as torchvision's `decode_single`.
    pub fn decode(&self, rel: [f32; 4], anchor: [f32; 4]) -> [f32; 4] {
        let rel = self.swap_to_xywh(rel);
        let w = anchor[2] - anchor[0];
        let h = anchor[3] - anchor[1];
        let cx = anchor[0] + 0.5 * w;
        let cy = anchor[1] + 0.5 * h;
        let [wx, wy, ww, wh] = self.weights;
        let dx = rel[0] / wx;
        let dy = rel[1] / wy;
        let dw = (rel[2] / ww).min(BBOX_XFORM_CLIP);
        let dh = (rel[3] / wh).min(BBOX_XFORM_CLIP);
        let pcx = dx * w + cx;
        let pcy = dy * h + cy;
        let pw = dw.exp() * w;
        let ph = dh.exp() * h;
        let (hw, hh) = (0.5 * pw, 0.5 * ph);
        [pcx - hw, pcy - hh, pcx + hw, pcy + hh]
    }

    /// Encodes a ground-truth box against an anchor, as `encode_boxes`, in the coder's order.
    pub fn encode(&self, gt: [f32; 4], anchor: [f32; 4]) -> [f32; 4] {
        let aw = anchor[2] - anchor[0];
        let ah = anchor[3] - anchor[1];
        let acx = anchor[0] + 0.5 * aw;
        let acy = anchor[1] + 0.5 * ah;
        let gw = gt[2] - gt[0];
        let gh = gt[3] - gt[1];
        let gcx = gt[0] + 0.5 * gw;
        let gcy = gt[1] + 0.5 * gh;
        let [wx, wy, ww, wh] = self.weights;
        // The Xywh -> Yxhw swap is its own inverse.
        self.swap_to_xywh([wx * (gcx - acx) / aw, wy * (gcy - acy) / ah, ww * (gw / aw).ln(), wh * (gh / ah).ln()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_round_trips() {
        let c = BoxCoder::default();
        let anchor = [10.0, 20.0, 50.0, 60.0];
        let gt = [12.0, 18.0, 70.0, 65.0];
        let back = c.decode(c.encode(gt, anchor), anchor);
        for (a, b) in back.iter().zip(gt) {
            assert!((a - b).abs() < 1e-4, "{back:?}");
        }
    }

    #[test]
    fn tf_order_swaps_x_and_y() {
        let (tv, tf) = (BoxCoder::default(), BoxCoder::for_family(Family::TfOdApi));
        let anchor = [10.0, 20.0, 50.0, 60.0];
        let gt = [12.0, 18.0, 70.0, 65.0];
        let (a, b) = (tv.encode(gt, anchor), tf.encode(gt, anchor));
        assert_eq!(b, [a[1], a[0], a[3], a[2]]);
        assert_eq!(tf.decode(b, anchor), tv.decode(a, anchor));
    }

    #[test]
    fn decode_clamps_huge_sizes() {
        let c = BoxCoder::default();
        let b = c.decode([0.0, 0.0, 1e6, 1e6], [0.0, 0.0, 16.0, 16.0]);
        assert!((b[2] - b[0] - 1000.0).abs() < 0.1, "{b:?}");
    }
}
