//! The depthwise-separable / inverted-residual block of MobileNetV2/V3 and the EfficientNet family.

use candle_core::{Result, Tensor};

use super::{ConvBnAct, SqueezeExcite};
use crate::onnx::OnnxValue;

/// A depthwise-separable or inverted-residual block, as MobileNetV2/V3 and the EfficientNet family
/// build them: an optional 1x1 expansion, the depthwise conv, optional squeeze-excite, the 1x1
/// projection and an optional skip. Each architecture loads it under its own key names.
#[derive(Debug, Clone)]
pub(crate) struct InvertedResidual {
    /// Expansion conv + BN + activation (absent in depthwise-separable blocks).
    pub expand: Option<ConvBnAct>,
    /// Depthwise conv + BN + activation.
    pub depthwise: ConvBnAct,
    /// Squeeze-excite.
    pub se: Option<SqueezeExcite>,
    /// Projection conv + BN (with an activation only in some depthwise-separable blocks).
    pub project: ConvBnAct,
    /// Whether the input is added to the output.
    pub skip: bool,
}

impl InvertedResidual {
    /// The expansion conv's output (the input itself when the block has none).
    pub fn expand_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.expand {
            Some(e) => e.forward_t(x, train),
            None => Ok(x.clone()),
        }
    }

    /// The block's output.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_tapped(x, train, None)
    }

    /// The block's output; with `tap`, the expansion output (SSDLite's C3/C4) is kept there too.
    pub fn forward_tapped(&self, x: &Tensor, train: bool, tap: Option<&mut Option<Tensor>>) -> Result<Tensor> {
        let expanded = self.expand_t(x, train)?;
        let mut h = self.depthwise.forward_t(&expanded, train)?;
        if let Some(slot) = tap {
            *slot = Some(expanded);
        }
        if let Some(se) = &self.se {
            h = if train { se.forward(&h)? } else { se.forward_inplace(h)? };
        }
        h = self.project.forward_t(&h, train)?;
        if self.skip {
            h = crate::fused::residual_add(h, x, train)?;
        }
        Ok(h)
    }

    /// Writes the block into an ONNX graph; returns the output and the expansion's output (the
    /// detection tap; the input itself when the block has no expansion).
    pub fn to_onnx(&self, g: &mut mixdet_onnx::Graph, x: &OnnxValue) -> Result<(OnnxValue, OnnxValue)> {
        let expanded = match &self.expand {
            Some(e) => e.to_onnx(g, x)?,
            None => x.clone(),
        };
        let mut h = self.depthwise.to_onnx(g, &expanded)?;
        if let Some(se) = &self.se {
            h = se.to_onnx(g, &h)?;
        }
        h = self.project.to_onnx(g, &h)?;
        if self.skip {
            let y = g.op("Add", &[&h.name, &x.name], &[]).map_err(crate::onnx::wrap)?;
            h = h.renamed(y);
        }
        Ok((h, expanded))
    }

    /// Channels after the expansion (those of the depthwise conv).
    pub fn expanded_channels(&self) -> usize {
        self.depthwise.out_channels()
    }

    /// Folds the BatchNorms for inference.
    pub fn fuse(&mut self) -> Result<()> {
        if let Some(e) = &mut self.expand {
            e.fuse()?;
        }
        self.depthwise.fuse()?;
        if let Some(se) = &mut self.se {
            se.fuse()?;
        }
        self.project.fuse()
    }
}
