//! The frozen variables of a TensorFlow 1 frozen graph (`frozen_inference_graph.pb`), as a state
//! dict under their TensorFlow names.
//!
//! # Format
//!
//! A `.pb` frozen graph is one serialized `tensorflow.GraphDef` protobuf: a list of `NodeDef`s,
//! each with a name, an op, its inputs (`"node"`, `"node:1"`, or `"^node"` for a control input)
//! and attributes. Freezing (`convert_variables_to_constants`) turns every variable `X` into a
//! `Const` node `X` (its value in the `value` attribute, a `TensorProto`) that the graph reads
//! through an `Identity` node `X/read`. Those consts are the graph's frozen variables; other
//! consts (shapes, anchors, thresholds) are not returned. The messages are declared by hand in
//! [`proto`] (only the fields needed; field numbers from TensorFlow's
//! `tensorflow/core/framework/*.proto`).
//!
//! A `TensorProto`'s values come from `tensor_content` (raw little-endian bytes, exactly the
//! shape's element count times the element size) or else from the typed repeated field of its
//! dtype, with TensorFlow's rule: an empty field means zeros, and a field shorter than the shape
//! has its last value repeated to fill it (so one value is broadcast). A typed field longer than
//! the shape, an unknown rank, a negative (unknown) dimension or more than 2^28 elements is an
//! error. (Raw bytes are read in host order, as candle's safetensors loader does: little-endian
//! hosts only.)
//!
//! # Dtypes
//!
//! float32 and float16 variables are returned as f32 tensors; float64, int32, int64 and uint8 as
//! their candle dtype (F64, I32, I64, U8), bool as U8 (0 or 1). A frozen variable of any other
//! dtype is an error.
//!
//! # Layout rule
//!
//! TensorFlow stores convolution filters as `[H, W, I, O]`; PyTorch (and mixdet) as
//! `[O, I, H, W]`. A frozen variable that feeds, directly or through a chain of `Identity` nodes
//! (such as `X/read`), the filter input (input 1) of
//! - a `Conv2D` node is transposed from `[H, W, I, O]` to `[O, I, H, W]`;
//! - a `DepthwiseConv2dNative` node is transposed from `[H, W, C, M]` to `[C*M, 1, H, W]`, output
//!   channel `c*M + m` (channel-major, the order of PyTorch's grouped conv with `groups = C`, and
//!   of TensorFlow's own depthwise output).
//!
//! Every other tensor keeps its TensorFlow shape (e.g. a `MatMul` weight stays `[in, out]`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use prost::Message;

use crate::weights::WeightsError;

/// The subset of TensorFlow's protobuf messages that a frozen graph's variables need.
pub mod proto {
    use std::collections::HashMap;

