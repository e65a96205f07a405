//! The SSDLite detector: a backbone's C4/C5 maps (and optionally C3), extra layers extending the pyramid, and the
//! SSDLite head. Weight names follow torchvision's `ssdlite320_mobilenet_v3_large` state dict
//! (`backbone.features.{0,1}...`, `backbone.extra.{i}`, `head.{classification,regression}_head.module_list.{i}`);
//! EfficientNet-family trunks (MixNet) keep timm's names under `backbone.body.`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use mixdet_backbones::arch::KernelSpec;
use mixdet_backbones::layers::{Activation, Conv, ConvBnAct, ConvSpec, InferencePlan};
use mixdet_backbones::weights::{read_state_dict, CheckedStateDict, WeightsError};
use mixdet_backbones::{Architecture, Backbone, ModelOptions, ModelSpec};
use mixdet_kernels::denormals::FlushDenormals;
use mixdet_kernels::PaddingMode;

use crate::anchors;
use mixdet_backbones::onnx::{wrap, OnnxValue};
use mixdet_onnx::{Attr, Graph};

use crate::config::{DetectorConfig, Family};
use crate::tf_od_api::names::TfNames;

fn spec(in_chs: usize, out_chs: usize, k: usize, stride: usize, depthwise: bool, padding: PaddingMode) -> ConvSpec {
    ConvSpec { in_chs, out_chs, kernel: KernelSpec::Single(k), stride, dilation: 1, depthwise, padding }
}

/// torchvision's `Conv2dNormActivation` with ReLU6: conv `.0`, BN `.1`.
fn conv_bn_relu6(s: ConvSpec, eps: f64, vb: VarBuilder) -> Result<ConvBnAct> {
    ConvBnAct::load(&s, eps, Activation::Relu6, vb.pp("0"), vb.pp("1"))
}

/// An extra layer: 1x1 to out/2, 3x3 depthwise stride 2, 1x1 to out (each with BN + ReLU6).
#[derive(Debug, Clone)]
struct ExtraBlock {
    layers: [ConvBnAct; 3],
}

impl ExtraBlock {
    fn load(in_chs: usize, out_chs: usize, eps: f64, padding: PaddingMode, vb: VarBuilder) -> Result<Self> {
        let mid = out_chs / 2;
        Ok(Self {
            layers: [
                conv_bn_relu6(spec(in_chs, mid, 1, 1, false, padding), eps, vb.pp("0"))?,
                conv_bn_relu6(spec(mid, mid, 3, 2, true, padding), eps, vb.pp("1"))?,
                conv_bn_relu6(spec(mid, out_chs, 1, 1, false, padding), eps, vb.pp("2"))?,
            ],
        })
    }

    fn to_onnx(&self, g: &mut Graph, x: &OnnxValue) -> Result<OnnxValue> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.to_onnx(g, &h)?;
        }
        Ok(h)
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward_t(&h, train)?;
        }
        Ok(h)
    }
}

/// The top-down merge into C3: `C3 + up2(BN(conv1x1(C4)))`. The 1x1 conv runs at C4's
/// resolution, before the upsampling, which costs a quarter of running it after.
#[derive(Debug, Clone)]
struct TopDown {
    lateral: ConvBnAct,
}

