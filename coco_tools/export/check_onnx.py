#!/usr/bin/env python3
"""`mixdet export` checked in onnxruntime: every backbone and detector that `mixdet models --json`
lists is exported and run by onnxruntime (CPU provider, default session options) on a seeded random
input, and compared with `mixdet forward` on the same input.

    .venv/bin/python coco_tools/export/check_onnx.py [--mixdet target/release/mixdet] [--models a,b]
        [--out tests/fixtures/onnx/onnxruntime_check.json] [--work DIR]

Cases (one ONNX file each, `onnx.checker.check_model` run on every file):
  backbones (`--synthetic-weights`): `static_b1` (logits, batch 1), `dynamic` (`--dynamic-batch`,
    run at batch 3 and at batch 1), `nonsquare_b1` (`--input 160,224`), `features_b1`
    (`--features`: features.0 ... features.k), `features_dynamic` (`--features --dynamic-batch`,
    batch 3);
  detectors (their built-in weights where `mixdet export` and `mixdet forward` can both load them,
    else `--synthetic-weights`; the record says which): `static_b1` and `dynamic` (batch 3 and 1):
    `boxes` / `scores` against forward's `decoded_boxes` / `class_scores`; `nms_b1` and
    `nms_dynamic` (batch 3 and 1): the first `num_dets` rows of `det_boxes` / `det_scores` /
    `det_labels` against forward's `boxes.<i>` / `scores.<i>` / `labels.<i>` (same count; the same
    detections, matched by label and box where the order differs; padding rows have score -1);
    outputs beyond the documented ones are compared with forward's tensors of the same name
    (cls_logits, bbox_regression); detectors with trained weights also run on an example picture
    (examples/photos/astronaut.jpg or examples/images/shapes_02.png, resized with PIL and
    normalised with the metadata's mean/std); metadata_props are checked against the graph
    (input name and size, num_anchors, class_names, mean/std, outputs);
  requests: an unknown model, `--opset 12`, `--opset 13` on mobilenet_v3_large (HardSwish needs
    opset 14), `--nms` on a backbone, `--input` on a detector at another size must exit non-zero
    with a one-line stderr (RUST_BACKTRACE unset) and write no file; `--input 160,224` must be
    accepted.

Inputs are seeded `numpy` standard normal * 0.5 (for detectors: the preprocessed tensor at the
detector's input size). Error per output: max |onnxruntime - mixdet| / max(max |mixdet|, 1e-6); a
case passes at <= 1e-4 with the graph's inputs/outputs named, typed and shaped as documented and
the checker passing. As a measure of how much float32 rounding alone moves the outputs, each file
is also run with onnxruntime's graph optimisations off (ORT_DISABLE_ALL) and compared with the
default run (`ort_opt_vs_noopt`); a failing case whose error is within 3x that (or, for NMS, whose
detections also change between the two onnxruntime runs) is marked `float-limited`, not `FAIL`.
Writes a small JSON (no tensors), prints a summary; exits 1 if any case or request does not pass.
Needs numpy, safetensors, onnx and onnxruntime (the `.venv` of coco_tools/README.md).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np

TOL = 1e-4
CONFIDENT = 0.3
FLOOR_FACTOR = 3.0
BACKBONE_SIZE = (224, 224)
NONSQUARE = (160, 224)
DYNAMIC_BATCH = 3
TIMEOUT_S = 900
MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "detect", "models")
PERSON = "ssdlite300_mobilenet_v2_person"
MIXCONV_PERSON = "ssdlite300_mobilenet_v2_mixconv357_person"
# Built-in detectors documented to export with their own weights when no weight flag is given, and
# the safetensors file under crates/detect/models their weights are compiled from.
BUILTIN_WEIGHTS = {
    PERSON: PERSON,
    MIXCONV_PERSON: None,  # made at load time from the person detector's weights
    "ssdlite448_mixnet_s_c3_shapes": "ssdlite512_mixnet_s_c3_shapes",
    "ssdlite512_mixnet_s_c3_shapes": "ssdlite512_mixnet_s_c3_shapes",
}


def clean_env():
    """mixdet's environment without RUST_BACKTRACE (a backtrace turns one-line errors into many)."""
    env = dict(os.environ)
    env.pop("RUST_BACKTRACE", None)
    env.pop("RUST_LIB_BACKTRACE", None)
    return env


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=30)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def run(cmd, env=None):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=clean_env() if env is None else env)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {TIMEOUT_S} s")


