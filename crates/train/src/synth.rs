//! A synthetic detection data set in COCO's layout: six shape classes on textured, noisy
//! backgrounds, from a few pixels to most of the frame, rotated, overlapping and partly occluded.
//! Every image is drawn from its own seeded generator, so the set is identical for a seed
//! whatever the number of threads.
//!
//! Shapes are rasterised here rather than with imageproc (which `mixdet-viz` draws with): the
//! annotations come from the pixels each shape owns after occlusion (an owner map filled in the
//! same pass), the fills are shaded across each shape, and circles and rings are rotated
//! ellipses and elliptical annuli, none of which imageproc's flat-colour, axis-aligned primitives
//! give; and a different rasteriser would change every generated set the shipped shapes detector
//! was trained and measured on.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Result, TrainError};
use crate::rng::Rng;

/// Class names, category id = index + 1.
pub const CLASS_NAMES: [&str; 6] = ["circle", "square", "triangle", "star", "hexagon", "ring"];

/// Objects with fewer visible pixels are painted over and not annotated (they are not visible).
const MIN_VISIBLE_PIXELS: usize = 12;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Output root (`train/`, `val/`, `annotations/` are created under it).
    pub out: PathBuf,
    /// Training images (0: only the val split is written).
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Seed; the same seed gives identical files.
    pub seed: u64,
    /// Square image side in pixels.
    pub size: u32,
}

/// Counts of what was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthSummary {
    /// Images per split written (`train`, `val`).
    pub images: [usize; 2],
    /// Annotations per split.
    pub annotations: [usize; 2],
}

#[derive(Serialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Serialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    area: f64,
    iscrowd: u8,
}

#[derive(Serialize)]
struct CocoCategory {
    id: u64,
    name: &'static str,
    supercategory: &'static str,
}

