//! Model initialisation, one-batch training, BatchNorm statistics in checkpoints, resume, and the
//! synthetic generator's determinism — on tiny inputs so that each test takes a few seconds.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use mixdet_detect::{BoxCoder, DetectorConfig};
use mixdet_train::augment::AugmentConfig;
use mixdet_train::checkpoint::{self, Position};
use mixdet_train::dataset::Dataset;
use mixdet_train::loader::LoaderSpec;
use mixdet_train::optim::{Optimizer, OptimizerConfig};
use mixdet_train::synth::{generate, SynthOptions};
use mixdet_train::trainer::{build_model, input_anchors, train_step, trainable_params};

fn tiny_config() -> DetectorConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/detect/configs/ssdlite320_mixnet_s_shapes.json");
    let mut cfg = DetectorConfig::resolve(path).expect("synth detector config");
    cfg.input_size = [64, 64];
    cfg
}

fn synth(dir: &Path, train: usize, val: usize, seed: u64) {
    generate(&SynthOptions { out: dir.to_path_buf(), train, val, seed, size: 64 }).expect("synth");
}

/// Batches of 4 without augmentation, for the model's anchors.
fn plain_loader(ds: Dataset, cfg: &DetectorConfig, model: &mixdet_detect::SsdLite) -> LoaderSpec {
    LoaderSpec {
        samples: Arc::new(ds.samples),
        batch_size: 4,
        input_size: cfg.input_size,
        mean: cfg.image_mean,
        std: cfg.image_std,
        augment: AugmentConfig { photometric: false, zoom_out: false, iou_crop: false, hflip: false },
        anchors: input_anchors(model, &Device::Cpu).unwrap(),
        coder: BoxCoder::default(),
        iou_threshold: 0.5,
        seed: 0,
        epochs: 1,
        start: (0, 0),
    }
}

#[test]
fn initialised_model_gives_varied_outputs() {
    let (_vm, model) = build_model(tiny_config(), 0, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    // Training mode: at initialisation the running statistics are the identity (mean 0, var 1),
    // so eval-mode activations shrink through the squeeze-excitation gates (as in PyTorch);
    // what the first steps see is the batch-normalised network.
    let out = model.forward_t(&x, true).unwrap();
    let std = |t: &Tensor| {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32).sqrt()
    };
    let (s_cls, s_reg) = (std(&out.cls_logits), std(&out.bbox_regression));
    assert!(s_cls > 1e-3 && s_cls.is_finite(), "cls logits std {s_cls}");
    assert!(s_reg > 1e-3 && s_reg.is_finite(), "regression std {s_reg}");
    // Two different images must not give the same outputs (a dead trunk would).
    let a = out.cls_logits.get(0).unwrap();
    let b = out.cls_logits.get(1).unwrap();
    let d: f32 = (a - b).unwrap().abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(d > 1e-3, "outputs do not depend on the input ({d})");
}

#[test]
fn training_steps_lower_the_loss_update_bn_statistics_and_checkpoint_them() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 4, 0, 1);
    let cfg = tiny_config();
    let ds = Dataset::load(&dir.path().join("annotations/instances_train.json"), &dir.path().join("train"), 7).unwrap();
    assert!(ds.issues.is_empty(), "{:?}", ds.issues);
    let (varmap, model) = build_model(cfg.clone(), 0, &Device::Cpu).unwrap();
    let spec = plain_loader(ds, &cfg, &model);
    let batch = spec.make_batch(0, 0, &[0, 1, 2, 3]);
    assert_eq!(batch.count, 4);
    let bn = "backbone.body.bn1.running_mean";
    let before: Vec<f32> = varmap.data().lock().unwrap()[bn].as_tensor().to_vec1().unwrap();
    let params = trainable_params(&varmap, true).unwrap();
    assert!(params.iter().all(|p| !p.name.contains("running")));
    let opt_cfg = OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 4e-5, nesterov: false };
    let mut opt = Optimizer::new(opt_cfg, params);
    let losses: Vec<f32> =
        (0..4).map(|_| train_step(&model, &mut opt, &batch, 0.02, 3, &Device::Cpu).unwrap().loss).collect();
    assert!(losses[3] < losses[0], "loss did not fall on a repeated batch: {losses:?}");
    let weights = dir.path().join("model.safetensors");
    let ckpt = dir.path().join("checkpoint.safetensors");
    let pos = Position { step: 4, epoch: 0, batch_in_epoch: 1 };
    checkpoint::save(&varmap, &opt, pos, &weights, &ckpt).unwrap();
    let saved = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let after: Vec<f32> = saved[bn].to_vec1().unwrap();
    assert_ne!(before, after, "running mean in the checkpoint did not change");
    // The weights file is a strict state dict for the detector.
    mixdet_detect::SsdLite::from_file(cfg.clone(), &weights, &Device::Cpu).unwrap();
    // Resume restores variables, optimiser state and position.
    let (varmap2, _model2) = build_model(cfg, 9, &Device::Cpu).unwrap();
    let mut opt2 = Optimizer::new(opt_cfg, trainable_params(&varmap2, true).unwrap());
    assert_eq!(checkpoint::load(&varmap2, &mut opt2, &ckpt).unwrap(), pos);
    assert_eq!(opt2.steps(), 4);
    let restored: Vec<f32> = varmap2.data().lock().unwrap()[bn].as_tensor().to_vec1().unwrap();
    assert_eq!(restored, after);
}

