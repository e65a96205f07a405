"""Class-aware NMS: torchvision.ops.batched_nms against `mixdet bench --nms`, same boxes.

Boxes are the synthetic ones both sides generate from `synthetic.uniform01` (640-pixel image,
sides 8..136 px, uniform scores and classes), IoU 0.5, the same thread count.

Usage: python coco_tools/peers/bench_nms.py --mixdet target/release/mixdet [--boxes 20000] [--classes 80]
                                       [--threads 2] [--iters 50]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from synthetic import uniform01  # noqa: E402


def boxes_for(n, classes):
    u = uniform01(f"bench.nms.boxes.{n}", n * 4).reshape(n, 4)
    x, y = u[:, 0] * 640.0, u[:, 1] * 640.0
    boxes = np.stack([x, y, x + 8.0 + u[:, 2] * 128.0, y + 8.0 + u[:, 3] * 128.0], 1).astype(np.float32)
    scores = uniform01(f"bench.nms.scores.{n}", n).astype(np.float32)
    labels = np.floor(uniform01(f"bench.nms.classes.{n}", n) * classes).astype(np.int64)
    return torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixdet", required=True)
    ap.add_argument("--boxes", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b, s, l = boxes_for(args.boxes, args.classes)
    keep = torchvision.ops.batched_nms(b, s, l, 0.5)
    for _ in range(5):
        torchvision.ops.batched_nms(b, s, l, 0.5)
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        torchvision.ops.batched_nms(b, s, l, 0.5)
        times.append((time.perf_counter() - t) * 1e3)
    tv = statistics.median(times)
    out = subprocess.run([args.mixdet, "bench", "--nms", str(args.boxes), "--classes", str(args.classes),
                          "--threads", str(args.threads), "--iters", str(args.iters), "--json"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    md = json.loads(out)["median_ms"]
    print(f"| implementation | median (ms) | ratio |")
    print(f"|---|---:|---:|")
    print(f"| torchvision {torchvision.__version__} batched_nms | {tv:.2f} | 1.00 |")
    print(f"| mixdet batched_nms | {md:.2f} | {md / tv:.2f} |")
    print(f"({args.boxes} boxes, {args.classes} classes, IoU 0.5, {args.threads} threads, {args.iters} iterations; "
          f"torchvision keeps {len(keep)})")


if __name__ == "__main__":
    main()
