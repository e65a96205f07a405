#!/usr/bin/env python3
"""onnxruntime latency of `mixdet export`'s ONNX against timm's own export of the same backbone.

    .venv/bin/python coco_tools/peers/bench_onnx_export.py [--mixdet target/release/mixdet]
        [--models mixnet_s[,mobilenetv2_100]] [--threads 2] [--rounds 5] [--iters 50] [--warmup 10]

For each model: `torch.onnx.export` of `timm.create_model(name)` in eval mode (opset 17, input
1x3x224x224, the TorchScript exporter `dynamo=False` first, else the default one) and
`mixdet export --model NAME --synthetic-weights --opset 17`. The timm model is given the same
synthetic weights (`fixtures/synthetic.py`, the values `--synthetic-weights` uses), so both files
compute the same function; the largest logit difference between them is printed as a check.

Both run in onnxruntime (CPU provider) with the same SessionOptions: intra_op_num_threads
`--threads`, inter_op_num_threads 1, sequential execution, ORT_ENABLE_ALL. `--rounds` interleaved
rounds (the order alternates from round to round), each `--warmup` untimed then `--iters` timed
runs per model; the table gives the median over all timed runs, the range of the per-round
medians, mixdet / timm, and the median of the per-round ratios (each round's two medians come from
the same stretch of time, so it is the steadier figure on a machine whose speed drifts). Prints a markdown table with the CPU model, date and versions. Run it
on an otherwise idle machine (it warns when cargo or rustc is running).
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from synthetic import synthetic_array  # noqa: E402

SIZE = 224


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return platform.processor() or platform.machine()


def busy_builders():
    try:
        out = subprocess.run(["pgrep", "-a", "-x", "cargo|rustc"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln for ln in out.splitlines() if ln.strip()]


def timm_export(name, path, opset):
    """timm's model with the synthetic weights, exported; returns (exporter used, logits of x)."""
    import timm
    import torch

    model = timm.create_model(name, pretrained=False).eval()
    sd = {k: torch.from_numpy(synthetic_array(k, tuple(t.shape))).to(t.dtype) for k, t in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)
    x = torch.zeros(1, 3, SIZE, SIZE)
    last = None
    for label, extra in (("torchscript (dynamo=False)", {"dynamo": False}), ("dynamo", {"dynamo": True}),
                         ("default", {})):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), path, opset_version=opset, input_names=["input"],
                                  output_names=["logits"], **extra)
            return label, model
        except Exception as e:  # noqa: BLE001 - try the next exporter
            last = e
    raise RuntimeError(f"timm export of {name} failed: {type(last).__name__}: {str(last).splitlines()[:1]}")


def mixdet_export(binary, name, path, opset):
    cmd = [binary, "export", "--model", name, "--synthetic-weights", "--opset", str(opset), "--out", path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not os.path.isfile(path):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {tail}")


def session(path, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def node_count(path):
    import onnx

    return len(onnx.load(path, load_external_data=False).graph.node)


def timed(sess, feed, warmup, iters):
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mixdet", default="target/release/mixdet")
    ap.add_argument("--models", default="mixnet_s", help="comma-separated: mixnet_s, mobilenetv2_100 (timm names)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()

    import onnx
    import onnxruntime
    import timm
    import torch

    torch.set_num_threads(args.threads)
    busy = busy_builders()
    if busy:
        print(f"warning: {len(busy)} cargo/rustc processes running; timings will be noisy", file=sys.stderr)

    rows, notes = [], []
    x = (np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)) * 0.5).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            tpath, mpath = os.path.join(tmp, f"{name}.timm.onnx"), os.path.join(tmp, f"{name}.mixdet.onnx")
            try:
                exporter, model = timm_export(name, tpath, args.opset)
                mixdet_export(args.mixdet, name, mpath, args.opset)
            except Exception as e:  # noqa: BLE001 - one model failing must not stop the table
                notes.append(f"{name}: skipped ({e})")
                continue
            sessions = {"timm": session(tpath, args.threads), "mixdet": session(mpath, args.threads)}
            feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
            outs = {k: s.run(None, feeds[k])[0] for k, s in sessions.items()}
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            scale = max(float(np.abs(ref).max()), 1e-6)
            diff = {k: float(np.abs(v - ref).max()) / scale if v.shape == ref.shape else float("nan")
                    for k, v in outs.items()}
            times = {"timm": [], "mixdet": []}
            round_medians = {"timm": [], "mixdet": []}
            for r in range(args.rounds):
                order = ["timm", "mixdet"] if r % 2 == 0 else ["mixdet", "timm"]
                for k in order:
                    t = timed(sessions[k], feeds[k], args.warmup, args.iters)
                    times[k] += t
                    round_medians[k].append(statistics.median(t))
                print(f"{name} round {r + 1}: " + ", ".join(f"{k} {round_medians[k][-1]:.3f} ms" for k in times),
                      file=sys.stderr)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"model": name, "exporter": exporter, "med": med, "rounds": round_medians,
                         "nodes": {"timm": node_count(tpath), "mixdet": node_count(mpath)},
                         "bytes": {"timm": os.path.getsize(tpath), "mixdet": os.path.getsize(mpath)},
                         "diff": diff, "ratio": med["mixdet"] / med["timm"],
                         "round_ratio": statistics.median(m / t for m, t in zip(round_medians["mixdet"],
                                                                                 round_medians["timm"]))})
            del sessions

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"CPU: {cpu_model()}; {date}; onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, "
          f"torch {torch.__version__}, timm {timm.__version__}; opset {args.opset}, 1x3x{SIZE}x{SIZE}, "
          f"intra_op {args.threads}, inter_op 1, sequential, ORT_ENABLE_ALL; {args.rounds} interleaved rounds x "
          f"{args.iters} runs after {args.warmup} warm-up")
    print()
    print("| model | timm export ms (round medians) | mixdet export ms (round medians) | mixdet / timm "
          "| median of per-round ratios | nodes timm / mixdet | logits vs PyTorch (rel) timm / mixdet |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = []
        for k in ("timm", "mixdet"):
            rm = r["rounds"][k]
            cells.append(f"{r['med'][k]:.3f} ({min(rm):.3f}-{max(rm):.3f})")
        print(f"| {r['model']} | {cells[0]} | {cells[1]} | {r['ratio']:.2f} | {r['round_ratio']:.2f} | {r['nodes']['timm']} / "
              f"{r['nodes']['mixdet']} | {r['diff']['timm']:.1e} / {r['diff']['mixdet']:.1e} |")
    for r in rows:
        print(f"note: {r['model']}: timm exporter {r['exporter']}; file sizes timm {r['bytes']['timm']} B, "
              f"mixdet {r['bytes']['mixdet']} B")
    for n in notes:
        print(f"note: {n}")
    return 1 if not rows else 0


if __name__ == "__main__":
    sys.exit(main())