def first_line(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else "(no output)"


def list_models(mixdet):
    proc = run([mixdet, "models", "--json"])
    if proc.returncode != 0:
        sys.exit(f"`{mixdet} models --json` failed (exit {proc.returncode}): {first_line(proc.stderr)}")
    backbones, detectors = [], []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if "model" in obj:
            backbones.append({"name": obj["model"], "features": len(obj.get("features", []))})
        elif "detector" in obj:
            h, w = obj["input"]
            detectors.append({"name": obj["detector"], "input": (int(h), int(w))})
    return backbones, detectors


def seeded_input(name, tag, shape):
    rng = np.random.default_rng(zlib.crc32(f"{name}/{tag}".encode()))
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


class Mixdet:
    def __init__(self, binary, work):
        self.binary = binary
        self.work = work

    def forward(self, model, weights, x, tag):
        from safetensors.numpy import load_file, save_file

        src = os.path.join(self.work, f"{model}.{tag}.in.safetensors")
        dst = os.path.join(self.work, f"{model}.{tag}.out.safetensors")
        save_file({"input": np.ascontiguousarray(x)}, src)
        proc = run([self.binary, "forward", "--model", model, *weights, "--input", src, "--output", dst])
        os.remove(src)
        if proc.returncode != 0:
            return None, f"mixdet forward exit {proc.returncode}: {first_line(proc.stderr)}"
        out = load_file(dst)
        os.remove(dst)
        return out, None

    def export(self, model, weights, path, extra):
        if os.path.exists(path):
            os.remove(path)  # left by an interrupted run in the same --work (export never replaces a file)
        proc = run([self.binary, "export", "--model", model, *weights, "--out", path, *extra])
        if proc.returncode != 0:
            return f"mixdet export exit {proc.returncode}: {first_line(proc.stderr)}"
        if not os.path.isfile(path):
            return "mixdet export exited 0 but wrote no file"
        return None


def rel_err(got, ref):
    """(error, note): max |got - ref| / max(max |ref|, 1e-6); None when the shapes differ."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return None, f"shape {list(got.shape)} vs reference {list(ref.shape)}"
    if got.size == 0:
        return 0.0, None
    if not np.all(np.isfinite(ref)):
        return float("inf"), f"reference has {int(np.sum(~np.isfinite(ref)))} non-finite values"
    if not np.all(np.isfinite(got)):
        return float("inf"), f"onnxruntime gave {int(np.sum(~np.isfinite(got)))} non-finite values"
    scale = max(float(np.max(np.abs(ref))), 1e-6)
    return float(np.max(np.abs(got - ref)) / scale), None


def short_exc(e):
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


def check_file(path):
    """onnx.checker (default and full_check), the graph's I/O and metadata."""
    import onnx

    info = {}
    for key, kwargs in (("checker", {}), ("checker_full", {"full_check": True})):
        try:
            onnx.checker.check_model(path, **kwargs)
            info[key] = "ok"
        except Exception as e:  # noqa: BLE001 - recorded
            info[key] = short_exc(e)
    m = onnx.load(path, load_external_data=False)

    def dims(vi):
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]

    elem = {1: "float32", 7: "int64", 6: "int32", 10: "float16"}
    info["inputs"] = {vi.name: dims(vi) for vi in m.graph.input}
    info["outputs"] = {vi.name: dims(vi) for vi in m.graph.output}
    info["dtypes"] = {vi.name: elem.get(vi.type.tensor_type.elem_type, str(vi.type.tensor_type.elem_type))
                      for vi in list(m.graph.input) + list(m.graph.output)}
    info["opset"] = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    info["metadata"] = {p.key: p.value for p in m.metadata_props}
    info["bytes"] = os.path.getsize(path)
    return info


def io_problems(info, input_name, outputs, batch, size, dynamic):
    """Names, dtypes and shapes of the graph's input and outputs against the documented contract;
    returns (problems, notes): outputs beyond the documented ones are a note."""
    problems, notes = [], []
    want0 = "batch" if dynamic else batch
    if list(info["inputs"]) != [input_name]:
        problems.append(f"inputs {list(info['inputs'])}, expected [{input_name!r}]")
    else:
        d = info["inputs"][input_name]
        if d != [want0, 3, size[0], size[1]]:
            problems.append(f"input dims {d}, expected {[want0, 3, size[0], size[1]]}")
    names = set(info["outputs"])
    if set(outputs) - names:
        problems.append(f"outputs {sorted(names)}: missing {sorted(set(outputs) - names)}")
    if names - set(outputs):
        notes.append(sorted(names - set(outputs)))
    for name in names:
        if name in outputs and info["dtypes"].get(name) != outputs[name]:
            problems.append(f"{name} is {info['dtypes'].get(name)}, expected {outputs[name]}")
        d = info["outputs"][name]
        if not d or d[0] != want0:
            problems.append(f"{name} dims {d}: batch dim expected {want0!r}")
    if not info["metadata"]:
        problems.append("no metadata_props")
    problems += metadata_problems(info, input_name, size)
    for key, value in info["metadata"].items():
        if not value:
            problems.append(f"metadata {key!r} is empty")
    return problems, notes


