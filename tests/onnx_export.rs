//! ONNX export round trips without Python: models exported by `mixdet_onnx` run in tract (an
//! independent ONNX runtime) and must give mixdet's own outputs. The onnxruntime checks of every
//! model are in `coco_tools/export/check_onnx.py`; its committed results are read at the end.

use candle_core::{Device, Tensor};
use mixdet_backbones::onnx::ExportTarget;
use mixdet_backbones::synthetic_weights::synthetic_tensor;
use mixdet_backbones::{Backbone, ModelOptions, ModelSpec};
use mixdet_detect::{DetectorConfig, SsdLite};
use mixdet_onnx::ExportOptions;
use tract_onnx::prelude::{tvec, DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TValue, TVec};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs an encoded model in tract on `x` and returns every output as (shape, f32 values); i64
/// outputs are converted.
fn run_tract(bytes: &[u8], x: &Tensor) -> Res<Vec<(Vec<usize>, Vec<f32>)>> {
    let dims = x.dims().to_vec();
    let data = x.flatten_all()?.to_vec1::<f32>()?;
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])?
        .with_input_fact(0, InferenceFact::dt_shape(DatumType::F32, dims.clone()))?
        .into_optimized()?
        .into_runnable()?;
    let input = tract_onnx::prelude::Tensor::from_shape(&dims, &data)?;
    let out: TVec<TValue> = model.run(tvec!(input.into()))?;
    out.iter()
        .map(|t| {
            let t = t.cast_to::<f32>()?;
            Ok((t.shape().to_vec(), t.to_plain_array_view::<f32>()?.iter().copied().collect()))
        })
        .collect()
}

/// `max |a - b| / max |b|`.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn values(t: &Tensor) -> Res<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?)
}

fn random_input(dims: (usize, usize, usize, usize)) -> Res<Tensor> {
    let n = dims.0 * dims.1 * dims.2 * dims.3;
    let v: Vec<f32> = (0..n).map(|i| ((i as f32 * 0.7311).sin() * 43758.547).fract() - 0.5).collect();
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
}