impl TopDown {
    fn load(c4: usize, c3: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            lateral: ConvBnAct::load(
                &spec(c4, c3, 1, 1, false, PaddingMode::Symmetric),
                eps,
                Activation::Identity,
                vb.pp("0"),
                vb.pp("1"),
            )?,
        })
    }

    /// The same merge in ONNX: the 2x nearest upsampling as `Reshape`, `Expand`, `Reshape`.
    fn to_onnx(&self, g: &mut Graph, c3: &OnnxValue, c4: &OnnxValue) -> Result<OnnxValue> {
        let t = self.lateral.to_onnx(g, c4)?;
        let (c, [h, w]) = (t.channels as i64, t.hw);
        let [h3, w3] = c3.hw;
        if 2 * h < h3 || 2 * w < w3 {
            candle_core::bail!("top-down merge: C4 grid {h}x{w} does not cover C3's {h3}x{w3}");
        }
        let (h, w) = (h as i64, w as i64);
        let s6 = g.i64_vec("shape", &[0, c, h, 1, w, 1]).map_err(wrap)?;
        let r = g.op("Reshape", &[&t.name, &s6], &[]).map_err(wrap)?;
        let ones = g.i64_vec("expand", &[1, 1, 1, 2, 1, 2]).map_err(wrap)?;
        let e = g.op("Expand", &[&r, &ones], &[]).map_err(wrap)?;
        let s4 = g.i64_vec("shape", &[0, c, 2 * h, 2 * w]).map_err(wrap)?;
        let mut up = g.op("Reshape", &[&e, &s4], &[]).map_err(wrap)?;
        if (2 * h as usize, 2 * w as usize) != (h3, w3) {
            let starts = g.i64_vec("starts", &[0, 0]).map_err(wrap)?;
            let ends = g.i64_vec("ends", &[h3 as i64, w3 as i64]).map_err(wrap)?;
            let axes = g.i64_vec("axes", &[2, 3]).map_err(wrap)?;
            up = g.op("Slice", &[&up, &starts, &ends, &axes], &[]).map_err(wrap)?;
        }
        let y = g.op("Add", &[&c3.name, &up], &[]).map_err(wrap)?;
        Ok(c3.renamed(y))
    }

    fn forward_t(&self, c3: &Tensor, c4: &Tensor, train: bool) -> Result<Tensor> {
        let t = self.lateral.forward_t(c4, train)?;
        let (n, c, h, w) = t.dims4()?;
        // Nearest 2x as a broadcast: its gradient is a plain sum (candle's upsample backward runs
        // a grouped convolution, one per channel).
        let up = t.reshape((n, c, h, 1, w, 1))?.broadcast_as((n, c, h, 2, w, 2))?.reshape((n, c, 2 * h, 2 * w))?;
        let (_, _, h3, w3) = c3.dims4()?;
        if 2 * h < h3 || 2 * w < w3 {
            candle_core::bail!("top-down merge: C4 grid {h}x{w} does not cover C3's {h3}x{w3}");
        }
        // An odd C3 grid is one short of twice C4's (both round up).
        let up = if (2 * h, 2 * w) == (h3, w3) { up } else { up.narrow(2, 0, h3)?.narrow(3, 0, w3)? };
        c3 + up
    }
}

/// A head block of one level: 3x3 depthwise + BN + ReLU6 (`.0`), then a 1x1 conv with bias (`.1`).
#[derive(Debug, Clone)]
struct PredictionBlock {
    dw: ConvBnAct,
    out: Conv,
    columns: usize,
    /// `out` as one inference op (matrix product and bias), set by `fuse`.
    out_plan: Option<InferencePlan>,
}

impl PredictionBlock {
    fn load(
        in_chs: usize,
        anchors: usize,
        columns: usize,
        eps: f64,
        padding: PaddingMode,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            dw: conv_bn_relu6(spec(in_chs, in_chs, 3, 1, true, padding), eps, vb.pp("0"))?,
            out: Conv::load_pointwise_bias(in_chs, anchors * columns, vb.pp("1"))?,
            columns,
            out_plan: None,
        })
    }

    fn fuse(&mut self) -> Result<()> {
        self.dw.fuse()?;
        // No folded BatchNorm here: the plan's bias is the convolution's own.
        self.out_plan = self.out.inference_plan(&vec![0.0; self.out.out_channels()?], Activation::Identity)?;
        Ok(())
    }

    /// The block in ONNX, ending in the same `(N, H*W*A, K)` layout; returns its name and the
    /// number of anchors it predicts for.
    fn to_onnx(&self, g: &mut Graph, x: &OnnxValue) -> Result<(String, usize)> {
        let h = self.dw.to_onnx(g, x)?;
        let y = self.out.to_onnx(g, &h, &vec![0.0; self.out.out_channels()?])?;
        let k = self.columns as i64;
        let a = (y.channels / self.columns) as i64;
        let (hh, ww) = (y.hw[0] as i64, y.hw[1] as i64);
        let s5 = g.i64_vec("shape", &[0, a, k, hh, ww]).map_err(wrap)?;
        let r = g.op("Reshape", &[&y.name, &s5], &[]).map_err(wrap)?;
        let t = g.op("Transpose", &[&r], &[("perm", Attr::Ints(vec![0, 3, 4, 1, 2]))]).map_err(wrap)?;
        let s3 = g.i64_vec("shape", &[0, hh * ww * a, k]).map_err(wrap)?;
        let out = g.op("Reshape", &[&t, &s3], &[]).map_err(wrap)?;
        Ok((out, (hh * ww * a) as usize))
    }

    /// `(N, A*K, H, W)` viewed as `(N, A, K, H, W)`, permuted to `(N, H, W, A, K)`, flattened to `(N, H*W*A, K)`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.dw.forward_t(x, train)?;
        let y = match self.out_plan.as_ref().filter(|p| !train && p.supports(&h)) {
            Some(plan) => plan.forward(&h)?,
            None => self.out.forward(&h)?,
        };
        let (n, ak, h, w) = y.dims4()?;
        let a = ak / self.columns;
        y.reshape((n, a, self.columns, h, w))?.permute((0, 3, 4, 1, 2))?.reshape((n, h * w * a, self.columns))
    }
}

