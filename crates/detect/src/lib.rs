//! SSDLite detection for mixdet: the detector (backbone C4/C5 + extra layers + SSDLite head),
//! anchors, box coding, NMS and post-processing, each with the semantics of the reference the
//! detector's [`Family`] names: torchvision's SSDLite, or the TensorFlow Object Detection API's
//! SSD ([`tf_od_api`]).
//!
//! Data flow: image → [`SsdLite::preprocess_rgb`] → [`SsdLite::forward_t`] → anchors/decoding →
//! [`SsdLite::postprocess`] (NMS) → [`Detections`].

pub mod anchor_fit;
pub mod anchors;
pub mod batch;
pub mod box_coder;
pub mod boxes;
pub mod builtin_weights;
pub mod config;
pub mod detector;
pub mod image_file;
pub mod mixconv_init;
pub mod nms;
pub mod onnx;
pub mod postprocess;
pub mod preprocess;
pub mod ssdlite;
pub mod tf_od_api;

pub use batch::on_worker;
pub use box_coder::{BoxCoder, CodeOrder};
pub use config::{
    AnchorConfig, AnchorGenerator, ClassSet, ConfigError, DetectorConfig, Family, PostprocessConfig, TfAnchorConfig,
    BUILTIN_NAMES,
};
pub use detector::{DetectOptions, Detection, Detector, Error, TileOptions};
pub use image_file::{load_rgb, ImageFileError};
pub use postprocess::Detections;
pub use preprocess::PlanarImage;
pub use ssdlite::{DetectorSummary, HeadOutput, SsdLite};

use candle_core::{Device, Result, Tensor};
use image::RgbImage;

impl SsdLite {
    /// Resizes and normalises one image to the network input (`3 x H x W` values) the way the
    /// detector's reference does: torchvision normalises `[0, 1]` values then resizes with
    /// half-pixel centres; the TF family resizes the 0..255 values with TF1's legacy centres,
    /// then scales.
    pub fn preprocess_rgb(&self, image: &RgbImage) -> Vec<f32> {
        let cfg = self.config();
        let (w, h) = (image.width() as usize, image.height() as usize);
        match cfg.family {
            Family::Torchvision => self.preprocess_image(PlanarImage::from_rgb8(image.as_raw(), w, h)),
            Family::TfOdApi => tf_od_api::preprocess::preprocess_rgb8(
                image.as_raw(),
                w,
                h,
                cfg.input_size[0],
                cfg.input_size[1],
                cfg.image_mean,
                cfg.image_std,
            ),
        }
    }

