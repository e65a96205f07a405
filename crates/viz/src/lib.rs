//! Drawing on RGB images with no system dependency: DejaVu Sans is embedded (its licence is in
//! `assets/`), so overlays and plots render the same on every machine.

pub mod palette;
pub mod text;

use image::{Rgb, RgbImage};

pub use palette::{class_color, contrasting_text};
pub use text::{draw_text, text_size};

/// Fills `[x0, x1) x [y0, y1)` (clipped to the image).
pub fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

/// Draws the outline of `[x0, x1] x [y0, y1]` with lines `thickness` pixels wide, inside the box.
pub fn hollow_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, thickness: i64, color: Rgb<u8>) {
    let t = thickness.max(1);
    fill_rect(img, x0, y0, x1 + 1, y0 + t, color);
    fill_rect(img, x0, y1 + 1 - t, x1 + 1, y1 + 1, color);
    fill_rect(img, x0, y0, x0 + t, y1 + 1, color);
    fill_rect(img, x1 + 1 - t, y0, x1 + 1, y1 + 1, color);
}

/// Blends `color` over the pixel at (x, y) with `alpha` in [0, 1] (ignored outside the image).
pub fn blend(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>, alpha: f32) {
    if x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return;
    }
    let a = alpha.clamp(0.0, 1.0);
    let p = img.get_pixel_mut(x as u32, y as u32);
    for c in 0..3 {
        p.0[c] = (p.0[c] as f32 * (1.0 - a) + color.0[c] as f32 * a).round() as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_clipped() {
        let mut img = RgbImage::new(10, 10);
        hollow_rect(&mut img, -5, 2, 4, 20, 2, Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(0, 2).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(4, 5).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(2, 5).0, [0, 0, 0]);
    }
}
