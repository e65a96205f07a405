//! timm's `EfficientNet` class as used by MixNet and MobileNetV2: a stem conv, stages of
//! depthwise-separable / inverted-residual blocks decoded from block strings, a 1x1 head conv and
//! a linear classifier. Weight names follow timm's state dict (`conv_stem`, `bn1`,
//! `blocks.{stage}.{block}.conv_pw` ..., `conv_head`, `bn2`, `classifier`).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use mixdet_kernels::denormals::FlushDenormals;
use mixdet_kernels::PaddingMode;

use crate::arch::{
    decode_arch_def, make_divisible, py_round, round_channels, BlockArgs, BlockType, DepthTrunc, KernelSpec,
};
use crate::layers::{classify, linear, Activation, ConvBnAct, ConvSpec, InvertedResidual, SqueezeExcite};
use crate::onnx::{ExportTarget, ExportedBackbone, OnnxValue};
use crate::{requested_c3, Backbone, DetectionTaps, FeatureInfo, ModelOutput, TapChannels};

/// Everything that defines one EfficientNet-family architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct EfficientNetConfig {
    /// Stages of block strings, e.g. `[["ds_r1_k3_s1_e1_c16"], ...]`.
    pub arch: Vec<Vec<String>>,
    /// Stem channels before rounding.
    pub stem_size: usize,
    /// Head (conv_head) channels; not rounded.
    pub num_features: usize,
    /// Channel multiplier applied by `round_channels`.
    pub channel_multiplier: f64,
    /// Depth multiplier.
    pub depth_multiplier: f64,
    /// Truncation of scaled depths.
    pub depth_trunc: DepthTrunc,
    /// Default activation (blocks without `n..`, the stem and the head).
    pub act: Activation,
    /// BatchNorm epsilon (1e-5 PyTorch, 1e-3 for the TF ports).
    pub bn_eps: f64,
    /// Padding rule (`Symmetric`, or `TfSame` for the `tf_` models).
    pub padding: PaddingMode,
    /// Replaces every depthwise kernel by this MixConv kernel list (the paper's drop-in use).
    pub dw_kernel_override: Option<Vec<usize>>,
}

/// Where a feature map is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tap {
    Stem,
    Stage(usize),
}

/// An EfficientNet-family network (MixNet, MobileNetV2) loaded with weights.
#[derive(Debug, Clone)]
pub struct EfficientNet {
    stem: ConvBnAct,
    stages: Vec<Vec<InvertedResidual>>,
    head: Option<ConvBnAct>,
    classifier: Option<candle_nn::Linear>,
    taps: Vec<Tap>,
    features: Vec<FeatureInfo>,
    /// Stage whose first block's expansion is the detection tap C4 (the last stride-2 stage).
    c4_stage: usize,
    /// Stage whose first block's expansion is C3 (the stride-2 stage before C4's), if any.
    c3_stage: Option<usize>,
}

fn block_weights_prefix(stage: usize, block: usize) -> String {
    format!("blocks.{stage}.{block}")
}

impl EfficientNet {
    /// Builds the network. `num_classes = 0` or `features_only` drops the classifier;
    /// `features_only` also drops `conv_head`/`bn2` (timm's `features_only=True`).
    pub fn load(cfg: &EfficientNetConfig, num_classes: usize, features_only: bool, vb: VarBuilder) -> Result<Self> {
        let mut stages_args =
            decode_arch_def(&cfg.arch, cfg.depth_multiplier, cfg.depth_trunc).map_err(candle_core::Error::wrap)?;
        if let Some(ks) = &cfg.dw_kernel_override {
            for b in stages_args.iter_mut().flatten() {
                b.dw_kernel = KernelSpec::Mixed(ks.clone());
            }
        }
        let round = |c| round_channels(c, cfg.channel_multiplier);
        let stem_size = round(cfg.stem_size);
        let stem_spec = ConvSpec {
            in_chs: 3,
            out_chs: stem_size,
            kernel: KernelSpec::Single(3),
            stride: 2,
            dilation: 1,
            depthwise: false,
            padding: cfg.padding,
        };
        let stem = ConvBnAct::load(&stem_spec, cfg.bn_eps, cfg.act, vb.pp("conv_stem"), vb.pp("bn1"))?;

        let mut in_chs = stem_size;
        let mut stride = 2;
        let mut taps = Vec::new();
        let mut features = Vec::new();
        if stages_args.first().and_then(|s| s.first()).is_some_and(|b| b.stride > 1) {
            taps.push(Tap::Stem);
            features.push(FeatureInfo { channels: stem_size, stride, module: "bn1".into() });
        }
        let mut stages = Vec::with_capacity(stages_args.len());
        for (si, stage_args) in stages_args.iter().enumerate() {
            let mut blocks = Vec::with_capacity(stage_args.len());
            for (bi, args) in stage_args.iter().enumerate() {
                let block_stride = if bi == 0 { args.stride } else { 1 };
                stride *= block_stride;
                let out_chs = round(args.out_chs);
                let bvb = vb.pp(block_weights_prefix(si, bi));
                blocks.push(load_block(cfg, args, in_chs, out_chs, block_stride, bvb)?);
                in_chs = out_chs;
            }
            let next_strided = stages_args.get(si + 1).and_then(|s| s.first()).is_none_or(|b| b.stride > 1);
            if next_strided {
                taps.push(Tap::Stage(si));
                features.push(FeatureInfo { channels: in_chs, stride, module: format!("blocks.{si}") });
            }
            stages.push(blocks);
        }
        let (head, classifier) = if features_only {
            (None, None)
        } else {
            let head_spec = ConvSpec {
                in_chs,
                out_chs: cfg.num_features,
                kernel: KernelSpec::Single(1),
                stride: 1,
                dilation: 1,
                depthwise: false,
                padding: cfg.padding,
            };
            let head = ConvBnAct::load(&head_spec, cfg.bn_eps, cfg.act, vb.pp("conv_head"), vb.pp("bn2"))?;
            let classifier =
                if num_classes > 0 { Some(linear(cfg.num_features, num_classes, vb.pp("classifier"))?) } else { None };
            (Some(head), classifier)
        };
        let c4_stage = stages_args.iter().rposition(|s| s.first().is_some_and(|b| b.stride > 1)).unwrap_or(0);
        let c3_stage = stages_args[..c4_stage].iter().rposition(|s| s.first().is_some_and(|b| b.stride > 1));
        Ok(Self { stem, stages, head, classifier, taps, features, c4_stage, c3_stage })
    }
}

