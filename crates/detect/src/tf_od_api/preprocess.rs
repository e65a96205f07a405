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
///
/// TF interpolates `top = tl + (tr - tl) * lx` and `bottom = bl + (br - bl) * lx`, then
/// `top + (bottom - top) * ly`: the horizontal terms depend on the source row only, so each
/// needed source row is interpolated once (for every output column and channel) and reused by
/// the output rows that read it, with the same f32 operations.
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
    let scale: [f32; 3] = std::array::from_fn(|c| (1.0 / (255.0 * std[c] as f64)) as f32);
    let shift: [f32; 3] = std::array::from_fn(|c| (mean[c] as f64 / std[c] as f64) as f32);
    // Source row -> its horizontal interpolation, channel-planar (`3 x out_w`); two are live.
    let interpolate = |y: usize, dst: &mut [f32]| {
        let row = &rgb[y * width * 3..(y + 1) * width * 3];
        for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let (l, r) = (row[x0 * 3 + c] as f32, row[x1 * 3 + c] as f32);
                dst[c * out_w + ox] = l + (r - l) * lx;
            }
        }
    };
    let (mut top, mut bottom) = (vec![0f32; 3 * out_w], vec![0f32; 3 * out_w]);
    let (mut top_row, mut bottom_row) = (usize::MAX, usize::MAX);
    for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
        if y0 != top_row {
            if y0 == bottom_row {
                std::mem::swap(&mut top, &mut bottom);
                bottom_row = usize::MAX;
            } else {
                interpolate(y0, &mut top);
            }
            top_row = y0;
        }
        if y1 != bottom_row {
            interpolate(y1, &mut bottom);
            bottom_row = y1;
        }
        for c in 0..3 {
            let (t, b) = (&top[c * out_w..(c + 1) * out_w], &bottom[c * out_w..(c + 1) * out_w]);
            let dst = &mut out[c * plane + oy * out_w..][..out_w];
            for ((d, &t), &b) in dst.iter_mut().zip(t).zip(b) {
                *d = scale[c] * (t + (b - t) * ly) - shift[c];
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

    /// The row-cached form equals TF's formula evaluated per output pixel, bit for bit.
    #[test]
    fn equals_the_per_pixel_formula() {
        let (w, h) = (23, 17);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        for (oh, ow) in [(9, 40), (17, 23), (50, 5), (1, 1)] {
            let got = preprocess_rgb8(&rgb, w, h, oh, ow, [0.5; 3], [0.5; 3]);
            let (ys, xs) = (legacy_taps(oh, h), legacy_taps(ow, w));
            let px = |y: usize, x: usize, c: usize| rgb[(y * w + x) * 3 + c] as f32;
            for c in 0..3 {
                for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
                    for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                        let top = px(y0, x0, c) + (px(y0, x1, c) - px(y0, x0, c)) * lx;
                        let bottom = px(y1, x0, c) + (px(y1, x1, c) - px(y1, x0, c)) * lx;
                        let want = 0.007_843_138_f32 * (top + (bottom - top) * ly) - 1.0;
                        assert_eq!(
                            got[c * oh * ow + oy * ow + ox].to_bits(),
                            want.to_bits(),
                            "{oh}x{ow} c{c} ({oy}, {ox})"
                        );
                    }
                }
            }
        }
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
