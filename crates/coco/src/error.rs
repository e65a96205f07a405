//! Errors of loading COCO files and of evaluating.

use std::path::PathBuf;

/// Everything that can go wrong while loading COCO data or evaluating it.
///
/// Records are named as `section[index]` with a 0-based index into the JSON array, e.g.
/// `annotations[12]` in a ground-truth file or `results[3]` in a results file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CocoError {
    /// A file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Malformed JSON, a missing field or a field of the wrong type.
    #[error("{origin}: {}{error}", record.as_deref().map(|r| format!("{r}: ")).unwrap_or_default())]
    Json {
        /// The file (or `<memory>`).
        origin: String,
        /// The record being parsed when the error happened, if inside one of the arrays.
        record: Option<String>,
        /// serde_json's message, with line and column.
        error: serde_json::Error,
    },
    /// A record that parsed but holds a value the evaluator cannot accept.
    #[error("{origin}: {record}: field `{field}`: {message}")]
    InvalidRecord {
        /// The file (or `<memory>`).
        origin: String,
        /// The record, e.g. `results[3]`.
        record: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A results list without a single detection. pycocotools' `loadRes` fails on it (it reads
    /// the first element to decide the result type), so a file like this is rejected; an empty
    /// in-memory slice given to [`crate::evaluate`] is accepted and scores 0 where there is GT.
    #[error("{origin}: the results list is empty (pycocotools' loadRes rejects it as well)")]
    EmptyResults {
        /// The file (or `<memory>`).
        origin: String,
    },
    /// The PR plot could not be drawn or written.
    #[error("{}: cannot write the plot: {message}", path.display())]
    Plot {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Evaluation parameters that pycocotools would crash on or that make no sense.
    #[error("invalid evaluation parameters: {0}")]
    InvalidParams(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = CocoError> = std::result::Result<T, E>;
