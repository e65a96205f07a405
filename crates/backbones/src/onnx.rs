//! ONNX export of the backbones: each layer writes its inference form (BatchNorm folded) into a
//! [`mixdet_onnx::Graph`] with standard operators, tracking the channels and spatial size of
//! every value so that TF "SAME" padding resolves to the explicit pads of each convolution.

use candle_core::{DType, Result, Tensor};
use mixdet_kernels::padding::conv_out_len;
use mixdet_kernels::PaddingMode;
use mixdet_onnx::{Attr, Graph};

/// A value of the graph being written: its name, channels and spatial size (the batch is
/// whatever the graph's input says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxValue {
    /// The value's name in the graph.
    pub name: String,
    /// Channels.
    pub channels: usize,
    /// `[height, width]`.
    pub hw: [usize; 2],
}

impl OnnxValue {
    /// The same spatial layout under another name (an element-wise op's output).
    pub fn renamed(&self, name: String) -> Self {
        Self { name, ..self.clone() }
    }
}

/// What a backbone's export computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTarget {
    /// The classifier's logits.
    Logits,
    /// The feature maps in stride order.
    Features,
    /// The maps an SSDLite detector takes (C3 when asked for, C4, C5).
    DetectionTaps {
        /// Whether C3 is wanted.
        with_c3: bool,
    },
}

/// A backbone's exported values.
#[derive(Debug, Clone, Default)]
pub struct ExportedBackbone {
    /// `(N, classes)` logits ([`ExportTarget::Logits`]).
    pub logits: Option<OnnxValue>,
    /// Feature maps in stride order ([`ExportTarget::Features`]).
    pub features: Vec<OnnxValue>,
    /// C3, C4, C5 ([`ExportTarget::DetectionTaps`]).
    pub taps: Option<(Option<OnnxValue>, OnnxValue, OnnxValue)>,
}

/// Turns a graph error into candle's error type, which the layers return.
pub fn wrap(e: mixdet_onnx::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// A tensor's values as f32 (detached).
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.detach().flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

/// A convolution node with weight `(o, i/groups, kh, kw)` values, an optional bias, and the
/// padding rule resolved against the input's size.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    g: &mut Graph,
    x: &OnnxValue,
    weight: &[f32],
    dims: [usize; 4],
    bias: Option<&[f32]>,
    stride: usize,
    dilation: usize,
    groups: usize,
    padding: PaddingMode,
) -> Result<OnnxValue> {
    let [o, _, kh, kw] = dims;
    let ph = padding.resolve(x.hw[0], kh, stride, dilation);
    let pw = padding.resolve(x.hw[1], kw, stride, dilation);
    let (Some(oh), Some(ow)) =
        (conv_out_len(x.hw[0], ph, kh, stride, dilation), conv_out_len(x.hw[1], pw, kw, stride, dilation))
    else {
        candle_core::bail!("a {kh}x{kw} convolution does not fit a {}x{} input", x.hw[0], x.hw[1]);
    };
    let w = g.weights("weight", &dims, weight).map_err(wrap)?;
    let mut inputs = vec![x.name.as_str(), w.as_str()];
    let b;
    if let Some(bias) = bias {
        b = g.weights("bias", &[o], bias).map_err(wrap)?;
        inputs.push(&b);
    }
    let attrs = [
        ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
        ("strides", Attr::Ints(vec![stride as i64; 2])),
        ("dilations", Attr::Ints(vec![dilation as i64; 2])),
        ("pads", Attr::Ints(vec![ph.before as i64, pw.before as i64, ph.after as i64, pw.after as i64])),
        ("group", Attr::Int(groups as i64)),
    ];
    let y = g.op("Conv", &inputs, &attrs).map_err(wrap)?;
    Ok(OnnxValue { name: y, channels: o, hw: [oh, ow] })
}

/// Global average pooling to `(N, C)`.
pub(crate) fn pool(g: &mut Graph, x: &OnnxValue) -> Result<OnnxValue> {
    let pooled = g.op("GlobalAveragePool", &[&x.name], &[]).map_err(wrap)?;
    let flat = g.op("Flatten", &[&pooled], &[("axis", Attr::Int(1))]).map_err(wrap)?;
    Ok(OnnxValue { name: flat, channels: x.channels, hw: [1, 1] })
}

