//! Detection results: the COCO results format (`[{"image_id", "category_id", "bbox", "score"}]`)
//! and the checks pycocotools' `loadRes` makes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::GroundTruth;
use crate::error::{CocoError, Result};
use crate::ids::IdSet;
use crate::json::{self, Locator, Records};

/// One detection. Its id is its position in the list plus one and its area is `w * h`, as
/// `loadRes` assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct Detection {
    /// Image id; must be a GT image.
    pub image_id: i64,
    /// Category id; detections of categories unknown to the GT are never evaluated.
    pub category_id: i64,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    /// Confidence; must be finite.
    pub score: f64,
}

impl Detection {
    /// Area as `loadRes` computes it (`w * h`, negative for a negative extent).
    #[inline]
    pub fn area(&self) -> f64 {
        self.bbox[2] * self.bbox[3]
    }
}

/// What [`check_detections`] found that pycocotools accepts but a user probably wants to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultsReport {
    /// Detections whose category is not a GT category (never evaluated, as in pycocotools).
    pub unknown_category: usize,
    /// The first such detection: (index, category id).
    pub first_unknown_category: Option<(usize, i64)>,
    /// Detections with a negative width or height (they overlap nothing and, their area being
    /// negative, fall outside every area range; pycocotools evaluates them the same way).
    pub negative_extent: usize,
}

/// Parses a results JSON array; `origin` names the source in error messages. An empty array is
/// an error, as in pycocotools.
pub fn parse_results(bytes: &[u8], origin: &str) -> Result<Vec<Detection>> {
    let dets = match crate::results_scan::scan_results(bytes) {
        Some(dets) => dets,
        None => {
            let loc = Locator::default();
            json::parse_slice(bytes, Records::new(&loc, "results"), &loc, origin)?
        }
    };
    if dets.is_empty() {
        return Err(CocoError::EmptyResults { origin: origin.to_string() });
    }
    Ok(dets)
}

/// Reads a results file (see [`parse_results`]).
pub fn load_results(path: impl AsRef<Path>) -> Result<Vec<Detection>> {
    let path = path.as_ref();
    let bytes = json::read_file(path)?;
    parse_results(&bytes, &path.display().to_string())
}

/// The checks of `loadRes` and a few more: every detection must be on a GT image (pycocotools
/// asserts "Results do not correspond to current coco set"), and scores and boxes must be finite
/// (Python's json reads `NaN`; a NaN score makes the score order undefined).
pub fn check_detections(gt: &GroundTruth, dets: &[Detection], origin: &str) -> Result<ResultsReport> {
    let images: IdSet = gt.images.iter().map(|im| im.id).collect();
    let categories: IdSet = gt.categories.iter().map(|c| c.id).collect();
    let invalid = |i: usize, field: &'static str, message: String| CocoError::InvalidRecord {
        origin: origin.to_string(),
        record: format!("results[{i}]"),
        field,
        message,
    };
    let mut report = ResultsReport::default();
    for (i, d) in dets.iter().enumerate() {
        if !d.score.is_finite() {
            return Err(invalid(i, "score", format!("must be finite, got {}", d.score)));
        }
        if d.bbox.iter().any(|v| !v.is_finite()) {
            return Err(invalid(i, "bbox", format!("must be finite, got {:?}", d.bbox)));
        }
        if !images.contains(&d.image_id) {
            return Err(invalid(
                i,
                "image_id",
                format!(
                    "image {} is not in the ground truth (pycocotools: \"Results do not correspond to current coco set\")",
                    d.image_id
                ),
            ));
        }
        if !categories.contains(&d.category_id) {
            report.unknown_category += 1;
            report.first_unknown_category.get_or_insert((i, d.category_id));
        }
        if d.bbox[2] < 0.0 || d.bbox[3] < 0.0 {
            report.negative_extent += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Category, Image};

    fn gt() -> GroundTruth {
        GroundTruth {
            images: vec![Image { id: 1, file_name: None, width: None, height: None }],
            categories: vec![Category { id: 2, name: None }],
            annotations: vec![],
        }
    }

    #[test]
    fn parse_errors_name_the_record() {
        let msg = parse_results(
            br#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 0.5},
            {"image_id": 1, "category_id": 2, "bbox": [0,0,1,1]}]"#,
            "dt.json",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.starts_with("dt.json: results[1]: missing field `score`"), "{msg}");
        let msg = parse_results(br#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": NaN}]"#, "dt.json")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("dt.json: results[0]: expected value"), "{msg}");
        let msg = parse_results(br#"{"image_id": 1}"#, "dt.json").unwrap_err().to_string();
        assert!(msg.contains("expected an array of results records"), "{msg}");
        assert!(matches!(parse_results(b" [ ] ", "dt.json"), Err(CocoError::EmptyResults { .. })));
    }

    #[test]
    fn checks_images_scores_and_reports_unknown_categories() {
        let ok = Detection { image_id: 1, category_id: 2, bbox: [0.0, 0.0, -1.0, 1.0], score: 0.5 };
        let other_cat = Detection { category_id: 9, ..ok };
        let report = check_detections(&gt(), &[ok, other_cat], "m").unwrap();
        assert_eq!(report.unknown_category, 1);
        assert_eq!(report.first_unknown_category, Some((1, 9)));
        assert_eq!(report.negative_extent, 2);

        let msg = check_detections(&gt(), &[ok, Detection { image_id: 5, ..ok }], "m").unwrap_err().to_string();
        assert!(msg.starts_with("m: results[1]: field `image_id`: image 5 is not in the ground truth"), "{msg}");
        let msg = check_detections(&gt(), &[Detection { score: f64::INFINITY, ..ok }], "m").unwrap_err().to_string();
        assert!(msg.contains("results[0]: field `score`: must be finite"), "{msg}");
    }
}
