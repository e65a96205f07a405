//! COCO-format training data: the records of an instances file, checked record by record. A bad
//! record (missing image file, zero-area or non-finite box, unknown category) is reported with its
//! file and id and skipped; decoding errors are reported when the image is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, TrainError};

/// A ground-truth box in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GtBox {
    /// `[x1, y1, x2, y2]`.
    pub xyxy: [f32; 4],
    /// Class label (the category id; 0 is the background).
    pub label: u32,
}

/// One image and its boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// COCO image id.
    pub image_id: i64,
    /// Path of the image file.
    pub path: PathBuf,
    /// Boxes (crowd regions excluded).
    pub boxes: Vec<GtBox>,
}

/// A record that was skipped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// The file the record came from (annotations JSON or image).
    pub file: String,
    /// Which record (`image 12`, `annotation 40`).
    pub record: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {} (skipped)", self.file, self.record, self.message)
    }
}

/// A loaded data set: usable samples plus the records that were skipped.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Samples in file order.
    pub samples: Vec<Sample>,
    /// Skipped records.
    pub issues: Vec<Issue>,
    /// Category id → name.
    pub categories: HashMap<i64, String>,
}

#[derive(Deserialize)]
struct RawImage {
    id: i64,
    file_name: String,
}

#[derive(Deserialize)]
struct RawAnnotation {
    #[serde(default)]
    id: i64,
    image_id: i64,
    category_id: i64,
    bbox: Vec<f64>,
    #[serde(default)]
    iscrowd: serde_json::Value,
}

#[derive(Deserialize)]
struct RawCategory {
    id: i64,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct RawFile {
    images: Vec<RawImage>,
    #[serde(default)]
    annotations: Vec<RawAnnotation>,
    categories: Vec<RawCategory>,
}

fn truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        _ => false,
    }
}

impl Dataset {
    /// Reads `annotations` (a COCO instances file) with images under `image_dir`. Labels are the
    /// category ids, which must lie in `1..num_classes`; others are reported as unknown.
    pub fn load(annotations: &Path, image_dir: &Path, num_classes: usize) -> Result<Self> {
        let origin = annotations.display().to_string();
        let bytes = std::fs::read(annotations).map_err(|source| TrainError::Io { path: origin.clone(), source })?;
        let raw: RawFile =
            serde_json::from_slice(&bytes).map_err(|source| TrainError::Json { path: origin.clone(), source })?;
        let mut issues = Vec::new();
        let issue = |record: String, message: String| Issue { file: origin.clone(), record, message };
        let categories: HashMap<i64, String> = raw.categories.iter().map(|c| (c.id, c.name.clone())).collect();
        let mut index: HashMap<i64, usize> = HashMap::new();
        let mut samples = Vec::with_capacity(raw.images.len());
        for img in &raw.images {
            let path = image_dir.join(&img.file_name);
            if index.contains_key(&img.id) {
                issues.push(issue(format!("image {}", img.id), "duplicate image id".into()));
                continue;
            }
            if !path.is_file() {
                issues.push(issue(format!("image {}", img.id), format!("image file {} not found", path.display())));
                continue;
            }
            index.insert(img.id, samples.len());
            samples.push(Sample { image_id: img.id, path, boxes: Vec::new() });
        }
        for a in &raw.annotations {
            let record = format!("annotation {} (image {})", a.id, a.image_id);
            if truthy(&a.iscrowd) {
                continue;
            }
            let Some(&si) = index.get(&a.image_id) else {
                if !raw.images.iter().any(|i| i.id == a.image_id) {
                    issues.push(issue(record, "refers to an unknown image".into()));
                }
                continue;
            };
            if !categories.contains_key(&a.category_id) || a.category_id < 1 || a.category_id as usize >= num_classes {
                issues.push(issue(
                    record,
                    format!("unknown category {} (the detector has labels 1..{})", a.category_id, num_classes - 1),
                ));
                continue;
            }
            let [x, y, w, h] = match a.bbox.as_slice() {
                &[x, y, w, h] => [x, y, w, h],
                _ => {
                    issues.push(issue(record, format!("bbox has {} values, expected 4", a.bbox.len())));
                    continue;
                }
            };
            if ![x, y, w, h].iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
                issues.push(issue(record, format!("zero-area or invalid bbox [{x}, {y}, {w}, {h}]")));
                continue;
            }
            samples[si].boxes.push(GtBox {
                xyxy: [x as f32, y as f32, (x + w) as f32, (y + h) as f32],
                label: a.category_id as u32,
            });
        }
        Ok(Self { samples, issues, categories })
    }
}

/// A decoded image: interleaved 8-bit RGB.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

/// Decodes an image file to RGB8 (the same decoder as detection's).
pub fn decode(path: &Path) -> std::result::Result<Decoded, mixdet_detect::ImageFileError> {
    let rgb = mixdet_detect::load_rgb(path)?;
    let (w, h) = rgb.dimensions();
    Ok(Decoded { rgb: rgb.into_raw(), width: w as usize, height: h as usize })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_records_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        image::RgbImage::new(8, 8).save(dir.path().join("a.png")).unwrap();
        let json = serde_json::json!({
            "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "missing.png"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 4], "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 9, "bbox": [1, 1, 3, 4], "iscrowd": 0},
                {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 4], "iscrowd": 0},
                {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 8, 8], "iscrowd": 1},
                {"id": 5, "image_id": 2, "category_id": 1, "bbox": [1, 1, 3, 4], "iscrowd": 0}
            ],
            "categories": [{"id": 1, "name": "circle"}, {"id": 9, "name": "other"}]
        });
        let ann = dir.path().join("ann.json");
        std::fs::write(&ann, json.to_string()).unwrap();
        let ds = Dataset::load(&ann, dir.path(), 3).unwrap();
        assert_eq!(ds.samples.len(), 1);
        assert_eq!(ds.samples[0].boxes, vec![GtBox { xyxy: [1.0, 1.0, 4.0, 5.0], label: 1 }]);
        let records: Vec<&str> = ds.issues.iter().map(|i| i.record.as_str()).collect();
        assert_eq!(records, ["image 2", "annotation 2 (image 1)", "annotation 3 (image 1)"]);
        assert!(ds.issues[1].message.contains("unknown category 9"));
    }
}