def metadata_problems(info, input_name, size):
    """metadata_props that contradict the graph: input name and size, anchors and classes."""
    md, problems = info["metadata"], []

    def load(key):
        try:
            return json.loads(md[key])
        except (KeyError, ValueError):
            return None

    if "input_name" in md and md["input_name"] != input_name:
        problems.append(f"metadata input_name {md['input_name']!r}, graph input {input_name!r}")
    if "input_size" in md and load("input_size") != [size[0], size[1]]:
        problems.append(f"metadata input_size {md['input_size']}, graph {list(size)}")
    boxes, scores = info["outputs"].get("boxes"), info["outputs"].get("scores")
    if "num_anchors" in md and boxes and load("num_anchors") != boxes[1]:
        problems.append(f"metadata num_anchors {md['num_anchors']}, boxes output {boxes}")
    names = load("class_names")
    if names is not None and scores and len(names) != scores[2]:
        problems.append(f"metadata has {len(names)} class_names, scores output {scores}")
    for key in ("mean", "std"):
        v = load(key)
        if key in md and not (isinstance(v, list) and len(v) == 3):
            problems.append(f"metadata {key} {md[key]!r} is not 3 numbers")
    if "outputs" in md:
        listed = {o.strip() for o in md["outputs"].split(",")}
        if listed != set(info["outputs"]):
            problems.append(f"metadata outputs {md['outputs']!r}, graph {sorted(info['outputs'])}")
    return problems


def ort_sessions(path):
    """The default session (what the check is about) and one with the graph optimisations off."""
    import onnxruntime as ort

    noopt = ort.SessionOptions()
    noopt.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return (ort.InferenceSession(path, providers=["CPUExecutionProvider"]),
            ort.InferenceSession(path, noopt, providers=["CPUExecutionProvider"]))


def ort_run(sess, x):
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))


def compare_dense(got, ref, pairs):
    """Per output max relative error; pairs maps the ONNX output name to the reference's key."""
    errors, notes = {}, []
    for onnx_name, ref_name in pairs.items():
        if onnx_name not in got:
            notes.append(f"onnxruntime gave no {onnx_name}")
            errors[onnx_name] = None
        elif ref_name not in ref:
            notes.append(f"mixdet forward wrote no {ref_name}")
            errors[onnx_name] = None
        else:
            errors[onnx_name], note = rel_err(got[onnx_name], ref[ref_name])
            if note:
                notes.append(f"{onnx_name}: {note}")
    return errors, notes


def dets_as_reference(out):
    """onnxruntime's det_* outputs in the layout of mixdet forward's per-image detections."""
    ref = {}
    for i, n in enumerate(out["num_dets"].reshape(-1)):
        n = int(n)
        ref[f"boxes.{i}"] = out["det_boxes"][i, :n]
        ref[f"scores.{i}"] = out["det_scores"][i, :n]
        ref[f"labels.{i}"] = out["det_labels"][i, :n]
    return ref


def match_detections(gb, gs, gl, rb, rs, rl):
    """Greedy one-to-one matching of two detection lists: same label, nearest box (then score).
    Returns (order of got matching ref, or None if some detection has no partner)."""
    scale = max(float(np.max(np.abs(rb))) if rb.size else 1.0, 1e-6)
    free = np.ones(len(gl), dtype=bool)
    order = []
    for j in np.argsort(-rs, kind="stable"):
        cand = np.where(free & (gl == rl[j]))[0]
        if not len(cand):
            return None
        d = np.max(np.abs(gb[cand] - rb[j]), axis=1) / scale + np.abs(gs[cand] - rs[j])
        k = cand[int(np.argmin(d))]
        free[k] = False
        order.append((j, k))
    perm = np.empty(len(rl), dtype=np.int64)
    for j, k in order:
        perm[j] = k
    return perm


def confident_match(gb, gs, gl, rb, rs, rl):
    """The reference's detections with score >= CONFIDENT, each looked for among onnxruntime's
    (same label, box and score within tolerance): what the near-tied low scores cannot blur."""
    idx = np.where(rs >= CONFIDENT)[0]
    if not len(idx):
        return None
    scale = max(float(np.max(np.abs(rb))), 1e-6)
    unmatched, worst = 0, 0.0
    for j in idx:
        cand = np.where(gl == rl[j])[0]
        if not len(cand):
            unmatched += 1
            continue
        err = np.maximum(np.max(np.abs(gb[cand] - rb[j]), axis=1) / scale, np.abs(gs[cand] - rs[j]))
        best = float(err.min())
        worst = max(worst, best)
        unmatched += best > TOL
    return {"n": int(len(idx)), "unmatched": int(unmatched), "max_err": worst}


