//! A graph builder: values are named by the builder, constants become initializers, every node
//! is checked against the opset the model declares.

use prost::Message;

use crate::proto::{
    AttributeProto, AttributeType, DataType, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto,
};
use crate::Error;

/// The lowest opset mixdet writes: `Split`, `Softmax`, `ReduceSum` and `Unsqueeze` take their
/// opset-13 forms.
pub const MIN_OPSET: i64 = 13;
/// The highest opset mixdet writes (onnxruntime 1.17 and later run it).
pub const MAX_OPSET: i64 = 21;

/// The opset in which an operator took the form mixdet writes (`None`: not one mixdet writes).
fn since(op: &str) -> Option<i64> {
    Some(match op {
        "Conv" | "Relu" | "Sigmoid" | "Mul" | "Add" | "Sub" | "Div" | "Exp" | "Min" | "Max" | "Clip"
        | "HardSigmoid" | "GlobalAveragePool" | "Flatten" | "Gemm" | "Concat" | "Reshape" | "Transpose" | "Slice"
        | "Gather" | "TopK" | "NonMaxSuppression" | "ScatterND" | "Where" | "Greater" | "Cast" | "Identity"
        | "Shape" | "Expand" | "ConstantOfShape" | "Mod" | "Less" | "Split" | "Softmax" | "ReduceSum" | "Unsqueeze"
        | "Squeeze" | "GatherND" => MIN_OPSET,
        "HardSwish" => 14,
        _ => return None,
    })
}

/// The IR version that goes with an opset (onnx's `VERSION_TABLE`).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// A dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size named by the model (e.g. `batch`), set by the caller at run time.
    Named(String),
}

/// A node attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// An integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A float.
    Float(f32),
    /// A string.
    Str(String),
}

/// Element types of graph inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit float.
    F32,
    /// 64-bit integer.
    I64,
}

impl ElemType {
    fn data_type(self) -> DataType {
        match self {
            ElemType::F32 => DataType::Float,
            ElemType::I64 => DataType::Int64,
        }
    }
}

/// Builds one ONNX graph.
#[derive(Debug)]
pub struct Graph {
    opset: i64,
    graph: GraphProto,
    counter: usize,
    prefix: String,
    half_weights: bool,
}

fn value_info(name: &str, elem: ElemType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => DimensionValue::DimValue(*n as i64),
                Dim::Named(s) => DimensionValue::DimParam(s.clone()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: elem.data_type() as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: String::new(),
    }
}

impl Graph {
    /// A graph for `opset` (between [`MIN_OPSET`] and [`MAX_OPSET`]).
    pub fn new(name: &str, opset: i64) -> Result<Self, Error> {
        if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
            return Err(Error::Opset { opset, min: MIN_OPSET, max: MAX_OPSET });
        }
        Ok(Self {
            opset,
            graph: GraphProto { name: name.to_string(), ..Default::default() },
            counter: 0,
            prefix: String::new(),
            half_weights: false,
        })
    }

    /// The opset the graph is written for.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Names given from now on start with `prefix/` (the layer they belong to); returns the
    /// previous prefix for [`Graph::set_prefix`] to restore.
    pub fn set_prefix(&mut self, prefix: &str) -> String {
        std::mem::replace(&mut self.prefix, prefix.to_string())
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        if self.prefix.is_empty() {
            format!("{hint}_{}", self.counter)
        } else {
            format!("{}/{hint}_{}", self.prefix, self.counter)
        }
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: ElemType, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declares `value` as the graph output `name` (through an `Identity` node when named
    /// otherwise).
    pub fn output(&mut self, value: &str, name: &str, elem: ElemType, dims: &[Dim]) -> Result<(), Error> {
        if value != name {
            let node_name = self.fresh("output");
            self.graph.node.push(NodeProto {
                input: vec![value.to_string()],
                output: vec![name.to_string()],
                name: node_name,
                op_type: "Identity".into(),
                ..Default::default()
            });
        }
        self.graph.output.push(value_info(name, elem, dims));
        Ok(())
    }

    /// An f32 constant of shape `dims`.
    pub fn f32s(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> Result<String, Error> {
        if dims.iter().product::<usize>() != values.len() {
            return Err(Error::Shape(format!("{hint}: {} values for shape {dims:?}", values.len())));
        }
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.constant(hint, dims, DataType::Float, raw))
    }

    /// Stores the layers' weights ([`Graph::weights`]) as float16, each followed by a `Cast` to
    /// float32: half the file, the same float32 arithmetic (weights rounded to float16).
    pub fn with_half_weights(mut self, half: bool) -> Self {
        self.half_weights = half;
        self
    }

    /// A layer's weights or bias: an f32 constant, or float16 + `Cast` with
    /// [`Graph::with_half_weights`]. Other constants (anchors, thresholds) stay f32 whatever the
    /// setting: float16 would move a 300-pixel anchor by up to an eighth of a pixel.
    pub fn weights(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> Result<String, Error> {
        if !self.half_weights {
            return self.f32s(hint, dims, values);
        }
        if dims.iter().product::<usize>() != values.len() {
            return Err(Error::Shape(format!("{hint}: {} values for shape {dims:?}", values.len())));
        }
        let raw = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let stored = self.constant(hint, dims, DataType::Float16, raw);
        self.op("Cast", &[&stored], &[("to", Attr::Int(DataType::Float as i64))])
    }

    /// An i64 constant of shape `dims`.
    pub fn i64s(&mut self, hint: &str, dims: &[usize], values: &[i64]) -> Result<String, Error> {
        if dims.iter().product::<usize>() != values.len() {
            return Err(Error::Shape(format!("{hint}: {} values for shape {dims:?}", values.len())));
        }
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.constant(hint, dims, DataType::Int64, raw))
    }

    /// A 1-D i64 constant.
    pub fn i64_vec(&mut self, hint: &str, values: &[i64]) -> Result<String, Error> {
        self.i64s(hint, &[values.len()], values)
    }

    /// A scalar f32 constant.
    pub fn f32_scalar(&mut self, hint: &str, value: f32) -> Result<String, Error> {
        self.f32s(hint, &[], &[value])
    }

    fn constant(&mut self, hint: &str, dims: &[usize], data_type: DataType, raw_data: Vec<u8>) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type as i32,
            name: name.clone(),
            raw_data,
            ..Default::default()
        });
        name
    }

    /// Adds an operator with one output and returns the output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> Result<String, Error> {
        Ok(self.op_n(op, inputs, attrs, 1)?.remove(0))
    }

    /// Adds an operator with `outputs` outputs and returns their names.
    pub fn op_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        outputs: usize,
    ) -> Result<Vec<String>, Error> {
        match since(op) {
            None => return Err(Error::UnknownOp(op.to_string())),
            Some(v) if v > self.opset => {
                return Err(Error::OpNeedsOpset { op: op.to_string(), needs: v, opset: self.opset })
            }
            Some(_) => {}
        }
        let hint = op.to_ascii_lowercase();
        let name = self.fresh(&hint);
        let output: Vec<String> =
            if outputs == 1 { vec![name.clone()] } else { (0..outputs).map(|i| format!("{name}:{i}")).collect() };
        let attribute = attrs
            .iter()
            .map(|(n, a)| {
                let mut p = AttributeProto { name: n.to_string(), ..Default::default() };
                match a {
                    Attr::Int(i) => {
                        p.i = *i;
                        p.r#type = AttributeType::Int as i32;
                    }
                    Attr::Ints(v) => {
                        p.ints = v.clone();
                        p.r#type = AttributeType::Ints as i32;
                    }
                    Attr::Float(f) => {
                        p.f = *f;
                        p.r#type = AttributeType::Float as i32;
                    }
                    Attr::Str(s) => {
                        p.s = s.as_bytes().to_vec();
                        p.r#type = AttributeType::String as i32;
                    }
                }
                p
            })
            .collect();
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name,
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
        Ok(output)
    }

    /// The model: this graph, the default-domain opset, the producer and `metadata_props`.
    pub fn into_model(self, producer_version: &str, doc: &str, metadata: &[(String, String)]) -> ModelProto {
        ModelProto {
            ir_version: ir_version(self.opset),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: self.opset }],
            producer_name: "mixdet".into(),
            producer_version: producer_version.to_string(),
            doc_string: doc.to_string(),
            graph: Some(self.graph),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() })
                .collect(),
            ..Default::default()
        }
    }
}

