//! Errors of the training library.

/// Anything that stops data generation, loading or training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Malformed JSON.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The error (with line and column).
        source: serde_json::Error,
    },
    /// An image could not be decoded or encoded.
    #[error("{path}: {source}")]
    Image {
        /// The file.
        path: String,
        /// The error.
        source: image::ImageError,
    },
    /// A configuration value that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The detector configuration is unusable.
    #[error(transparent)]
    Detector(#[from] mixdet_detect::ConfigError),
    /// Weights could not be loaded.
    #[error(transparent)]
    Weights(#[from] mixdet_backbones::weights::WeightsError),
    /// A COCO file could not be read, or the evaluator refused the data.
    #[error(transparent)]
    Coco(#[from] mixdet_coco::CocoError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
