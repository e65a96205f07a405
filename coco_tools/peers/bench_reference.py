#!/usr/bin/env python3
"""Inference latency of the reference implementations that mixdet is measured against: timm and
torchvision models in PyTorch (eval mode, no_grad) and the same models exported to ONNX and run
by onnxruntime, with the same thread count, batch and input size; optionally `mixdet bench` too.

    python coco_tools/peers/bench_reference.py --threads 2 --iters 30 [--mixdet target/release/mixdet] [--json]
    python coco_tools/peers/bench_reference.py --device cuda --no-onnx --mixdet <cuda build of mixdet>

With `--device cuda` both PyTorch and `mixdet bench --device cuda` run on the GPU; every timed
PyTorch call ends with `torch.cuda.synchronize()` (mixdet's bench copies the outputs to the host).

Each measurement: warm-up runs, then `--iters` timed runs of one forward pass; the table gives
the median, min and max in milliseconds. Weights are random (timm `pretrained=False`,
torchvision `weights=None, weights_backbone=None`): latency does not depend on them. The
detector (ssdlite320_mobilenet_v3_large) is timed end to end as torchvision runs it: resize and
normalise, backbone and head, box decoding and NMS.

With `--mixdet PATH`, each model is also run as
`PATH bench --model NAME --input S --batch B --threads N --iters N --json`, whose last stdout line
is a JSON object with `median_ms`, `min_ms` and `max_ms`; the ratio columns are mixdet's median
over PyTorch's and over onnxruntime's. A missing binary, or a model it does not know, is noted
and skipped.

Needs torch, timm and torchvision; onnxruntime and onnx (plus onnxscript for newer exporters) for
the onnxruntime column, which is skipped with a note when they are missing.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

# (name, source, default input size)
MODELS = [
    ("mixnet_s", "timm", 224),
    ("mixnet_m", "timm", 224),
    ("mixnet_l", "timm", 224),
    ("tf_mixnet_s", "timm", 224),
    ("mobilenetv2_100", "timm", 224),
    ("mobilenet_v3_large", "torchvision", 224),
    ("ssdlite320_mobilenet_v3_large", "torchvision-detection", 320),
]


def summarize(times_s):
    ms = [t * 1000.0 for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "iters": len(ms)}


def time_calls(fn, warmup, iters, sync=lambda: None):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return summarize(times)


def build_model(name, source):
    import torch  # noqa: F401

    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False)
    import torchvision

    if source == "torchvision":
        return getattr(torchvision.models, name)(weights=None)
    return getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None)


class DetectorWrapper:
    """Gives a torchvision detector a plain (B, 3, H, W) tensor interface for export: it returns
    the boxes, scores and labels of the first image."""

    def __new__(cls, model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                out = self.inner(list(x.unbind(0)))[0]
                return out["boxes"], out["scores"], out["labels"]

        return Wrapped(model)


def export_onnx(model, example, path):
    """Exports with the TorchScript exporter where this torch still has it (it handles the
    detectors' data-dependent NMS), else with the default one."""
    import torch

    attempts = [{"dynamo": False}, {}]
    last = None
    for extra in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (example,), path, opset_version=17, input_names=["input"], **extra)
            return
        except TypeError as e:  # an exporter argument this torch does not take
            last = e
        except Exception as e:  # noqa: BLE001 - report any exporter failure as a skipped column
            last = e
    raise RuntimeError(f"ONNX export failed: {type(last).__name__}: {str(last).splitlines()[0] if str(last) else ''}")


def bench_onnxruntime(path, example, threads, warmup, iters):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: example.numpy()}
    return time_calls(lambda: sess.run(None, feed), warmup, iters)