#[test]
fn synth_is_deterministic_and_train_zero_writes_only_val() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    synth(a.path(), 3, 2, 42);
    synth(b.path(), 3, 2, 42);
    for rel in
        ["annotations/instances_train.json", "annotations/instances_val.json", "train/000002.png", "val/000001.png"]
    {
        assert_eq!(std::fs::read(a.path().join(rel)).unwrap(), std::fs::read(b.path().join(rel)).unwrap(), "{rel}");
    }
    let c = tempfile::tempdir().unwrap();
    synth(c.path(), 0, 2, 42);
    assert!(!c.path().join("train").exists() && !c.path().join("annotations/instances_train.json").exists());
    // A different seed gives a different set; the val split does not depend on the train count.
    assert_eq!(
        std::fs::read(a.path().join("val/000001.png")).unwrap(),
        std::fs::read(c.path().join("val/000001.png")).unwrap()
    );
    let d = tempfile::tempdir().unwrap();
    synth(d.path(), 0, 2, 43);
    assert_ne!(
        std::fs::read(c.path().join("val/000001.png")).unwrap(),
        std::fs::read(d.path().join("val/000001.png")).unwrap()
    );
    let gt = mixdet_coco::GroundTruth::from_path(a.path().join("annotations/instances_val.json")).unwrap();
    assert_eq!(gt.categories.len(), 6);
    assert!(gt.annotations.iter().all(|x| x.area > 0.0 && x.bbox[2] > 0.0 && (1..=6).contains(&x.category_id)));
}

/// The top-down merge starts as the identity (its BatchNorm scale is zero), so a C3 detector's
/// outputs are unchanged with the same seed, and a training step moves that scale off zero.
#[test]
fn top_down_merge_starts_as_identity_and_trains() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/detect/configs/ssdlite320_mixnet_s_c3_shapes.json");
    let mut c3 = DetectorConfig::resolve(path).expect("C3 detector config");
    c3.input_size = [64, 64];
    let mut td = c3.clone();
    td.top_down = true;
    let (_, plain) = build_model(c3, 3, &Device::Cpu).unwrap();
    let (varmap, merged) = build_model(td.clone(), 3, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    for train in [true, false] {
        let (a, b) = (plain.forward_t(&x, train).unwrap(), merged.forward_t(&x, train).unwrap());
        let d = (a.cls_logits - b.cls_logits).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "train={train}: the merge changed the outputs at initialisation");
    }

    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 4, 0, 1);
    let ds = Dataset::load(&dir.path().join("annotations/instances_train.json"), &dir.path().join("train"), 7).unwrap();
    let spec = plain_loader(ds, &td, &merged);
    let batch = spec.make_batch(0, 0, &[0, 1, 2, 3]);
    let opt_cfg = OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 4e-5, nesterov: false };
    let mut opt = Optimizer::new(opt_cfg, trainable_params(&varmap, true).unwrap());
    let scale =
        || -> Vec<f32> { varmap.data().lock().unwrap()["neck.top_down.1.weight"].as_tensor().to_vec1().unwrap() };
    assert!(scale().iter().all(|&v| v == 0.0));
    train_step(&merged, &mut opt, &batch, 0.02, 3, &Device::Cpu).unwrap();
    assert!(scale().iter().any(|&v| v != 0.0), "no gradient reached the merge");
}
