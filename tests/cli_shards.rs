//! Sharded detection (`detect --parts` under a scheduler's environment, killed and resumed) and
//! `mixdet merge`, against one `detect --json` over the same list; the cluster examples' command
//! lines run as their schedulers would run them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{mixdet, root};

const MODEL: &str = "ssdlite512_mixnet_s_c3_shapes";

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn synth(dir: &Path, images: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    ok(mixdet()
        .args(["synth", "--train", "0", "--seed", "5", "--size", "96", "--val", &images.to_string(), "--out"])
        .arg(&data)
        .output()
        .expect("synth"));
    (data.join("val"), data.join("annotations/instances_val.json"))
}

/// `mixdet detect` on the shapes detector without overlays, the shard coming from `env`.
fn shard_cmd(images: &Path, parts: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = mixdet();
    cmd.arg("detect").arg(images).args(["--model", MODEL, "--no-overlay", "--checkpoint-every", "1", "--parts"]);
    cmd.arg(parts);
    for var in
        ["MIXDET_SHARD", "MIXDET_NUM_SHARDS", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"]
    {
        cmd.env_remove(var);
    }
    for var in ["JOB_COMPLETION_INDEX", "RANK", "WORLD_SIZE"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn committed(state: &Path) -> usize {
    std::fs::read_to_string(state)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["images"].as_u64())
        .unwrap_or(0) as usize
}

#[test]
fn shards_killed_and_resumed_merge_to_the_single_runs_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images, gt) = synth(dir.path(), 36);
    let single = dir.path().join("single.json");
    let out = ok(mixdet()
        .arg("detect")
        .arg(&images)
        .args(["--model", MODEL, "--no-overlay", "--json"])
        .arg(&single)
        .arg("--gt")
        .arg(&gt)
        .output()
        .expect("single run"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("detections written"));
    let single_ids = dir.path().join("single_ids.json");
    ok(mixdet()
        .arg("detect")
        .arg(&images)
        .args(["--model", MODEL, "--no-overlay", "--json"])
        .arg(&single_ids)
        .output()
        .expect("single run, ids from positions"));

    let parts = dir.path().join("parts");
    // Shard 0 as a Slurm array task (array 1-3: ids start at 1).
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "1".to_string()),
        ("SLURM_ARRAY_TASK_MIN", "1".to_string()),
        ("SLURM_ARRAY_TASK_COUNT", "3".to_string()),
    ];
    let out = ok(shard_cmd(&images, &parts, &slurm).output().expect("shard 0"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("shard 0/3 done: 12 images (0 resumed), 0 failed"), "{log}");

    // Shard 1 from MIXDET_SHARD, killed once it has committed a few images, then resumed.
    let flags = [("MIXDET_SHARD", "1".to_string()), ("MIXDET_NUM_SHARDS", "3".to_string())];
    let state = parts.join("part-00001-of-00003.state.json");
    let mut child = shard_cmd(&images, &parts, &flags)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn shard 1");
    let start = Instant::now();
    while committed(&state) < 3 {
        assert!(start.elapsed() < Duration::from_secs(120), "shard 1 never committed");
        assert!(child.try_wait().expect("wait").is_none(), "shard 1 ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let at_kill = committed(&state);
    assert!((3..12).contains(&at_kill), "{at_kill} images committed when killed");
    assert!(parts.join("part-00001-of-00003.jsonl.partial").exists());

    // Merging now names the interrupted shard and the missing one.
    let out = mixdet().arg("merge").arg(&parts).arg("--json").arg(dir.path().join("m.json")).output().expect("merge");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of 3 shards are not complete: missing [2], interrupted (resume them) [1]"), "{err}");
    assert!(!dir.path().join("m.json").exists());

    // Without --resume the interrupted part is not touched; with other settings it is refused.
    let out = shard_cmd(&images, &parts, &flags).output().expect("no resume");
    assert!(String::from_utf8_lossy(&out.stderr).contains("an interrupted part: --resume continues it"));
    let out =
        shard_cmd(&images, &parts, &flags).args(["--resume", "--score-threshold", "0.5"]).output().expect("other");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("written by another run (score_threshold: "), "{err}");

    let out = ok(shard_cmd(&images, &parts, &flags).arg("--resume").output().expect("resume"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(&format!("resuming after {at_kill} committed images of 12")), "{log}");
    assert!(log.contains(&format!("shard 1/3 done: 12 images ({at_kill} resumed)")), "{log}");
    assert!(!state.exists() && !parts.join("part-00001-of-00003.jsonl.partial").exists());

    // Shard 2 as a Kubernetes Indexed Job pod (the count comes with the command).
    let k8s = [("JOB_COMPLETION_INDEX", "2".to_string())];
    ok(shard_cmd(&images, &parts, &k8s).args(["--num-shards", "3"]).output().expect("shard 2"));
    // Running a complete shard again with --resume does nothing.
    let out = ok(shard_cmd(&images, &parts, &k8s).args(["--num-shards", "3", "--resume"]).output().expect("again"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("complete already"));

    let merged = dir.path().join("merged.json");
    let out =
        ok(mixdet().arg("merge").arg(&parts).arg("--json").arg(&merged).arg("--gt").arg(&gt).output().expect("merge"));
    let merge_stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(merge_stdout.contains("Merged 3 shards: 36 images (0 failed)"), "{merge_stdout}");
    assert_eq!(std::fs::read(&merged).expect("merged"), std::fs::read(&single).expect("single"), "byte-identical");

    // The same 12 numbers as evaluating the single run's file.
    let eval = ok(mixdet().arg("eval").arg("--gt").arg(&gt).arg("--results").arg(&single).output().expect("eval"));
    let numbers = |text: &str| -> Vec<String> {
        text.lines().filter(|l| l.starts_with(" Average")).map(str::to_string).collect()
    };
    let expected = numbers(&String::from_utf8_lossy(&eval.stdout));
    assert_eq!(expected.len(), 12);
    assert_eq!(numbers(&merge_stdout), expected);

    // Without ground truth, ids are positions in the whole list: still the single run's file.
    let merged_ids = dir.path().join("merged_ids.json");
    ok(mixdet().arg("merge").arg(&parts).arg("--json").arg(&merged_ids).output().expect("merge ids"));
    assert_eq!(std::fs::read(&merged_ids).expect("merged"), std::fs::read(&single_ids).expect("single"));
}

#[test]
fn shard_settings_are_checked_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images, _) = synth(dir.path(), 2);
    let parts = dir.path().join("parts");
    let run = |args: &[&str], env: &[(&str, String)]| {
        let out = shard_cmd(&images, &parts, env).args(args).output().expect("run");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    assert!(run(&["--shard", "3", "--num-shards", "3"], &[]).contains("shard 3 of 3 (from --shard/--num-shards)"));
    assert!(run(&[], &[("SLURM_ARRAY_TASK_ID", "x".into())]).contains("SLURM_ARRAY_TASK_ID=\"x\""));
    assert!(run(&[], &[("JOB_COMPLETION_INDEX", "1".into())]).contains("pass the Job's completions as --num-shards"));
    let err = run(&["--json", "x.json"], &[]);
    assert!(err.contains("--json and --parts"), "{err}");
    let err = run(&["--save-txt", "--tile", "64"], &[]);
    assert!(err.contains("--save-txt, --tile with --parts"), "{err}");
    assert!(!parts.exists(), "nothing written");
    // A shard without --parts is refused rather than writing one shard's results as the whole.
    let out = mixdet()
        .arg("detect")
        .arg(&images)
        .args(["--model", MODEL, "--no-overlay"])
        .env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("needs --parts DIR"), "{err}");
}

/// The Slurm scripts, run by bash with the variables Slurm sets for an array of 2 tasks, and the
/// Kubernetes Job's command with the index Kubernetes sets; the manifest's own consistency
/// (an Indexed Job whose `completions` equals the command's `--num-shards`) is checked too.
#[test]
fn cluster_examples_run_as_their_schedulers_run_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images, gt) = synth(dir.path(), 5);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mixdet"));
    let bin_dir = bin.parent().expect("bin dir");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let manifest = dir.path().join("manifest.txt");
    let mut list: Vec<PathBuf> = std::fs::read_dir(&images).expect("ls").map(|e| e.expect("entry").path()).collect();
    list.sort();
    std::fs::write(&manifest, list.iter().map(|p| format!("{}\n", p.display())).collect::<String>()).expect("manifest");
    let parts = dir.path().join("slurm_parts");
    for task in 0..2 {
        ok(Command::new("bash")
            .arg(root().join("examples/cluster/slurm_detect.sh"))
            .env("PATH", &path)
            .env("MANIFEST", &manifest)
            .env("PARTS", &parts)
            .env("MODEL", MODEL)
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_CPUS_PER_TASK", "1")
            .output()
            .expect("slurm task"));
    }
    let results = dir.path().join("results.json");
    let out = ok(Command::new("bash")
        .arg(root().join("examples/cluster/slurm_merge.sh"))
        .env("PATH", &path)
        .env("PARTS", &parts)
        .env("RESULTS", &results)
        .env("GT", &gt)
        .output()
        .expect("slurm merge"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Merged 2 shards: 5 images"));

    let yaml = std::fs::read_to_string(root().join("examples/cluster/k8s-detect-job.yaml")).expect("manifest");
    let field = |name: &str| -> String {
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(field("apiVersion"), "batch/v1");
    assert_eq!(field("kind"), "Job");
    assert_eq!(field("completionMode"), "Indexed");
    assert_eq!(field("restartPolicy"), "Never");
    let completions: usize = field("completions").parse().expect("completions");
    let parallelism: usize = field("parallelism").parse().expect("parallelism");
    assert!(parallelism >= 1 && parallelism <= completions);
    let command: Vec<String> = serde_json::from_str(&field("command")).expect("command is a flow sequence");
    let at = |flag: &str| command.iter().position(|a| a == flag).map(|i| command[i + 1].clone());
    assert_eq!(at("--num-shards").and_then(|n| n.parse().ok()), Some(completions), "--num-shards = completions");
    assert!(command.contains(&"--resume".to_string()) && at("--parts").is_some());
    // Pod 1 of a 2-completion version of the Job, paths mapped into the test folder.
    let k8s_parts = dir.path().join("k8s_parts");
    let mapped: Vec<String> = command
        .iter()
        .map(|a| match a.as_str() {
            "/data/manifest.txt" => manifest.display().to_string(),
            "/data/parts" => k8s_parts.display().to_string(),
            s if s == completions.to_string() => "2".to_string(),
            s => s.to_string(),
        })
        .collect();
    for index in 0..2 {
        ok(Command::new(&mapped[0])
            .args(&mapped[1..])
            .args(["--model", MODEL])
            .env("PATH", &path)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .output()
            .expect("pod"));
    }
    let k8s_results = dir.path().join("k8s.json");
    ok(mixdet()
        .arg("merge")
        .arg(&k8s_parts)
        .arg("--json")
        .arg(&k8s_results)
        .arg("--gt")
        .arg(&gt)
        .output()
        .expect("merge"));
    assert_eq!(std::fs::read(&k8s_results).expect("k8s"), std::fs::read(&results).expect("slurm"));
}

/// `eval --images` in two shards, merged with `--gt`: the 12 numbers of the unsharded evaluation.
#[test]
fn sharded_dataset_evaluation_equals_the_single_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images, gt) = synth(dir.path(), 8);
    let eval = |extra: &[&str]| {
        let mut cmd = mixdet();
        cmd.arg("eval").arg("--images").arg(&images).arg("--annotations").arg(&gt).args(["--model", MODEL]);
        cmd.arg("--save-results").arg(dir.path().join("dets.json")).args(extra);
        for var in ["MIXDET_SHARD", "MIXDET_NUM_SHARDS", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "RANK"] {
            cmd.env_remove(var);
        }
        String::from_utf8_lossy(&ok(cmd.output().expect("eval")).stdout).to_string()
    };
    let numbers = |text: &str| -> Vec<String> {
        text.lines().filter(|l| l.starts_with(" Average")).map(str::to_string).collect()
    };
    let single = numbers(&eval(&[]));
    assert_eq!(single.len(), 12);
    let parts = dir.path().join("parts").display().to_string();
    for shard in ["0", "1"] {
        eval(&["--parts", &parts, "--shard", shard, "--num-shards", "2"]);
    }
    let out = ok(mixdet()
        .arg("merge")
        .arg(&parts)
        .arg("--json")
        .arg(dir.path().join("merged.json"))
        .arg("--gt")
        .arg(&gt)
        .output()
        .expect("merge"));
    assert_eq!(numbers(&String::from_utf8_lossy(&out.stdout)), single);
}

