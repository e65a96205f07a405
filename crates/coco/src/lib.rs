//! COCO detection format and a bbox evaluator with the exact semantics of pycocotools 2.0.x
//! `COCOeval(iouType='bbox')`.
//!
//! ```no_run
//! use mixdet_coco::{evaluate, load_results, GroundTruth, Params};
//! # fn main() -> Result<(), mixdet_coco::CocoError> {
//! let gt = GroundTruth::from_path("instances_val2017.json")?;
//! let dets = load_results("detections.json")?;
//! let eval = evaluate(&gt, &dets, &Params::for_ground_truth(&gt))?;
//! for line in eval.summary_lines().unwrap_or_default() {
//!     println!("{line}");
//! }
//! # Ok(())
//! # }
//! ```

pub mod accumulate;
pub mod dataset;
pub mod error;
pub mod evaluation;
mod ids;
pub mod iou;
mod json;
mod matching;
pub mod params;
pub mod plot;
pub mod results;
mod results_scan;
pub mod summary;
pub mod tide;

pub use accumulate::Shape;
pub use dataset::{Annotation, Category, GroundTruth, Image};
pub use error::{CocoError, Result};
pub use evaluation::{evaluate, evaluate_files, Evaluation, IouSelection};
pub use params::{AreaRange, Params};
pub use results::{check_detections, load_results, parse_results, Detection, ResultsReport};
pub use summary::{CategoryMetrics, MetricSpec};
pub use tide::{analyze_errors, ErrorKind, ErrorParams, ErrorReport};
