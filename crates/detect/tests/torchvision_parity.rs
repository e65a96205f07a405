//! Parity with torchvision 0.29.2's `ssdlite320_mobilenet_v3_large`, NMS and resize.
//!
//! Fixtures: `coco_tools/fixtures/make_ssdlite_fixtures.py` (synthetic weights regenerated here bit for bit).
//! Tolerances (issue 4): head outputs and anchors within 1e-4 (relative to the output's largest
//! magnitude for the head, absolute pixels for anchors), detections: labels equal, boxes within
//! 1e-3 px, scores within 1e-5.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use mixdet_backbones::synthetic_weights::{state_dict_from_manifest, synthetic_values, uniform01};
use mixdet_detect::nms::batched_nms;
use mixdet_detect::preprocess::{resize_bilinear, PlanarImage};
use mixdet_detect::{DetectorConfig, SsdLite};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ssdlite")
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).expect("fixture")
}

fn synthetic_image(key: &str, c: usize, h: usize, w: usize) -> PlanarImage {
    let data = synthetic_values(key, &[c, h, w]).into_iter().map(|v| (v + 1.0) * 0.5).collect();
    PlanarImage { data, height: h, width: w }
}

fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 tensor")
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// torchvision's state dict: synthetic values, with the BatchNorm statistics the fixture script
/// calibrated on the input (stored as `bn.<key>`).
fn torchvision_model(refs: &HashMap<String, Tensor>) -> SsdLite {
    let mut sd = state_dict_from_manifest(&fixtures().join("ssdlite320_mobilenet_v3_large.json"), &Device::Cpu)
        .expect("manifest");
    for (k, t) in sd.iter_mut() {
        if let Some(calibrated) = refs.get(&format!("bn.{k}")) {
            *t = calibrated.clone();
        }
    }
    let cfg = DetectorConfig::resolve("ssdlite320_mobilenet_v3_large").expect("built-in");
    SsdLite::from_state_dict(cfg, sd, "torchvision", &Device::Cpu)
        .unwrap_or_else(|e| panic!("torchvision's state dict must load strictly: {e}"))
}

#[test]
fn head_outputs_anchors_and_detections_match_torchvision() {
    let refs = load("ssdlite320_mobilenet_v3_large.safetensors");
    check_detector(&torchvision_model(&refs), &refs, "unfused");
}

#[test]
fn fused_inference_matches_torchvision() {
    let refs = load("ssdlite320_mobilenet_v3_large.safetensors");
    let mut model = torchvision_model(&refs);
    model.fuse_for_inference().expect("fuse");
    check_detector(&model, &refs, "fused");
}

fn check_detector(model: &SsdLite, refs: &HashMap<String, Tensor>, path: &str) {
    let img = synthetic_image("image.ssdlite", 3, 320, 320);
    let x = model.preprocess_batch(&[img], &Device::Cpu).expect("preprocess");
    let out = model.forward_t(&x, false).expect("forward");

    let cls = vec_f32(&out.cls_logits);
    let ref_cls = vec_f32(&refs["cls_logits"]);
    assert_eq!(out.cls_logits.dims(), &[1, 3234, 91]);
    let rel = max_diff(&cls, &ref_cls) / max_abs(&ref_cls);
    eprintln!("{path}: cls_logits relative error {rel:.2e}");
    assert!(rel <= 1e-4, "cls_logits relative error {rel:.2e}");
    let reg = vec_f32(&out.bbox_regression);
    let ref_reg = vec_f32(&refs["bbox_regression"]);
    let rel = max_diff(&reg, &ref_reg) / max_abs(&ref_reg);
    eprintln!("{path}: bbox_regression relative error {rel:.2e}");
    assert!(rel <= 1e-4, "bbox_regression relative error {rel:.2e}");

    let anchors: Vec<f32> = model.anchors(&out.grid_sizes).iter().flatten().copied().collect();
    assert!(max_diff(&anchors, &vec_f32(&refs["anchors"])) <= 1e-4, "anchors");

    let cfg = model.config().postprocess;
    let mut dets = model.postprocess(&out, &cfg).expect("postprocess").remove(0);
    let ref_labels = refs["det.labels"].to_vec1::<i64>().expect("labels");
    assert_eq!(dets.labels, ref_labels, "labels in order");
    let boxes: Vec<f32> = dets.boxes.iter().flatten().copied().collect();
    let box_err = max_diff(&boxes, &vec_f32(&refs["det.boxes"]));
    eprintln!("{path}: {} detections, max box error {box_err:.2e} px", dets.len());
    assert!(box_err <= 1e-3, "boxes");
    assert!(max_diff(&dets.scores, &vec_f32(&refs["det.scores"])) <= 1e-5, "scores");

    dets.rescale([320, 320], [240, 300]);
    let boxes: Vec<f32> = dets.boxes.iter().flatten().copied().collect();
    assert!(max_diff(&boxes, &vec_f32(&refs["det_orig.boxes"])) <= 1e-3, "boxes in the original image");
}

#[test]
fn bilinear_resize_matches_torch_interpolate() {
    let refs = load("resize.safetensors");
    for (name, (h, w), (oh, ow)) in [("up", (37, 53), (64, 48)), ("down", (97, 131), (40, 30))] {
        let img = synthetic_image(&format!("resize.{name}"), 3, h, w);
        let out = resize_bilinear(&img, oh, ow);
        let err = max_diff(&out.data, &vec_f32(&refs[&format!("{name}.output")]));
        assert!(err <= 1e-6, "{name}: max abs error {err:.2e}");
    }
}

#[test]
fn batched_nms_matches_torchvision() {
    let refs = load("nms.safetensors");
    for (n, num_classes) in [(500usize, 3.0f64), (3000, 20.0)] {
        let u = uniform01(&format!("nms.boxes.{n}"), n * 4);
        let boxes: Vec<[f32; 4]> = u
            .chunks(4)
            .map(|r| {
                let (x1, y1) = (r[0] * 100.0, r[1] * 100.0);
                [x1 as f32, y1 as f32, (x1 + 1.0 + r[2] * 60.0) as f32, (y1 + 1.0 + r[3] * 60.0) as f32]
            })
            .collect();
        let scores: Vec<f32> = uniform01(&format!("nms.scores.{n}"), n).into_iter().map(|s| s as f32).collect();
        let classes: Vec<i64> =
            uniform01(&format!("nms.classes.{n}"), n).into_iter().map(|c| (c * num_classes).floor() as i64).collect();
        let keep: Vec<i64> = batched_nms(&boxes, &scores, &classes, 0.5).into_iter().map(|i| i as i64).collect();
        let expected = refs[&format!("keep.{n}")].to_vec1::<i64>().expect("keep");
        assert!(expected.len() < n, "the case must suppress something");
        assert_eq!(keep, expected, "{n} boxes");
    }
}
