#!/usr/bin/env python3
"""Synthetic COCO ground truth + detections and the pycocotools output for them.

Writes one directory per case under tests/fixtures/coco/ (gt.json, dt.json, expected.json).
`expected.json` holds, for each evaluation run of the case (default parameters and variants),
the 12 `summarize` numbers, per-category AP / AP50 / AP75 / AR at area "all" and the largest
maxDets, the full recall array and two checksums of the full precision array.

The generator (`synth`) is also used by bench_eval.py for the COCO-sized benchmark set.

    python coco_tools/make_coco_fixtures.py [--out tests/fixtures/coco]

Needs numpy and pycocotools (2.0.x).
"""

import argparse
import contextlib
import copy
import io
import json
import math
import os

import numpy as np

# The case the team checked by hand against pycocotools and faster-coco-eval.
GOLDEN_GT = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100},
               {"id": 3, "width": 50, "height": 50}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 32, 32], "area": 1024.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1500.0, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 0, 60, 60], "area": 3600.0, "iscrowd": 1},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [20, 20, 10, 10], "area": 100.0, "iscrowd": 0},
        {"id": 5, "image_id": 2, "category_id": 1, "bbox": [5, 5, 90, 90], "area": 8000.0, "iscrowd": 0},
        {"id": 6, "image_id": 3, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400.0, "iscrowd": 0},
    ],
}
GOLDEN_DT = [
    {"image_id": 1, "category_id": 1, "bbox": [11, 11, 31, 31], "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": [10, 10, 32, 32], "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": [52, 52, 40, 36], "score": 0.6},
    {"image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10], "score": 0.8},
    {"image_id": 1, "category_id": 2, "bbox": [30, 30, 10, 10], "score": 0.7},
    {"image_id": 2, "category_id": 2, "bbox": [21, 21, 10, 10], "score": 0.5},
    {"image_id": 2, "category_id": 2, "bbox": [60, 60, 10, 10], "score": 0.95},
    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.3},
    {"image_id": 2, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.99},
    {"image_id": 3, "category_id": 1, "bbox": [1, 1, 20, 20], "score": 0.4},
]


def synth(seed, n_images, n_cats, mean_objects=7.0, dets_per_image=None, crowd_frac=0.03,
          empty_image_frac=0.15, crowded_image_frac=0.1, score_decimals=3, segmentation=False):
    """A synthetic (gt, dets) pair.

    Non-contiguous category ids, images without GT, crowd regions, tiny / small / medium / large
    boxes (some with area exactly on the 32**2 and 96**2 bounds), jittered true positives,
    duplicates, confused categories, false positives (also on images without GT), scores rounded
    to `score_decimals` (ties), and on `crowded_image_frac` of the images more than 100
    detections. With `dets_per_image`, false positives are added until images average that many.
    """
    rng = np.random.default_rng(seed)
    cat_ids = sorted(int(c) for c in rng.choice(np.arange(1, 4 * n_cats + 1), size=n_cats, replace=False))
    cats = [{"id": c, "name": f"class_{c:03d}", "supercategory": "thing"} for c in cat_ids]
    image_ids = sorted(int(i) for i in rng.choice(np.arange(1, 50 * n_images + 1), size=n_images, replace=False))
    images, anns, dets = [], [], []

    def rbox(w, h, kind):
        if kind == "tiny":
            bw, bh = rng.uniform(1, 12, size=2)
        elif kind == "small":
            bw, bh = rng.uniform(8, 40, size=2)
        elif kind == "medium":
            bw, bh = rng.uniform(30, 100, size=2)
        else:
            bw, bh = rng.uniform(90, min(w, h), size=2)
        x = rng.uniform(0, max(w - bw, 1))
        y = rng.uniform(0, max(h - bh, 1))
        return [round(float(x), 2), round(float(y), 2), round(float(bw), 2), round(float(bh), 2)]

    def score(a=2.0, b=2.0):
        return round(float(rng.beta(a, b)), score_decimals)

    ann_id = 1
    for img_id in image_ids:
        w, h = int(rng.integers(200, 641)), int(rng.integers(200, 641))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": w, "height": h})
        n_obj = 0 if rng.random() < empty_image_frac else int(rng.poisson(mean_objects)) + 1
        gts = []
        for _ in range(n_obj):
            kind = rng.choice(["tiny", "small", "medium", "large"], p=[0.15, 0.3, 0.35, 0.2])
            box = rbox(w, h, kind)
            crowd = rng.random() < crowd_frac
            if crowd:
                box = rbox(w, h, "large")
            u = rng.random()
            if u < 0.03:
                area = 1024.0
            elif u < 0.06:
                area = 9216.0
            else:
                area = round(float(box[2] * box[3] * rng.uniform(0.5, 1.0)), 3)
            ann = {"id": ann_id, "image_id": img_id, "category_id": int(rng.choice(cat_ids)), "bbox": box,
                   "area": area, "iscrowd": int(crowd)}
            if segmentation:
                x, y, bw, bh = box
                ann["segmentation"] = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
            anns.append(ann)
            gts.append(ann)
            ann_id += int(rng.integers(1, 4))  # non-contiguous annotation ids
        img_dets = []
        for g in gts:
            if rng.random() < 0.15:
                continue  # missed
            for _ in range(int(rng.integers(1, 4))):
                x, y, bw, bh = g["bbox"]
                s = rng.uniform(0.0, 0.2)
                box = [round(float(x + rng.normal(0, s * bw)), 2), round(float(y + rng.normal(0, s * bh)), 2),
                       round(float(bw * math.exp(rng.normal(0, s))), 2), round(float(bh * math.exp(rng.normal(0, s))), 2)]
                cat = g["category_id"] if rng.random() > 0.1 else int(rng.choice(cat_ids))
                # Better boxes tend to score higher, as with a real detector.
                img_dets.append({"image_id": img_id, "category_id": cat, "bbox": box, "score": score(5.0 - 15.0 * s, 2.0)})
            if rng.random() < 0.05:
                img_dets.append(dict(img_dets[-1]) if img_dets else
                                {"image_id": img_id, "category_id": g["category_id"], "bbox": g["bbox"], "score": score()})
        n_fp = int(rng.poisson(3))
        if rng.random() < crowded_image_frac:
            n_fp += int(rng.integers(101, 140))
        if dets_per_image is not None:
            n_fp = max(n_fp, int(rng.poisson(dets_per_image)) - len(img_dets))
        # Crowded images put many detections in few categories so per-category truncation bites.
        fp_cats = cat_ids if n_fp < 100 else list(rng.choice(cat_ids, size=2))
        for _ in range(n_fp):
            kind = rng.choice(["tiny", "small", "medium", "large"])
            img_dets.append({"image_id": img_id, "category_id": int(rng.choice(fp_cats)),
                             "bbox": rbox(w, h, kind), "score": score(2.0, 5.0)})
        dets.extend(img_dets)
    order = rng.permutation(len(dets))  # results files are not sorted by image
    dets = [dets[i] for i in order]
    gt = {"info": {"description": f"synthetic seed {seed}"}, "licenses": [], "images": images,
          "annotations": anns, "categories": cats}
    return gt, dets


