//! Text with the embedded DejaVu Sans.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The embedded file is a valid TrueType font; a failure here is a build defect.
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("embedded DejaVu Sans is a valid font"))
}

/// Width and height in pixels of `s` at `size` px (height = ascent - descent).
pub fn text_size(s: &str, size: f32) -> (u32, u32) {
    let f = font().as_scaled(PxScale::from(size));
    let mut width = 0.0;
    let mut prev = None;
    for c in s.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            width += f.kern(p, id);
        }
        width += f.h_advance(id);
        prev = Some(id);
    }
    (width.ceil() as u32, (f.ascent() - f.descent()).ceil() as u32)
}

/// Rasterises `s` with its top-left corner at the origin, calling `put(x, y, coverage)` for every
/// covered pixel (so that callers can place, rotate or blend the text as they need).
pub fn raster_text(s: &str, size: f32, mut put: impl FnMut(i64, i64, f32)) {
    let f = font().as_scaled(PxScale::from(size));
    let ascent = f.ascent();
    let mut caret = 0.0;
    let mut prev = None;
    for c in s.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(size), ab_glyph::point(caret, ascent));
        caret += f.h_advance(id);
        prev = Some(id);
        if let Some(outline) = font().outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                put(bounds.min.x as i64 + gx as i64, bounds.min.y as i64 + gy as i64, coverage)
            });
        }
    }
}

/// Draws `s` with its top-left corner at (x, y), anti-aliased, in `color`.
pub fn draw_text(img: &mut RgbImage, s: &str, x: f32, y: f32, size: f32, color: Rgb<u8>) {
    let (ox, oy) = (x.round() as i64, y.round() as i64);
    raster_text(s, size, |px, py, coverage| crate::blend(img, ox + px, oy + py, color, coverage));
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
}