    /// Normalises and resizes one planar image of `[0, 1]` values to the network input
    /// (torchvision's transform: normalise, then resize). For the TF family prefer
    /// [`SsdLite::preprocess_rgb`], which starts from the 8-bit pixels as TensorFlow does.
    pub fn preprocess_image(&self, mut img: PlanarImage) -> Vec<f32> {
        let cfg = self.config();
        match cfg.family {
            Family::Torchvision => {
                preprocess::normalize(&mut img, cfg.image_mean, cfg.image_std);
                preprocess::resize_bilinear(&img, cfg.input_size[0], cfg.input_size[1]).data
            }
            Family::TfOdApi => {
                let rgb: Vec<u8> = (0..img.height * img.width)
                    .flat_map(|i| (0..3).map(move |c| (c, i)))
                    .map(|(c, i)| (img.data[c * img.height * img.width + i] * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect();
                tf_od_api::preprocess::preprocess_rgb8(
                    &rgb,
                    img.width,
                    img.height,
                    cfg.input_size[0],
                    cfg.input_size[1],
                    cfg.image_mean,
                    cfg.image_std,
                )
            }
        }
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

    /// Every anchor's decoded box (`(N, A, 4)`, `[x1, y1, x2, y2]` network-input pixels, clipped
    /// to the input) and per-class scores (`(N, A, K)`: softmax for the torchvision family,
    /// sigmoid for the TF family), before any threshold or NMS: what an exported model's
    /// `boxes` and `scores` hold.
    pub fn decode(&self, out: &HeadOutput) -> Result<(Tensor, Tensor)> {
        let cfg = self.config();
        let (n, a, k) = out.cls_logits.dims3()?;
        let cls = out.cls_logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let reg = out.bbox_regression.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let (h, w) = (cfg.input_size[0] as f32, cfg.input_size[1] as f32);
        let mut boxes = Vec::with_capacity(n * a * 4);
        let mut scores = vec![0f32; n * a * k];
        let code = |i: usize| [reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]];
        match (&cfg.family, &cfg.anchors) {
            (Family::TfOdApi, AnchorGenerator::TfMultipleGrid(tf)) => {
                let anchors = tf_od_api::anchors::generate_normalized(tf, &out.grid_sizes, cfg.input_size);
                if anchors.len() != a {
                    candle_core::bail!("head produced {a} anchors, the generator {}", anchors.len());
                }
                for i in 0..n * a {
                    let [y0, x0, y1, x1] =
                        tf_od_api::postprocess::decode(code(i), anchors[i % a]).map(|v| v.clamp(0.0, 1.0));
                    boxes.extend([x0 * w, y0 * h, x1 * w, y1 * h]);
                }
                scores.iter_mut().zip(&cls).for_each(|(s, &l)| *s = tf_od_api::postprocess::sigmoid(l));
            }
            _ => {
                let anchors = self.anchors(&out.grid_sizes);
                if anchors.len() != a {
                    candle_core::bail!("head produced {a} anchors, the generator {}", anchors.len());
                }
                let coder = BoxCoder::default();
                for i in 0..n * a {
                    let b = coder.decode(code(i), anchors[i % a]);
                    boxes.extend([b[0].clamp(0.0, w), b[1].clamp(0.0, h), b[2].clamp(0.0, w), b[3].clamp(0.0, h)]);
                }
                for (s, l) in scores.chunks_mut(k).zip(cls.chunks(k)) {
                    postprocess::softmax(l, s);
                }
            }
        }
        Ok((Tensor::from_vec(boxes, (n, a, 4), &Device::Cpu)?, Tensor::from_vec(scores, (n, a, k), &Device::Cpu)?))
    }

    /// Post-processes a batch of head outputs into detections in network-input pixels, with the
    /// rules of the detector's family.
    pub fn postprocess(&self, out: &HeadOutput, postprocess: &PostprocessConfig) -> Result<Vec<Detections>> {
        use rayon::prelude::*;
        let cfg = self.config();
        let (n, a, k) = out.cls_logits.dims3()?;
        let cls = out.cls_logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let reg = out.bbox_regression.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let image = |i: usize| (&cls[i * a * k..(i + 1) * a * k], &reg[i * a * 4..(i + 1) * a * 4]);
        let check = |anchors: usize| -> Result<()> {
            if a != anchors {
                candle_core::bail!("head produced {a} anchors, the generator {anchors}");
            }
            Ok(())
        };
        Ok(match (&cfg.family, &cfg.anchors) {
            (Family::TfOdApi, AnchorGenerator::TfMultipleGrid(tf)) => {
                let anchors = tf_od_api::anchors::generate_normalized(tf, &out.grid_sizes, cfg.input_size);
                check(anchors.len())?;
                (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let (c, r) = image(i);
                        tf_od_api::postprocess::postprocess_image(c, r, &anchors, k, cfg.input_size, postprocess)
                    })
                    .collect()
            }
            _ => {
                let anchors = self.anchors(&out.grid_sizes);
                check(anchors.len())?;
                let coder = BoxCoder::default();
                (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let (c, r) = image(i);
                        postprocess::postprocess_image(c, r, &anchors, k, cfg.input_size, postprocess, &coder)
                    })
                    .collect()
            }
        })
    }
}