def quirks_case():
    """Hand-made edge cases: GT id 0, an `ignore` flag that pycocotools discards, boxes on the
    area bounds, zero and negative extents, a detection of an unknown category, exact duplicate
    detections, ties between GTs, crowd regions matched repeatedly."""
    gt, dets = synth(7, 12, 4, mean_objects=4)
    img, img2 = gt["images"][0]["id"], gt["images"][1]["id"]
    cat = gt["categories"][0]["id"]
    extra = [
        {"id": 0, "image_id": img, "category_id": cat, "bbox": [10, 10, 40, 40], "area": 1000.0, "iscrowd": 0},
        {"id": 100001, "image_id": img, "category_id": cat, "bbox": [100, 100, 32, 32], "area": 1024.0,
         "iscrowd": 0, "ignore": 1},
        {"id": 100002, "image_id": img, "category_id": cat, "bbox": [200, 100, 96, 96], "area": 9216.0, "iscrowd": 0},
        {"id": 100003, "image_id": img, "category_id": cat, "bbox": [0, 150, 150, 150], "area": 20000.0, "iscrowd": 1},
        {"id": 100004, "image_id": img, "category_id": cat, "bbox": [300, 10, 20, 20], "area": 400.0, "iscrowd": 0},
        {"id": 100005, "image_id": img, "category_id": cat, "bbox": [300, 10, 20, 20], "area": 400.0, "iscrowd": 0},
        # A twin of GT id 0: which of the two a detection takes on an IoU tie changes the TP/FP order.
        {"id": 100006, "image_id": img, "category_id": cat, "bbox": [10, 10, 40, 40], "area": 1600.0, "iscrowd": 0},
        # Detections below overlap these with IoU exactly 0.5 and 0.75 (thresholds are inclusive).
        {"id": 100007, "image_id": img2, "category_id": cat, "bbox": [0, 0, 20, 20], "area": 400.0, "iscrowd": 0},
        {"id": 100008, "image_id": img2, "category_id": cat, "bbox": [100, 0, 20, 20], "area": 400.0, "iscrowd": 0},
    ]
    gt["annotations"].extend(extra)
    unknown_cat = max(c["id"] for c in gt["categories"]) + 1000
    d = lambda box, s, c=cat: {"image_id": img, "category_id": c, "bbox": box, "score": s}
    dets.extend([
        d([11, 11, 40, 40], 0.91), d([100, 100, 32, 32], 0.9), d([201, 101, 96, 96], 0.9),
        d([10, 160, 30, 30], 0.88), d([50, 200, 30, 30], 0.88), d([60, 210, 30, 30], 0.5),
        d([300, 10, 20, 20], 0.7), d([300, 10, 20, 20], 0.7), d([301, 11, 20, 20], 0.7),
        d([400, 10, 0, 20], 0.6), d([420, 10, -5, 20], 0.65), d([5, 5, 32, 32], 0.2),
        d([0, 0, 96, 96], 0.2), d([10, 10, 40, 40], 0.95, unknown_cat), d([10, 10, 40, 40], 0.93),
    ])
    dets.extend([
        {"image_id": img2, "category_id": cat, "bbox": [0, 0, 10, 20], "score": 0.99},
        {"image_id": img2, "category_id": cat, "bbox": [100, 0, 15, 20], "score": 0.98},
    ])
    return gt, dets