def compare_dets(got, ref, batch):
    """The first num_dets rows of det_* against forward's post-processed detections, per image."""
    errors = {"det_boxes": None, "det_scores": None}  # stays None where no image could be compared
    notes, counts, confident = [], [], []
    need = ["det_boxes", "det_scores", "det_labels", "num_dets"]
    missing = [n for n in need if n not in got]
    if missing:
        return errors, [f"onnxruntime gave no {', '.join(missing)}"], counts, False
    ok = True
    for name in ("det_labels", "num_dets"):
        if got[name].dtype != np.int64:
            notes.append(f"{name} dtype {got[name].dtype}")
            ok = False
    nd = got["num_dets"].reshape(-1)
    dmax = got["det_boxes"].shape[1]
    for i in range(batch):
        keys = [f"boxes.{i}", f"scores.{i}", f"labels.{i}"]
        if any(k not in ref for k in keys):
            notes.append(f"reference has no {keys}")
            ok = False
            continue
        rb, rs = ref[keys[0]].reshape(-1, 4), ref[keys[1]].reshape(-1)
        rl = ref[keys[2]].reshape(-1).astype(np.int64)
        n = int(nd[i])
        counts.append([n, len(rs)])
        if n > dmax:
            notes.append(f"image {i}: num_dets {n} > D {dmax}")
            ok = False
            continue
        pad = got["det_scores"][i, n:]
        if pad.size and not np.all(pad == -1.0):
            notes.append(f"image {i}: padding rows have scores other than -1 (max {float(pad.max())})")
            ok = False
        if n != len(rs):
            notes.append(f"image {i}: {n} detections, reference {len(rs)}")
            ok = False
            continue
        gb, gs = got["det_boxes"][i, :n], got["det_scores"][i, :n]
        gl = got["det_labels"][i, :n].astype(np.int64)
        if n and not np.array_equal(gl, rl):
            perm = match_detections(gb, gs, gl, rb, rs, rl)
            if perm is None:
                notes.append(f"image {i}: {int(np.sum(gl != rl))} of {n} labels differ in order, "
                             f"and the label counts differ")
                ok = False
                continue
            notes.append(f"image {i}: {int(np.sum(gl != rl))} of {n} labels differ in order; matched by label and box")
            gb, gs, gl = gb[perm], gs[perm], gl[perm]
        conf = confident_match(gb, gs, gl, rb, rs, rl)
        if conf:
            confident.append(conf)
        for key, g, r in (("det_boxes", gb, rb), ("det_scores", gs, rs)):
            err, note = rel_err(g, r)
            if note:
                notes.append(f"image {i} {key}: {note}")
                ok = False
            if err is not None:
                errors[key] = err if errors[key] is None else max(errors[key], err)
    if counts and all(c[1] == 0 for c in counts) and ok:
        notes.append("empty, compared counts only")
    if confident:
        unmatched = sum(c["unmatched"] for c in confident)
        worst = max(c["max_err"] for c in confident)
        notes.append(f"score >= {CONFIDENT}: {sum(c['n'] for c in confident)} reference detections, "
                     f"{unmatched} without an onnxruntime detection of the same label within tolerance "
                     f"(largest box/score error {worst:.1e})")
    return errors, notes, counts, ok


def photo_input(metadata, size):
    """(file, 1x3xHxW tensor): an example picture the detector's classes suit, resized (PIL bilinear)
    and normalised with the metadata's mean/std; (None, None) if none suits."""
    from PIL import Image

    try:
        names = json.loads(metadata.get("class_names", "[]"))
        mean = np.array(json.loads(metadata["mean"]), dtype=np.float32)
        std = np.array(json.loads(metadata["std"]), dtype=np.float32)
    except (KeyError, ValueError):
        return None, None
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
    if "person" in names:
        path = os.path.join(root, "photos", "astronaut.jpg")
    elif "circle" in names:
        path = os.path.join(root, "images", "shapes_02.png")
    else:
        return None, None
    if not os.path.isfile(path):
        return None, None
    img = Image.open(path).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    x = (np.asarray(img, dtype=np.float32) / 255.0 - mean) / std
    return os.path.relpath(path), np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def weight_choices(name):
    """(label, export flags, forward flags, forward model) to try in order for a detector: the first
    with which both `mixdet export` and `mixdet forward` run is used."""
    synthetic = ("synthetic", ["--synthetic-weights"], ["--synthetic-weights"], name)
    if name not in BUILTIN_WEIGHTS:
        return [synthetic]
    choices = [("built-in", [], [], name)]
    stem = BUILTIN_WEIGHTS[name]
    path = os.path.join(MODELS_DIR, f"{stem}.safetensors") if stem else None
    if path and os.path.isfile(path):
        rel = os.path.relpath(path)
        choices.append((f"built-in (forward --weights {rel})", [], ["--weights", path], name))
        choices.append((f"--weights {rel}", ["--weights", path], ["--weights", path], name))
    if name == MIXCONV_PERSON:
        # Its MixConv kernels are the person detector's 3x3 kernels zero-padded: the same function,
        # so the person detector's forward is the reference.
        path = os.path.join(MODELS_DIR, f"{PERSON}.safetensors")
        if os.path.isfile(path):
            choices.append((f"built-in (reference: forward of {PERSON} --weights {os.path.relpath(path)})",
                            [], ["--weights", path], PERSON))
    return choices + [synthetic]


