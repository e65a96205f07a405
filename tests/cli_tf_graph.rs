//! `mixdet convert` and `mixdet detect` on TensorFlow frozen graphs (`.pb`). CI has no copy of the
//! published graph, so the tests write one: the shipped person detector's weights as frozen
//! variables (a `Const` read through an `/read` Identity, conv filters in TF's HWIO layout) feeding
//! `Conv2D` / `DepthwiseConv2dNative` nodes, plus the plumbing constants a real graph holds.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{mixdet, root};
use mixdet_backbones::tf_graph::proto::{
    attr_value, tensor_shape_proto::Dim, AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto,
};
use prost::Message;

fn node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn constant(name: &str, t: &Tensor) -> NodeDef {
    let values = t.flatten_all().and_then(|t| t.to_dtype(DType::F32)).and_then(|t| t.to_vec1::<f32>()).expect("f32");
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: t.dims().iter().map(|&d| Dim { size: d as i64, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        tensor_content: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    };
    let mut n = node(name, "Const", &[]);
    n.attr.insert("dtype".into(), AttrValue { value: Some(attr_value::Value::Type(DataType::DtFloat as i32)) });
    n.attr.insert("value".into(), AttrValue { value: Some(attr_value::Value::Tensor(Box::new(tensor))) });
    n
}

/// A frozen graph of `state_dict` (TF names, PyTorch layouts as mixdet stores them).
fn frozen_graph(state_dict: &HashMap<String, Tensor>) -> Vec<u8> {
    let mut nodes = vec![node("image_tensor", "Placeholder", &[])];
    nodes.push(constant("Preprocessor/mul/x", &Tensor::new(&[0.007_843_138_f32], &Device::Cpu).expect("t")));
    let mut names: Vec<&String> = state_dict.keys().collect();
    names.sort();
    for name in names {
        let t = &state_dict[name];
        let read = format!("{name}/read");
        let (stored, consumer) = match t.rank() {
            // OIHW -> HWIO for Conv2D; (C, 1, H, W) -> (H, W, C, 1) for depthwise.
            4 if name.ends_with("depthwise_weights") => {
                (t.permute((2, 3, 0, 1)).expect("permute"), Some("DepthwiseConv2dNative"))
            }
            4 => (t.permute((2, 3, 1, 0)).expect("permute"), Some("Conv2D")),
            _ => (t.clone(), None),
        };
        nodes.push(constant(name, &stored.contiguous().expect("contiguous")));
        nodes.push(node(&read, "Identity", &[name]));
        if let Some(op) = consumer {
            nodes.push(node(&format!("{name}/op"), op, &["image_tensor", &read]));
        }
    }
    GraphDef { node: nodes }.encode_to_vec()
}

fn shipped() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        root().join("crates/detect/models/ssdlite300_mobilenet_v2_person.safetensors"),
        &Device::Cpu,
    )
    .expect("shipped weights")
}

fn convert(graph: &Path, out: &Path) -> std::process::Output {
    mixdet().arg("convert").arg("--weights").arg(graph).arg("--out").arg(out).output().expect("run")
}

#[test]
fn a_frozen_graph_converts_to_the_shipped_weights_and_detects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = shipped();
    let graph = dir.path().join("frozen_inference_graph.pb");
    std::fs::write(&graph, frozen_graph(&sd)).expect("write graph");
    let out = dir.path().join("person.safetensors");
    let run = convert(&graph, &out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        stdout.contains("404 tensors") && stdout.contains("loads as ssdlite300_mobilenet_v2_person (2 classes)"),
        "{stdout}"
    );
    // Every variable comes back under its TF name, in mixdet's layout, with the same values.
    let back = candle_core::safetensors::load(&out, &Device::Cpu).expect("converted");
    assert_eq!(back.len(), sd.len(), "only the frozen variables are extracted");
    for (k, t) in &sd {
        let b = &back[k];
        assert_eq!(b.dims(), t.dims(), "{k}");
        let diff = (b - t.to_dtype(DType::F32).expect("f32")).expect("sub").abs().expect("abs");
        assert_eq!(diff.max_all().and_then(|d| d.to_scalar::<f32>()).expect("max"), 0.0, "{k}");
    }
    // The graph itself serves as --weights, with the same detections as the built-in weights.
    let photo = root().join("examples/photos/astronaut.jpg");
    let detect = |weights: Option<&Path>| {
        let mut cmd = mixdet();
        cmd.arg("detect").arg(&photo).arg("--no-overlay").arg("--json").arg(dir.path().join("d.json"));
        if let Some(w) = weights {
            cmd.arg("--weights").arg(w);
        }
        let run = cmd.output().expect("run");
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        std::fs::read_to_string(dir.path().join("d.json")).expect("json")
    };
    let builtin = detect(None);
    assert!(builtin.contains("\"category_id\":1"), "{builtin}");
    assert_eq!(detect(Some(&graph)), builtin);
}

#[test]
fn bad_graphs_get_one_line_errors_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = frozen_graph(&shipped());
    let mut other = HashMap::new();
    other.insert(
        "InceptionV3/Conv2d_1a_3x3/weights".to_string(),
        Tensor::zeros((32, 3, 3, 3), DType::F32, &Device::Cpu).expect("t"),
    );
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("empty.pb", Vec::new(), "empty file: not a TensorFlow GraphDef"),
        ("photo.pb", std::fs::read(root().join("examples/photos/cat.jpg")).expect("jpg"), "not a TensorFlow GraphDef"),
        ("truncated.pb", good[..good.len() / 3].to_vec(), "not a TensorFlow GraphDef, or a truncated one"),
        (
            "inception.pb",
            frozen_graph(&other),
            "not a TF Object Detection API SSD with ssdlite300_mobilenet_v2_person's layout",
        ),
    ];
    for (name, bytes, expected) in cases {
        let graph = dir.path().join(name);
        std::fs::write(&graph, bytes).expect("write");
        let out = dir.path().join(format!("{name}.safetensors"));
        let run = convert(&graph, &out);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{name} converted");
        assert!(err.contains(expected) && err.contains(name), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        assert!(!out.exists(), "{name}: nothing written");
    }
}
