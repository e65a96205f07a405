"""Per-image detection latency: torchvision's ssdlite320_mobilenet_v3_large against `mixdet bench
--image` (the path of `mixdet detect` after decoding), same weights, same image, same threads.

Both sides use the deterministic synthetic weights of `synthetic.py` (post-processing cost depends
on the scores, so random weights on one side only would not compare like with like). Timed per
image, batch 1: normalisation + resize to 320x320, forward, softmax/decoding/NMS, rescaling boxes
to the image; JPEG decoding is excluded on both sides.

Usage: python coco_tools/peers/bench_detect.py --mixdet target/release/mixdet [--image examples/photos/astronaut.jpg]
                                          [--threads 2] [--iters 30]
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
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from synthetic import synthetic_array  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixdet", required=True)
    ap.add_argument("--image", default=os.path.join(os.path.dirname(__file__), "..", "..", "examples", "photos", "astronaut.jpg"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    model.load_state_dict({k: torch.from_numpy(synthetic_array(k, tuple(t.shape))).to(t.dtype)
                           for k, t in model.state_dict().items()})
    img = torch.from_numpy(np.array(Image.open(args.image).convert("RGB"))).permute(2, 0, 1).float() / 255.0
    times = {"total": [], "postprocess_detections": []}
    inner = model.postprocess_detections

    def timed_post(*a, **k):
        t = time.perf_counter()
        r = inner(*a, **k)
        times["postprocess_detections"].append((time.perf_counter() - t) * 1e3)
        return r

    model.postprocess_detections = timed_post
    with torch.no_grad():
        for _ in range(args.warmup):
            dets = model([img])
        times = {"total": [], "postprocess_detections": []}
        for _ in range(args.iters):
            t = time.perf_counter()
            dets = model([img])
            times["total"].append((time.perf_counter() - t) * 1e3)
    tv = statistics.median(times["total"])
    tv_post = statistics.median(times["postprocess_detections"])
    out = subprocess.run([args.mixdet, "bench", "--model", "ssdlite320_mobilenet_v3_large", "--image", args.image,
                          "--threads", str(args.threads), "--iters", str(args.iters), "--warmup", str(args.warmup),
                          "--json"], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    md = json.loads(out)
    print("| implementation | median (ms) | min (ms) | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| torchvision {torchvision.__version__} (torch {torch.__version__}) | {tv:.1f} | {min(times['total']):.1f} | 1.00 |")
    print(f"| mixdet | {md['median_ms']:.1f} | {md['min_ms']:.1f} | {md['median_ms'] / tv:.2f} |")
    print(f"(image {os.path.basename(args.image)}, {args.threads} threads, {args.iters} iterations after {args.warmup} "
          f"warm-up; torchvision's postprocess_detections alone: {tv_post:.1f} ms; {len(dets[0]['scores'])} detections)")


if __name__ == "__main__":
    main()
