//! The TF Object Detection API's image preprocessing as its frozen graphs run it: the `uint8`
//! image cast to float (0..255), `ResizeBilinear` to the fixed input size with TF1's legacy
//! pixel mapping (`align_corners=False`, `half_pixel_centers=False`: source = destination x
//! in/out), then the feature extractor's `(2 / 255) x - 1` (here `x / (255 std) - mean / std`).

/// Source rows (or columns) and weight of one output coordinate, as TF's
/// `compute_interpolation_weights` with the legacy scaler.
fn legacy_taps(out_len: usize, in_len: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|i| {
            let src = i as f32 * scale;
            let floor = src.floor();
            let lower = floor as usize;
            let upper = (src.ceil() as usize).min(in_len - 1);
            (lower.min(in_len - 1), upper, src - floor)
        })
        .collect()
}

/// Resizes interleaved 8-bit RGB (`width x height`) to `out_h x out_w` and maps values to the
/// network's range, returning planar `3 x out_h x out_w` f32. Per channel the output is
/// `resized * (1 / (255 std)) - mean / std` with both factors rounded to f32, which for
/// mean = std = 0.5 is the graph's `Mul(0.007843138, x)` then `Sub(1.0)`.
pub fn preprocess_rgb8(
    rgb: &[u8],
    width: usize,
    height: usize,
    out_h: usize,
    out_w: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> Vec<f32> {
    let ys = legacy_taps(out_h, height);
    let xs = legacy_taps(out_w, width);
    let plane = out_h * out_w;
    let mut out = vec![0f32; 3 * plane];
    let px = |y: usize, x: usize, c: usize| rgb[(y * width + x) * 3 + c] as f32;
    for c in 0..3 {
        let scale = (1.0 / (255.0 * std[c] as f64)) as f32;
        let shift = (mean[c] as f64 / std[c] as f64) as f32;
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                let (tl, tr) = (px(y0, x0, c), px(y0, x1, c));
                let (bl, br) = (px(y1, x0, c), px(y1, x1, c));
                let top = tl + (tr - tl) * lx;
                let bottom = bl + (br - bl) * lx;
                let v = top + (bottom - top) * ly;
                dst[oy * out_w + ox] = scale * v - shift;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_mapping_samples_from_the_top_left() {
        // 4 -> 2: sources 0 and 2 (no half-pixel shift), weights 0.
        assert_eq!(legacy_taps(2, 4), vec![(0, 0, 0.0), (2, 2, 0.0)]);
        // 2 -> 4: sources 0, 0.5, 1, 1.5 (the last clamps its upper neighbour).
        assert_eq!(legacy_taps(4, 2), vec![(0, 0, 0.0), (0, 1, 0.5), (1, 1, 0.0), (1, 1, 0.5)]);
    }

    #[test]
    fn maps_pixels_to_minus_one_one() {
        let rgb = [0u8, 255, 128, 255, 0, 128];
        let out = preprocess_rgb8(&rgb, 2, 1, 1, 4, [0.5; 3], [0.5; 3]);
        let scale = 0.007_843_138_f32;
        // Red: 0, 127.5, 255, 255 (the last column repeats the right pixel).
        assert_eq!(&out[..4], &[-1.0, scale * 127.5 - 1.0, scale * 255.0 - 1.0, scale * 255.0 - 1.0]);
        assert_eq!(out[8], scale * 128.0 - 1.0);
    }
}