fn synthetic_backbone(name: &str) -> Res<(ModelSpec, Box<dyn Backbone>)> {
    let spec = ModelSpec::by_name(name, None)?;
    let opts = ModelOptions::default();
    let weights = spec
        .state_dict_shapes(&opts)?
        .into_iter()
        .map(|(k, s)| Ok((k.clone(), synthetic_tensor(&k, &s, &Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    let mut net = spec.load_state_dict(&opts, weights, "synthetic", &Device::Cpu)?;
    net.fuse_for_inference()?;
    Ok((spec, net))
}

/// MixConv (split, per-group convolutions, concat), grouped 1x1 convolutions, squeeze-excitation
/// and SiLU, on a non-square input at a dynamic batch of 2; TF "SAME" padding (asymmetric pads)
/// for the `tf_` model on odd sizes; HardSwish / HardSigmoid for MobileNetV3.
#[test]
fn backbones_match_in_tract() -> Res<()> {
    // Synthetic weights through some twenty layers: tract, onnxruntime and mixdet each differ
    // from PyTorch's float64 result by up to ~1e-4 of the largest value (summation order), so the
    // bound is 1e-3; a wrong layer gives errors of order 1.
    for (name, [h, w], tol) in
        [("mixnet_s", [96, 128], 1e-3), ("tf_mixnet_s", [97, 131], 1e-3), ("mobilenet_v3_large", [64, 96], 1e-3)]
    {
        let (spec, net) = synthetic_backbone(name)?;
        let x = random_input((2, 3, h, w))?;
        let reference = net.forward(&x)?;
        let opts = ExportOptions::new([h, w]).with_batch(None);
        let logits =
            mixdet_onnx::encode(&mixdet_backbones::onnx::export(net.as_ref(), &spec, &opts, ExportTarget::Logits)?);
        let out = run_tract(&logits, &x)?;
        let expected = reference.logits.as_ref().ok_or("no logits")?;
        assert_eq!(out[0].0, expected.dims());
        let e = rel_err(&out[0].1, &values(expected)?);
        assert!(e < tol, "{name} logits: relative error {e}");
        let features =
            mixdet_onnx::encode(&mixdet_backbones::onnx::export(net.as_ref(), &spec, &opts, ExportTarget::Features)?);
        let out = run_tract(&features, &x)?;
        assert_eq!(out.len(), reference.features.len());
        for (i, (got, f)) in out.iter().zip(&reference.features).enumerate() {
            assert_eq!(got.0, f.dims(), "{name} features.{i}");
            let e = rel_err(&got.1, &values(f)?);
            assert!(e < tol, "{name} features.{i}: relative error {e}");
        }
    }
    Ok(())
}

/// A torchvision-family detector with a C3 level and the top-down merge (synthetic weights), and
/// the TF-family person detector with its own weights on a photo: raw head outputs, decoded
/// boxes and scores, and with NMS the detections mixdet's post-processing finds.
#[test]
fn detectors_match_in_tract() -> Res<()> {
    // torchvision family, batch 2.
    let cfg = DetectorConfig::resolve("ssdlite320_mixnet_s_c3td_shapes")?;
    let weights = SsdLite::state_dict_shapes(&cfg)?
        .into_iter()
        .map(|(k, s)| Ok((k.clone(), synthetic_tensor(&k, &s, &Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    let mut model = SsdLite::from_state_dict(cfg, weights, "synthetic", &Device::Cpu)?;
    model.fuse_for_inference()?;
    let x = random_input((2, 3, 320, 320))?;
    check_detector(&model, &x, 1e-3, false)?;

    // Trained weights on an image, the detections too: the torchvision family (shapes) and the
    // TF family (person).
    for (name, image) in [
        ("ssdlite512_mixnet_s_c3_shapes", "examples/images/shapes_02.png"),
        ("ssdlite300_mobilenet_v2_person", "examples/photos/astronaut.jpg"),
    ] {
        let detector = mixdet::Detector::builtin(name, &Device::Cpu)?;
        let model = detector.model();
        let [h, w] = model.config().input_size;
        let rgb = mixdet_detect::load_rgb(std::path::Path::new(image))?;
        let x = Tensor::from_vec(model.preprocess_rgb(&rgb), (1, 3, h, w), &Device::Cpu)?;
        let found = check_detector(model, &x, 1e-5, true)?;
        assert!(found >= 1, "{name} found nothing in {image} through ONNX");
    }
    Ok(())
}

/// Compares the exported detector (with NMS) with mixdet on `x`; returns the detections above
/// 0.3 in the first image. `detections`: compare them too (with trained weights; synthetic
/// weights give near-equal scores whose order float rounding decides).
fn check_detector(model: &SsdLite, x: &Tensor, tol: f32, detections: bool) -> Res<usize> {
    let name = model.config().name.clone();
    let out = model.forward_t(x, false)?;
    let (boxes, scores) = model.decode(&out)?;
    let dets = model.postprocess(&out, &model.config().postprocess)?;
    let opts = ExportOptions::new(model.config().input_size).with_batch(None);
    let bytes = mixdet_onnx::encode(&model.to_onnx_model(&opts, true)?);
    let got = run_tract(&bytes, x)?;
    // boxes, scores, cls_logits, bbox_regression, det_boxes, det_scores, det_labels, num_dets
    assert_eq!(got.len(), 8, "{name}: outputs");
    for (i, (what, t)) in [
        ("boxes", &boxes),
        ("scores", &scores),
        ("cls_logits", &out.cls_logits),
        ("bbox_regression", &out.bbox_regression),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(got[i].0, t.dims(), "{name} {what}");
        let e = rel_err(&got[i].1, &values(t)?);
        assert!(e < tol, "{name} {what}: relative error {e}");
    }
    let d = got[5].0[1];
    let mut confident = 0;
    if !detections {
        return Ok(0);
    }
    for (img, det) in dets.iter().enumerate() {
        let count = got[7].1[img] as usize;
        assert_eq!(count, det.len(), "{name} image {img}: detection count");
        // Beyond the first few, scores can tie to within float rounding and swap places; the
        // confident ones must be the same detections in the same order.
        for j in 0..count.min(d) {
            let score = got[5].1[img * d + j];
            if score < 0.3 {
                break;
            }
            assert!((score - det.scores[j]).abs() < 1e-5, "{name} image {img} detection {j}: score");
            assert_eq!(got[6].1[img * d + j] as i64, det.labels[j], "{name} image {img} detection {j}: label");
            for c in 0..4 {
                let v = got[4].1[(img * d + j) * 4 + c];
                assert!((v - det.boxes[j][c]).abs() < 1e-2, "{name} image {img} detection {j}: box");
            }
            if img == 0 {
                confident += 1;
            }
        }
    }
    Ok(confident)
}
