//! Drawing detections on images: boxes in per-class colours and filled label tags, scaled to
//! the image (the overlays of `mixdet detect`).

use image::RgbImage;
use mixdet_detect::Detection;
use mixdet_viz::{class_color, contrasting_text, draw_text, fill_rect, hollow_rect, text_size};

/// Draws `detections` (boxes in pixels of `img`) onto `img`, the best on top.
///
/// ```
/// use mixdet::{viz::draw_detections, Detection};
///
/// let mut img = image::RgbImage::new(64, 48);
/// let found = [Detection { bbox: [8.0, 6.0, 40.0, 44.0], score: 0.9, label: 1, name: "person".into() }];
/// draw_detections(&mut img, &found);
/// assert_ne!(img.get_pixel(8, 20), &image::Rgb([0, 0, 0]), "the box's left edge");
/// ```
pub fn draw_detections(img: &mut RgbImage, detections: &[Detection]) {
    let (w, h) = img.dimensions();
    // Line width and text size grow with the image (about 2 px and 12 px at 640 px).
    let line = ((w + h) as f32 / 2.0 * 0.003).round().max(1.0) as i64;
    let font = ((w + h) as f32 / 2.0 * 0.02).clamp(11.0, 48.0);
    // Draw the lowest scores first so that the best boxes end up on top.
    for d in detections.iter().rev() {
        let b = d.bbox;
        let color = class_color(d.label);
        let (x0, y0, x1, y1) = (b[0].round() as i64, b[1].round() as i64, b[2].round() as i64, b[3].round() as i64);
        hollow_rect(img, x0, y0, x1, y1, line, color);
        let tag = format!("{} {:.2}", d.name, d.score);
        let (tw, th) = text_size(&tag, font);
        let pad = (font * 0.2).round() as i64;
        let tag_h = th as i64 + 2 * pad;
        // Tag above the box when it fits, inside the top edge otherwise.
        let ty = if y0 - tag_h >= 0 { y0 - tag_h } else { y0 };
        fill_rect(img, x0, ty, x0 + tw as i64 + 2 * pad, ty + tag_h, color);
        draw_text(img, &tag, (x0 + pad) as f32, (ty + pad) as f32, font, contrasting_text(color));
    }
}
