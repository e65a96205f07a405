//! COCO-format training data: the instances file as the `coco` crate reads it (the reader the
//! evaluator uses, so a file that trains also evaluates), then checked for training record by
//! record. A record training cannot use (missing image file, zero-area box, category outside the
//! detector's labels) is reported with its file and id and skipped; a file that is not a valid
//! COCO instances file is an error naming the file and the record. Decoding errors are reported
//! when the image is read.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use mixdet_coco::GroundTruth;

use crate::error::Result;

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

/// A loaded data set: usable samples, the records that were skipped, and the ground truth as the
/// evaluator reads it.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Samples in file order.
    pub samples: Vec<Sample>,
    /// Skipped records.
    pub issues: Vec<Issue>,
    /// Category id → name.
    pub categories: HashMap<i64, String>,
    /// The instances file, unfiltered: what evaluation scores against.
    pub ground_truth: GroundTruth,
    /// The instances file's path.
    pub annotations: PathBuf,
}

impl Dataset {
    /// Reads `annotations` (a COCO instances file) with images under `image_dir`. Labels are the
    /// category ids, which must lie in `1..num_classes`; others are reported as unknown.
    pub fn load(annotations: &Path, image_dir: &Path, num_classes: usize) -> Result<Self> {
        let origin = annotations.display().to_string();
        let ground_truth = GroundTruth::from_path(annotations)?;
        let mut issues = Vec::new();
        let issue = |record: String, message: String| Issue { file: origin.clone(), record, message };
        let categories = ground_truth.category_names();
        let mut index: HashMap<i64, usize> = HashMap::new();
        let mut known_images: HashSet<i64> = HashSet::new();
        let mut samples = Vec::with_capacity(ground_truth.images.len());
        for img in &ground_truth.images {
            let record = format!("image {}", img.id);
            if !known_images.insert(img.id) {
                issues.push(issue(record, "duplicate image id".into()));
                continue;
            }
            let Some(file_name) = &img.file_name else {
                issues.push(issue(record, "no file_name".into()));
                continue;
            };
            let path = image_dir.join(file_name);
            if !path.is_file() {
                issues.push(issue(record, format!("image file {} not found", path.display())));
                continue;
            }
            index.insert(img.id, samples.len());
            samples.push(Sample { image_id: img.id, path, boxes: Vec::new() });
        }
        for a in &ground_truth.annotations {
            let record = format!("annotation {} (image {})", a.id, a.image_id);
            if a.iscrowd {
                continue;
            }
            let Some(&si) = index.get(&a.image_id) else {
                if !known_images.contains(&a.image_id) {
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
            let [x, y, w, h] = a.bbox;
            if w <= 0.0 || h <= 0.0 {
                issues.push(issue(record, format!("zero-area or invalid bbox [{x}, {y}, {w}, {h}]")));
                continue;
            }
            samples[si].boxes.push(GtBox {
                xyxy: [x as f32, y as f32, (x + w) as f32, (y + h) as f32],
                label: a.category_id as u32,
            });
        }
        Ok(Self { samples, issues, categories, ground_truth, annotations: annotations.to_path_buf() })
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
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 4], "area": 12, "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 9, "bbox": [1, 1, 3, 4], "area": 12, "iscrowd": 0},
                {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 4], "area": 0, "iscrowd": 0},
                {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 8, 8], "area": 64, "iscrowd": 1},
                {"id": 5, "image_id": 2, "category_id": 1, "bbox": [1, 1, 3, 4], "area": 12, "iscrowd": 0}
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
        assert_eq!(ds.ground_truth.annotations.len(), 5, "the evaluator's view is unfiltered");

        // A file the evaluator would refuse is refused here too, naming the file and the record.
        std::fs::write(&ann, json.to_string().replace("\"bbox\":[1,1,0,4]", "\"bbox\":[1,1,0]")).unwrap();
        let err = Dataset::load(&ann, dir.path(), 3).unwrap_err().to_string();
        assert!(err.contains("ann.json") && err.contains("annotations[2]"), "{err}");
    }
}
