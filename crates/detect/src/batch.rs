//! Detection over many image files: decoding and preprocessing run in parallel on a producer
//! thread one batch ahead, while the model runs batched inference and post-processing. Used by
//! `mixdet detect`, `mixdet eval` (data-set mode) and the trainer's periodic evaluation.

use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use crate::image_file::{load_rgb, ImageFileError};
use crate::{Detections, HeadOutput, PostprocessConfig, SsdLite};

/// What happened to one input file.
pub struct ImageOutcome {
    /// Position in the input list.
    pub index: usize,
    /// The file.
    pub path: PathBuf,
    /// Detections in original-image pixels, or why the file was skipped.
    pub result: std::result::Result<Detected, ImageFileError>,
    /// Milliseconds spent on this image (its preprocessing plus its share of the batch).
    pub total_ms: f64,
}

/// A processed image.
pub struct Detected {
    /// Detections in original-image pixels, best first.
    pub detections: Detections,
    /// The decoded image, kept when the caller asked for it (overlays).
    pub image: Option<RgbImage>,
    /// Width and height of the image in pixels.
    pub size: [u32; 2],
}

/// Accumulated per-stage time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    /// Decoding, normalisation and resizing (summed over images, as measured in the workers).
    pub preprocess_ms: f64,
    /// Model forward passes.
    pub inference_ms: f64,
    /// Softmax, decoding, NMS, rescaling.
    pub postprocess_ms: f64,
    /// Images that went through the model.
    pub images: usize,
}

/// A decoded, preprocessed image: network input values, original `(width, height)`, and the
/// image itself when overlays are wanted.
struct Input {
    values: Vec<f32>,
    size: (u32, u32),
    image: Option<RgbImage>,
}

struct Prepared {
    index: usize,
    path: PathBuf,
    input: std::result::Result<Input, ImageFileError>,
    ms: f64,
}

/// Runs `f` on a worker of rayon's global pool (inline when already on one).
///
/// Every parallel loop started from a thread outside the pool is handed over to it while the
/// caller sleeps: two futex wake-ups per loop, and a forward pass has hundreds of loops (`perf`
/// on mixnet_s, one thread: about a tenth of the time in the scheduler). Started on a worker, a
/// loop runs there and the other workers steal from it. `f` must not block on work that needs
/// the pool (a channel fed by parallel loops, say): it holds a worker until it returns.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Runs `model` over `files` in batches of `batch`, calling `sink` once per file in input order.
pub fn run(
    model: &SsdLite,
    device: &Device,
    files: &[PathBuf],
    batch: usize,
    post: &PostprocessConfig,
    keep_images: bool,
    mut sink: impl FnMut(ImageOutcome),
) -> Result<Timings> {
    let batch = batch.max(1);
    let [h, w] = model.config().input_size;
    let mut timings = Timings::default();
    // The batches run on pool workers (see below), whose CUDA streams are not ordered with this
    // thread's: finish what this thread queued (a trainer's last weight update, say) first.
    device.synchronize()?;
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = sync_channel::<Vec<Prepared>>(1);
        scope.spawn(move || {
            for (b, chunk) in files.chunks(batch).enumerate() {
                let prepared: Vec<Prepared> = chunk
                    .par_iter()
                    .enumerate()
                    .map(|(i, path)| {
                        let start = Instant::now();
                        let input = load_rgb(path).map(|img| Input {
                            values: model.preprocess_rgb(&img),
                            size: img.dimensions(),
                            image: keep_images.then_some(img),
                        });
                        Prepared { index: b * batch + i, path: path.clone(), input, ms: elapsed_ms(start) }
                    })
                    .collect();
                if tx.send(prepared).is_err() {
                    return;
                }
            }
        });
        for prepared in rx {
            let (ok, failed): (Vec<Prepared>, Vec<Prepared>) = prepared.into_iter().partition(|p| p.input.is_ok());
            for p in failed {
                timings.preprocess_ms += p.ms;
                if let Err(e) = p.input {
                    sink(ImageOutcome { index: p.index, path: p.path, result: Err(e), total_ms: p.ms });
                }
            }
            if ok.is_empty() {
                continue;
            }
            let n = ok.len();
            let mut data = Vec::with_capacity(n * 3 * h * w);
            let mut items = Vec::with_capacity(n);
            for p in ok {
                timings.preprocess_ms += p.ms;
                if let Ok(input) = p.input {
                    data.extend_from_slice(&input.values);
                    items.push((p.index, p.path, input.size, input.image, p.ms));
                }
            }
            let start = Instant::now();
            // Upload, forward and download on one thread: candle's `Device::new_cuda` queues
            // each host thread's work on that thread's own default stream, and work queued from
            // two threads is not ordered. With the upload here and the forward on a worker, an
            // H100 gave wrong detections for batches above 8 images (AP 0.008 at 16, against
            // 0.540 at 1 to 8): the forward could start before the input was copied. The
            // download also makes the device finish before post-processing is timed.
            let out = on_worker(|| -> Result<HeadOutput> {
                let x = Tensor::from_vec(data, (n, 3, h, w), device)?;
                forward_in_chunks(model, &x, device)
            })?;
            let inference = elapsed_ms(start);
            let start = Instant::now();
            let dets = on_worker(|| model.postprocess(&out, post))?;
            let mut rescaled = Vec::with_capacity(n);
            for (mut d, item) in dets.into_iter().zip(items) {
                d.rescale(model.config().input_size, [item.2 .1 as usize, item.2 .0 as usize]);
                rescaled.push((d, item));
            }
            let postprocess = elapsed_ms(start);
            timings.inference_ms += inference;
            timings.postprocess_ms += postprocess;
            timings.images += n;
            for (detections, (index, path, (width, height), image, pre_ms)) in rescaled {
                let total_ms = pre_ms + (inference + postprocess) / n as f64;
                let size = [width, height];
                sink(ImageOutcome { index, path, result: Ok(Detected { detections, image, size }), total_ms });
            }
        }
        Ok(())
    })?;
    Ok(timings)
}

/// Images per forward pass on the CPU: larger batches gain nothing there once every layer's
/// work fills the threads, and their activations leave the caches (docs/speed.md has the
/// images/s at batch 1, 4 and 16).
const CPU_MICRO_BATCH: usize = 4;

/// The head outputs of batch `x`: on the CPU in slices of four images (larger slices leave the caches),
/// on a GPU in one pass.
pub fn forward_in_chunks(model: &SsdLite, x: &Tensor, device: &Device) -> Result<HeadOutput> {
    let n = x.dim(0)?;
    let chunk = if device.is_cpu() { CPU_MICRO_BATCH } else { n.max(1) };
    let mut cls = Vec::with_capacity(n.div_ceil(chunk));
    let mut reg = Vec::with_capacity(n.div_ceil(chunk));
    let mut grid_sizes = Vec::new();
    for start in (0..n).step_by(chunk) {
        let out = model.forward_t(&x.narrow(0, start, chunk.min(n - start))?, false)?;
        cls.push(out.cls_logits.to_device(&Device::Cpu)?);
        reg.push(out.bbox_regression.to_device(&Device::Cpu)?);
        grid_sizes = out.grid_sizes;
    }
    Ok(HeadOutput { cls_logits: Tensor::cat(&cls, 0)?, bbox_regression: Tensor::cat(&reg, 0)?, grid_sizes })
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}
