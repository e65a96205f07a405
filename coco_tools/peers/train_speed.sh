#!/bin/bash
# Training throughput of one or more mixdet binaries against PyTorch on the same architecture,
# interleaved round by round so that the machine's drift hits all of them alike.
#
# usage: coco_tools/peers/train_speed.sh DATA_DIR ROUNDS MIXDET_BIN [MIXDET_BIN...]
#   DATA_DIR: a `mixdet synth` set (DATA_DIR/train, DATA_DIR/annotations/instances_train.json)
# Each mixdet entry is the median model-step images/s over 8 steps, the first two dropped;
# PyTorch's is train_reference.py's median over 6 steps after 2 warm-up steps. 2 threads, batch 16.
# The detector is $DETECTOR (a config file; default crates/detect/configs/ssdlite320_mixnet_s_shapes.json,
# the architecture of docs/speed.md's first training table), at its config's input size. The run is
# configs/train/shapes_mixnet_s.json with the overrides below (batch 16, SSD augmentation, no
# evaluation, a log line every step), so the binaries must have `train --set` (commit c87e47e on).
# Run with the venv of coco_tools/README.md active and nothing else running.
set -euo pipefail
data=$(realpath "$1"); rounds=$2; shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
detector=$(realpath "${DETECTOR:-$root/crates/detect/configs/ssdlite320_mixnet_s_shapes.json}")
# epochs=12 keeps the cosine schedule of the measurements made before the recipe existed.
speed=(--config "$root/configs/train/shapes_mixnet_s.json" --set "detector=$detector"
  --set "train.images=$data/train" --set "train.annotations=$data/annotations/instances_train.json"
  --set val=null --set "output_dir=$work/run" --set epochs=12 --set eval_every_epochs=0
  --set checkpoint_every_steps=1000 --set log_every_steps=1 --set prefetch_batches=2)
median_step() {
  python3 -c "
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print(round(statistics.median([r['step_images_per_s'] for r in rs if r.get('type') == 'step'][2:]), 2))" "$work/run/log.jsonl"
}
for r in $(seq "$rounds"); do
  line="round $r:"
  for bin in "$@"; do
    rm -rf "$work/run"
    "$bin" train "${speed[@]}" --max-steps 8 --threads 2 > /dev/null 2>&1
    line="$line $(basename "$bin") $(median_step) images/s,"
  done
  torch=$(python3 "$root/coco_tools/peers/train_reference.py" --detector "$detector" \
    --batch 16 --steps 6 --warmup 2 --threads 2 2>/dev/null | tail -1 |
    python3 -c "import json, sys; print(round(json.load(sys.stdin)['median_images_per_s'], 2))")
  echo "$line PyTorch $torch images/s"
done
