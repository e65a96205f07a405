#!/usr/bin/env python3
"""Wall time and peak memory of a whole COCO bbox evaluation: pycocotools, faster-coco-eval,
hotcoco (Python package) and `mixdet eval`, side by side on one synthetic COCO-sized set.

Each measurement is a fresh process that reads both JSON files, evaluates, accumulates and
summarizes; wall time is measured around the process and peak RSS by GNU time. Runs are
interleaved (one of each tool per round) so that machine noise hits every tool alike, and the
report gives medians. Every tool's 12 stats are checked against pycocotools' first.

    python coco_tools/peers/bench_eval.py --mixdet target/release/mixdet [--rounds 5] [--slow-rounds 3]

Needs /usr/bin/time (GNU time), and numpy, pycocotools, faster-coco-eval and hotcoco in the
running Python (tools that are missing are skipped with a note). The data set is generated once into --data-dir.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from make_coco_fixtures import synth  # noqa: E402

PY_TOOLS = {
    "pycocotools": """
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(GT); dt = gt.loadRes(DT)
ev = COCOeval(gt, dt, 'bbox'); ev.evaluate(); ev.accumulate(); ev.summarize()
""",
    "faster-coco-eval": """
from faster_coco_eval import COCO, COCOeval_faster
gt = COCO(GT); dt = gt.loadRes(DT)
ev = COCOeval_faster(gt, dt, 'bbox'); ev.evaluate(); ev.accumulate(); ev.summarize()
""",
    "hotcoco": """
from hotcoco import COCO, COCOeval
gt = COCO(GT); dt = gt.loadRes(DT)
ev = COCOeval(gt, dt, 'bbox'); ev.evaluate(); ev.accumulate(); ev.summarize()
""",
}
IMPORT_CHECK = {"pycocotools": "pycocotools", "faster-coco-eval": "faster_coco_eval", "hotcoco": "hotcoco"}


def make_data(data_dir, seed):
    gt_path, dt_path = os.path.join(data_dir, "instances.json"), os.path.join(data_dir, "detections.json")
    if not (os.path.exists(gt_path) and os.path.exists(dt_path)):
        os.makedirs(data_dir, exist_ok=True)
        gt, dets = synth(seed, n_images=5000, n_cats=80, mean_objects=7.2, dets_per_image=100,
                         segmentation=True, crowded_image_frac=0.02)
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(dt_path, "w") as f:
            json.dump(dets, f)
    with open(gt_path) as f:
        gt = json.load(f)
    with open(dt_path) as f:
        n_dets = len(json.load(f))
    return gt_path, dt_path, {"images": len(gt["images"]), "gt_boxes": len(gt["annotations"]),
                              "categories": len(gt["categories"]), "detections": n_dets,
                              "gt_mb": os.path.getsize(gt_path) / 1e6, "dt_mb": os.path.getsize(dt_path) / 1e6}


def run_timed(cmd):
    """Runs cmd; returns (wall seconds, peak RSS MiB, stdout).

    Peak RSS comes from GNU time, a small process of its own: Linux carries a forked child's
    max-RSS over from its parent, so wait4() from this (large) Python process would overstate it.
    """
    with tempfile.NamedTemporaryFile("r") as rss_file, tempfile.TemporaryFile() as out_f, \
            tempfile.TemporaryFile() as err_f:
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name] + cmd
        t0 = time.perf_counter()
        code = subprocess.run(wrapped, stdout=out_f, stderr=err_f).returncode
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed ({code}): {err_f.read().decode()[-2000:]}")
        peak_kib = int(rss_file.read().strip().splitlines()[-1])
        return wall, peak_kib / 1024.0, out_f.read().decode()


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mixdet", default=os.path.join(root, "target", "release", "mixdet"))
    ap.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "mixdet-coco-bench"))
    ap.add_argument("--seed", type=int, default=2017)
    ap.add_argument("--rounds", type=int, default=5, help="runs of each fast tool")
    ap.add_argument("--slow-rounds", type=int, default=3, help="runs of pycocotools and faster-coco-eval")
    ap.add_argument("--tools", default="pycocotools,faster-coco-eval,hotcoco,mixdet")
    args = ap.parse_args()

    gt_path, dt_path, info = make_data(args.data_dir, args.seed)
    print(f"data: {info}", flush=True)
    tools = [t for t in args.tools.split(",") if t]
    available = []
    for t in tools:
        if t == "mixdet":
            if os.path.exists(args.mixdet):
                available.append(t)
            else:
                print(f"skipping mixdet: {args.mixdet} not found (cargo build --release)")
        elif subprocess.run([sys.executable, "-c", f"import {IMPORT_CHECK[t]}"], capture_output=True).returncode == 0:
            available.append(t)
        else:
            print(f"skipping {t}: not importable")

    def command(tool, json_out):
        if tool == "mixdet":
            return [args.mixdet, "eval", "--gt", gt_path, "--results", dt_path, "--json-out", json_out]
        code = f"GT={gt_path!r}; DT={dt_path!r}\n" + PY_TOOLS[tool] + "\nimport json; print(json.dumps([float(s) for s in ev.stats]))"
        return [sys.executable, "-c", code]

    times = {t: [] for t in available}
    rss = {t: [] for t in available}
    stats = {}
    slow = {"pycocotools", "faster-coco-eval"}
    json_out = os.path.join(args.data_dir, "mixdet-stats.json")
    for r in range(max(args.rounds, args.slow_rounds)):
        for t in available:
            if r >= (args.slow_rounds if t in slow else args.rounds):
                continue
            wall, peak, out = run_timed(command(t, json_out))
            if t == "mixdet":
                with open(json_out) as f:
                    s = json.load(f)["stats"]
            else:
                s = json.loads(out.strip().splitlines()[-1])
            stats[t] = s
            times[t].append(wall)
            rss[t].append(peak)
            print(f"round {r + 1} {t}: {wall:.3f} s, {peak:.0f} MiB", flush=True)

    ref = stats.get("pycocotools")
    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"Data: {info['images']} images, {info['gt_boxes']} GT boxes, {info['categories']} categories, "
          f"{info['detections']} detections (GT {info['gt_mb']:.1f} MB, results {info['dt_mb']:.1f} MB)")
    print()
    print("| tool | runs | median wall (s) | min–max (s) | peak RSS (MiB) | AP | max \\|Δstats\\| vs pycocotools |")
    print("|---|---|---|---|---|---|---|")
    for t in available:
        diff = "—" if ref is None else f"{max(abs(a - b) for a, b in zip(stats[t], ref)):.1e}"
        print(f"| {t} | {len(times[t])} | {statistics.median(times[t]):.3f} | {min(times[t]):.3f}–{max(times[t]):.3f} "
              f"| {statistics.median(rss[t]):.0f} | {stats[t][0]:.4f} | {diff} |")


if __name__ == "__main__":
    main()