def coco_from_dict(d):
    from pycocotools.coco import COCO
    c = COCO()
    c.dataset = copy.deepcopy(d)
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def run_pycocotools(gt_dict, dets, overrides):
    """COCOeval(bbox) with `overrides` applied to its Params; returns the expected.json run."""
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_from_dict(gt_dict)
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, "bbox")
        p = ev.params
        for key, value in overrides.items():
            if key in ("iouThrs", "recThrs"):
                value = np.array(value, dtype=np.float64)
            setattr(p, key, value)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    p = ev.params
    prec, rec = ev.eval["precision"], ev.eval["recall"]
    a_all = p.areaRngLbl.index("all")
    m_max = int(np.argmax(p.maxDets))

    def mean_valid(s):
        s = s[s > -1]
        return float(np.mean(s)) if len(s) else -1.0

    per_cat = []
    if p.useCats:
        for k, cid in enumerate(p.catIds):
            t50 = np.where(p.iouThrs == 0.5)[0]
            t75 = np.where(p.iouThrs == 0.75)[0]
            per_cat.append({
                "id": int(cid),
                "ap": mean_valid(prec[:, :, k, a_all, m_max]),
                "ap50": mean_valid(prec[t50][:, :, k, a_all, m_max]),
                "ap75": mean_valid(prec[t75][:, :, k, a_all, m_max]),
                "ar100": mean_valid(rec[:, k, a_all, m_max]),
            })
    flat = prec.ravel()
    weights = (np.arange(flat.size) % 97) + 1
    return {
        "params": overrides,
        "shape": list(prec.shape),
        "stats": [float(s) for s in ev.stats],
        "per_category": per_cat,
        "recall": [float(v) for v in rec.ravel()],
        "precision_sum": math.fsum(flat.tolist()),
        "precision_weighted_sum": math.fsum((flat * weights).tolist()),
        "scores_sum": math.fsum(ev.eval["scores"].ravel().tolist()),
    }


def cases():
    g, d = synth(1, 30, 12)
    yield "mixed", g, d, [{}, {"useCats": 0}]
    g, d = synth(2, 20, 9, score_decimals=1, crowded_image_frac=0.2)
    yield "tied_scores", g, d, [{}, {"maxDets": [5, 1, 50]}]
    g, d = synth(3, 20, 6, crowd_frac=0.25, mean_objects=5)
    yield "crowds", g, d, [{}, {"useCats": 0}]
    g, d = synth(4, 20, 10, empty_image_frac=0.5)
    img_ids = sorted(im["id"] for im in g["images"])
    cat_ids = sorted(c["id"] for c in g["categories"])
    yield "custom_params", g, d, [
        {"imgIds": img_ids[::2] + [10**9], "catIds": cat_ids[1::2]},
        {"iouThrs": [0.3, 0.5, 0.75, 0.9], "recThrs": [0.0, 0.25, 0.5, 0.75, 1.0]},
        {"areaRng": [[0, 1e10], [0, 500], [500, 5000], [5000, 1e10]], "maxDets": [1, 3, 20, 100]},
        {"useCats": 0, "catIds": [cat_ids[3], cat_ids[1], cat_ids[3]]},
    ]
    g, d = quirks_case()
    yield "quirks", g, d, [{}, {"useCats": 0}]
    yield "golden", GOLDEN_GT, GOLDEN_DT, [{}]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "coco"))
    args = ap.parse_args()
    for name, gt, dets, variants in cases():
        out = os.path.join(args.out, name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gt.json"), "w") as f:
            json.dump(gt, f, separators=(",", ":"))
        with open(os.path.join(out, "dt.json"), "w") as f:
            json.dump(dets, f, separators=(",", ":"))
        runs = [run_pycocotools(gt, dets, v) for v in variants]
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump({"case": name, "runs": runs}, f, separators=(",", ":"))
        print(f"{name}: {len(gt['images'])} images, {len(gt['annotations'])} GT, {len(dets)} detections, "
              f"{len(runs)} runs, AP={runs[0]['stats'][0]:.4f}")


if __name__ == "__main__":
    main()