/// Parts that do not belong together are refused by `merge` with one line naming the file, and an
/// existing results file is left as it was.
#[test]
fn merge_refuses_truncated_mixed_and_foreign_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (images, _) = synth(dir.path(), 4);
    let good = dir.path().join("good");
    for shard in 0..2 {
        ok(shard_cmd(&images, &good, &[])
            .args(["--shard", &shard.to_string(), "--num-shards", "2"])
            .output()
            .expect("shard"));
    }
    let results = dir.path().join("results.json");
    std::fs::write(&results, b"previous results").expect("write");
    let variant = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let parts = dir.path().join(name);
        std::fs::create_dir_all(&parts).expect("mkdir");
        for entry in std::fs::read_dir(&good).expect("ls") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, parts.join(p.file_name().expect("name"))).expect("copy");
        }
        edit(&parts);
        let out = mixdet().arg("merge").arg(&parts).arg("--json").arg(&results).output().expect("merge");
        assert!(!out.status.success());
        assert_eq!(std::fs::read(&results).expect("results"), b"previous results", "{name}: results kept");
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };
    let part1 = |p: &Path| p.join("part-00001-of-00002.jsonl");
    let err = variant("truncated", &|p| {
        let text = std::fs::read_to_string(part1(p)).expect("part");
        let cut: Vec<&str> = text.lines().collect();
        std::fs::write(part1(p), cut[..cut.len() - 1].join("\n") + "\n").expect("write");
    });
    assert!(err.contains("part-00001-of-00002.jsonl") && err.contains("no footer"), "{err}");
    let err = variant("mixed", &|p| {
        std::fs::copy(part1(p), p.join("part-00000-of-00003.jsonl")).expect("copy");
    });
    assert!(err.contains("parts of different shard counts"), "{err}");
    let err = variant("foreign", &|p| {
        let text = std::fs::read_to_string(part1(p)).expect("part");
        std::fs::write(part1(p), text.replacen(MODEL, "ssdlite300_mobilenet_v2_person", 1)).expect("write");
    });
    assert!(err.contains("part-00001-of-00002.jsonl: written by another run (model:"), "{err}");
}