    /// `tensorflow.GraphDef` (`versions` and `library` are skipped).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphDef {
        /// The graph's nodes.
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeDef>,
    }

    /// `tensorflow.NodeDef`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeDef {
        /// Unique name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Operation, e.g. `Const`, `Identity`, `Conv2D`.
        #[prost(string, tag = "2")]
        pub op: String,
        /// Inputs: `node`, `node:k` (output k) or `^node` (control input).
        #[prost(string, repeated, tag = "3")]
        pub input: Vec<String>,
        /// Device placement.
        #[prost(string, tag = "4")]
        pub device: String,
        /// Attributes (a `Const` holds its tensor under `value`).
        #[prost(map = "string, message", tag = "5")]
        pub attr: HashMap<String, AttrValue>,
    }

    /// `tensorflow.AttrValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttrValue {
        /// The value (`func` and `placeholder` are skipped).
        #[prost(oneof = "attr_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
        pub value: Option<attr_value::Value>,
    }

    /// The oneof of [`AttrValue`].
    pub mod attr_value {
        /// `tensorflow.AttrValue.value`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// `list(...)`, kept as the encoded `ListValue` message.
            #[prost(bytes = "vec", tag = "1")]
            List(Vec<u8>),
            /// `string`.
            #[prost(bytes = "vec", tag = "2")]
            S(Vec<u8>),
            /// `int`.
            #[prost(int64, tag = "3")]
            I(i64),
            /// `float`.
            #[prost(float, tag = "4")]
            F(f32),
            /// `bool`.
            #[prost(bool, tag = "5")]
            B(bool),
            /// `type`: a [`super::DataType`] value.
            #[prost(enumeration = "super::DataType", tag = "6")]
            Type(i32),
            /// `shape`.
            #[prost(message, tag = "7")]
            Shape(super::TensorShapeProto),
            /// `tensor`.
            #[prost(message, boxed, tag = "8")]
            Tensor(Box<super::TensorProto>),
        }
    }

    /// `tensorflow.TensorShapeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        /// Dimensions, outermost first.
        #[prost(message, repeated, tag = "2")]
        pub dim: Vec<tensor_shape_proto::Dim>,
        /// True when the rank is unknown.
        #[prost(bool, tag = "3")]
        pub unknown_rank: bool,
    }

    /// The nested message of [`TensorShapeProto`].
    pub mod tensor_shape_proto {
        /// `tensorflow.TensorShapeProto.Dim`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Dim {
            /// Size; -1 means unknown.
            #[prost(int64, tag = "1")]
            pub size: i64,
            /// Optional name.
            #[prost(string, tag = "2")]
            pub name: String,
        }
    }

    /// `tensorflow.TensorProto` (complex, resource and variant values are skipped).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// A [`DataType`] value.
        #[prost(enumeration = "DataType", tag = "1")]
        pub dtype: i32,
        /// Shape.
        #[prost(message, optional, tag = "2")]
        pub tensor_shape: Option<TensorShapeProto>,
        /// Version.
        #[prost(int32, tag = "3")]
        pub version_number: i32,
        /// Raw little-endian values, row-major.
        #[prost(bytes = "vec", tag = "4")]
        pub tensor_content: Vec<u8>,
        /// DT_HALF values, one 16-bit pattern per int32.
        #[prost(int32, repeated, packed = "true", tag = "13")]
        pub half_val: Vec<i32>,
        /// DT_FLOAT values.
        #[prost(float, repeated, packed = "true", tag = "5")]
        pub float_val: Vec<f32>,
        /// DT_DOUBLE values.
        #[prost(double, repeated, packed = "true", tag = "6")]
        pub double_val: Vec<f64>,
        /// DT_INT32, DT_INT16, DT_INT8 and DT_UINT8 values.
        #[prost(int32, repeated, packed = "true", tag = "7")]
        pub int_val: Vec<i32>,
        /// DT_STRING values.
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub string_val: Vec<Vec<u8>>,
        /// DT_INT64 values.
        #[prost(int64, repeated, packed = "true", tag = "10")]
        pub int64_val: Vec<i64>,
        /// DT_BOOL values.
        #[prost(bool, repeated, packed = "true", tag = "11")]
        pub bool_val: Vec<bool>,
    }

    /// `tensorflow.DataType` (the values this reader knows; others stay plain `i32`s).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        DtInvalid = 0,
        /// float32.
        DtFloat = 1,
        /// float64.
        DtDouble = 2,
        /// int32.
        DtInt32 = 3,
        /// uint8.
        DtUint8 = 4,
        /// int64.
        DtInt64 = 9,
        /// bool.
        DtBool = 10,
        /// float16.
        DtHalf = 19,
    }
}

use proto::{attr_value, DataType, GraphDef, NodeDef, TensorProto};

/// Most elements one tensor may have (1 GiB of f32; the largest variable of an SSDLite graph has
/// about 0.4 million).
const MAX_ELEMENTS: usize = 1 << 28;
/// Most elements a typed field may expand to by repeating its last value: broadcasting makes
/// a few bytes of file ask for any amount of memory, and real graphs only broadcast small
/// constants (large tensors come as `tensor_content`, whose size the file itself bounds).
const MAX_BROADCAST_ELEMENTS: usize = 1 << 24;
/// Longest `Identity` chain followed from a convolution's filter input.
const MAX_IDENTITY_CHAIN: usize = 64;

/// How a frozen variable is laid out in the returned state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A `Conv2D` filter: `[H, W, I, O]` to `[O, I, H, W]`.
    Conv2d,
    /// A `DepthwiseConv2dNative` filter: `[H, W, C, M]` to `[C*M, 1, H, W]`.
    Depthwise,
}

