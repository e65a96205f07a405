"""Forward latency (backbone, extra layers, SSDLite head; no post-processing) of an SSDLite-MixNet
detector config in PyTorch (timm trunk + torchvision's SSDLite head, as `train_reference.py` builds
it) and in onnxruntime (the same module exported to ONNX) against `mixdet bench --forward-only`,
same input size and threads. mixdet runs before onnxruntime, whose spinning threads slow whatever
runs next.

Usage: python coco_tools/peers/bench_ssdlite_mixnet.py --mixdet target/release/mixdet
           [--detector crates/detect/configs/ssdlite320_mixnet_s.json] [--threads 2] [--iters 30]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_reference import mixnet_ssdlite  # noqa: E402
from bench_reference import bench_onnxruntime, export_onnx  # noqa: E402


class Forward(torch.nn.Module):
    """Trunk, extra layers and head as one module with tensor outputs (for the ONNX export)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model.head(list(self.model.backbone(x).values()))
        return out["cls_logits"], out["bbox_regression"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixdet", required=True)
    ap.add_argument("--detector", default=os.path.join(os.path.dirname(__file__), "..", "..", "crates", "detect",
                                                       "configs", "ssdlite320_mixnet_s.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = json.load(open(args.detector))
    model = mixnet_ssdlite(cfg).eval()
    h, w = cfg["input_size"]
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        for _ in range(args.warmup):
            model.head(list(model.backbone(x).values()))
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            model.head(list(model.backbone(x).values()))
            times.append((time.perf_counter() - t) * 1e3)
    pt = statistics.median(times)
    out = subprocess.run([args.mixdet, "bench", "--model", args.detector, "--forward-only", "--threads",
                          str(args.threads), "--iters", str(args.iters), "--json"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    md = json.loads(out)["median_ms"]
    ort_ms = None
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "ssdlite.onnx")
            export_onnx(Forward(model).eval(), x, path)
            ort_ms = bench_onnxruntime(path, x, args.threads, args.warmup, args.iters)["median_ms"]
    except Exception as e:  # noqa: BLE001 - a missing onnxruntime or a failed export skips the row
        print(f"note: onnxruntime skipped ({type(e).__name__}: {e})", file=sys.stderr)
    print("| implementation | median (ms) | mixdet / it |")
    print("|---|---:|---:|")
    print(f"| PyTorch {torch.__version__} (timm trunk + torchvision SSDLite head) | {pt:.1f} | {md / pt:.2f} |")
    if ort_ms is not None:
        print(f"| onnxruntime (the same module exported) | {ort_ms:.1f} | {md / ort_ms:.2f} |")
    print(f"| mixdet | {md:.1f} | |")
    print(f"({cfg['name']}, {h}x{w}, batch 1, {args.threads} threads, {args.iters} iterations, forward only)")


if __name__ == "__main__":
    main()
