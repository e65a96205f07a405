"""The shapes detector's training stages (docs/shapes-detector.md) as commands: each stage is a
recipe of configs/train/ plus `--set` overrides, after the `mixdet synth` set it trained on.

    python3 coco_tools/training/shapes_stages.py              # every stage's commands
    python3 coco_tools/training/shapes_stages.py 14 15        # some stages (7td: the top-down arm)
    python3 coco_tools/training/shapes_stages.py --check      # recipes + overrides == the old files

Stages 1-24 once had a config file each (configs/train/shapes_mixnet_s*_stageN.json, removed after
commit 3dd066b). `--check [REV]` applies each stage's overrides to its recipe exactly as
`mixdet train --set` does (`apply_overrides` in crates/train/src/config.rs) and compares the result
with that stage's file at REV, key by key: a key the old file has must have the same value; a key
it lacks must be absent or hold the field's default. Two differences are expected and reported as
such: detector config paths that are now built-in names (or moved files), and stage 14's
`init_weights`, a file the repository no longer has (the f16 copy of stage 13's weights, shipped
then as models/ssdlite320_mixnet_s_c3_shapes.safetensors; the commands make it with `convert`).
Needs only Python 3 and, for --check, git. Run it from the repository root.
"""

import argparse
import json
import shlex
import subprocess
import sys

MIXNET_S = "configs/train/shapes_mixnet_s.json"
C3 = "configs/train/shapes_mixnet_s_c3.json"
CHECK_REV = "3dd066b"

RENAME = [[f"head.{h}.module_list.{i}.", f"head.{h}.module_list.{i + 1}."]
          for h in ("classification_head", "regression_head") for i in range(5, -1, -1)]
NEW_C3 = ["head.classification_head.module_list.0.", "head.regression_head.module_list.0."]


def data(d):
    """The four overrides that point a recipe at a `mixdet synth --out d` set."""
    return [f"train.images={d}/train", f"train.annotations={d}/annotations/instances_train.json",
            f"val.images={d}/val", f"val.annotations={d}/annotations/instances_val.json"]


def run(stage):
    return f"runs/shapes_mixnet_s_{stage}"


def init(stage):
    return f"init_weights={run(stage)}/model.safetensors"


# stage, old config file, recipe, run flags, commands before, overrides
S320, S448, S512 = (f"detector=ssdlite{n}_mixnet_s_c3_shapes" for n in (320, 448, 512))
SYNTH1 = "mixdet synth --out data/synth --train 2000 --val 300 --seed 1"


def synth(seed, train, val=100):
    return f"mixdet synth --out data/synth{seed} --train {train} --val {val} --seed {seed}"