#[derive(Serialize)]
struct CocoFile {
    info: serde_json::Value,
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

/// One object as drawn: class, centre, half extents, rotation, colour.
#[derive(Debug, Clone)]
struct Shape {
    class: usize,
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    angle: f32,
    color: [f32; 3],
}

fn polygon_contains(pts: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = pts.len() - 1;
    for i in 0..pts.len() {
        let (xi, yi) = pts[i];
        let (xj, yj) = pts[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn regular_polygon(n: usize, inner: Option<f32>) -> Vec<(f32, f32)> {
    let steps = if inner.is_some() { 2 * n } else { n };
    (0..steps)
        .map(|i| {
            let r = match inner {
                Some(ri) if i % 2 == 1 => ri,
                _ => 1.0,
            };
            let a = -std::f32::consts::FRAC_PI_2 + std::f32::consts::TAU * i as f32 / steps as f32;
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

impl Shape {
    /// Whether the unit-space point of this class's outline contains `(u, v)`.
    fn contains_local(&self, u: f32, v: f32, polys: &[Vec<(f32, f32)>; 3]) -> bool {
        match self.class {
            0 => u * u + v * v <= 1.0,
            1 => u.abs() <= 0.8 && v.abs() <= 0.8,
            2 => polygon_contains(&polys[0], u, v),
            3 => polygon_contains(&polys[1], u, v),
            4 => polygon_contains(&polys[2], u, v),
            _ => {
                let r2 = u * u + v * v;
                (0.3025..=1.0).contains(&r2)
            }
        }
    }

    fn pixel_bounds(&self, size: u32) -> (u32, u32, u32, u32) {
        let r = self.rx.max(self.ry) * std::f32::consts::SQRT_2;
        let clamp = |v: f32| v.clamp(0.0, size as f32) as u32;
        (clamp(self.cx - r), clamp(self.cy - r), clamp(self.cx + r + 1.0), clamp(self.cy + r + 1.0))
    }
}

fn random_color(rng: &mut Rng) -> [f32; 3] {
    [rng.f32(), rng.f32(), rng.f32()]
}

/// Background: a two-colour gradient, optionally stripes or a checkerboard, plus pixel noise.
fn background(rng: &mut Rng, size: u32) -> Vec<[f32; 3]> {
    let n = size as usize;
    let a = random_color(rng);
    let b = random_color(rng);
    let angle = rng.uniform(0.0, std::f32::consts::TAU);
    let (ca, sa) = (angle.cos(), angle.sin());
    let texture = rng.below(3);
    let period = rng.uniform(6.0, 40.0);
    let tex_color = random_color(rng);
    let tex_alpha = rng.uniform(0.1, 0.4);
    let noise = rng.uniform(0.0, 0.08);
    let mut px = vec![[0f32; 3]; n * n];
    for y in 0..n {
        for x in 0..n {
            let t = ((x as f32 * ca + y as f32 * sa) / n as f32 * 0.5 + 0.5).clamp(0.0, 1.0);
            let mut c = [0f32; 3];
            for k in 0..3 {
                c[k] = a[k] * (1.0 - t) + b[k] * t;
            }
            let on = match texture {
                1 => ((x as f32 * sa - y as f32 * ca) / period).floor() as i64 % 2 == 0,
                2 => (((x as f32 / period).floor() + (y as f32 / period).floor()) as i64) % 2 == 0,
                _ => false,
            };
            if on {
                for k in 0..3 {
                    c[k] = c[k] * (1.0 - tex_alpha) + tex_color[k] * tex_alpha;
                }
            }
            px[y * n + x] = c;
        }
    }
    if noise > 0.0 {
        for p in &mut px {
            for v in p.iter_mut() {
                *v += noise * rng.normal();
            }
        }
    }
    px
}

fn random_shape(rng: &mut Rng, size: u32, crowded: bool) -> Shape {
    let s = size as f32;
    // Log-uniform sizes so that small, medium and large objects are all frequent.
    let (lo, hi) = if crowded { (6.0f32, s * 0.25) } else { (6.0f32, s * 0.45) };
    let r = (lo.ln() + rng.f32() * (hi.ln() - lo.ln())).exp();
    let aspect = rng.uniform(0.75, 1.33);
    Shape {
        class: rng.below(CLASS_NAMES.len()),
        cx: rng.uniform(-0.1 * r, s + 0.1 * r),
        cy: rng.uniform(-0.1 * r, s + 0.1 * r),
        rx: r * aspect.sqrt(),
        ry: r / aspect.sqrt(),
        angle: rng.uniform(0.0, std::f32::consts::TAU),
        color: random_color(rng),
    }
}

/// A visible object: category id, `[x, y, w, h]` of its visible pixels, visible pixel count.
type Visible = (u64, [f64; 4], usize);

/// Draws one image; returns the pixels and the visible objects.
fn render(rng: &mut Rng, size: u32) -> (RgbImage, Vec<Visible>) {
    let n = size as usize;
    let mut px = background(rng, size);
    let empty = rng.chance(0.03);
    let crowded = rng.chance(0.2);
    let count = if empty {
        0
    } else if crowded {
        12 + rng.below(14)
    } else {
        1 + rng.below(8)
    };
    let shapes: Vec<Shape> = (0..count).map(|_| random_shape(rng, size, crowded)).collect();
    let polys = [regular_polygon(3, None), regular_polygon(5, Some(0.45)), regular_polygon(6, None)];
    // Painter's order with an owner map: later shapes occlude earlier ones.
    let mut owner = vec![u16::MAX; n * n];
    for (idx, sh) in shapes.iter().enumerate() {
        let (x0, y0, x1, y1) = sh.pixel_bounds(size);
        let (ca, sa) = (sh.angle.cos(), sh.angle.sin());
        let shade = rng.uniform(-0.15, 0.15);
        for y in y0..y1 {
            for x in x0..x1 {
                let dx = x as f32 + 0.5 - sh.cx;
                let dy = y as f32 + 0.5 - sh.cy;
                let u = (dx * ca + dy * sa) / sh.rx;
                let v = (-dx * sa + dy * ca) / sh.ry;
                if sh.contains_local(u, v, &polys) {
                    let i = y as usize * n + x as usize;
                    owner[i] = idx as u16;
                    // A slight gradient across the shape so that fills are not flat.
                    let g = 1.0 + shade * u;
                    px[i] = [sh.color[0] * g, sh.color[1] * g, sh.color[2] * g];
                }
            }
        }
    }
    let mut bounds = vec![(u32::MAX, u32::MAX, 0u32, 0u32, 0usize); shapes.len()];
    for y in 0..n {
        for x in 0..n {
            let o = owner[y * n + x];
            if o != u16::MAX {
                let b = &mut bounds[o as usize];
                b.0 = b.0.min(x as u32);
                b.1 = b.1.min(y as u32);
                b.2 = b.2.max(x as u32 + 1);
                b.3 = b.3.max(y as u32 + 1);
                b.4 += 1;
            }
        }
    }
    let mut visible = Vec::new();
    for (sh, &(x0, y0, x1, y1, area)) in shapes.iter().zip(&bounds) {
        if area >= MIN_VISIBLE_PIXELS {
            let bbox = [x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64];
            visible.push((sh.class as u64 + 1, bbox, area));
        }
    }
    let mut img = RgbImage::new(size, size);
    for (i, p) in img.pixels_mut().enumerate() {
        let c = px[i];
        *p = Rgb([to_u8(c[0]), to_u8(c[1]), to_u8(c[2])]);
    }
    (img, visible)
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn io_err(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io { path: path.display().to_string(), source }
}

/// Writes one split: images under `out/<split>/`, annotations to `out/annotations/instances_<split>.json`.
fn write_split(opts: &SynthOptions, split: &str, stream: u64, count: usize) -> Result<usize> {
    let dir = opts.out.join(split);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let rendered: Vec<Result<(CocoImage, Vec<Visible>)>> = (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::for_item(opts.seed, stream, i as u64);
            let (img, vis) = render(&mut rng, opts.size);
            let file_name = format!("{:06}.png", i + 1);
            let path = dir.join(&file_name);
            img.save(&path).map_err(|e| TrainError::Image { path: path.display().to_string(), source: e })?;
            Ok((CocoImage { id: i as u64 + 1, file_name, width: opts.size, height: opts.size }, vis))
        })
        .collect();
    let mut images = Vec::with_capacity(count);
    let mut annotations = Vec::new();
    for r in rendered {
        let (img, vis) = r?;
        for (category_id, bbox, area) in vis {
            let id = annotations.len() as u64 + 1;
            annotations.push(CocoAnnotation { id, image_id: img.id, category_id, bbox, area: area as f64, iscrowd: 0 });
        }
        images.push(img);
    }
    let n_ann = annotations.len();
    let categories = CLASS_NAMES
        .iter()
        .enumerate()
        .map(|(i, &name)| CocoCategory { id: i as u64 + 1, name, supercategory: "shape" })
        .collect();
    let info = serde_json::json!({
        "description": "mixdet synthetic shapes",
        "seed": opts.seed,
        "split": split,
        "size": opts.size,
    });
    let file = CocoFile { info, images, annotations, categories };
    let ann_dir = opts.out.join("annotations");
    std::fs::create_dir_all(&ann_dir).map_err(|e| io_err(&ann_dir, e))?;
    let path = ann_dir.join(format!("instances_{split}.json"));
    let text =
        serde_json::to_vec(&file).map_err(|e| TrainError::Json { path: path.display().to_string(), source: e })?;
    std::fs::write(&path, text).map_err(|e| io_err(&path, e))?;
    Ok(n_ann)
}

/// Generates the data set.
pub fn generate(opts: &SynthOptions) -> Result<SynthSummary> {
    if opts.size < 32 {
        return Err(TrainError::Invalid(format!("image size {} is too small (at least 32)", opts.size)));
    }
    let mut summary = SynthSummary::default();
    if opts.train > 0 {
        summary.annotations[0] = write_split(opts, "train", 1, opts.train)?;
        summary.images[0] = opts.train;
    }
    summary.annotations[1] = write_split(opts, "val", 2, opts.val)?;
    summary.images[1] = opts.val;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_visible_and_boxes_tight() {
        let mut rng = Rng::new(3);
        let mut total = 0;
        for _ in 0..6 {
            let (img, vis) = render(&mut rng, 96);
            assert_eq!(img.dimensions(), (96, 96));
            for (cat, b, area) in &vis {
                assert!((1..=6).contains(cat));
                assert!(b[2] >= 1.0 && b[3] >= 1.0 && b[0] + b[2] <= 96.0 && b[1] + b[3] <= 96.0, "{b:?}");
                assert!(*area as f64 <= b[2] * b[3] && *area >= MIN_VISIBLE_PIXELS);
            }
            total += vis.len();
        }
        assert!(total > 0);
    }

    #[test]
    fn polygon_test_matches_geometry() {
        let tri = regular_polygon(3, None);
        assert!(polygon_contains(&tri, 0.0, 0.0));
        assert!(!polygon_contains(&tri, 0.0, 0.9));
        let star = regular_polygon(5, Some(0.45));
        assert!(polygon_contains(&star, 0.0, -0.95));
        assert!(!polygon_contains(&star, 0.571, 0.185));
    }
}