def dense_result(got, ref, pairs):
    errors, notes = compare_dense(got, ref, pairs)
    return errors, notes, not notes, {}


def run_case(mixdet, work, name, kind, weights, variant, flags, dynamic, batch, size, input_name, outputs, tags,
             inputs, refs, ref_err, compare, weights_label, floor_compare):
    path = os.path.join(work, f"{name}.{variant}.onnx")
    base = {"model": name, "kind": kind, "variant": variant, "weights": weights_label,
            "flags": " ".join(weights + flags)}
    err = mixdet.export(name, weights, path, flags)
    if err:
        return [dict(base, input=None, errors={}, pass_=False, verdict="FAIL", notes=[err])]
    info = check_file(path)
    problems, io_notes = io_problems(info, input_name, outputs, batch, size, dynamic)
    file_fields = {"checker": info["checker"], "checker_full": info["checker_full"], "onnx_bytes": info["bytes"],
                   "opset": info["opset"].get("ai.onnx"), "metadata_keys": sorted(info["metadata"])}
    records = []
    try:
        sess, sess_noopt = ort_sessions(path)
    except Exception as e:  # noqa: BLE001 - recorded
        return [dict(base, **file_fields, input=None, errors={}, pass_=False, verdict="FAIL",
                     notes=problems + [f"onnxruntime session: {short_exc(e)}"])]
    for tag in tags:
        x = inputs[tag]
        rec = dict(base, **file_fields, input=list(x.shape),
                   input_data="photo" if tag == "photo" else "random")
        notes = list(problems)
        if io_notes:
            rec["extra_outputs"] = io_notes[0]
        if refs[tag] is None:
            rec.update(errors={}, pass_=False, verdict="FAIL", notes=notes + [ref_err[tag]])
            records.append(rec)
            continue
        try:
            got = ort_run(sess, x)
            got_noopt = ort_run(sess_noopt, x)
        except Exception as e:  # noqa: BLE001 - recorded
            rec.update(errors={}, pass_=False, verdict="FAIL", notes=notes + [f"onnxruntime run: {short_exc(e)}"])
            records.append(rec)
            continue
        errors, cmp_notes, cmp_ok, extra = compare(got, refs[tag], x)
        # Outputs beyond the documented ones that the reference also has (cls_logits, ...).
        same_name = {k: k for k in got if k not in errors and k not in outputs and k in refs[tag]}
        if same_name:
            e2, n2 = compare_dense(got, refs[tag], same_name)
            errors.update(e2)
            cmp_notes += n2
            cmp_ok = cmp_ok and not n2
        floor, floor_ok = floor_compare(got, got_noopt, x)
        floor.update(dense_floor([k for k in same_name if k not in floor])(got, got_noopt, x)[0])
        within = bool(errors) and all(e is not None and e <= TOL for e in errors.values())
        structural = bool(problems) or info["checker"] != "ok"
        ok = within and cmp_ok and not structural
        finite = all(e is not None and np.isfinite(e) for e in errors.values())
        if ok:
            verdict = "pass"
        elif structural:
            verdict = "FAIL"
        elif not cmp_ok:
            # NMS: float-limited when the detections also move between the two onnxruntime runs.
            verdict = "float-limited" if floor_ok is False and not any("non-finite" in n for n in cmp_notes) else "FAIL"
        elif finite and all(e <= max(TOL, FLOOR_FACTOR * (floor.get(k) or 0.0)) for k, e in errors.items()):
            verdict = "float-limited"
        else:
            verdict = "FAIL"
        rec.update(extra)
        rec.update(errors={k: (None if v is None else float(f"{v:.3g}")) for k, v in errors.items()},
                   ort_opt_vs_noopt={k: (None if v is None else float(f"{v:.3g}")) for k, v in floor.items()},
                   pass_=ok, verdict=verdict, notes=notes + cmp_notes)
        if floor_ok is not None:
            rec["ort_noopt_same_detections"] = floor_ok
        records.append(rec)
    del sess, sess_noopt
    os.remove(path)
    return records


def dense_floor(pairs):
    def floor(got, got_noopt, x):
        errs = {}
        for k in pairs:
            if k in got and k in got_noopt:
                errs[k] = rel_err(got[k], got_noopt[k])[0]
        return errs, None
    return floor


def nms_floor(got, got_noopt, x):
    if any(k not in got for k in ("det_boxes", "det_scores", "det_labels", "num_dets")):
        return {}, None
    errors, _, _, ok = compare_dets(got, dets_as_reference(got_noopt), x.shape[0])
    ok = ok and all(e is not None and e <= TOL for e in errors.values())
    errors.update(dense_floor(("boxes", "scores"))(got, got_noopt, x)[0])
    return errors, ok


