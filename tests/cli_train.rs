//! `mixdet synth` and `mixdet train` end to end on a tiny set: bad records reported and skipped,
//! checkpoints, JSONL log, plot, COCO evaluation and `--resume`.

use std::path::Path;
use std::process::Command;

fn mixdet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mixdet")).args(args).output().expect("run mixdet")
}

fn write_tiny_detector(dir: &Path, name: &str) -> String {
    let src = format!("{}/crates/detect/configs/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    cfg["input_size"] = serde_json::json!([64, 64]);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn synth_then_train_with_bad_records_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = mixdet(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--train",
        "5",
        "--val",
        "2",
        "--seed",
        "3",
        "--size",
        "64",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 train images"));
    // Break the training split: a corrupt image, a missing one, a zero-area box, an unknown category.
    std::fs::write(data.join("train/000001.png"), b"not a png").unwrap();
    std::fs::remove_file(data.join("train/000002.png")).unwrap();
    let ann_path = data.join("annotations/instances_train.json");
    let mut ann: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ann_path).unwrap()).unwrap();
    let anns = ann["annotations"].as_array_mut().unwrap();
    let mut extra = anns[0].clone();
    extra["id"] = 9001.into();
    extra["image_id"] = 3.into();
    extra["bbox"] = serde_json::json!([4, 4, 0, 7]);
    anns.push(extra.clone());
    extra["id"] = 9002.into();
    extra["bbox"] = serde_json::json!([4, 4, 8, 7]);
    extra["category_id"] = 42.into();
    anns.push(extra);
    std::fs::write(&ann_path, ann.to_string()).unwrap();

    let run_dir = dir.path().join("run");
    let cfg = serde_json::json!({
        "detector": write_tiny_detector(dir.path(), "ssdlite320_mixnet_s_shapes"),
        "train": {"images": data.join("train"), "annotations": ann_path},
        "val": {"images": data.join("val"), "annotations": data.join("annotations/instances_val.json")},
        "output_dir": run_dir,
        "batch_size": 2,
        "epochs": 2,
        "lr": 0.01,
        "warmup_steps": 2,
        "optimizer": {"kind": "sgd", "momentum": 0.9, "weight_decay": 4e-5},
        "eval_every_epochs": 1,
        "checkpoint_every_steps": 1,
        "log_every_steps": 1
    });
    let cfg_path = dir.path().join("train.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let cfg_arg = cfg_path.to_str().unwrap();

    // Four usable images of five, batch 2: two steps per epoch; stop after the first epoch.
    let out = mixdet(&["train", "--config", cfg_arg, "--quiet", "--max-steps", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 steps") && stdout.contains("val: AP"), "{stdout}");
    for needle in ["image 2", "000001.png", "annotation 9001", "unknown category 42"] {
        assert!(stderr.contains(needle), "{needle} not reported: {stderr}");
    }
    for f in ["model.safetensors", "checkpoint.safetensors", "log.jsonl", "plot.png"] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    assert!(!run_dir.join("checkpoint.safetensors.tmp").exists());

    let out = mixdet(&["train", "--config", cfg_arg, "--quiet", "--resume"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 steps"));
    let log = std::fs::read_to_string(run_dir.join("log.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "step")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    assert!(log.lines().any(|l| l.contains("\"type\":\"eval\"")));

    // The trained weights start a detector with a C3 level: head levels renamed one up, C3's own
    // blocks declared new. Without `init_new` the missing blocks are an error.
    let mut c3 = cfg.clone();
    c3["detector"] = write_tiny_detector(dir.path(), "ssdlite320_mixnet_s_c3_shapes").into();
    c3["init_weights"] = run_dir.join("model.safetensors").display().to_string().into();
    c3["output_dir"] = dir.path().join("run_c3").display().to_string().into();
    c3["epochs"] = 1.into();
    let renames: Vec<[String; 2]> = ["classification", "regression"]
        .iter()
        .flat_map(|h| (0..6).rev().map(move |i| [i, i + 1].map(|j| format!("head.{h}_head.module_list.{j}."))))
        .collect();
    c3["init_rename"] = serde_json::json!(renames);
    let c3_path = dir.path().join("train_c3.json");
    // Renaming level 0 alone would land on level 1's keys: refused, not half loaded.
    let mut partial = c3.clone();
    partial["init_rename"] = serde_json::json!([renames[5].clone()]);
    std::fs::write(&c3_path, partial.to_string()).unwrap();
    let out = mixdet(&["train", "--config", c3_path.to_str().unwrap(), "--quiet", "--max-steps", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("init_rename maps two keys onto head.classification_head.module_list.1."), "{stderr}");
    std::fs::write(&c3_path, c3.to_string()).unwrap();
    let out = mixdet(&["train", "--config", c3_path.to_str().unwrap(), "--quiet", "--max-steps", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("14 of its variables missing") && stderr.contains("module_list.0."), "{stderr}");
    c3["init_new"] =
        serde_json::json!(["head.classification_head.module_list.0.", "head.regression_head.module_list.0."]);
    std::fs::write(&c3_path, c3.to_string()).unwrap();
    let out = mixdet(&["train", "--config", c3_path.to_str().unwrap(), "--quiet", "--max-steps", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("run_c3/model.safetensors").is_file());

    // A config error names the field.
    std::fs::write(&cfg_path, cfg.to_string().replace("\"batch_size\":2", "\"batch_size\":0")).unwrap();
    let out = mixdet(&["train", "--config", cfg_arg, "--quiet"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch_size"));
}

#[test]
fn train_refuses_an_unknown_or_unavailable_device_before_touching_data() {
    let cfg = format!("{}/configs/train/shapes_mixnet_s.json", env!("CARGO_MANIFEST_DIR"));
    let out = mixdet(&["train", "--config", &cfg, "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown device \"tpu\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if cfg!(not(feature = "cuda")) {
        let out = mixdet(&["train", "--config", &cfg, "--device", "cuda:0"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot open CUDA device 0") && err.contains("--features cuda"), "{err}");
    }
}

/// The MixConv {3,5,7} TF-family person detector, started from the built-in person detector's
/// 3x3 kernels (centred in its larger ones), fine-tunes on a COCO-format set with the sigmoid
/// loss, and its weights serve `mixdet detect`.
#[test]
fn fine_tunes_the_mixconv_person_detector_from_the_builtin_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = mixdet(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--train",
        "4",
        "--val",
        "2",
        "--seed",
        "5",
        "--size",
        "96",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every shape becomes category 1, the detector's one class.
    for split in ["train", "val"] {
        let path = data.join(format!("annotations/instances_{split}.json"));
        let mut ann: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for a in ann["annotations"].as_array_mut().unwrap() {
            a["category_id"] = 1.into();
        }
        ann["categories"] = serde_json::json!([{"id": 1, "name": "person"}]);
        std::fs::write(&path, ann.to_string()).unwrap();
    }
    let run_dir = dir.path().join("run");
    let cfg = serde_json::json!({
        "detector": "ssdlite300_mobilenet_v2_mixconv357_person",
        "init_weights": "ssdlite300_mobilenet_v2_person",
        "train": {"images": data.join("train"), "annotations": data.join("annotations/instances_train.json")},
        "val": {"images": data.join("val"), "annotations": data.join("annotations/instances_val.json")},
        "output_dir": run_dir,
        "batch_size": 2,
        "epochs": 1,
        "lr": 0.001,
        "optimizer": {"kind": "sgd", "momentum": 0.9, "weight_decay": 4e-5},
        "log_every_steps": 1
    });
    let cfg_path = dir.path().join("train.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    // An override on the command line reaches the run and its resolved config.
    let out = mixdet(&["train", "--config", cfg_path.to_str().unwrap(), "--quiet", "--set", "lr=0.002"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let resolved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(resolved["lr"], 0.002);
    assert_eq!(resolved["detector"], "ssdlite300_mobilenet_v2_mixconv357_person");
    // 404 variables, the 17 depthwise kernels becoming 3 MixConv groups each.
    assert!(stderr.contains("initial weights: 438 tensors from ssdlite300_mobilenet_v2_person"), "{stderr}");
    assert!(stdout.contains("2 steps") && stdout.contains("val: AP"), "{stdout}");
    let weights = run_dir.join("model.safetensors");
    let sd = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let k = "FeatureExtractor/MobilenetV2/expanded_conv_1/depthwise/depthwise_weights_2";
    assert_eq!(sd[k].dims(), &[32, 1, 7, 7], "MixConv group 2 of block 1 (96 channels: 32 + 32 + 32)");
    // The log holds finite losses.
    let log = std::fs::read_to_string(run_dir.join("log.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "step")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert!(losses.len() == 2 && losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    let photo = format!("{}/examples/photos/astronaut.jpg", env!("CARGO_MANIFEST_DIR"));
    let out = mixdet(&[
        "detect",
        &photo,
        "--model",
        "ssdlite300_mobilenet_v2_mixconv357_person",
        "--weights",
        weights.to_str().unwrap(),
        "--no-overlay",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
