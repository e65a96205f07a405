//! torchvision's `BoxCoder` with weights (10, 10, 5, 5): anchor-relative box encoding.

/// `log(1000 / 16)`: torchvision's clamp of the decoded log-width/height.
pub const BBOX_XFORM_CLIP: f32 = 4.135_166_6;

/// Encodes and decodes boxes relative to anchors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxCoder {
    /// (wx, wy, ww, wh).
    pub weights: [f32; 4],
}

impl Default for BoxCoder {
    fn default() -> Self {
        Self { weights: [10.0, 10.0, 5.0, 5.0] }
    }
}

impl BoxCoder {
    /// Decodes `(dx, dy, dw, dh)` against `anchor` (`[x1, y1, x2, y2]`), as `decode_single`.
    pub fn decode(&self, rel: [f32; 4], anchor: [f32; 4]) -> [f32; 4] {
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

    /// Encodes a ground-truth box against an anchor, as `encode_boxes`.
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
        [wx * (gcx - acx) / aw, wy * (gcy - acy) / ah, ww * (gw / aw).ln(), wh * (gh / ah).ln()]
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
    fn decode_clamps_huge_sizes() {
        let c = BoxCoder::default();
        let b = c.decode([0.0, 0.0, 1e6, 1e6], [0.0, 0.0, 16.0, 16.0]);
        assert!((b[2] - b[0] - 1000.0).abs() < 0.1, "{b:?}");
    }
}