/// Raw head outputs for a batch.
#[derive(Debug, Clone)]
pub struct HeadOutput {
    /// `(N, anchors, classes)` logits.
    pub cls_logits: Tensor,
    /// `(N, anchors, 4)` box regression `(dx, dy, dw, dh)`.
    pub bbox_regression: Tensor,
    /// `[height, width]` of each feature level.
    pub grid_sizes: Vec<[usize; 2]>,
}

/// Anchors per feature-grid layout.
type AnchorCache = HashMap<Vec<[usize; 2]>, Arc<Vec<[f32; 4]>>>;

/// An SSDLite detector with its weights.
#[derive(Debug)]
pub struct SsdLite {
    config: DetectorConfig,
    backbone: Box<dyn Backbone>,
    top_down: Option<TopDown>,
    extras: Vec<ExtraBlock>,
    cls_head: Vec<PredictionBlock>,
    reg_head: Vec<PredictionBlock>,
    anchor_cache: Mutex<AnchorCache>,
}

/// Maps a plain MobileNetV3 key (`features.{i}...`) to torchvision SSDLite's split layout, where
/// `features.0` holds the trunk up to and including the expansion conv of block `split` and
/// `features.1` the rest (the remainder of that block keeps its indices under `features.1.0`).
fn ssdlite_mobilenet_key(name: &str, split: usize) -> String {
    let Some(rest) = name.strip_prefix("features.") else {
        return format!("backbone.{name}");
    };
    let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
    let Ok(i) = idx.parse::<usize>() else {
        return format!("backbone.{name}");
    };
    if i < split {
        format!("backbone.features.0.{i}.{tail}")
    } else if i == split {
        match tail.strip_prefix("block.0.") {
            Some(t) => format!("backbone.features.0.{split}.{t}"),
            None => format!("backbone.features.1.0.{}", tail.strip_prefix("block.").unwrap_or(tail)),
        }
    } else {
        format!("backbone.features.1.{}.{tail}", i - split)
    }
}

/// Size and cost of a detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorSummary {
    /// Learnable parameters.
    pub params: usize,
    /// Multiply-adds of one image at the input size.
    pub macs: u64,
    /// `[height, width]` of each pyramid level at the input size.
    pub grid_sizes: Vec<[usize; 2]>,
}

impl SsdLite {
    /// The backbone's model spec as the detector config sets it up.
    pub fn backbone_spec(cfg: &DetectorConfig) -> std::result::Result<ModelSpec, mixdet_backbones::UnknownModel> {
        let mut spec = ModelSpec::by_name(&cfg.backbone, cfg.backbone_mixconv_kernels.clone())?;
        if let Architecture::MobileNetV3Large(m) = &mut spec.architecture {
            m.reduced_tail = cfg.reduced_tail;
        }
        Ok(spec)
    }

