//! torchvision's MobileNetV3-Large, with an option that replaces every depthwise conv by a
//! MixConv (the paper's drop-in use). Weight names follow torchvision's state dict:
//! `features.{i}.block.{j}.{0,1}` (conv, BN), `features.{i}.block.{j}.fc1/fc2` (SE),
//! `classifier.0/3`; a MixConv depthwise conv's groups are `features.{i}.block.{j}.0.{g}.weight`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use mixdet_kernels::denormals::FlushDenormals;
use mixdet_kernels::PaddingMode;

use crate::arch::{make_divisible, KernelSpec};
use crate::layers::{linear, Activation, ConvBnAct, ConvSpec, InvertedResidual, SqueezeExcite};
use crate::onnx::{ExportTarget, ExportedBackbone, OnnxValue};
use crate::{requested_c3, Backbone, DetectionTaps, FeatureInfo, ModelOutput, TapChannels};

/// One row of torchvision's `inverted_residual_setting`.
#[derive(Debug, Clone, Copy)]
struct BneckConf {
    input: usize,
    kernel: usize,
    expanded: usize,
    out: usize,
    use_se: bool,
    hardswish: bool,
    stride: usize,
}

const fn b(
    input: usize,
    kernel: usize,
    expanded: usize,
    out: usize,
    use_se: bool,
    hs: bool,
    stride: usize,
) -> BneckConf {
    BneckConf { input, kernel, expanded, out, use_se, hardswish: hs, stride }
}

/// MobileNetV3-Large, `_mobilenet_v3_conf("mobilenet_v3_large")`; channels after the C4 row are
/// halved with `reduced_tail`.
#[rustfmt::skip]
fn large_setting(reduced_tail: bool) -> Vec<BneckConf> {
    let r = if reduced_tail { 2 } else { 1 };
    vec![
        b(16, 3, 16, 16, false, false, 1),
        b(16, 3, 64, 24, false, false, 2),
        b(24, 3, 72, 24, false, false, 1),
        b(24, 5, 72, 40, true, false, 2),
        b(40, 5, 120, 40, true, false, 1),
        b(40, 5, 120, 40, true, false, 1),
        b(40, 3, 240, 80, false, true, 2),
        b(80, 3, 200, 80, false, true, 1),
        b(80, 3, 184, 80, false, true, 1),
        b(80, 3, 184, 80, false, true, 1),
        b(80, 3, 480, 112, true, true, 1),
        b(112, 3, 672, 112, true, true, 1),
        b(112, 5, 672, 160 / r, true, true, 2),
        b(160 / r, 5, 960 / r, 160 / r, true, true, 1),
        b(160 / r, 5, 960 / r, 160 / r, true, true, 1),
    ]
}

/// Options of torchvision's MobileNetV3-Large.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MobileNetV3Config {
    /// Halve the channels of the last stage (torchvision's `reduced_tail`, used by SSDLite).
    pub reduced_tail: bool,
    /// Replace every depthwise conv by a MixConv with these kernel sizes.
    pub mixconv_kernels: Option<Vec<usize>>,
}

const BN_EPS: f64 = 1e-3;

/// torchvision's `Conv2dNormActivation`: conv `.0`, BN (eps 1e-3) `.1`, activation.
fn conv_norm_act(spec: ConvSpec, act: Activation, vb: VarBuilder) -> Result<ConvBnAct> {
    ConvBnAct::load(&spec, BN_EPS, act, vb.pp("0"), vb.pp("1"))
}

fn spec(in_chs: usize, out_chs: usize, kernel: KernelSpec, stride: usize, depthwise: bool) -> ConvSpec {
    ConvSpec { in_chs, out_chs, kernel, stride, dilation: 1, depthwise, padding: PaddingMode::Symmetric }
}