def backbone_cases(mixdet, work, bb):
    name, weights = bb["name"], ["--synthetic-weights"]
    b3 = f"b{DYNAMIC_BATCH}"
    inputs = {
        "b1": seeded_input(name, "b1", (1, 3, *BACKBONE_SIZE)),
        b3: seeded_input(name, b3, (DYNAMIC_BATCH, 3, *BACKBONE_SIZE)),
        "nonsquare": seeded_input(name, "nonsquare", (1, 3, *NONSQUARE)),
    }
    refs, ref_err = {}, {}
    for tag, x in inputs.items():
        refs[tag], ref_err[tag] = mixdet.forward(name, weights, x, tag)
    n_feat = next((len([k for k in r if k.startswith("features.")]) for r in refs.values() if r is not None),
                  bb["features"])
    logits = {"logits": "logits"}
    feats = {f"features.{i}": f"features.{i}" for i in range(n_feat)}
    # `--input=H,W`: the form the CLI takes (see the request checks for `--input H,W`).
    nonsquare_flag = [f"--input={NONSQUARE[0]},{NONSQUARE[1]}"]
    # (variant, export flags, dynamic, static batch, size, pairs, input tags to run)
    specs = [
        ("static_b1", [], False, 1, BACKBONE_SIZE, logits, ["b1"]),
        ("dynamic", ["--dynamic-batch"], True, None, BACKBONE_SIZE, logits, [b3, "b1"]),
        ("nonsquare_b1", nonsquare_flag, False, 1, NONSQUARE, logits, ["nonsquare"]),
        ("features_b1", ["--features"], False, 1, BACKBONE_SIZE, feats, ["b1"]),
        ("features_dynamic", ["--features", "--dynamic-batch"], True, None, BACKBONE_SIZE, feats, [b3]),
    ]
    records = []
    for variant, flags, dynamic, batch, size, pairs, tags in specs:
        outputs = {k: "float32" for k in pairs}
        records += run_case(mixdet, work, name, "backbone", weights, variant, flags, dynamic, batch, size, "input",
                            outputs, tags, inputs, refs, ref_err,
                            lambda got, ref, x, p=pairs: dense_result(got, ref, p), "synthetic", dense_floor(pairs))
    return records


def detector_cases(mixdet, work, det):
    name, size = det["name"], det["input"]
    b3 = f"b{DYNAMIC_BATCH}"
    inputs = {
        "b1": seeded_input(name, "b1", (1, 3, *size)),
        b3: seeded_input(name, b3, (DYNAMIC_BATCH, 3, *size)),
    }
    refs, ref_err, fallback = {"b1": None}, {"b1": "no weights that both export and forward load"}, []
    probe = os.path.join(work, f"{name}.probe.onnx")
    for label, weights, fwd_weights, fwd_model in weight_choices(name):
        err = mixdet.export(name, weights, probe, [])
        if err:
            fallback.append(f"export with {' '.join(weights) or 'no weight flag'}: {err}")
            continue
        metadata = check_file(probe)["metadata"]
        os.remove(probe)
        refs["b1"], ref_err["b1"] = mixdet.forward(fwd_model, fwd_weights, inputs["b1"], "b1")
        if refs["b1"] is not None:
            break
        fallback.append(f"forward with {' '.join(fwd_weights) or 'no weight flag'}: {ref_err['b1']}")
    refs[b3], ref_err[b3] = mixdet.forward(fwd_model, fwd_weights, inputs[b3], b3)
    photo_tags = []
    if refs["b1"] is not None and label != "synthetic":
        # Trained weights: also a real picture, whose detections are not all near-tied low scores.
        photo, x = photo_input(metadata, size)
        if photo:
            inputs["photo"] = x
            refs["photo"], ref_err["photo"] = mixdet.forward(fwd_model, fwd_weights, x, "photo")
            photo_tags = ["photo"]
    dense = {"boxes": "decoded_boxes", "scores": "class_scores"}
    dense_types = {"boxes": "float32", "scores": "float32"}
    nms_types = {"det_boxes": "float32", "det_scores": "float32", "det_labels": "int64", "num_dets": "int64"}

    def compare_nms(got, ref, x):
        errors, notes, counts, ok = compare_dets(got, ref, x.shape[0])
        # Outputs beyond det_* that mirror the plain export are compared too.
        extra = {k: v for k, v in dense.items() if k in got}
        if extra:
            e2, n2 = compare_dense(got, ref, extra)
            errors.update(e2)
            notes += n2
            ok = ok and not n2
        return errors, notes, ok, {"detections": counts}

    specs = [
        ("static_b1", [], False, 1, dense_types, ["b1"] + photo_tags, False),
        ("dynamic", ["--dynamic-batch"], True, None, dense_types, [b3, "b1"], False),
        ("nms_b1", ["--nms"], False, 1, nms_types, ["b1"] + photo_tags, True),
        ("nms_dynamic", ["--nms", "--dynamic-batch"], True, None, nms_types, [b3, "b1"], True),
    ]
    records = []
    for variant, flags, dynamic, batch, outputs, tags, nms in specs:
        if nms:
            compare, floor = compare_nms, nms_floor
        else:
            compare, floor = (lambda got, ref, x: dense_result(got, ref, dense)), dense_floor(dense)
        records += run_case(mixdet, work, name, "detector", weights, variant, flags, dynamic, batch, size, "images",
                            outputs, tags, inputs, refs, ref_err, compare, label, floor)
    if fallback:
        for r in records:
            r["weights_fallback"] = fallback
    return records


