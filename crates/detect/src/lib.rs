//! SSDLite detection for mixdet: the detector (backbone C4/C5 + extra layers + SSDLite head),
//! anchors, box coding, NMS and post-processing with torchvision's semantics.
//!
//! Data flow: image → [`preprocess`] → [`SsdLite::forward_t`] → anchors/decoding →
//! [`postprocess::postprocess_image`] (NMS) → [`Detections`].

pub mod anchor_fit;
pub mod anchors;
pub mod batch;
pub mod box_coder;
pub mod boxes;
pub mod config;
pub mod image_file;
pub mod nms;
pub mod postprocess;
pub mod preprocess;
pub mod ssdlite;

pub use batch::on_worker;
pub use box_coder::BoxCoder;
pub use config::{AnchorConfig, ConfigError, DetectorConfig, PostprocessConfig, BUILTIN_NAMES};
pub use image_file::{load_rgb, ImageFileError};
pub use postprocess::Detections;
pub use preprocess::PlanarImage;
pub use ssdlite::{DetectorSummary, HeadOutput, SsdLite};

use candle_core::{Device, Result, Tensor};

impl SsdLite {
    /// Normalises and resizes one image to the network input (`3 x H x W` values).
    pub fn preprocess_image(&self, mut img: PlanarImage) -> Vec<f32> {
        let cfg = self.config();
        preprocess::normalize(&mut img, cfg.image_mean, cfg.image_std);
        preprocess::resize_bilinear(&img, cfg.input_size[0], cfg.input_size[1]).data
    }

    /// Normalises and resizes images to the network input, stacked into a `(N, 3, H, W)` batch.
    pub fn preprocess_batch(&self, images: &[PlanarImage], device: &Device) -> Result<Tensor> {
        let [h, w] = self.config().input_size;
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for img in images {
            data.extend_from_slice(&self.preprocess_image(img.clone()));
        }
        Tensor::from_vec(data, (images.len(), 3, h, w), device)
    }

    /// Post-processes a batch of head outputs into detections in network-input pixels.
    pub fn postprocess(&self, out: &HeadOutput, postprocess: &PostprocessConfig) -> Result<Vec<Detections>> {
        use rayon::prelude::*;
        let cfg = self.config();
        let anchors = self.anchors(&out.grid_sizes);
        let (n, a, k) = out.cls_logits.dims3()?;
        if a != anchors.len() {
            candle_core::bail!("head produced {a} anchors, the generator {}", anchors.len());
        }
        let cls = out.cls_logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let reg = out.bbox_regression.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let coder = BoxCoder::default();
        Ok((0..n)
            .into_par_iter()
            .map(|i| {
                postprocess::postprocess_image(
                    &cls[i * a * k..(i + 1) * a * k],
                    &reg[i * a * 4..(i + 1) * a * 4],
                    &anchors,
                    k,
                    cfg.input_size,
                    postprocess,
                    &coder,
                )
            })
            .collect())
    }
}
