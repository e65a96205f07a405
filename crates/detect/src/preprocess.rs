//! Image preprocessing as torchvision's `GeneralizedRCNNTransform` does it for SSD: normalise,
//! then resize to the fixed input size with `F.interpolate(mode="bilinear", align_corners=False)`
//! (no antialiasing, aspect ratio not kept).

/// An image as planar f32 RGB (`3 x height x width`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanarImage {
    /// `3 * height * width` values, channel-major.
    pub data: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl PlanarImage {
    /// From interleaved 8-bit RGB pixels, scaled to [0, 1].
    pub fn from_rgb8(rgb: &[u8], width: usize, height: usize) -> Self {
        let plane = width * height;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate().take(plane) {
            for c in 0..3 {
                data[c * plane + i] = px[c] as f32 / 255.0;
            }
        }
        Self { data, height, width }
    }
}

/// `(x - mean) / std` per channel, in place.
pub fn normalize(img: &mut PlanarImage, mean: [f32; 3], std: [f32; 3]) {
    let plane = img.height * img.width;
    for c in 0..3 {
        for v in &mut img.data[c * plane..(c + 1) * plane] {
            *v = (*v - mean[c]) / std[c];
        }
    }
}

/// Source index and weights of one output coordinate, as PyTorch's `area_pixel_compute_source_index`
/// with `align_corners=False` and the CPU kernel's clamping.
fn linear_taps(out_len: usize, in_len: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(in_len - 1);
            let i1 = if i0 < in_len - 1 { i0 + 1 } else { i0 };
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// Bilinear resize of every channel plane (PyTorch `align_corners=False`, no antialias).
pub fn resize_bilinear(img: &PlanarImage, out_h: usize, out_w: usize) -> PlanarImage {
    let (h, w) = (img.height, img.width);
    let ys = linear_taps(out_h, h);
    let xs = linear_taps(out_w, w);
    let mut data = vec![0f32; 3 * out_h * out_w];
    for c in 0..3 {
        let src = &img.data[c * h * w..(c + 1) * h * w];
        let dst = &mut data[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (oy, &(y0, y1, wy0, wy1)) in ys.iter().enumerate() {
            let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
            for (ox, &(x0, x1, wx0, wx1)) in xs.iter().enumerate() {
                dst[oy * out_w + ox] = wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
            }
        }
    }
    PlanarImage { data, height: out_h, width: out_w }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resize_keeps_values() {
        let img = PlanarImage { data: (0..3 * 4 * 5).map(|v| v as f32).collect(), height: 4, width: 5 };
        assert_eq!(resize_bilinear(&img, 4, 5), img);
    }

    #[test]
    fn upsampling_interpolates_between_pixels() {
        // 1x2 -> 1x4 with align_corners=False: src = 0.5*(d+0.5)-0.5 -> 0 (clamped), 0.25, 0.75, 1.25->clamped to last
        let img = PlanarImage { data: vec![0.0, 4.0, 0.0, 4.0, 0.0, 4.0], height: 1, width: 2 };
        let out = resize_bilinear(&img, 1, 4);
        assert_eq!(&out.data[..4], &[0.0, 1.0, 3.0, 4.0]);
    }
}
