"""Forward latency (backbone, extra layers, SSDLite head; no post-processing) of an SSDLite-MixNet
detector config in PyTorch (timm trunk + torchvision's SSDLite head, as `train_reference.py` builds
it) against `mixdet bench --forward-only`, same input size and threads.

Usage: python coco_tools/bench_ssdlite_mixnet.py --mixdet target/release/mixdet
           [--detector configs/detectors/ssdlite320_mixnet_s.json] [--threads 2] [--iters 30]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixdet", required=True)
    ap.add_argument("--detector", default=os.path.join(os.path.dirname(__file__), "..", "configs", "detectors",
                                                       "ssdlite320_mixnet_s.json"))
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
    print("| implementation | median (ms) | ratio |")
    print("|---|---:|---:|")
    print(f"| PyTorch {torch.__version__} (timm trunk + torchvision SSDLite head) | {pt:.1f} | 1.00 |")
    print(f"| mixdet | {md:.1f} | {md / pt:.2f} |")
    print(f"({cfg['name']}, {h}x{w}, batch 1, {args.threads} threads, {args.iters} iterations, forward only)")


if __name__ == "__main__":
    main()
