//! The data pipeline: a producer thread that shuffles, decodes and augments each batch in
//! parallel (rayon), matches anchors and sends finished batches through a bounded channel, so
//! that the next batches are ready while the model computes.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use mixdet_detect::{BoxCoder, PlanarImage};
use rayon::prelude::*;

use crate::augment::{augment, to_network_input, AugmentConfig, Example};
use crate::dataset::{decode, Issue, Sample};
use crate::matching::{build_targets, Targets};
use crate::rng::Rng;

/// A batch ready for the model.
#[derive(Debug)]
pub struct Batch {
    /// `(count, 3, H, W)` normalised pixels.
    pub images: Vec<f32>,
    /// Images in the batch (unreadable ones are left out).
    pub count: usize,
    /// Anchor targets per image.
    pub targets: Vec<Targets>,
    /// Epoch (0-based).
    pub epoch: u64,
    /// Index of the batch in its epoch.
    pub batch_in_epoch: u64,
    /// Batches in this epoch.
    pub batches_in_epoch: u64,
    /// Images that could not be read.
    pub issues: Vec<Issue>,
}

/// What the loader needs.
#[derive(Debug, Clone)]
pub struct LoaderSpec {
    /// Training samples.
    pub samples: Arc<Vec<Sample>>,
    /// Images per batch.
    pub batch_size: usize,
    /// Network input `[height, width]`.
    pub input_size: [usize; 2],
    /// Normalisation mean.
    pub mean: [f32; 3],
    /// Normalisation standard deviation.
    pub std: [f32; 3],
    /// Augmentations.
    pub augment: AugmentConfig,
    /// Anchors of the network input.
    pub anchors: Arc<Vec<[f32; 4]>>,
    /// Box encoding.
    pub coder: BoxCoder,
    /// Matching IoU.
    pub iou_threshold: f32,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// Epochs to produce.
    pub epochs: u64,
    /// Start here: (epoch, batch in epoch).
    pub start: (u64, u64),
}

impl LoaderSpec {
    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> u64 {
        self.samples.len().div_ceil(self.batch_size.max(1)) as u64
    }

    /// The sample order of `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        Rng::for_item(self.seed, 0x5EED_0E90, epoch).shuffle(&mut order);
        order
    }

    /// Decodes, augments and matches one sample.
    fn prepare(&self, epoch: u64, index: usize) -> Result<(Vec<f32>, Targets), Issue> {
        let s = &self.samples[index];
        let d = decode(&s.path).map_err(|e| Issue {
            file: s.path.display().to_string(),
            record: format!("image {}", s.image_id),
            message: e.reason(),
        })?;
        let image = PlanarImage::from_rgb8(&d.rgb, d.width, d.height);
        let ex = Example {
            image,
            boxes: s.boxes.iter().map(|b| b.xyxy).collect(),
            labels: s.boxes.iter().map(|b| b.label).collect(),
        };
        let mut rng = Rng::for_item(self.seed ^ epoch.wrapping_mul(0x2545_F491), 0xA06, index as u64);
        let ex = augment(ex, &self.augment, self.mean, &mut rng);
        let ex = to_network_input(ex, self.input_size, self.mean, self.std);
        let t = build_targets(&ex.boxes, &ex.labels, &self.anchors, &self.coder, self.iou_threshold);
        Ok((ex.image.data, t))
    }

    /// Builds one batch of `epoch` from the given sample indices.
    pub fn make_batch(&self, epoch: u64, batch_in_epoch: u64, indices: &[usize]) -> Batch {
        let prepared: Vec<Result<(Vec<f32>, Targets), Issue>> =
            indices.par_iter().map(|&i| self.prepare(epoch, i)).collect();
        let [h, w] = self.input_size;
        let mut images = Vec::with_capacity(indices.len() * 3 * h * w);
        let mut targets = Vec::with_capacity(indices.len());
        let mut issues = Vec::new();
        for p in prepared {
            match p {
                Ok((img, t)) => {
                    images.extend_from_slice(&img);
                    targets.push(t);
                }
                Err(issue) => issues.push(issue),
            }
        }
        Batch {
            count: targets.len(),
            images,
            targets,
            epoch,
            batch_in_epoch,
            batches_in_epoch: self.batches_per_epoch(),
            issues,
        }
    }
}

/// Starts the producer; it stops when the epochs are done or the receiver is dropped.
pub fn spawn(spec: LoaderSpec, prefetch: usize) -> (Receiver<Batch>, JoinHandle<()>) {
    let (tx, rx) = sync_channel(prefetch.max(1));
    let handle = std::thread::spawn(move || {
        let bs = spec.batch_size.max(1);
        for epoch in spec.start.0..spec.epochs {
            let order = spec.epoch_order(epoch);
            let first = if epoch == spec.start.0 { spec.start.1 as usize } else { 0 };
            for (b, chunk) in order.chunks(bs).enumerate().skip(first) {
                if tx.send(spec.make_batch(epoch, b as u64, chunk)).is_err() {
                    return;
                }
            }
        }
    });
    (rx, handle)
}