    /// Builds the detector from a `VarBuilder` rooted at the state dict's top level (whose names
    /// are torchvision's, or TF's for the [`Family::TfOdApi`] family).
    pub fn load(config: DetectorConfig, vb: VarBuilder<'static>) -> Result<Self> {
        let spec = Self::backbone_spec(&config).map_err(candle_core::Error::wrap)?;
        let (vb, padding, opts) = match config.family {
            Family::Torchvision => (vb, PaddingMode::Symmetric, ModelOptions { num_classes: 0, features_only: true }),
            Family::TfOdApi => {
                let names = TfNames::new(&spec, &config.extra_channels)?;
                // The feature extractor ends at layer 19, MobileNetV2's 1x1 head conv (`Conv_1`).
                let opts = ModelOptions { num_classes: 0, features_only: false };
                (vb.rename_f(move |n| names.tf_name(n)), PaddingMode::TfSame, opts)
            }
        };
        let backbone = match &spec.architecture {
            Architecture::MobileNetV3Large(_) => {
                // torchvision splits at c4_pos, the last stride-2 block (features.13 for Large).
                let split = 13;
                spec.build(&opts, vb.clone().rename_f(move |n| ssdlite_mobilenet_key(n, split)))?
            }
            Architecture::EfficientNet(_) => spec.build(&opts, vb.pp("backbone").pp("body"))?,
        };
        let taps = backbone.detection_tap_channels();
        let eps = config.bn_eps;
        let mut level_channels = match (config.c3_level, taps.c3) {
            (false, _) => vec![],
            (true, Some(c3)) => vec![c3],
            (true, None) => candle_core::bail!(
                "{}: c3_level needs a stride-2 stage before C4's in {}",
                config.name,
                config.backbone
            ),
        };
        let top_down = match (config.top_down, level_channels.first()) {
            (true, Some(&c3)) => Some(TopDown::load(taps.c4, c3, eps, vb.pp("neck").pp("top_down"))?),
            (true, None) => candle_core::bail!("{}: top_down needs c3_level", config.name),
            (false, _) => None,
        };
        level_channels.extend([taps.c4, taps.c5]);
        let mut extras = Vec::with_capacity(config.extra_channels.len());
        let evb = vb.pp("backbone").pp("extra");
        for (i, &out) in config.extra_channels.iter().enumerate() {
            let prev = level_channels[level_channels.len() - 1];
            extras.push(ExtraBlock::load(prev, out, eps, padding, evb.pp(i.to_string()))?);
            level_channels.push(out);
        }
        let per_loc = config.anchors_per_location();
        let cvb = vb.pp("head").pp("classification_head").pp("module_list");
        let rvb = vb.pp("head").pp("regression_head").pp("module_list");
        let mut cls_head = Vec::new();
        let mut reg_head = Vec::new();
        for (i, (&c, &a)) in level_channels.iter().zip(&per_loc).enumerate() {
            cls_head.push(PredictionBlock::load(c, a, config.num_classes, eps, padding, cvb.pp(i.to_string()))?);
            reg_head.push(PredictionBlock::load(c, a, 4, eps, padding, rvb.pp(i.to_string()))?);
        }
        Ok(Self { config, backbone, top_down, extras, cls_head, reg_head, anchor_cache: Mutex::default() })
    }

    /// For a TF-family detector, the config with the class count the weights were trained for
    /// (TF's class predictor holds `anchors x (classes + 1)` outputs): the config's own labels
    /// when the count matches, COCO's 91 (with the background and N/A slots, as TF's
    /// `mscoco_label_map` numbers them) for 91, else `class_1`, `class_2`, ... Other families,
    /// and weights without that tensor, keep the config.
    pub fn config_for_weights(config: DetectorConfig, state_dict: &HashMap<String, Tensor>) -> DetectorConfig {
        if config.family != Family::TfOdApi {
            return config;
        }
        let per_loc = config.anchors_per_location();
        let outputs = state_dict.get("BoxPredictor_0/ClassPredictor/biases").and_then(|t| t.dims1().ok());
        let classes = match (outputs, per_loc.first()) {
            (Some(o), Some(&a)) if a > 0 && o % a == 0 && o / a >= 2 => o / a,
            _ => return config,
        };
        if classes == config.num_classes {
            return config;
        }
        let coco = DetectorConfig::resolve("ssdlite300_mobilenet_v2_coco").map(|c| c.labels).ok();
        let labels = match coco.filter(|l| l.len() == classes) {
            Some(labels) => labels,
            None => std::iter::once("__background__".to_string())
                .chain((1..classes).map(|i| format!("class_{i}")))
                .collect(),
        };
        DetectorConfig { num_classes: classes, labels, ..config }
    }

    /// Builds the detector from a state dict, strictly (every key used, every shape right). A
    /// TF-family detector takes its class count from the weights ([`SsdLite::config_for_weights`]).
    pub fn from_state_dict(
        config: DetectorConfig,
        state_dict: HashMap<String, Tensor>,
        source_name: &str,
        device: &Device,
    ) -> std::result::Result<Self, WeightsError> {
        let config = Self::config_for_weights(config, &state_dict);
        let checked = CheckedStateDict::new(state_dict);
        let model = Self::load(config, checked.var_builder(DType::F32, device))?;
        let report = checked.report(&[]);
        if report.is_empty() {
            Ok(model)
        } else {
            Err(WeightsError::Mismatch { source_name: source_name.to_string(), report })
        }
    }