/// torchvision's `InvertedResidual`: `block.{0,1,..}` in order (expansion, depthwise, SE, projection).
fn load_block(c: &BneckConf, mix: Option<&Vec<usize>>, vb: VarBuilder) -> Result<InvertedResidual> {
    let act = if c.hardswish { Activation::HardSwish } else { Activation::Relu };
    let mut j = 0;
    let mut next = || {
        j += 1;
        vb.pp((j - 1).to_string())
    };
    let expand = if c.expanded != c.input {
        Some(conv_norm_act(spec(c.input, c.expanded, KernelSpec::Single(1), 1, false), act, next())?)
    } else {
        None
    };
    let dw_kernel = match mix {
        Some(ks) => KernelSpec::Mixed(ks.clone()),
        None => KernelSpec::Single(c.kernel),
    };
    let depthwise = conv_norm_act(spec(c.expanded, c.expanded, dw_kernel, c.stride, true), act, next())?;
    let se = if c.use_se {
        let squeeze = make_divisible((c.expanded / 4) as f64, 8);
        let se_vb = next();
        Some(SqueezeExcite::load(
            c.expanded,
            squeeze,
            Activation::Relu,
            Activation::HardSigmoid,
            ("fc1", "fc2"),
            se_vb,
        )?)
    } else {
        None
    };
    let project =
        conv_norm_act(spec(c.expanded, c.out, KernelSpec::Single(1), 1, false), Activation::Identity, next())?;
    Ok(InvertedResidual { expand, depthwise, se, project, skip: c.stride == 1 && c.input == c.out })
}

/// torchvision's MobileNetV3-Large loaded with weights.
#[derive(Debug, Clone)]
pub struct MobileNetV3 {
    stem: ConvBnAct,
    blocks: Vec<InvertedResidual>,
    last_conv: ConvBnAct,
    classifier: Option<(candle_nn::Linear, candle_nn::Linear)>,
    /// Indices into `features` (stem = 0, blocks 1..=15, last conv 16) whose outputs are taps.
    taps: Vec<usize>,
    features: Vec<FeatureInfo>,
    /// Index into `blocks` of the last stride-2 block (torchvision's `c4_pos` minus the stem).
    c4_block: usize,
    /// Index into `blocks` of the stride-2 block before it (C3's), if any.
    c3_block: Option<usize>,
}

impl MobileNetV3 {
    /// Builds MobileNetV3-Large; `num_classes = 0` or `features_only` drops the classifier.
    pub fn load_large(
        cfg: &MobileNetV3Config,
        num_classes: usize,
        features_only: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let setting = large_setting(cfg.reduced_tail);
        let fvb = vb.pp("features");
        let stem = conv_norm_act(spec(3, 16, KernelSpec::Single(3), 2, false), Activation::HardSwish, fvb.pp("0"))?;
        let mut blocks = Vec::with_capacity(setting.len());
        let mut taps = Vec::new();
        let mut features = Vec::new();
        let mut stride = 2;
        for (i, c) in setting.iter().enumerate() {
            let bvb = fvb.pp((i + 1).to_string()).pp("block");
            blocks.push(load_block(c, cfg.mixconv_kernels.as_ref(), bvb)?);
            stride *= c.stride;
            // The last module at each resolution is a tap.
            if setting.get(i + 1).is_some_and(|n| n.stride > 1) {
                taps.push(i + 1);
                features.push(FeatureInfo { channels: c.out, stride, module: format!("features.{}", i + 1) });
            }
        }
        let last_in = setting.last().map_or(16, |c| c.out);
        let last_out = 6 * last_in;
        let last_idx = setting.len() + 1;
        let last_conv = conv_norm_act(
            spec(last_in, last_out, KernelSpec::Single(1), 1, false),
            Activation::HardSwish,
            fvb.pp(last_idx.to_string()),
        )?;
        taps.push(last_idx);
        features.push(FeatureInfo { channels: last_out, stride, module: format!("features.{last_idx}") });
        let classifier = if features_only || num_classes == 0 {
            None
        } else {
            let hidden = make_divisible(1280.0 / if cfg.reduced_tail { 2.0 } else { 1.0 }, 8);
            let cvb = vb.pp("classifier");
            Some((linear(last_out, hidden, cvb.pp("0"))?, linear(hidden, num_classes, cvb.pp("3"))?))
        };
        let c4_block = setting.iter().rposition(|c| c.stride > 1).unwrap_or(0);
        let c3_block = setting[..c4_block].iter().rposition(|c| c.stride > 1);
        Ok(Self { stem, blocks, last_conv, classifier, taps, features, c4_block, c3_block })
    }
}