CPU, CPU1, GPU = ["--threads", "2"], ["--threads", "1"], ["--device", "cuda:0"]
STAGES = [
    ("1", "shapes_mixnet_s.json", MIXNET_S, CPU, [SYNTH1], []),
    ("2", "shapes_mixnet_s_stage2.json", MIXNET_S, CPU, [],
     ["init_weights=runs/shapes_mixnet_s/model.safetensors", "epochs=12", "warmup_steps=100",
      "warmup_factor=0.01", "seed=2", f"output_dir={run('stage2')}"]),
    ("3", "shapes_mixnet_s_stage3.json", MIXNET_S, CPU, [],
     [init("stage2"), "epochs=8", "lr=0.02", "warmup_steps=50", "warmup_factor=0.01", "seed=3",
      f"output_dir={run('stage3')}"]),
    ("4", "shapes_mixnet_s_c3_stage4.json", C3, CPU, [],
     [S320, init("stage3"), "init_rename=" + json.dumps(RENAME, separators=(",", ":")),
      "init_new=" + json.dumps(NEW_C3, separators=(",", ":")),
      "epochs=20", "lr=0.03", "warmup_steps=100", "augment.zoom_out=true", "augment.iou_crop=true",
      "eval_every_epochs=4", "seed=4", f"output_dir={run('c3_stage4')}"]),
    ("5", "shapes_mixnet_s_c3_stage5.json", C3, CPU, [],
     [S320, init("c3_stage4"), "epochs=8", "lr=0.015", "augment.zoom_out=true", "augment.iou_crop=true",
      "eval_every_epochs=4", "seed=5", f"output_dir={run('c3_stage5')}"]),
    ("6", "shapes_mixnet_s_c3_stage6.json", C3, CPU, [],
     [S320, init("c3_stage5"), "epochs=20", "lr=0.012", "augment.iou_crop=true", "eval_every_epochs=4",
      "seed=6", f"output_dir={run('c3_stage6')}"]),
    ("7", "shapes_mixnet_s_c3_stage7.json", C3, CPU1, [],
     [S320, init("c3_stage6"), "epochs=18", "lr=0.02", "warmup_steps=100", "augment.iou_crop=true",
      "eval_every_epochs=6", "seed=9", f"output_dir={run('c3_stage7')}"]),
    ("7td", "shapes_mixnet_s_c3td_stage7.json", C3, CPU1, [],
     ["detector=ssdlite320_mixnet_s_c3td_shapes", init("c3_stage6"), 'init_new=["neck."]', "epochs=18",
      "lr=0.02", "warmup_steps=100", "augment.iou_crop=true", "eval_every_epochs=6", "seed=9",
      f"output_dir={run('c3td_stage7')}"]),
    ("8", "shapes_mixnet_s_c3_stage8.json", C3, GPU, [],
     [S320, init("c3_stage7"), "epochs=13", "lr=0.02", "warmup_steps=100", "augment.iou_crop=true",
      "eval_every_epochs=0", "seed=11", "prefetch_batches=6", f"output_dir={run('c3_stage8')}"]),
    ("9", "shapes_mixnet_s_c3_stage9.json", C3, CPU, [],
     [S320, init("c3_stage8"), "epochs=18", "lr=0.02", "warmup_steps=100", "augment.iou_crop=true",
      "eval_every_epochs=6", "seed=12", f"output_dir={run('c3_stage9')}"]),
    ("10", "shapes_mixnet_s_c3_stage10.json", C3, GPU, [synth(3, 12000, 300)],
     [S320, init("c3_stage9"), *data("data/synth3"), "epochs=3", "lr=0.02", "warmup_steps=100",
      "augment.iou_crop=true", "seed=13", "prefetch_batches=6", f"output_dir={run('c3_stage10')}"]),
    ("11", "shapes_mixnet_s_c3_stage11.json", C3, GPU, [synth(5, 17616, 300)],
     [S320, init("c3_stage10"), *data("data/synth5"), "epochs=2", "lr=0.01", "warmup_steps=100",
      "augment.iou_crop=true", "seed=14", "prefetch_batches=6", f"output_dir={run('c3_stage11')}"]),
    ("12", "shapes_mixnet_s_c3_stage12.json", C3, CPU, [synth(11, 18000, 300)],
     [S320, init("c3_stage11"), *data("data/synth11"), "epochs=2", "lr=0.01", "warmup_steps=100",
      "augment.iou_crop=true", "seed=15", f"output_dir={run('c3_stage12')}"]),
    ("13", "shapes_mixnet_s_c3_stage13.json", C3, CPU, [synth(13, 8800, 300)],
     [S320, init("c3_stage12"), *data("data/synth13"), "epochs=2", "lr=0.007", "warmup_steps=100",
      "augment.iou_crop=true", "seed=16", f"output_dir={run('c3_stage13')}"]),
    ("14", "shapes_mixnet_s_c3_448_stage14.json", C3, GPU,
     [f"mixdet convert --weights {run('c3_stage13')}/model.safetensors \\\n"
      f"    --out {run('c3_stage13')}/model_f16.safetensors --dtype f16", synth(17, 24528)],
     [S448, f"init_weights={run('c3_stage13')}/model_f16.safetensors", *data("data/synth17"), "lr=0.01",
      "augment.iou_crop=true", "seed=17", "prefetch_batches=6", f"output_dir={run('c3_448_stage14')}"]),
    ("15", "shapes_mixnet_s_c3_448_stage15.json", C3, GPU, [synth(19, 8800)],
     [S448, init("c3_448_stage14"), *data("data/synth19"), "lr=0.007", "augment.iou_crop=true", "seed=18",
      "prefetch_batches=6", f"output_dir={run('c3_448_stage15')}"]),
    ("16", "shapes_mixnet_s_c3_448_stage16.json", C3, CPU, [synth(23, 9600)],
     [S448, init("c3_448_stage15"), *data("data/synth23"), "lr=0.005", "augment.iou_crop=true", "seed=19",
      f"output_dir={run('c3_448_stage16')}"]),
    ("17", "shapes_mixnet_s_c3_512_stage17.json", C3, CPU, [synth(29, 10400)],
     [init("c3_448_stage15"), *data("data/synth29"), "lr=0.007", "augment.iou_crop=true", "seed=29",
      f"output_dir={run('c3_512_stage17')}"]),
]
# Stages 18-24: 512x512, no IoU crop, one epoch of a fresh set each.
for stage, seed, train, lr in [(18, 31, 6400, 0.005), (19, 37, 9600, 0.004), (20, 41, 6400, 0.003),
                               (21, 47, 4000, 0.002), (22, 53, 9600, 0.004), (23, 59, 6400, 0.003),
                               (24, 61, 4000, 0.003)]:
    sets = [init(f"c3_512_stage{stage - 1}"), *data(f"data/synth{seed}")]
    sets += [f"lr={lr}"] if lr != 0.003 else []
    sets += [f"seed={seed}", f"output_dir={run(f'c3_512_stage{stage}')}"]
    STAGES.append((str(stage), f"shapes_mixnet_s_c3_512_stage{stage}.json", C3, CPU, [synth(seed, train)], sets))