/// The model as the bytes of an `.onnx` file.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Reads an `.onnx` file's bytes (the messages above; other fields are skipped).
pub fn decode(bytes: &[u8]) -> Result<ModelProto, Error> {
    ModelProto::decode(bytes).map_err(|e| Error::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opsets_are_checked_per_operator() {
        assert!(matches!(Graph::new("g", 12), Err(Error::Opset { .. })));
        assert!(matches!(Graph::new("g", 22), Err(Error::Opset { .. })));
        let mut g = Graph::new("g", 13).expect("opset 13");
        let x = g.input("x", ElemType::F32, &[Dim::Named("batch".into()), Dim::Fixed(3)]);
        assert!(g.op("Relu", &[&x], &[]).is_ok());
        let err = g.op("HardSwish", &[&x], &[]).unwrap_err();
        assert_eq!(err.to_string(), "HardSwish needs opset 14 or later; the export asked for opset 13");
        assert!(matches!(g.op("LSTM", &[&x], &[]), Err(Error::UnknownOp(_))));
    }

    #[test]
    fn models_round_trip_through_the_wire_format() {
        let mut g = Graph::new("g", 17).expect("opset 17");
        let x = g.input("x", ElemType::F32, &[Dim::Named("batch".into()), Dim::Fixed(2)]);
        let w = g.f32s("w", &[2], &[1.5, -2.0]).expect("constant");
        let y = g.op("Mul", &[&x, &w], &[("unused", Attr::Ints(vec![1, 2]))]).expect("mul");
        g.output(&y, "y", ElemType::F32, &[Dim::Named("batch".into()), Dim::Fixed(2)]).expect("output");
        let model = g.into_model("0.1.0", "test", &[("k".into(), "v".into())]);
        let back = decode(&encode(&model)).expect("decode");
        assert_eq!(back, model);
        assert_eq!(back.ir_version, 8);
        let graph = back.graph.expect("graph");
        assert_eq!(graph.node.len(), 2);
        assert_eq!(graph.node[1].op_type, "Identity");
        assert_eq!(
            graph.initializer[0].raw_data,
            [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn half_weights_are_float16_with_a_cast() {
        let mut g = Graph::new("g", 17).expect("opset 17").with_half_weights(true);
        let w = g.weights("w", &[2], &[1.5, -2.0]).expect("weights");
        let a = g.f32s("anchors", &[1], &[300.1]).expect("constant");
        let graph = g.into_model("0", "", &[]).graph.expect("graph");
        assert_eq!(graph.initializer[0].data_type, DataType::Float16 as i32);
        assert_eq!(graph.initializer[0].raw_data, [0x00, 0x3e, 0x00, 0xc0]);
        assert_eq!(graph.initializer[1].data_type, DataType::Float as i32, "{a} stays f32");
        assert_eq!(graph.node[0].op_type, "Cast");
        assert_eq!(graph.node[0].output[0], w);
    }
}
