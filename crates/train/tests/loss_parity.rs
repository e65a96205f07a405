//! SSD matching, loss and gradients against torchvision (`coco_tools/fixtures/make_train_fixtures.py`).

use candle_core::{Device, Tensor, Var};
use mixdet_detect::BoxCoder;
use mixdet_train::loss::{ssd_loss, ClassLoss};
use mixdet_train::matching::{build_targets, match_anchors};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/train/ssd_loss.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn boxes(v: &Value) -> Vec<[f32; 4]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let b: Vec<f32> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            [b[0], b[1], b[2], b[3]]
        })
        .collect()
}

fn flat(v: &Value, out: &mut Vec<f32>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        x => out.push(x.as_f64().unwrap() as f32),
    }
}

fn tensor3(v: &Value, dims: (usize, usize, usize)) -> Tensor {
    let mut data = Vec::new();
    flat(v, &mut data);
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn matches_and_loss_and_gradients_equal_torchvision() {
    let f = fixture();
    let anchors = boxes(&f["anchors"]);
    let k = f["num_classes"].as_u64().unwrap() as usize;
    let a = anchors.len();
    let mut targets = Vec::new();
    for i in 0..2 {
        let gt = boxes(&f["boxes"][i]);
        let labels: Vec<u32> = f["labels"][i].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let expected: Vec<i64> = f["matched_idxs"][i].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        assert_eq!(match_anchors(&gt, &anchors, 0.5), expected, "image {i}");
        targets.push(build_targets(&gt, &labels, &anchors, &BoxCoder::default(), 0.5));
    }
    let cls = Var::from_tensor(&tensor3(&f["cls_logits"], (2, a, k))).unwrap();
    let reg = Var::from_tensor(&tensor3(&f["bbox_regression"], (2, a, 4))).unwrap();
    let loss = ssd_loss(cls.as_tensor(), reg.as_tensor(), &targets, 3, ClassLoss::Softmax).unwrap();
    let want_cls = f["classification"].as_f64().unwrap() as f32;
    let want_reg = f["regression"].as_f64().unwrap() as f32;
    assert!((loss.classification - want_cls).abs() < 1e-4 * want_cls, "{} vs {want_cls}", loss.classification);
    assert!((loss.regression - want_reg).abs() < 1e-4 * want_reg, "{} vs {want_reg}", loss.regression);
    let grads = loss.total.backward().unwrap();
    let g_cls = grads.get(cls.as_tensor()).unwrap();
    let g_reg = grads.get(reg.as_tensor()).unwrap();
    let d_cls = max_abs_diff(g_cls, &tensor3(&f["grad_cls_logits"], (2, a, k)));
    let d_reg = max_abs_diff(g_reg, &tensor3(&f["grad_bbox_regression"], (2, a, 4)));
    assert!(d_cls < 1e-6 && d_reg < 1e-6, "gradient differences {d_cls} {d_reg}");
}
