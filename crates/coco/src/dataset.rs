//! COCO ground truth ("instances" files): types and loading.
//!
//! Only what bbox evaluation needs is kept. Segmentation polygons, `info`, `licenses` and other
//! fields are skipped by the parser without being materialised.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{CocoError, Result};
use crate::ids::IdMap;
use crate::json::{self, Locator, Records};

/// A GT image. Only the id matters to the evaluator; the file name is kept for detectors that
/// evaluate over a dataset directory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Image {
    /// Image id.
    pub id: i64,
    /// File name relative to the image directory, when the dataset has one.
    #[serde(default)]
    pub file_name: Option<String>,
    /// Width in pixels, when given (COCO files give it; the evaluator does not need it).
    #[serde(default, deserialize_with = "json::number_or_none", skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// Height in pixels, when given.
    #[serde(default, deserialize_with = "json::number_or_none", skip_serializing_if = "Option::is_none")]
    pub height: Option<f64>,
}

/// A GT category.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Category {
    /// Category id (need not be contiguous).
    pub id: i64,
    /// Display name (pycocotools does not require one).
    #[serde(default)]
    pub name: Option<String>,
}

/// A GT object annotation. `area` is the annotation's own field (for COCO the segmentation
/// area), which is what pycocotools uses for the area ranges; `bbox` is `[x, y, w, h]`.
///
/// A dataset-level `ignore` field is not read: pycocotools' `_prepare` overwrites it with
/// `iscrowd`, and this evaluator keeps that behaviour for parity.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Annotation {
    /// Annotation id. pycocotools treats a detection matched to a GT with id 0 as unmatched
    /// (it stores GT ids in a float array where 0 means "none"); so does this evaluator.
    pub id: i64,
    /// Image the object is in.
    pub image_id: i64,
    /// Category of the object.
    pub category_id: i64,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    /// Object area used for the area ranges.
    pub area: f64,
    /// Crowd region: ignored, and matched by intersection over the detection's area.
    #[serde(deserialize_with = "json::truthy")]
    pub iscrowd: bool,
}

/// A COCO ground-truth dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroundTruth {
    /// Images, in file order.
    pub images: Vec<Image>,
    /// Categories, in file order.
    pub categories: Vec<Category>,
    /// Annotations, in file order (the order matters: it breaks ties in matching).
    pub annotations: Vec<Annotation>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum TopField {
    Images,
    Annotations,
    Categories,
    #[serde(other)]
    Other,
}

struct GtSeed<'a> {
    loc: &'a Locator,
}

impl<'de> DeserializeSeed<'de> for GtSeed<'_> {
    type Value = GroundTruth;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<GroundTruth, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for GtSeed<'_> {
    type Value = GroundTruth;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a COCO instances object with `images`, `categories` and `annotations`")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<GroundTruth, M::Error> {
        let (mut images, mut categories, mut annotations) = (None, None, None);
        // Python's json keeps the last of repeated keys; so does this loop.
        while let Some(key) = map.next_key::<TopField>()? {
            match key {
                TopField::Images => images = Some(map.next_value_seed(Records::new(self.loc, "images"))?),
                TopField::Categories => categories = Some(map.next_value_seed(Records::new(self.loc, "categories"))?),
                TopField::Annotations => {
                    annotations = Some(map.next_value_seed(Records::new(self.loc, "annotations"))?)
                }
                TopField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // pycocotools' loadRes reads `images` and `categories` unconditionally; a dataset
        // without annotations is legal (everything is a false positive).
        let images = images.ok_or_else(|| serde::de::Error::missing_field("images"))?;
        let categories = categories.ok_or_else(|| serde::de::Error::missing_field("categories"))?;
        Ok(GroundTruth { images, categories, annotations: annotations.unwrap_or_default() })
    }
}

impl GroundTruth {
    /// Reads and checks a COCO instances file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = json::read_file(path)?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// Parses and checks COCO instances JSON; `origin` names the source in error messages.
    pub fn from_slice(bytes: &[u8], origin: &str) -> Result<Self> {
        let loc = Locator::default();
        let gt = json::parse_slice(bytes, GtSeed { loc: &loc }, &loc, origin)?;
        gt.check(origin)?;
        Ok(gt)
    }