/// Reads the frozen variables of a TensorFlow 1 frozen graph file on the CPU, under their
/// TensorFlow names, convolution filters in PyTorch's layout (see the [module docs](self)).
pub fn read_frozen_graph(path: &Path) -> Result<HashMap<String, Tensor>, WeightsError> {
    let error = |reason| WeightsError::Read { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    frozen_variables(&bytes).map_err(error)
}

/// [`read_frozen_graph`] on the bytes of a `.pb` file; `source_name` names it in errors.
pub fn from_bytes(bytes: &[u8], source_name: &str) -> Result<HashMap<String, Tensor>, WeightsError> {
    frozen_variables(bytes).map_err(|reason| WeightsError::Read { path: source_name.into(), reason })
}

fn frozen_variables(bytes: &[u8]) -> Result<HashMap<String, Tensor>, String> {
    let graph = decode_graph(bytes)?;
    let nodes = index_nodes(&graph)?;
    let variables: Vec<&NodeDef> = graph.node.iter().filter(|n| is_frozen_variable(n, &nodes)).collect();
    if variables.is_empty() {
        return Err("a GraphDef without frozen variables (no Const nodes read through `/read` Identity nodes): \
                    not a frozen inference graph"
            .into());
    }
    let layouts = filter_layouts(&graph, &nodes)?;
    variables
        .into_iter()
        .map(|node| {
            let layout = layouts.get(node.name.as_str()).copied();
            let tensor = const_tensor(node)
                .and_then(|t| apply_layout(t, layout))
                .map_err(|e| format!("tensor `{}`: {e}", node.name))?;
            Ok((node.name.clone(), tensor))
        })
        .collect()
}

fn decode_graph(bytes: &[u8]) -> Result<GraphDef, String> {
    if bytes.is_empty() {
        return Err("empty file: not a TensorFlow GraphDef".into());
    }
    let graph = GraphDef::decode(bytes)
        .map_err(|e| format!("not a TensorFlow GraphDef, or a truncated one (protobuf decoding failed: {e})"))?;
    if graph.node.is_empty() {
        return Err("not a TensorFlow GraphDef (no nodes)".into());
    }
    match graph.node.iter().position(|n| n.name.is_empty() || n.op.is_empty()) {
        Some(i) => Err(format!("not a TensorFlow GraphDef (node {i} has no name or no op)")),
        None => Ok(graph),
    }
}

fn index_nodes(graph: &GraphDef) -> Result<HashMap<&str, &NodeDef>, String> {
    let mut nodes = HashMap::with_capacity(graph.node.len());
    for node in &graph.node {
        if nodes.insert(node.name.as_str(), node).is_some() {
            return Err(format!("two nodes are named `{}`", node.name));
        }
    }
    Ok(nodes)
}

/// The node an input string refers to: `^x`, `x:0` and `x` all name `x`.
fn input_node(input: &str) -> &str {
    let name = input.strip_prefix('^').unwrap_or(input);
    match name.rsplit_once(':') {
        Some((node, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => node,
        _ => name,
    }
}

/// `X` is a frozen variable when it is a `Const` and an `Identity` node `X/read` reads it.
fn is_frozen_variable(node: &NodeDef, nodes: &HashMap<&str, &NodeDef>) -> bool {
    node.op == "Const"
        && nodes
            .get(format!("{}/read", node.name).as_str())
            .is_some_and(|read| read.op == "Identity" && read.input.first().is_some_and(|i| input_node(i) == node.name))
}

/// The layout of every `Const` that feeds a convolution's filter, keyed by its name.
fn filter_layouts<'g>(
    graph: &'g GraphDef,
    nodes: &HashMap<&str, &'g NodeDef>,
) -> Result<HashMap<&'g str, Layout>, String> {
    let mut layouts = HashMap::new();
    for conv in &graph.node {
        let layout = match conv.op.as_str() {
            "Conv2D" => Layout::Conv2d,
            "DepthwiseConv2dNative" => Layout::Depthwise,
            _ => continue,
        };
        let filter =
            conv.input.get(1).ok_or_else(|| format!("{} node `{}` has no filter input", conv.op, conv.name))?;
        let Some(source) = filter_source(input_node(filter), &conv.name, nodes)? else { continue };
        if layouts.insert(source, layout).is_some_and(|old| old != layout) {
            return Err(format!("tensor `{source}` is the filter of both a Conv2D and a DepthwiseConv2dNative node"));
        }
    }
    Ok(layouts)
}

/// Follows `Identity` nodes from `name` to a `Const`; `None` when the filter is computed.
fn filter_source<'g>(name: &str, conv: &str, nodes: &HashMap<&str, &'g NodeDef>) -> Result<Option<&'g str>, String> {
    let mut name = name;
    for _ in 0..MAX_IDENTITY_CHAIN {
        let node = nodes
            .get(name)
            .ok_or_else(|| format!("node `{conv}` reads `{name}`, which is not in the graph (a truncated file?)"))?;
        match (node.op.as_str(), node.input.first()) {
            ("Const", _) => return Ok(Some(node.name.as_str())),
            ("Identity", Some(input)) => name = input_node(input),
            _ => return Ok(None),
        }
    }
    Err(format!("the filter of `{conv}` goes through more than {MAX_IDENTITY_CHAIN} Identity nodes"))
}

fn apply_layout(tensor: Tensor, layout: Option<Layout>) -> Result<Tensor, String> {
    let Some(layout) = layout else { return Ok(tensor) };
    let &[h, w, c, m] = tensor.dims() else {
        return Err(format!("a convolution filter of shape {:?}, not 4-D", tensor.dims()));
    };
    let moved = match layout {
        Layout::Conv2d => tensor.permute((3, 2, 0, 1)).and_then(|t| t.contiguous()),
        Layout::Depthwise => tensor.permute((2, 3, 0, 1)).and_then(|t| t.reshape((c * m, 1, h, w))),
    };
    moved.map_err(|e| e.to_string())
}

