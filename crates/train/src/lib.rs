//! Training for mixdet's SSDLite detectors: a synthetic shapes data set ([`synth`]), COCO-format
//! loading with per-record checks ([`dataset`]), SSD augmentation ([`augment`]), anchor matching
//! ([`matching`]) and torchvision's SSD loss ([`loss`]), optimisers with saveable state
//! ([`optim`]), warm-up + cosine schedule ([`schedule`]), checkpoints ([`checkpoint`]), COCO
//! evaluation ([`evaluate`]), the loop ([`trainer`]) and its plot ([`plot`]).

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod error;
pub mod evaluate;
pub mod init;
pub mod loader;
pub mod loss;
pub mod matching;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod schedule;
pub mod synth;
pub mod trainer;

pub use config::{DataConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use trainer::{train, train_observed, Messages, Observer, RunOptions, RunSummary, StepReport};
