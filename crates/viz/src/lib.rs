//! Drawing on RGB images with imageproc, with no system dependency: DejaVu Sans is embedded (its
//! licence is in `assets/`), so overlays and charts render the same on every machine. This crate
//! adds what imageproc leaves to its users: clipping in signed coordinates, thick anti-aliased
//! lines, rotated text, the class palette and line charts ([`chart`]).

pub mod chart;
pub mod palette;
pub mod text;

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_antialiased_line_segment_mut, draw_filled_rect_mut, draw_polygon_mut};
use imageproc::pixelops::interpolate;
use imageproc::point::Point;
use imageproc::rect::Rect;

pub use palette::{class_color, contrasting_text};
pub use text::{draw_text, draw_text_vertical, text_size};

/// Fills `[x0, x1) x [y0, y1)` (clipped to the image).
pub fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0, x1, y1) = (x0.max(0), y0.max(0), x1.min(w), y1.min(h));
    if x1 > x0 && y1 > y0 {
        draw_filled_rect_mut(img, Rect::at(x0 as i32, y0 as i32).of_size((x1 - x0) as u32, (y1 - y0) as u32), color);
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

/// An anti-aliased segment `width` pixels wide: imageproc's anti-aliased (Wu) line for thin
/// segments; for wider ones, the segment's rectangle filled as a polygon with anti-aliased edges.
pub fn draw_line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), width: f32, color: Rgb<u8>) {
    let round = |p: (f32, f32)| (p.0.round() as i32, p.1.round() as i32);
    let aa_line = |img: &mut RgbImage, p: (f32, f32), q: (f32, f32)| {
        draw_antialiased_line_segment_mut(img, round(p), round(q), color, interpolate);
    };
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt();
    if width <= 1.5 || len < 0.5 {
        aa_line(img, a, b);
        return;
    }
    // Unit normal scaled to half the width.
    let half = width / 2.0;
    let (nx, ny) = (-dy / len * half, dx / len * half);
    let corners = [(a.0 + nx, a.1 + ny), (b.0 + nx, b.1 + ny), (b.0 - nx, b.1 - ny), (a.0 - nx, a.1 - ny)];
    let mut poly: Vec<Point<i32>> = Vec::with_capacity(4);
    for c in corners {
        let p = Point::new(c.0.round() as i32, c.1.round() as i32);
        if poly.last() != Some(&p) {
            poly.push(p);
        }
    }
    // imageproc rejects a polygon whose first and last points coincide.
    while poly.len() > 1 && poly.first() == poly.last() {
        poly.pop();
    }
    if poly.len() >= 3 {
        draw_polygon_mut(img, &poly, color);
    }
    aa_line(img, corners[0], corners[1]);
    aa_line(img, corners[3], corners[2]);
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
        fill_rect(&mut img, 20, 20, 30, 30, Rgb([1, 2, 3]));
        fill_rect(&mut img, -9, -9, -1, -1, Rgb([1, 2, 3]));
    }

    #[test]
    fn lines_are_solid_in_the_middle_and_blended_at_the_edges() {
        let mut img = RgbImage::from_pixel(40, 40, Rgb([255, 255, 255]));
        draw_line(&mut img, (5.0, 5.0), (35.0, 20.0), 3.0, Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(20, 12).0, [255, 0, 0]);
        let blended = img.pixels().filter(|p| p.0[0] == 255 && p.0[1] > 0 && p.0[1] < 255).count();
        assert!(blended > 10, "{blended} anti-aliased pixels");
        // Degenerate and off-image segments draw nothing harmful.
        draw_line(&mut img, (3.0, 3.0), (3.2, 3.1), 3.0, Rgb([0, 0, 255]));
        draw_line(&mut img, (-50.0, -5.0), (90.0, 80.0), 2.5, Rgb([0, 0, 255]));
        draw_line(&mut img, (1.0, 1.0), (38.0, 2.0), 1.0, Rgb([0, 0, 255]));
    }
}
