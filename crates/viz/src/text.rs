//! Text with the embedded DejaVu Sans, drawn by imageproc.

use std::sync::OnceLock;

use ab_glyph::{FontRef, PxScale};
use image::{imageops, Rgb, RgbImage};

const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The embedded file is a valid TrueType font; a failure here is a build defect.
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("embedded DejaVu Sans is a valid font"))
}

/// Width and height in pixels of `s` at `size` px.
pub fn text_size(s: &str, size: f32) -> (u32, u32) {
    imageproc::drawing::text_size(PxScale::from(size), font(), s)
}

/// Draws `s` with its top-left corner at (x, y), anti-aliased, in `color`.
pub fn draw_text(img: &mut RgbImage, s: &str, x: f32, y: f32, size: f32, color: Rgb<u8>) {
    imageproc::drawing::draw_text_mut(img, color, x.round() as i32, y.round() as i32, PxScale::from(size), font(), s);
}

/// Draws `s` rotated 90° counter-clockwise (reading upwards, as a chart's y-axis label), its
/// bounding box's top-left corner at (x, y), over a `background` it is drawn on.
pub fn draw_text_vertical(img: &mut RgbImage, s: &str, x: f32, y: f32, size: f32, color: Rgb<u8>, background: Rgb<u8>) {
    let (w, h) = text_size(s, size);
    let mut label = RgbImage::from_pixel(w.max(1), h.max(1), background);
    draw_text(&mut label, s, 0.0, 0.0, size, color);
    imageops::overlay(img, &imageops::rotate270(&label), x.round() as i64, y.round() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_within_its_measured_box() {
        let mut img = RgbImage::from_pixel(200, 40, Rgb([255, 255, 255]));
        let (w, h) = text_size("person 0.87", 16.0);
        assert!(w > 60 && w < 150 && h >= 16, "{w}x{h}");
        draw_text(&mut img, "person 0.87", 5.0, 5.0, 16.0, Rgb([0, 0, 0]));
        let dark: Vec<(u32, u32)> =
            img.enumerate_pixels().filter(|(_, _, p)| p.0[0] < 128).map(|(x, y, _)| (x, y)).collect();
        assert!(dark.len() > 50);
        assert!(dark.iter().all(|&(x, y)| x >= 5 && x <= 5 + w && y >= 5 && y <= 5 + h));
    }

    #[test]
    fn vertical_text_is_taller_than_wide() {
        let mut img = RgbImage::from_pixel(40, 200, Rgb([255, 255, 255]));
        draw_text_vertical(&mut img, "Precision", 5.0, 10.0, 16.0, Rgb([0, 0, 0]), Rgb([255, 255, 255]));
        let dark: Vec<(u32, u32)> =
            img.enumerate_pixels().filter(|(_, _, p)| p.0[0] < 128).map(|(x, y, _)| (x, y)).collect();
        let (xs, ys): (Vec<u32>, Vec<u32>) = dark.iter().copied().unzip();
        let span = |v: &[u32]| v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0);
        assert!(span(&ys) > 3 * span(&xs), "{} x {}", span(&xs), span(&ys));
    }
}