fn load_block(
    cfg: &EfficientNetConfig,
    args: &BlockArgs,
    in_chs: usize,
    out_chs: usize,
    stride: usize,
    vb: VarBuilder,
) -> Result<InvertedResidual> {
    // timm's keys: `conv_pw`/`bn1` (ir expansion), `conv_dw` + `bn1` (ds) or `bn2` (ir),
    // `conv_pw` + `bn2` (ds projection) or `conv_pwl` + `bn3` (ir projection).
    let act = args.act.unwrap_or(cfg.act);
    let spec = |i, o, kernel: &KernelSpec, stride, depthwise| ConvSpec {
        in_chs: i,
        out_chs: o,
        kernel: kernel.clone(),
        stride,
        dilation: 1,
        depthwise,
        padding: cfg.padding,
    };
    // timm: SE channels are relative to the block input: round(mid * (se_ratio / exp_ratio)).
    let se = |mid: usize, vb: VarBuilder| -> Result<Option<SqueezeExcite>> {
        if args.se_ratio <= 0.0 {
            return Ok(None);
        }
        let rd = py_round(mid as f64 * (args.se_ratio / args.exp_ratio)) as usize;
        let names = ("conv_reduce", "conv_expand");
        SqueezeExcite::load(mid, rd, act, Activation::Sigmoid, names, vb.pp("se")).map(Some)
    };
    let eps = cfg.bn_eps;
    match args.block_type {
        BlockType::DepthwiseSeparable | BlockType::DepthwiseSeparableAct => {
            let pw_act = if args.block_type == BlockType::DepthwiseSeparableAct { act } else { Activation::Identity };
            Ok(InvertedResidual {
                expand: None,
                depthwise: ConvBnAct::load(
                    &spec(in_chs, in_chs, &args.dw_kernel, stride, true),
                    eps,
                    act,
                    vb.pp("conv_dw"),
                    vb.pp("bn1"),
                )?,
                se: se(in_chs, vb.clone())?,
                project: ConvBnAct::load(
                    &spec(in_chs, out_chs, &args.pw_kernel, 1, false),
                    eps,
                    pw_act,
                    vb.pp("conv_pw"),
                    vb.pp("bn2"),
                )?,
                skip: stride == 1 && in_chs == out_chs && !args.noskip,
            })
        }
        BlockType::InvertedResidual => {
            let mid = make_divisible(in_chs as f64 * args.exp_ratio, 8);
            Ok(InvertedResidual {
                expand: Some(ConvBnAct::load(
                    &spec(in_chs, mid, &args.exp_kernel, 1, false),
                    eps,
                    act,
                    vb.pp("conv_pw"),
                    vb.pp("bn1"),
                )?),
                depthwise: ConvBnAct::load(
                    &spec(mid, mid, &args.dw_kernel, stride, true),
                    eps,
                    act,
                    vb.pp("conv_dw"),
                    vb.pp("bn2"),
                )?,
                se: se(mid, vb.clone())?,
                project: ConvBnAct::load(
                    &spec(mid, out_chs, &args.pw_kernel, 1, false),
                    eps,
                    Activation::Identity,
                    vb.pp("conv_pwl"),
                    vb.pp("bn3"),
                )?,
                skip: stride == 1 && in_chs == out_chs && !args.noskip,
            })
        }
    }
}