def requests(mixdet, work, detectors):
    """Requests that must fail cleanly, and CLI forms that must be accepted."""
    cases = [
        ("unknown model", "error", ["--model", "nosuch", "--synthetic-weights"]),
        ("opset 12", "error", ["--model", "mixnet_s", "--synthetic-weights", "--opset", "12"]),
        ("opset 13 on mobilenet_v3_large", "error",
         ["--model", "mobilenet_v3_large", "--synthetic-weights", "--opset", "13"]),
        ("--nms on a backbone", "error", ["--model", "mixnet_s", "--synthetic-weights", "--nms"]),
        (f"--input {NONSQUARE[0]},{NONSQUARE[1]} on a backbone", "ok",
         ["--model", "mixnet_s", "--synthetic-weights", "--input", f"{NONSQUARE[0]},{NONSQUARE[1]}"]),
    ]
    det = next((d for d in detectors if d["name"] not in BUILTIN_WEIGHTS), None)
    if det:
        h, w = det["input"]
        cases.append((f"--input={h // 2},{w} on {det['name']}", "error",
                      ["--model", det["name"], "--synthetic-weights", f"--input={h // 2},{w}"]))
        cases.append((f"--input {h},{w} on {det['name']} (its own size)", "ok",
                      ["--model", det["name"], "--synthetic-weights", "--input", f"{h},{w}"]))
    records = []
    for i, (what, expect, args) in enumerate(cases):
        d = os.path.join(work, f"request{i}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        out = os.path.join(d, "model.onnx")
        proc = run([mixdet.binary, "export", *args, "--out", out])
        lines = proc.stderr.strip().splitlines()
        left = sorted(os.listdir(d))
        shutil.rmtree(d, ignore_errors=True)
        rec = {"request": what, "expect": expect,
               "command": "mixdet export " + " ".join(args + ["--out", "model.onnx"]), "exit": proc.returncode,
               "stderr_lines": len(lines), "stderr": "\n".join(lines[:3])[:400], "files_left": left}
        if expect == "error":
            rec["pass"] = proc.returncode != 0 and len(lines) == 1 and not left
            os.makedirs(d)
            bt = run([mixdet.binary, "export", *args, "--out", out], env=dict(os.environ, RUST_BACKTRACE="1"))
            shutil.rmtree(d, ignore_errors=True)
            rec["stderr_lines_with_RUST_BACKTRACE_1"] = len(bt.stderr.strip().splitlines())
        else:
            rec["pass"] = proc.returncode == 0 and left == ["model.onnx"]
        records.append(rec)
    return records


def fmt_err(errors):
    vals = [v for v in errors.values() if v is not None]
    if not errors:
        return "-"
    if len(vals) < len(errors):
        return "n/a"
    return f"{max(vals):.2e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mixdet", default="target/release/mixdet")
    ap.add_argument("--models", default=None, help="comma-separated subset of the listed backbones/detectors")
    ap.add_argument("--out", default="tests/fixtures/onnx/onnxruntime_check.json")
    ap.add_argument("--work", default=None, help="directory for the temporary files (default: a fresh temp dir)")
    args = ap.parse_args()

    import onnx
    import onnxruntime

    if not os.path.isfile(args.mixdet):
        sys.exit(f"{args.mixdet}: no such binary")
    backbones, detectors = list_models(args.mixdet)
    selected = detectors
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        known = {b["name"] for b in backbones} | {d["name"] for d in detectors}
        unknown = [m for m in wanted if m not in known]
        if unknown:
            sys.exit(f"not listed by `mixdet models --json`: {', '.join(unknown)}")
        backbones = [b for b in backbones if b["name"] in wanted]
        selected = [d for d in detectors if d["name"] in wanted]

    work = args.work or tempfile.mkdtemp(prefix="mixdet-onnx-check-")
    os.makedirs(work, exist_ok=True)
    mixdet = Mixdet(args.mixdet, work)
    cases = []
    for bb in backbones:
        cases += backbone_cases(mixdet, work, bb)
        print(f"done {bb['name']}", file=sys.stderr)
    for det in selected:
        cases += detector_cases(mixdet, work, det)
        print(f"done {det['name']}", file=sys.stderr)
    reqs = requests(mixdet, work, detectors)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)

    metadata_keys, weights = {}, {}
    for c in cases:
        c["pass"] = c.pop("pass_")
        fallback = c.pop("weights_fallback", None)
        if c["kind"] == "detector" and c["model"] not in weights:
            weights[c["model"]] = {"used": c["weights"], "tried_first": fallback or []}
        if c["kind"] == "detector":
            c["weights"] = weights[c["model"]]["used"].split(" (")[0]
        keys = c.pop("metadata_keys", None)
        if keys is not None:
            metadata_keys.setdefault(c["kind"], sorted(set(keys)))
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "mixdet_git": git_rev(),
        "mixdet_binary_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(args.mixdet), datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "tolerance": TOL,
        "metric": "max|onnxruntime - mixdet forward| / max(max|mixdet forward|, 1e-6) per output",
        "inputs": "random: numpy default_rng(crc32('<model>/<tag>')).standard_normal * 0.5; photo: an example picture",
        "float_limited": f"error > tolerance but <= {FLOOR_FACTOR:g} x ort_opt_vs_noopt (onnxruntime with graph "
                         "optimisations on vs off); for NMS: the detections also differ between those two runs",
    }
    verdicts = {v: sum(c["verdict"] == v for c in cases) for v in ("pass", "float-limited", "FAIL")}
    n_fail = sum(not c["pass"] for c in cases) + sum(not r["pass"] for r in reqs)
    result = {"environment": env, "metadata_keys": metadata_keys, "detector_weights": weights, "cases": cases, "requests": reqs,
              "summary": {"cases": len(cases), "verdicts": verdicts, "requests": len(reqs),
                          "requests_failed": sum(not r["pass"] for r in reqs), "not_passed": n_fail}}
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        # One line per case and request: small, and diffs show which case changed.
        f.write("{\n")
        items = list(result.items())
        for i, (key, value) in enumerate(items):
            if isinstance(value, list):
                body = ",\n".join("  " + json.dumps(v, separators=(",", ":")) for v in value)
                f.write(f" {json.dumps(key)}: [\n{body}\n ]")
            else:
                f.write(f" {json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}")
            f.write(",\n" if i + 1 < len(items) else "\n")
        f.write("}\n")

    print(f"onnxruntime {env['onnxruntime']}, onnx {env['onnx']}, {env['cpu']}, {env['date']}, "
          f"mixdet {env['mixdet_git']}; tolerance {TOL:g}")
    headers = ["model", "variant", "weights", "input", "max rel err", "ORT opt vs no-opt", "detections", "checker",
               "verdict"]
    rows = []
    for c in cases:
        dets = c.get("detections")
        dets_s = "-" if dets is None else ",".join(f"{a}" if a == b else f"{a}!={b}" for a, b in dets)
        floor = c.get("ort_opt_vs_noopt") or {}
        floor_s = fmt_err(floor)
        if "ort_noopt_same_detections" in c:
            floor_s += " (dets same)" if c["ort_noopt_same_detections"] else " (dets differ)"
        rows.append([c["model"], c["variant"], c["weights"].split(" (")[0],
                     ("x".join(map(str, c["input"])) + (" photo" if c.get("input_data") == "photo" else ""))
                     if c["input"] else "-", fmt_err(c["errors"]), floor_s, dets_s,
                     "ok" if c.get("checker") == "ok" else ("-" if "checker" not in c else "FAIL"), c["verdict"]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(r, widths)) + " |")
    for model, w in weights.items():
        if w["tried_first"] or " (" in w["used"]:
            print(f"note: {model}: weights {w['used']}"
                  + (f" (tried first: {'; '.join(w['tried_first'])})" if w["tried_first"] else ""))
    extras = sorted({(c["kind"], c["variant"].startswith("nms"), tuple(c["extra_outputs"])) for c in cases
                     if c.get("extra_outputs")})
    for kind, nms, names in extras:
        print(f"note: {kind} exports{' with --nms' if nms else ''} have outputs beyond the documented ones: "
              f"{', '.join(names)} (compared with forward's tensors of the same name where it has them)")
    for c in cases:
        if c["notes"]:
            print(f"note: {c['model']} {c['variant']} {c['input']}: {'; '.join(c['notes'])}")
    print()
    print("| request | expect | exit | stderr (first line) | stderr lines (RUST_BACKTRACE=1) | files left | pass |")
    print("|---|---|---|---|---|---|---|")
    for r in reqs:
        first = r["stderr"].splitlines()[0] if r["stderr"] else ""
        print(f"| {r['request']} | {r['expect']} | {r['exit']} | {first[:160]} | {r['stderr_lines']}"
              f"{' (%d)' % r['stderr_lines_with_RUST_BACKTRACE_1'] if 'stderr_lines_with_RUST_BACKTRACE_1' in r else ''}"
              f" | {','.join(r['files_left']) or '-'} | {'yes' if r['pass'] else 'NO'} |")
    print(f"\n{len(cases)} cases: {verdicts['pass']} pass, {verdicts['float-limited']} float-limited, "
          f"{verdicts['FAIL']} FAIL; {len(reqs)} requests, {result['summary']['requests_failed']} failed; "
          f"wrote {args.out}")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