    /// Builds the detector from a `.safetensors` / `.pth` file.
    pub fn from_file(config: DetectorConfig, path: &Path, device: &Device) -> std::result::Result<Self, WeightsError> {
        let sd = read_state_dict(path)?;
        Self::from_state_dict(config, sd, &path.display().to_string(), device)
    }

    /// Every tensor the detector loads, by state-dict key (TF names for the TF family), with its
    /// shape, from a weightless build.
    pub fn state_dict_shapes(config: &DetectorConfig) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
        let recorder = mixdet_backbones::weights::ShapeRecorder::default();
        Self::load(config.clone(), recorder.var_builder(&Device::Cpu))?;
        Ok(recorder.shapes())
    }

    /// Learnable parameters (PyTorch's `parameters()`, BatchNorm statistics excluded) and the
    /// multiply-adds of one image at the config's input size, from a model with zero weights.
    pub fn summary(config: &DetectorConfig) -> Result<DetectorSummary> {
        let recorder = mixdet_backbones::weights::ShapeRecorder::default();
        let model = Self::load(config.clone(), recorder.var_builder(&Device::Cpu))?;
        let params = recorder
            .shapes()
            .iter()
            .filter(|(k, _)| mixdet_backbones::registry::is_parameter(k))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        let [h, w] = config.input_size;
        let x = Tensor::zeros((1, 3, h, w), DType::F32, &Device::Cpu)?;
        let (out, macs) = mixdet_backbones::macs::count(|| model.forward_t(&x, false));
        Ok(DetectorSummary { params, macs, grid_sizes: out?.grid_sizes })
    }

    /// Folds every BatchNorm into its convolution and switches inference to the fused kernels
    /// (training keeps the unfolded layers; call again after changing weights).
    pub fn fuse_for_inference(&mut self) -> Result<()> {
        self.backbone.fuse_for_inference()?;
        if let Some(t) = &mut self.top_down {
            t.lateral.fuse()?;
        }
        for e in &mut self.extras {
            for l in &mut e.layers {
                l.fuse()?;
            }
        }
        for p in self.cls_head.iter_mut().chain(self.reg_head.iter_mut()) {
            p.fuse()?;
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Runs backbone, extra layers and head on a preprocessed batch `(N, 3, H, W)`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<HeadOutput> {
        // Subnormals flushed to zero here and in the kernel pools (see `mixdet_kernels::denormals`).
        let _flush = FlushDenormals::new();
        let taps = self.backbone.forward_detection_taps(x, train, self.config.c3_level)?;
        let c3 = match (&self.top_down, taps.c3) {
            (Some(t), Some(c3)) => Some(t.forward_t(&c3, &taps.c4, train)?),
            (_, c3) => c3,
        };
        let mut feats: Vec<Tensor> = c3.into_iter().chain([taps.c4, taps.c5]).collect();
        for e in &self.extras {
            let next = e.forward_t(&feats[feats.len() - 1], train)?;
            feats.push(next);
        }
        let mut cls = Vec::with_capacity(feats.len());
        let mut reg = Vec::with_capacity(feats.len());
        let mut grid_sizes = Vec::with_capacity(feats.len());
        for ((f, c), r) in feats.iter().zip(&self.cls_head).zip(&self.reg_head) {
            let (_, _, h, w) = f.dims4()?;
            grid_sizes.push([h, w]);
            cls.push(c.forward_t(f, train)?);
            reg.push(r.forward_t(f, train)?);
        }
        Ok(HeadOutput { cls_logits: Tensor::cat(&cls, 1)?, bbox_regression: Tensor::cat(&reg, 1)?, grid_sizes })
    }

    /// Writes backbone, extra layers and head into an ONNX graph on the preprocessed input `x`:
    /// returns the `(N, anchors, classes)` logits, the `(N, anchors, 4)` box codes and the grid
    /// of every level (as [`SsdLite::forward_t`] computes them).
    pub fn head_to_onnx(&self, g: &mut Graph, x: &OnnxValue) -> Result<(String, String, Vec<[usize; 2]>)> {
        let target = mixdet_backbones::onnx::ExportTarget::DetectionTaps { with_c3: self.config.c3_level };
        let exported = self.backbone.to_onnx(g, x, target)?;
        let Some((c3, c4, c5)) = exported.taps else { candle_core::bail!("the backbone exported no detection taps") };
        let prev = g.set_prefix("neck");
        let c3 = match (&self.top_down, c3) {
            (Some(t), Some(c3)) => Some(t.to_onnx(g, &c3, &c4)?),
            (_, c3) => c3,
        };
        let mut feats: Vec<OnnxValue> = c3.into_iter().chain([c4, c5]).collect();
        for (i, e) in self.extras.iter().enumerate() {
            g.set_prefix(&format!("extra.{i}"));
            let next = e.to_onnx(g, &feats[feats.len() - 1])?;
            feats.push(next);
        }
        let (mut cls, mut reg) = (Vec::new(), Vec::new());
        for (i, ((f, c), r)) in feats.iter().zip(&self.cls_head).zip(&self.reg_head).enumerate() {
            g.set_prefix(&format!("head.classification.{i}"));
            cls.push(c.to_onnx(g, f)?.0);
            g.set_prefix(&format!("head.regression.{i}"));
            reg.push(r.to_onnx(g, f)?.0);
        }
        g.set_prefix("head");
        fn names(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let cls = g.op("Concat", &names(&cls), &[("axis", Attr::Int(1))]).map_err(wrap)?;
        let reg = g.op("Concat", &names(&reg), &[("axis", Attr::Int(1))]).map_err(wrap)?;
        g.set_prefix(&prev);
        Ok((cls, reg, feats.iter().map(|f| f.hw).collect()))
    }

    /// Anchors (`[x1, y1, x2, y2]` input pixels) for the given feature grids, cached per grid.
    pub fn anchors(&self, grid_sizes: &[[usize; 2]]) -> Arc<Vec<[f32; 4]>> {
        let mut cache = self.anchor_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(grid_sizes.to_vec())
            .or_insert_with(|| Arc::new(anchors::generate(&self.config.anchors, grid_sizes, self.config.input_size)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_mobilenet_keys_to_torchvision_ssdlite_layout() {
        let m = |k: &str| ssdlite_mobilenet_key(k, 13);
        assert_eq!(m("features.0.0.weight"), "backbone.features.0.0.0.weight");
        assert_eq!(m("features.12.block.3.1.bias"), "backbone.features.0.12.block.3.1.bias");
        assert_eq!(m("features.13.block.0.0.weight"), "backbone.features.0.13.0.weight");
        assert_eq!(m("features.13.block.1.0.weight"), "backbone.features.1.0.1.0.weight");
        assert_eq!(m("features.13.block.2.fc1.bias"), "backbone.features.1.0.2.fc1.bias");
        assert_eq!(m("features.14.block.0.0.weight"), "backbone.features.1.1.block.0.0.weight");
        assert_eq!(m("features.16.0.weight"), "backbone.features.1.3.0.weight");
    }

    fn recorded(cfg: &DetectorConfig) -> Result<(SsdLite, std::collections::BTreeMap<String, Vec<usize>>)> {
        let recorder = mixdet_backbones::weights::ShapeRecorder::default();
        let model = SsdLite::load(cfg.clone(), recorder.var_builder(&Device::Cpu))?;
        Ok((model, recorder.shapes()))
    }

    /// The C3 level adds a stride-8 grid in front of C4 and shifts the head's other levels by one
    /// index with unchanged shapes, which is what `init_rename` in the training configs relies on.
    #[test]
    fn c3_level_adds_a_stride_8_grid_and_shifts_the_head() -> Result<()> {
        let base = DetectorConfig::resolve("ssdlite320_mixnet_s_shapes").map_err(candle_core::Error::wrap)?;
        let c3 = DetectorConfig::resolve("ssdlite320_mixnet_s_c3_shapes").map_err(candle_core::Error::wrap)?;
        assert!(c3.c3_level && !base.c3_level);
        let (model, c3_shapes) = recorded(&c3)?;
        let (_, base_shapes) = recorded(&base)?;
        let out = model.forward_t(&Tensor::zeros((1, 3, 320, 320), DType::F32, &Device::Cpu)?, false)?;
        let grids: Vec<[usize; 2]> = [40, 20, 10, 5, 3, 2, 1].iter().map(|&g| [g, g]).collect();
        assert_eq!(out.grid_sizes, grids);
        let anchors: usize = grids.iter().map(|[h, w]| h * w * 6).sum();
        assert_eq!(out.cls_logits.dims(), &[1, anchors, 7]);
        assert_eq!(out.bbox_regression.dims(), &[1, anchors, 4]);
        assert_eq!(model.anchors(&out.grid_sizes).len(), anchors);
        // MixNet-S: C3 is the 6x expansion of the 40-channel stride-8 map.
        assert_eq!(c3_shapes["head.classification_head.module_list.0.0.0.weight"], vec![240, 1, 3, 3]);
        let shifted = |k: &str| -> String {
            let Some((head, rest)) = k.split_once(".module_list.") else { return k.to_string() };
            let (i, tail) = rest.split_once('.').unwrap_or((rest, ""));
            format!("{head}.module_list.{}.{tail}", i.parse::<usize>().map_or(0, |i| i + 1))
        };
        for (k, shape) in &base_shapes {
            assert_eq!(c3_shapes.get(&shifted(k)), Some(shape), "{k}");
        }
        assert_eq!(c3_shapes.len() - base_shapes.len(), 14, "C3's own cls and reg blocks");
        Ok(())
    }

    #[test]
    fn mobilenet_v3_has_a_c3_tap_too() -> Result<()> {
        let mut cfg = DetectorConfig::resolve("ssdlite320_mobilenet_v3_large").map_err(candle_core::Error::wrap)?;
        cfg.c3_level = true;
        let crate::AnchorGenerator::SsdDefaultBoxes(anchors) = &mut cfg.anchors else { panic!("default boxes") };
        anchors.aspect_ratios.push(vec![2.0, 3.0]);
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let (_, shapes) = recorded(&cfg)?;
        // torchvision's block 7 (40 -> 80, stride 2) expands to 240 channels.
        assert_eq!(shapes["head.regression_head.module_list.0.0.0.weight"], vec![240, 1, 3, 3]);
        Ok(())
    }

    /// The top-down merge adds one 1x1 conv (C4 -> C3 channels) and its BatchNorm under `neck.`,
    /// and handles an odd C3 grid (one short of twice C4's); the fused and unfused forwards agree.
    #[test]
    fn top_down_merge_weights_odd_grids_and_fusion() -> Result<()> {
        let c3 = DetectorConfig::resolve("ssdlite320_mixnet_s_c3_shapes").map_err(candle_core::Error::wrap)?;
        let mut td = c3.clone();
        td.top_down = true;
        let (_, base) = recorded(&c3)?;
        let (_, shapes) = recorded(&td)?;
        // MixNet-S: C4 is the 720-channel expansion at stride 16, C3 the 240-channel one.
        assert_eq!(shapes["neck.top_down.0.weight"], vec![240, 720, 1, 1]);
        assert_eq!(shapes["neck.top_down.1.running_var"], vec![240]);
        assert_eq!(shapes.len() - base.len(), 5, "conv weight and the BatchNorm's four tensors");

        td.input_size = [72, 72];
        let mut rng = 1u64;
        let mut sd = HashMap::new();
        for (k, shape) in &shapes {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let u = (rng >> 40) as f32 / (1u64 << 24) as f32;
                    if k.ends_with("running_var") {
                        0.5 + u
                    } else {
                        0.2 * (u - 0.5)
                    }
                })
                .collect();
            sd.insert(k.clone(), Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)?);
        }
        let mut model =
            SsdLite::from_state_dict(td, sd, "synthetic", &Device::Cpu).map_err(candle_core::Error::wrap)?;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 72, 72), &Device::Cpu)?;
        let plain = model.forward_t(&x, false)?;
        // 72 px: C3 9x9, C4 5x5 (upsampled to 10x10, cropped to 9x9).
        assert_eq!(&plain.grid_sizes[..2], &[[9, 9], [5, 5]]);
        model.fuse_for_inference()?;
        let fused = model.forward_t(&x, false)?;
        let diff = (plain.cls_logits - fused.cls_logits)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "fused vs unfused: {diff}");
        Ok(())
    }

    /// torchvision 0.29.2: `sum(p.numel() for p in model.parameters())` and
    /// `FlopCounterMode` over backbone + head at 320x320 (its FLOPs / 2).
    #[test]
    fn summary_matches_torchvision() -> Result<()> {
        let cfg = DetectorConfig::resolve("ssdlite320_mobilenet_v3_large").map_err(candle_core::Error::wrap)?;
        let s = SsdLite::summary(&cfg)?;
        assert_eq!((s.params, s.macs), (3_440_060, 583_171_904));
        Ok(())
    }
}
