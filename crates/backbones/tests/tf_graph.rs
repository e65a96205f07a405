//! Reading TensorFlow 1 frozen graphs: small GraphDefs built here with the crate's own prost
//! messages, encoded, and read back. The real-graph test runs only when `MIXDET_TF_GRAPH` names a
//! `frozen_inference_graph.pb`.

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Tensor};
use mixdet_backbones::tf_graph::proto::{
    attr_value, tensor_shape_proto::Dim, AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto,
};
use mixdet_backbones::tf_graph::{from_bytes, read_frozen_graph};
use mixdet_backbones::{read_state_dict, WeightsError};
use prost::Message;

fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
    Some(TensorShapeProto {
        dim: dims.iter().map(|&size| Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    })
}

/// A float32 tensor from raw little-endian `tensor_content`.
fn content_f32(dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: shape(dims),
        tensor_content: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float32 tensor from the typed `float_val` field.
fn typed_f32(dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: shape(dims),
        float_val: values.to_vec(),
        ..Default::default()
    }
}

fn node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn constant(name: &str, tensor: TensorProto) -> NodeDef {
    let mut n = node(name, "Const", &[]);
    n.attr.insert("dtype".into(), AttrValue { value: Some(attr_value::Value::Type(tensor.dtype)) });
    n.attr.insert("value".into(), AttrValue { value: Some(attr_value::Value::Tensor(Box::new(tensor))) });
    n
}

/// A frozen variable: the `Const` and its `/read` Identity.
fn variable(name: &str, tensor: TensorProto) -> [NodeDef; 2] {
    [constant(name, tensor), node(&format!("{name}/read"), "Identity", &[name])]
}

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

fn encode(nodes: Vec<NodeDef>) -> Vec<u8> {
    GraphDef { node: nodes }.encode_to_vec()
}

/// Conv2D `w` [2,3,4,5] (HWIO), a depthwise `dw` [3,2,4,2] read through two Identities, a
/// BatchNorm gamma, a non-variable const, a broadcast float_val, half values, an int64 variable.
fn test_graph() -> Vec<u8> {
    let mut nodes = vec![node("image", "Placeholder", &[])];
    nodes.extend(variable("w", content_f32(&[2, 3, 4, 5], &iota(120))));
    nodes.push(node("conv", "Conv2D", &["image", "w/read"]));
    nodes.extend(variable("dw", content_f32(&[3, 2, 4, 2], &iota(48))));
    nodes.push(node("dw/alias", "Identity", &["dw/read:0"]));
    nodes.push(node("dwconv", "DepthwiseConv2dNative", &["conv:0", "dw/alias", "^image"]));
    nodes.extend(variable("bn/gamma", typed_f32(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0])));
    nodes.push(node("bn", "FusedBatchNorm", &["dwconv", "bn/gamma/read"]));
    nodes.push(constant("anchors", content_f32(&[2, 2], &[0.1, 0.2, 0.3, 0.4])));
    nodes.push(node("anchors/read", "Identity", &["bn"])); // not reading `anchors`
    nodes.push(constant("Preprocessor/mean", typed_f32(&[3], &[0.5])));
    nodes.extend(variable("scale", typed_f32(&[2, 3], &[0.25])));
    nodes.extend(variable("padded", typed_f32(&[4], &[1.0, 2.0])));
    nodes.extend(variable("zeros", typed_f32(&[2], &[])));
    let half = TensorProto {
        dtype: DataType::DtHalf as i32,
        tensor_shape: shape(&[3]),
        half_val: vec![0x3C00, 0xC000, 0x3800], // 1.0, -2.0, 0.5
        ..Default::default()
    };
    nodes.extend(variable("half", half));
    let half_raw = TensorProto {
        dtype: DataType::DtHalf as i32,
        tensor_shape: shape(&[2]),
        tensor_content: [0x3C00u16, 0x4200].iter().flat_map(|v| v.to_le_bytes()).collect(), // 1.0, 3.0
        ..Default::default()
    };
    nodes.extend(variable("half_raw", half_raw));
    let step = TensorProto { dtype: DataType::DtInt64 as i32, int64_val: vec![7], ..Default::default() };
    nodes.extend(variable("global_step", step));
    encode(nodes)
}

fn read(bytes: &[u8]) -> HashMap<String, Tensor> {
    from_bytes(bytes, "test.pb").unwrap_or_else(|e| panic!("{e}"))
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 values")
}

