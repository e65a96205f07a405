//! `mixdet synth` and `mixdet train` end to end on a tiny set: bad records reported and skipped,
//! checkpoints, JSONL log, plot, COCO evaluation and `--resume`.

use std::path::Path;
use std::process::Command;

fn mixdet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mixdet")).args(args).output().expect("run mixdet")
}

fn write_tiny_detector(dir: &Path) -> String {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/detectors/ssdlite320_mixnet_s_shapes.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    cfg["input_size"] = serde_json::json!([64, 64]);
    let path = dir.join("detector.json");
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
        "detector": write_tiny_detector(dir.path()),
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

    // A config error names the field.
    std::fs::write(&cfg_path, cfg.to_string().replace("\"batch_size\":2", "\"batch_size\":0")).unwrap();
    let out = mixdet(&["train", "--config", cfg_arg, "--quiet"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch_size"));
}