/// The `Const` node's tensor, f16 widened to f32.
fn const_tensor(node: &NodeDef) -> Result<Tensor, String> {
    let proto = match node.attr.get("value").and_then(|v| v.value.as_ref()) {
        Some(attr_value::Value::Tensor(t)) => t,
        _ => return Err("the Const node has no tensor `value` attribute".into()),
    };
    let shape = shape_of(proto)?;
    let count = element_count(&shape)?;
    let dtype = DataType::try_from(proto.dtype)
        .map_err(|_| format!("unsupported dtype {} (TensorFlow's DataType enum)", proto.dtype))?;
    let (candle_dtype, size, dtype_name) = element_type(dtype)?;
    let raw: Cow<[u8]> = if proto.tensor_content.is_empty() {
        Cow::Owned(typed_values(proto, dtype, count)?)
    } else if proto.tensor_content.len() != count * size {
        return Err(format!(
            "tensor_content has {} bytes, shape {shape:?} of {dtype_name} needs {}",
            proto.tensor_content.len(),
            count * size
        ));
    } else {
        Cow::Borrowed(&proto.tensor_content)
    };
    let tensor = Tensor::from_raw_buffer(&raw, candle_dtype, &shape, &Device::Cpu).map_err(|e| e.to_string())?;
    match candle_dtype {
        DType::F16 => tensor.to_dtype(DType::F32).map_err(|e| e.to_string()),
        _ => Ok(tensor),
    }
}

fn shape_of(proto: &TensorProto) -> Result<Vec<usize>, String> {
    let Some(shape) = &proto.tensor_shape else { return Ok(Vec::new()) };
    if shape.unknown_rank {
        return Err("unknown rank".into());
    }
    let dims: Vec<i64> = shape.dim.iter().map(|d| d.size).collect();
    dims.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("shape {dims:?} has a negative (unknown) dimension")))
        .collect()
}

/// The element count, at most [`MAX_ELEMENTS`] (so byte sizes cannot overflow either).
fn element_count(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS))
        .ok_or_else(|| format!("shape {shape:?} has more than 2^28 elements"))
}

/// The candle dtype a TensorFlow dtype is read as, its element size in the file, and its name.
fn element_type(dtype: DataType) -> Result<(DType, usize, &'static str), String> {
    Ok(match dtype {
        DataType::DtFloat => (DType::F32, 4, "float32"),
        DataType::DtHalf => (DType::F16, 2, "float16"),
        DataType::DtDouble => (DType::F64, 8, "float64"),
        DataType::DtInt32 => (DType::I32, 4, "int32"),
        DataType::DtInt64 => (DType::I64, 8, "int64"),
        DataType::DtUint8 => (DType::U8, 1, "uint8"),
        DataType::DtBool => (DType::U8, 1, "bool"),
        DataType::DtInvalid => return Err("unsupported dtype DT_INVALID".into()),
    })
}

/// Little-endian bytes of `count` values from the typed field of `dtype`.
fn typed_values(proto: &TensorProto, dtype: DataType, count: usize) -> Result<Vec<u8>, String> {
    match dtype {
        DataType::DtFloat => fill("float_val", &proto.float_val, count, f32::to_le_bytes),
        DataType::DtHalf => fill("half_val", &proto.half_val, count, |v| (v as u16).to_le_bytes()),
        DataType::DtDouble => fill("double_val", &proto.double_val, count, f64::to_le_bytes),
        DataType::DtInt32 => fill("int_val", &proto.int_val, count, i32::to_le_bytes),
        DataType::DtUint8 => fill("int_val", &proto.int_val, count, |v| [v as u8]),
        DataType::DtInt64 => fill("int64_val", &proto.int64_val, count, i64::to_le_bytes),
        DataType::DtBool => fill("bool_val", &proto.bool_val, count, |v| [u8::from(v)]),
        DataType::DtInvalid => Err("unsupported dtype DT_INVALID".into()),
    }
}

/// TensorFlow's rule for typed fields: empty means zeros, a shorter field repeats its last value.
fn fill<T: Copy, const N: usize>(
    field: &str,
    values: &[T],
    count: usize,
    encode: impl Fn(T) -> [u8; N],
) -> Result<Vec<u8>, String> {
    if values.len() > count {
        return Err(format!("{field} has {} values, the shape has {count} elements", values.len()));
    }
    if values.len() < count && count > MAX_BROADCAST_ELEMENTS {
        return Err(format!(
            "{field} has {} values to repeat over {count} elements (more than 2^24 from a typed field)",
            values.len()
        ));
    }
    let mut out = Vec::with_capacity(count * N);
    values.iter().for_each(|&v| out.extend_from_slice(&encode(v)));
    let last = values.last().map_or([0; N], |&v| encode(v));
    (values.len()..count).for_each(|_| out.extend_from_slice(&last));
    Ok(out)
}