def bench_mixdet(binary, name, size, batch, threads, iters, device):
    cmd = [binary, "bench", "--model", name, "--input", str(size), "--batch", str(batch), "--threads", str(threads),
           "--iters", str(iters), "--device", device, "--json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{type(e).__name__}: {e}"
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"exit {proc.returncode}: {tail}"
    try:
        result = json.loads(lines[-1])
        return {k: float(result[k]) for k in ("median_ms", "min_ms", "max_ms")}, None
    except (ValueError, KeyError, TypeError) as e:
        return None, f"unreadable JSON line: {e}"


def fmt(stats):
    if not stats:
        return "n/a"
    return f"{stats['median_ms']:.2f} ({stats['min_ms']:.2f}-{stats['max_ms']:.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(m[0] for m in MODELS), help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--input", type=int, default=None, help="input size (default: 224, 320 for ssdlite320)")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime column")
    ap.add_argument("--mixdet", default=None, help="path to the mixdet binary")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch and mixdet alike)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process

    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    have_ort = False
    if dev.type == "cuda" and not args.no_onnx:
        print("note: onnxruntime column skipped (CPU provider only; use --no-onnx with --device cuda)", file=sys.stderr)
    elif not args.no_onnx:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            have_ort = True
        except ImportError as e:
            print(f"note: onnxruntime column skipped ({e})", file=sys.stderr)
    mixdet = args.mixdet
    if mixdet and not (os.path.isfile(mixdet) and os.access(mixdet, os.X_OK)) and not shutil.which(mixdet):
        print(f"note: mixdet binary {mixdet!r} not found, column skipped", file=sys.stderr)
        mixdet = None

    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    known = {m[0]: m for m in MODELS}
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            if name not in known:
                notes.append(f"{name}: unknown model, skipped")
                continue
            _, source, default_size = known[name]
            size = args.input or default_size
            row = {"model": name, "input": size, "batch": args.batch, "threads": args.threads, "device": args.device}
            model = build_model(name, source).eval().to(dev)
            example = torch.rand(args.batch, 3, size, size, device=dev)
            runnable = DetectorWrapper(model).eval() if source == "torchvision-detection" else model
            with torch.no_grad():
                row["torch"] = time_calls(lambda: runnable(example), args.warmup, args.iters, sync)
            if have_ort:
                path = os.path.join(tmp, f"{name}.onnx")
                try:
                    with torch.no_grad():
                        export_onnx(runnable, example, path)
                    row["onnxruntime"] = bench_onnxruntime(path, example, args.threads, args.warmup, args.iters)
                except Exception as e:  # noqa: BLE001 - one model failing must not stop the table
                    notes.append(f"{name}: onnxruntime skipped ({e})")
            if mixdet:
                stats, err = bench_mixdet(mixdet, name, size, args.batch, args.threads, args.iters, args.device)
                if stats:
                    row["mixdet"] = stats
                    row["mixdet_over_torch"] = stats["median_ms"] / row["torch"]["median_ms"]
                    if "onnxruntime" in row:
                        row["mixdet_over_onnxruntime"] = stats["median_ms"] / row["onnxruntime"]["median_ms"]
                else:
                    notes.append(f"{name}: mixdet skipped ({err})")
            rows.append(row)
            print(f"done {name}", file=sys.stderr)

    headers = ["model", "input", "PyTorch ms median (min-max)", "onnxruntime ms median (min-max)"]
    if mixdet:
        headers += ["mixdet ms median (min-max)", "mixdet/PyTorch", "mixdet/ORT"]
    table = []
    for r in rows:
        line = [r["model"], f"{r['batch']}x3x{r['input']}x{r['input']}", fmt(r.get("torch")), fmt(r.get("onnxruntime"))]
        if mixdet:
            line += [fmt(r.get("mixdet")),
                     f"{r['mixdet_over_torch']:.2f}" if "mixdet_over_torch" in r else "n/a",
                     f"{r['mixdet_over_onnxruntime']:.2f}" if "mixdet_over_onnxruntime" in r else "n/a"]
        table.append(line)
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(headers)]
    print(f"device {args.device}, threads {args.threads}, batch {args.batch}, {args.iters} iterations after {args.warmup} warm-up, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("-|-".join("-" * w for w in widths))
    for t in table:
        print(" | ".join(c.ljust(w) for c, w in zip(t, widths)))
    for n in notes:
        print(f"note: {n}")
    if args.json:
        env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
        try:
            import onnxruntime

            env["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            pass
        print(json.dumps({"environment": env, "threads": args.threads, "batch": args.batch, "iters": args.iters,
                          "warmup": args.warmup, "results": rows, "notes": notes}))


if __name__ == "__main__":
    main()