/// Global average pooling then a fully connected layer: `(N, C, H, W) -> (N, out)`.
pub(crate) fn classifier(g: &mut Graph, x: &OnnxValue, fc: &candle_nn::Linear) -> Result<OnnxValue> {
    let pooled = pool(g, x)?;
    linear(g, &pooled, fc)
}

/// A fully connected layer on `(N, in)`.
pub(crate) fn linear(g: &mut Graph, x: &OnnxValue, fc: &candle_nn::Linear) -> Result<OnnxValue> {
    let (out, inp) = fc.weight().dims2()?;
    let w = g.weights("fc_weight", &[out, inp], &values(fc.weight())?).map_err(wrap)?;
    let mut inputs = vec![x.name.as_str(), w.as_str()];
    let b;
    if let Some(bias) = fc.bias() {
        b = g.weights("fc_bias", &[out], &values(bias)?).map_err(wrap)?;
        inputs.push(&b);
    }
    let y = g.op("Gemm", &inputs, &[("transB", Attr::Int(1))]).map_err(wrap)?;
    Ok(OnnxValue { name: y, channels: out, hw: [1, 1] })
}

/// Exports a backbone: input `input` `(N, 3, H, W)`, output `logits` or the feature maps
/// `features.<i>`; the preprocessing of its pretrained weights in `metadata_props`.
pub fn export(
    net: &dyn crate::Backbone,
    spec: &crate::ModelSpec,
    opts: &mixdet_onnx::ExportOptions,
    target: ExportTarget,
) -> Result<mixdet_onnx::proto::ModelProto> {
    use mixdet_onnx::{Dim, ElemType};
    let mut g = opts.graph(&spec.name).map_err(wrap)?;
    let [h, w] = opts.input_size;
    let batch = opts.batch_dim();
    let x = g.input("input", ElemType::F32, &[batch.clone(), Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)]);
    let out = net.to_onnx(&mut g, &OnnxValue { name: x, channels: 3, hw: [h, w] }, target)?;
    let map_dims = |v: &OnnxValue| [batch.clone(), Dim::Fixed(v.channels), Dim::Fixed(v.hw[0]), Dim::Fixed(v.hw[1])];
    let mut outputs = Vec::new();
    match target {
        ExportTarget::Logits => {
            let Some(l) = out.logits else { candle_core::bail!("{}: no logits to export", spec.name) };
            g.output(&l.name, "logits", ElemType::F32, &[batch.clone(), Dim::Fixed(l.channels)]).map_err(wrap)?;
            outputs.push("logits".to_string());
        }
        ExportTarget::Features => {
            for (i, f) in out.features.iter().enumerate() {
                let name = format!("features.{i}");
                g.output(&f.name, &name, ElemType::F32, &map_dims(f)).map_err(wrap)?;
                outputs.push(name);
            }
        }
        ExportTarget::DetectionTaps { .. } => candle_core::bail!("detection taps are exported as part of a detector"),
    }
    let p = &spec.pretrained;
    let list = |v: [f32; 3]| format!("[{}, {}, {}]", v[0], v[1], v[2]);
    let metadata = vec![
        ("model".to_string(), spec.name.clone()),
        ("input_name".to_string(), "input".to_string()),
        ("input_size".to_string(), format!("[{h}, {w}]")),
        ("input_layout".to_string(), "NCHW, RGB, float32, (pixel / 255 - mean) / std".to_string()),
        ("mean".to_string(), list(p.mean)),
        ("std".to_string(), list(p.std)),
        ("crop_pct".to_string(), p.crop_pct.to_string()),
        ("interpolation".to_string(), format!("{:?}", p.interpolation).to_lowercase()),
        ("outputs".to_string(), outputs.join(", ")),
    ];
    let doc = format!("{} exported by mixdet (BatchNorm folded into the convolutions)", spec.name);
    Ok(g.into_model(env!("CARGO_PKG_VERSION"), &doc, &metadata))
}