impl Backbone for MobileNetV3 {
    fn feature_info(&self) -> &[FeatureInfo] {
        &self.features
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<ModelOutput> {
        let _flush = FlushDenormals::new();
        use candle_core::{Module, D};
        let mut h = self.stem.forward_t(x, train)?;
        let mut features = Vec::with_capacity(self.taps.len());
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward_t(&h, train)?;
            if self.taps.contains(&(i + 1)) {
                features.push(h.clone());
            }
        }
        h = self.last_conv.forward_t(&h, train)?;
        features.push(h.clone());
        let logits = match &self.classifier {
            Some((fc1, fc2)) => {
                let pooled = h.mean(D::Minus1)?.mean(D::Minus1)?;
                crate::macs::add(|| {
                    pooled.dims().first().copied().unwrap_or(0)
                        * (fc1.weight().elem_count() + fc2.weight().elem_count())
                });
                let hidden = Activation::HardSwish.apply(&fc1.forward(&pooled)?)?;
                Some(fc2.forward(&hidden)?)
            }
            None => None,
        };
        Ok(ModelOutput { logits, features })
    }

    fn fuse_for_inference(&mut self) -> Result<()> {
        self.stem.fuse()?;
        for b in &mut self.blocks {
            b.fuse()?;
        }
        self.last_conv.fuse()
    }

    fn detection_tap_channels(&self) -> TapChannels {
        let expanded = |b: usize| self.blocks.get(b).map(InvertedResidual::expanded_channels);
        TapChannels {
            c3: self.c3_block.and_then(expanded),
            c4: expanded(self.c4_block).unwrap_or(0),
            c5: self.last_conv.out_channels(),
        }
    }

    fn to_onnx(&self, g: &mut mixdet_onnx::Graph, x: &OnnxValue, target: ExportTarget) -> Result<ExportedBackbone> {
        let c3_block = match target {
            ExportTarget::DetectionTaps { with_c3 } => requested_c3(with_c3, self.c3_block)?,
            _ => None,
        };
        let mut out = ExportedBackbone::default();
        let prev = g.set_prefix("features.0");
        let mut h = self.stem.to_onnx(g, x)?;
        let (mut c3, mut c4) = (None, None);
        for (i, block) in self.blocks.iter().enumerate() {
            g.set_prefix(&format!("features.{}", i + 1));
            let (y, expanded) = block.to_onnx(g, &h)?;
            if i == self.c4_block {
                c4 = Some(expanded);
            } else if Some(i) == c3_block {
                c3 = Some(expanded);
            }
            h = y;
            if self.taps.contains(&(i + 1)) {
                out.features.push(h.clone());
            }
        }
        g.set_prefix(&format!("features.{}", self.blocks.len() + 1));
        let last = self.last_conv.to_onnx(g, &h)?;
        out.features.push(last.clone());
        g.set_prefix("classifier");
        match target {
            ExportTarget::Logits => {
                let Some((fc1, fc2)) = &self.classifier else {
                    candle_core::bail!("this model has no classifier (built features-only or with 0 classes)");
                };
                let pooled = crate::onnx::pool(g, &last)?;
                let hidden = crate::onnx::linear(g, &pooled, fc1)?;
                let hidden = Activation::HardSwish.to_onnx(g, hidden)?;
                out.logits = Some(crate::onnx::linear(g, &hidden, fc2)?);
            }
            ExportTarget::Features => {}
            ExportTarget::DetectionTaps { .. } => {
                let c4 =
                    c4.ok_or_else(|| candle_core::Error::Msg("model has no stride-2 block for the C4 tap".into()))?;
                out.taps = Some((c3, c4, last));
            }
        }
        g.set_prefix(&prev);
        Ok(out)
    }

    fn forward_detection_taps(&self, x: &Tensor, train: bool, with_c3: bool) -> Result<DetectionTaps> {
        let _flush = FlushDenormals::new();
        let c3_block = requested_c3(with_c3, self.c3_block)?;
        let mut h = self.stem.forward_t(x, train)?;
        let (mut c3, mut c4) = (None, None);
        for (i, block) in self.blocks.iter().enumerate() {
            let tap = if i == self.c4_block {
                Some(&mut c4)
            } else if Some(i) == c3_block {
                Some(&mut c3)
            } else {
                None
            };
            h = block.forward_tapped(&h, train, tap)?;
        }
        let c5 = self.last_conv.forward_t(&h, train)?;
        let c4 = c4.ok_or_else(|| candle_core::Error::Msg("model has no stride-2 block for the C4 tap".into()))?;
        Ok(DetectionTaps { c3, c4, c5 })
    }
}
