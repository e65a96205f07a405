#!/usr/bin/env python3
"""TIDE's error analysis (tidecv 1.0.1) of the COCO fixture cases, for `mixdet eval --errors`.

For each case directory under tests/fixtures/coco/ that holds gt.json and dt.json, writes
tide.json: TIDE's AP at IoU 0.5, the count and dAP of each main error type (Cls, Loc, Both,
Dupe, Bkg, Miss) and the two special errors (FalsePos, FalseNeg). All AP figures are in
TIDE's units (percent).

    python coco_tools/make_tide_fixtures.py [--dir tests/fixtures/coco]

Needs tidecv (pip install tidecv), which needs pycocotools, numpy and opencv-python.

tidecv's own COCO loader wants segmentation polygons and file names; this script builds the
same `Data` objects from the boxes alone, as `datasets.COCO` / `COCOResult` would: every GT
image registered in file order, crowd annotations as class-specific ignore regions, detections
in file order, at most 100 detections per image.
"""

import argparse
import json
import os

from tidecv import TIDE
from tidecv.data import Data

CASES = ["golden", "mixed", "crowds", "tied_scores"]


def load_gt(path):
    with open(path) as f:
        d = json.load(f)
    data = Data("gt", max_dets=100)
    for img in d["images"]:
        data.add_image(img["id"], str(img["id"]))
    for cat in d.get("categories", []):
        data.add_class(cat["id"], cat.get("name", str(cat["id"])))
    for ann in d["annotations"]:
        if ann["iscrowd"]:
            data.add_ignore_region(ann["image_id"], ann["category_id"], ann["bbox"], None)
        else:
            data.add_ground_truth(ann["image_id"], ann["category_id"], ann["bbox"], None)
    return data


def load_dt(path):
    with open(path) as f:
        dets = json.load(f)
    data = Data("dt")
    for det in dets:
        data.add_detection(det["image_id"], det["category_id"], det["score"], det["bbox"], None)
    return data


def analyse(case_dir):
    gt = load_gt(os.path.join(case_dir, "gt.json"))
    dt = load_dt(os.path.join(case_dir, "dt.json"))
    tide = TIDE(pos_threshold=0.5, background_threshold=0.1, mode=TIDE.BOX)
    run = tide.evaluate(gt, dt, mode=TIDE.BOX, name="run")
    main = tide.get_main_errors()["run"]
    special = tide.get_special_errors()["run"]
    counts = {err.short_name: n for err, n in run.count_errors().items()}
    return {
        "tidecv": "1.0.1",
        "pos_threshold": 0.5,
        "background_threshold": 0.1,
        "max_dets": 100,
        "ap": run.ap,
        "main_dap": main,
        "special_dap": special,
        "counts": counts,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "coco"))
    args = ap.parse_args()
    for case in CASES:
        case_dir = os.path.join(args.dir, case)
        out = analyse(case_dir)
        with open(os.path.join(case_dir, "tide.json"), "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(case, f"AP50 {out['ap']:.4f}", out["counts"], {k: round(v, 4) for k, v in out["main_dap"].items()})


if __name__ == "__main__":
    main()