fn error(bytes: &[u8]) -> String {
    match from_bytes(bytes, "bad.pb") {
        Err(e @ WeightsError::Read { .. }) => e.to_string(),
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(sd) => panic!("expected an error, read {} tensors", sd.len()),
    }
}

#[test]
fn frozen_variables_only_under_their_names() {
    let sd = read(&test_graph());
    let names: BTreeSet<&str> = sd.keys().map(String::as_str).collect();
    let expected = ["bn/gamma", "dw", "global_step", "half", "half_raw", "padded", "scale", "w", "zeros"];
    assert_eq!(names, expected.into_iter().collect());
}

#[test]
fn conv2d_filter_is_oihw() {
    let sd = read(&test_graph());
    let w = &sd["w"];
    assert_eq!(w.dims(), [5, 4, 2, 3]);
    let flat = values(w);
    let (kh, kw, ci, co) = (2, 3, 4, 5);
    for o in 0..co {
        for i in 0..ci {
            for h in 0..kh {
                for x in 0..kw {
                    let ours = flat[((o * ci + i) * kh + h) * kw + x];
                    let tf = (((h * kw + x) * ci + i) * co + o) as f32; // HWIO iota
                    assert_eq!(ours, tf, "[{o},{i},{h},{x}]");
                }
            }
        }
    }
}

#[test]
fn depthwise_filter_is_channel_major() {
    let sd = read(&test_graph());
    let dw = &sd["dw"];
    assert_eq!(dw.dims(), [8, 1, 3, 2]);
    let flat = values(dw);
    let (kh, kw, c_in, mult) = (3, 2, 4, 2);
    for c in 0..c_in {
        for m in 0..mult {
            for h in 0..kh {
                for x in 0..kw {
                    let ours = flat[((c * mult + m) * kh + h) * kw + x];
                    let tf = (((h * kw + x) * c_in + c) * mult + m) as f32; // [H, W, C, M] iota
                    assert_eq!(ours, tf, "[{c}*{mult}+{m},0,{h},{x}]");
                }
            }
        }
    }
}

#[test]
fn typed_fields_follow_tensorflow_rules() {
    let sd = read(&test_graph());
    assert_eq!(sd["bn/gamma"].dims(), [5]);
    assert_eq!(values(&sd["bn/gamma"]), [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(sd["scale"].dims(), [2, 3]);
    assert_eq!(values(&sd["scale"]), [0.25; 6]);
    assert_eq!(values(&sd["padded"]), [1.0, 2.0, 2.0, 2.0]);
    assert_eq!(values(&sd["zeros"]), [0.0, 0.0]);
    assert_eq!(sd["half"].dtype(), DType::F32);
    assert_eq!(values(&sd["half"]), [1.0, -2.0, 0.5]);
    assert_eq!(values(&sd["half_raw"]), [1.0, 3.0]);
    let step = &sd["global_step"];
    assert_eq!((step.dtype(), step.dims()), (DType::I64, &[][..]));
    assert_eq!(step.to_scalar::<i64>().expect("scalar"), 7);
}

#[test]
fn read_state_dict_dispatches_pb() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tf_graph_dispatch.pb");
    std::fs::write(&path, test_graph()).expect("write temp graph");
    let sd = read_state_dict(&path).expect("a .pb goes to the frozen-graph reader");
    assert_eq!(sd["w"].dims(), [5, 4, 2, 3]);
    assert_eq!(read_frozen_graph(&path).expect("direct").len(), sd.len());
    let missing = read_frozen_graph(&path.with_file_name("no_such_graph.pb")).expect_err("missing file");
    assert!(missing.to_string().contains("no_such_graph.pb"), "{missing}");
}

#[test]
fn not_a_graph() {
    assert!(error(&[]).contains("empty file: not a TensorFlow GraphDef"));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let e = error(&bytes);
        assert!(e.contains("not a TensorFlow GraphDef"), "{e}");
    }
    let e = error(b"PK\x03\x04 this is a zip, not a graph");
    assert!(e.contains("not a TensorFlow GraphDef"), "{e}");
}

