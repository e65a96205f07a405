//! Detection overlays: boxes in per-class colours and filled label tags, scaled to the image.

use image::RgbImage;
use mixdet_detect::Detections;
use mixdet_viz::{class_color, contrasting_text, draw_text, fill_rect, hollow_rect, text_size};

/// Draws `dets` (boxes in image pixels) with labels from `labels` onto `img`.
pub fn draw_detections(img: &mut RgbImage, dets: &Detections, labels: &[String]) {
    let (w, h) = img.dimensions();
    // Line width and text size grow with the image (about 2 px and 12 px at 640 px).
    let line = ((w + h) as f32 / 2.0 * 0.003).round().max(1.0) as i64;
    let font = ((w + h) as f32 / 2.0 * 0.02).clamp(11.0, 48.0);
    // Draw the lowest scores first so that the best boxes end up on top.
    for i in (0..dets.len()).rev() {
        let b = dets.boxes[i];
        let label = dets.labels[i].max(0) as usize;
        let color = class_color(label);
        let (x0, y0, x1, y1) = (b[0].round() as i64, b[1].round() as i64, b[2].round() as i64, b[3].round() as i64);
        hollow_rect(img, x0, y0, x1, y1, line, color);
        let name = labels.get(label).map_or("?", String::as_str);
        let tag = format!("{name} {:.2}", dets.scores[i]);
        let (tw, th) = text_size(&tag, font);
        let pad = (font * 0.2).round() as i64;
        let tag_h = th as i64 + 2 * pad;
        // Tag above the box when it fits, inside the top edge otherwise.
        let ty = if y0 - tag_h >= 0 { y0 - tag_h } else { y0 };
        fill_rect(img, x0, ty, x0 + tw as i64 + 2 * pad, ty + tag_h, color);
        draw_text(img, &tag, (x0 + pad) as f32, (ty + pad) as f32, font, contrasting_text(color));
    }
}