SHIPPED = "mixdet convert --weights runs/shapes_mixnet_s_c3_512_stage23/model.safetensors \\\n" \
          "    --out crates/detect/models/ssdlite512_mixnet_s_c3_shapes.safetensors --dtype f16"

# TrainConfig's fields and serde defaults (crates/train/src/config.rs, augment.rs).
DEFAULTS = {
    "val": None, "max_steps": None, "min_lr": 0.0, "warmup_steps": 0, "warmup_factor": 0.001,
    "decay_norm_and_bias": True, "backbone_weights": None, "init_weights": None, "init_rename": [],
    "init_new": [], "augment": {"photometric": True, "zoom_out": True, "iou_crop": True, "hflip": True},
    "neg_to_pos": 3, "iou_threshold": 0.5, "eval_every_epochs": 1, "eval_score_threshold": 0.01,
    "checkpoint_every_steps": 500, "log_every_steps": 10, "seed": 0, "prefetch_batches": 2,
}


def apply_overrides(config, overrides):
    """`apply_overrides` of crates/train/src/config.rs: `key` a field or a dotted path into nested
    objects (created when missing); `value` JSON when it parses, else the string itself."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node, parts = config, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: `{part}` is not inside an object")
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return config


def commands(stage, width=100):
    """The stage's shell commands, `mixdet train`'s wrapped at `width` columns."""
    name, _, recipe, flags, before, sets = stage
    words = [shlex.join(["mixdet", "train", "--config", recipe, *flags])]
    words += [shlex.join(["--set", s]) for s in sets]
    lines, line = [], words[0]
    for w in words[1:]:
        if len(line) + 1 + len(w) > width - 2:
            lines.append(line + " \\")
            line = "    " + w
        else:
            line += " " + w
    return list(before) + lines + [line]


def same_detector(old, new):
    """A detector config path of the old files against its current form: a built-in name, or the
    same file under crates/detect/configs/."""
    if old == new:
        return True
    stem = old.removeprefix("configs/detectors/").removesuffix(".json")
    return old.startswith("configs/detectors/") and new in (stem, f"crates/detect/configs/{stem}.json")


def compare(old, new, prefix=""):
    """Lines naming every key whose value differs, keys of `old` first."""
    out = []
    for key in old:
        path = prefix + key
        if key not in new:
            out.append(f"{path}: old {old[key]!r}, recipe + overrides lack it")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            out += compare(old[key], new[key], path + ".")
        elif path == "detector" and same_detector(old[key], new[key]):
            continue
        elif not (old[key] == new[key] and (type(old[key]) is type(new[key]) or
                                            type(old[key]) is float and type(new[key]) is int)):
            out.append(f"{path}: old {old[key]!r}, now {new[key]!r}")
    for key in new:
        if key not in old and not prefix:
            if key not in DEFAULTS:
                out.append(f"{key}: not in the old file and not a field with a default ({new[key]!r})")
            elif new[key] != DEFAULTS[key]:
                out.append(f"{key}: not in the old file (default {DEFAULTS[key]!r}), now {new[key]!r}")
    return out


def check(rev):
    failures = 0
    for stage in STAGES:
        name, old_file, recipe, _, _, sets = stage
        old = json.loads(subprocess.run(["git", "show", f"{rev}:configs/train/{old_file}"], check=True,
                                        capture_output=True, text=True).stdout)
        new = apply_overrides(json.load(open(recipe)), sets)
        diffs = compare(old, new)
        expected = [d for d in diffs if name == "14" and d.startswith("init_weights:")]
        bad = [d for d in diffs if d not in expected]
        failures += bool(bad)
        status = "equal" if not diffs else "equal but for the expected" if not bad else "DIFFERENT"
        print(f"stage {name:>3}: {status} ({len(sets)} overrides of {recipe}, against {old_file} at {rev})")
        for d in diffs:
            print(f"    {'expected: ' if d in expected else ''}{d}")
    return failures


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stages", nargs="*", help="stage names (default: all)")
    p.add_argument("--check", nargs="?", const=CHECK_REV, metavar="REV",
                   help=f"compare with the per-stage config files at REV (default {CHECK_REV})")
    a = p.parse_args()
    if a.check:
        sys.exit(1 if check(a.check) else 0)
    chosen = [s for s in STAGES if not a.stages or s[0] in a.stages]
    for stage in chosen:
        print(f"# stage {stage[0]}")
        print("\n".join(commands(stage)))
        if stage[0] == "23":
            print(SHIPPED)


if __name__ == "__main__":
    main()
