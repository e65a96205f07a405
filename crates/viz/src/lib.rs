//! Drawing on RGB images with no system dependency: DejaVu Sans is embedded (its licence is in
//! `assets/`), so overlays and plots render the same on every machine.

pub mod palette;
pub mod text;

use image::{Rgb, RgbImage};

pub use palette::{class_color, contrasting_text};
pub use text::{draw_text, raster_text, text_size};

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

/// An anti-aliased segment of the given width (coverage from the distance to the segment).
pub fn draw_line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), width: f32, color: Rgb<u8>) {
    let half = width / 2.0;
    let (minx, maxx) = (a.0.min(b.0) - half - 1.0, a.0.max(b.0) + half + 1.0);
    let (miny, maxy) = (a.1.min(b.1) - half - 1.0, a.1.max(b.1) + half + 1.0);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    for y in miny.floor() as i64..=maxy.ceil() as i64 {
        for x in minx.floor() as i64..=maxx.ceil() as i64 {
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = if len2 > 0.0 { (((cx - a.0) * dx + (cy - a.1) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
            let (qx, qy) = (a.0 + t * dx - cx, a.1 + t * dy - cy);
            let d = (qx * qx + qy * qy).sqrt();
            let alpha = half + 0.5 - d;
            if alpha > 0.0 {
                blend(img, x, y, color, alpha);
            }
        }
    }
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