impl Backbone for EfficientNet {
    fn feature_info(&self) -> &[FeatureInfo] {
        &self.features
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<ModelOutput> {
        let _flush = FlushDenormals::new();
        let mut h = self.stem.forward_t(x, train)?;
        let mut features = Vec::with_capacity(self.taps.len());
        if self.taps.first() == Some(&Tap::Stem) {
            features.push(h.clone());
        }
        for (si, stage) in self.stages.iter().enumerate() {
            for block in stage {
                h = block.forward_t(&h, train)?;
            }
            if self.taps.contains(&Tap::Stage(si)) {
                features.push(h.clone());
            }
        }
        let logits = match (&self.head, &self.classifier) {
            (Some(head), Some(fc)) => Some(classify(&head.forward_t(&h, train)?, fc)?),
            _ => None,
        };
        Ok(ModelOutput { logits, features })
    }

    fn detection_tap_channels(&self) -> TapChannels {
        let expanded = |si: usize| self.stages.get(si).and_then(|s| s.first()).map(InvertedResidual::expanded_channels);
        TapChannels {
            c3: self.c3_stage.and_then(expanded),
            c4: expanded(self.c4_stage).unwrap_or(0),
            // The last stage is always a feature tap, so `features` ends with the last block's width.
            c5: self.head.as_ref().map_or(self.features.last().map_or(0, |f| f.channels), ConvBnAct::out_channels),
        }
    }

    fn fuse_for_inference(&mut self) -> Result<()> {
        self.stem.fuse()?;
        for block in self.stages.iter_mut().flatten() {
            block.fuse()?;
        }
        if let Some(h) = &mut self.head {
            h.fuse()?;
        }
        Ok(())
    }

    fn to_onnx(&self, g: &mut mixdet_onnx::Graph, x: &OnnxValue, target: ExportTarget) -> Result<ExportedBackbone> {
        let c3_stage = match target {
            ExportTarget::DetectionTaps { with_c3 } => requested_c3(with_c3, self.c3_stage)?,
            _ => None,
        };
        let mut out = ExportedBackbone::default();
        let prev = g.set_prefix("stem");
        let mut h = self.stem.to_onnx(g, x)?;
        if self.taps.first() == Some(&Tap::Stem) {
            out.features.push(h.clone());
        }
        let (mut c3, mut c4) = (None, None);
        for (si, stage) in self.stages.iter().enumerate() {
            for (bi, block) in stage.iter().enumerate() {
                g.set_prefix(&block_weights_prefix(si, bi));
                let (y, expanded) = block.to_onnx(g, &h)?;
                if bi == 0 && si == self.c4_stage {
                    c4 = Some(expanded);
                } else if bi == 0 && Some(si) == c3_stage {
                    c3 = Some(expanded);
                }
                h = y;
            }
            if self.taps.contains(&Tap::Stage(si)) {
                out.features.push(h.clone());
            }
        }
        g.set_prefix("head");
        match target {
            ExportTarget::Logits => {
                let (Some(head), Some(fc)) = (&self.head, &self.classifier) else {
                    candle_core::bail!("this model has no classifier (built features-only or with 0 classes)");
                };
                let hh = head.to_onnx(g, &h)?;
                out.logits = Some(crate::onnx::classifier(g, &hh, fc)?);
            }
            ExportTarget::Features => {}
            ExportTarget::DetectionTaps { .. } => {
                let c5 = match &self.head {
                    Some(head) => head.to_onnx(g, &h)?,
                    None => h,
                };
                let c4 =
                    c4.ok_or_else(|| candle_core::Error::Msg("model has no stride-2 stage for the C4 tap".into()))?;
                out.taps = Some((c3, c4, c5));
            }
        }
        g.set_prefix(&prev);
        Ok(out)
    }

    fn forward_detection_taps(&self, x: &Tensor, train: bool, with_c3: bool) -> Result<DetectionTaps> {
        let _flush = FlushDenormals::new();
        let c3_stage = requested_c3(with_c3, self.c3_stage)?;
        let mut h = self.stem.forward_t(x, train)?;
        let (mut c3, mut c4) = (None, None);
        for (si, stage) in self.stages.iter().enumerate() {
            for (bi, block) in stage.iter().enumerate() {
                let tap = if bi != 0 {
                    None
                } else if si == self.c4_stage {
                    Some(&mut c4)
                } else if Some(si) == c3_stage {
                    Some(&mut c3)
                } else {
                    None
                };
                h = block.forward_tapped(&h, train, tap)?;
            }
        }
        if let Some(head) = &self.head {
            h = head.forward_t(&h, train)?;
        }
        let c4 = c4.ok_or_else(|| candle_core::Error::Msg("model has no stride-2 stage for the C4 tap".into()))?;
        Ok(DetectionTaps { c3, c4, c5: h })
    }
}