#[test]
fn truncated_graph() {
    let bytes = test_graph();
    for cut in [bytes.len() - 1, bytes.len() - 5, 40, 3] {
        let e = error(&bytes[..cut]);
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
}

#[test]
fn graph_without_variables() {
    let bytes = encode(vec![node("x", "Placeholder", &[]), constant("c", typed_f32(&[1], &[1.0]))]);
    let e = error(&bytes);
    assert!(e.contains("without frozen variables") && e.contains("not a frozen inference graph"), "{e}");
}

fn one_variable(tensor: TensorProto) -> String {
    let mut nodes = variable("v", tensor).to_vec();
    nodes.push(node("conv", "Conv2D", &["x", "v/read"]));
    nodes.push(node("x", "Placeholder", &[]));
    error(&encode(nodes))
}

#[test]
fn bad_tensors() {
    let mut short = content_f32(&[2, 3, 4, 5], &[0.0, 1.0]);
    let e = one_variable(short.clone());
    assert!(e.contains("tensor `v`: tensor_content has 8 bytes, shape [2, 3, 4, 5] of float32 needs 480"), "{e}");
    short.tensor_content.extend([0; 500]);
    assert!(one_variable(short).contains("tensor_content has 508 bytes"));

    let e = one_variable(typed_f32(&[2, -1, 1, 1], &[1.0]));
    assert!(e.contains("tensor `v`") && e.contains("negative"), "{e}");
    let e = one_variable(typed_f32(&[1 << 20, 1 << 20, 1, 1], &[1.0]));
    assert!(e.contains("more than 2^28 elements"), "{e}");
    let e = one_variable(typed_f32(&[i64::MAX, i64::MAX, 2, 2], &[1.0]));
    assert!(e.contains("more than 2^28 elements"), "{e}");
    // A few bytes of file may not ask for gigabytes by broadcasting one value.
    let e = one_variable(typed_f32(&[1 << 13, 1 << 13, 2, 2], &[1.0]));
    assert!(e.contains("float_val has 1 values to repeat over 268435456 elements"), "{e}");
    let e = one_variable(typed_f32(&[1, 1, 1, 2], &[1.0, 2.0, 3.0]));
    assert!(e.contains("float_val has 3 values, the shape has 2 elements"), "{e}");
    let mut unknown = typed_f32(&[], &[1.0]);
    unknown.tensor_shape = Some(TensorShapeProto { dim: vec![], unknown_rank: true });
    assert!(one_variable(unknown).contains("unknown rank"));
    let e = one_variable(typed_f32(&[3], &[1.0]));
    assert!(e.contains("a convolution filter of shape [3], not 4-D"), "{e}");
    let strings = TensorProto { dtype: 7, string_val: vec![b"a".to_vec()], ..Default::default() };
    assert!(one_variable(strings).contains("unsupported dtype 7"));
    let mut no_value = variable("v", typed_f32(&[1], &[1.0])).to_vec();
    no_value[0].attr.remove("value");
    assert!(error(&encode(no_value)).contains("no tensor `value`"));
}

#[test]
fn dangling_filter_input() {
    let mut nodes = variable("v", typed_f32(&[1], &[1.0])).to_vec();
    nodes.push(node("conv", "Conv2D", &["x", "gone/read"]));
    let e = error(&encode(nodes));
    assert!(e.contains("`gone/read`, which is not in the graph"), "{e}");
}

/// `MIXDET_TF_GRAPH=/path/to/frozen_inference_graph.pb cargo test -p mixdet-backbones --test tf_graph -- --nocapture`
#[test]
fn real_frozen_graph() {
    let Some(path) = std::env::var_os("MIXDET_TF_GRAPH") else {
        eprintln!("MIXDET_TF_GRAPH not set: skipping the real-graph check");
        return;
    };
    let sd = read_state_dict(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    let not_f32: Vec<_> = sd.iter().filter(|(_, t)| t.dtype() != DType::F32).map(|(k, t)| (k, t.dtype())).collect();
    let params: usize = sd.values().map(Tensor::elem_count).sum();
    println!("{} frozen variables, {params} values; not float32: {not_f32:?}", sd.len());
    let expect = [
        ("FeatureExtractor/MobilenetV2/Conv/weights", &[32, 3, 3, 3][..]),
        ("FeatureExtractor/MobilenetV2/expanded_conv_1/depthwise/depthwise_weights", &[96, 1, 3, 3]),
        ("BoxPredictor_0/ClassPredictor/biases", &[6]),
    ];
    for (name, dims) in expect {
        if let Some(t) = sd.get(name) {
            assert_eq!(t.dims(), dims, "{name}");
        }
    }
}