    /// Rejects what pycocotools would silently mis-evaluate: two annotations with the same id
    /// (its `loadAnns` maps ids to the last such annotation, moving objects between images),
    /// and non-finite boxes or areas (only possible for in-memory data).
    pub fn check(&self, origin: &str) -> Result<()> {
        let invalid = |i: usize, field: &'static str, message: String| CocoError::InvalidRecord {
            origin: origin.to_string(),
            record: format!("annotations[{i}]"),
            field,
            message,
        };
        let mut seen: IdMap<usize> = IdMap::with_capacity_and_hasher(self.annotations.len(), Default::default());
        for (i, a) in self.annotations.iter().enumerate() {
            if let Some(first) = seen.insert(a.id, i) {
                return Err(invalid(i, "id", format!("duplicate annotation id {} (also annotations[{first}])", a.id)));
            }
            if a.bbox.iter().any(|v| !v.is_finite()) {
                return Err(invalid(i, "bbox", format!("non-finite value in {:?}", a.bbox)));
            }
            if !a.area.is_finite() {
                return Err(invalid(i, "area", format!("non-finite value {}", a.area)));
            }
        }
        Ok(())
    }

    /// Category names by id (for repeated ids the last one wins, as in pycocotools' index).
    pub fn category_names(&self) -> HashMap<i64, String> {
        self.categories.iter().map(|c| (c.id, c.name.clone().unwrap_or_else(|| c.id.to_string()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_unused_fields() {
        let json = br#"{"info": {"x": [1, 2]}, "images": [{"id": 7, "file_name": "a.jpg", "width": 3}],
            "categories": [{"id": 3, "name": "cat", "supercategory": "animal"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 3, 4],
              "area": 12.5, "iscrowd": 0, "segmentation": [[1, 2, 3, 4, 5, 6]], "ignore": 1},
              {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 1, 1], "area": 1,
              "iscrowd": true, "segmentation": {"counts": "abc", "size": [3, 3]}}]}"#;
        let gt = GroundTruth::from_slice(json, "gt.json").unwrap();
        assert_eq!(gt.images[0].file_name.as_deref(), Some("a.jpg"));
        assert_eq!(gt.annotations[0].bbox, [1.0, 2.0, 3.0, 4.0]);
        assert!(!gt.annotations[0].iscrowd);
        assert!(gt.annotations[1].iscrowd);
        assert_eq!(gt.category_names()[&3], "cat");
    }

    #[test]
    fn errors_name_file_record_and_field() {
        let json = br#"{"images": [{"id": 1}], "categories": [],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}]}"#;
        let msg = GroundTruth::from_slice(json, "gt.json").unwrap_err().to_string();
        assert!(msg.starts_with("gt.json: annotations[1]: missing field `area`"), "{msg}");

        let json = br#"{"images": [{"id": 1}], "categories": [], "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "area": 1, "iscrowd": 0}]}"#;
        let msg = GroundTruth::from_slice(json, "gt.json").unwrap_err().to_string();
        assert!(msg.contains("annotations[0]: invalid length 3"), "{msg}");

        let msg = GroundTruth::from_slice(br#"{"images": [{"id": 1}], "#, "gt.json").unwrap_err().to_string();
        assert!(msg.starts_with("gt.json: EOF while parsing"), "{msg}");

        let msg = GroundTruth::from_slice(br#"{"images": []}"#, "gt.json").unwrap_err().to_string();
        assert!(msg.contains("missing field `categories`"), "{msg}");

        let json = br#"{"images": [], "categories": [], "annotations": [
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0}]}"#;
        let msg = GroundTruth::from_slice(json, "gt.json").unwrap_err().to_string();
        assert!(msg.contains("annotations[1]: field `id`: duplicate annotation id 4 (also annotations[0])"), "{msg}");
    }
}
