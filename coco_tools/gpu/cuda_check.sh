#!/bin/bash
# The CUDA checks, run on a GPU machine in one go (the device time there is short):
#   1. the MixConv kernels against the CPU ones (the cuda_parity test binary);
#   2. the shipped detector on the GPU against the CPU: detections on the example images, and the
#      12 COCO numbers on a freshly generated synthetic validation set;
#   3. inference latency of mixdet and PyTorch on the same GPU (bench_reference.py --device cuda);
#   4. training throughput of mixdet and PyTorch on the same GPU, same architecture and batch.
#
# usage: coco_tools/gpu/cuda_check.sh BIN_DIR OUT_DIR [--correctness-only]
#   --correctness-only stops after step 2 (about 30 s instead of about 2 min): the timings of steps
#   3 and 4 need PyTorch and cost device time a session may want for training.
#   BIN_DIR holds `mixdet` (built with --features cuda) and `cuda_parity` (the test binary of
#   `cargo test --release -p mixdet-kernels --features cuda --test cuda_parity --no-run`).
# Needs the CUDA driver and cuBLAS/cuRAND 13 (the pip wheels of a cu13 PyTorch are found), and
# torch, torchvision and timm for the PyTorch columns. Everything is printed; the detection
# files land in OUT_DIR.
set -u
bin=$(realpath "$1"); out=$(realpath "$2"); only_correctness=${3:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mkdir -p "$out"
nv=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)
libs=$(find "$nv" -name 'libcublas.so.*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
step() { echo; echo "=== $* ($(date +%T))"; }

step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc

step "1. MixConv CUDA kernels vs CPU (cuda_parity)"
"$bin/cuda_parity" --test-threads 1 2>&1 | tail -n 8

step "2a. detect on the example images: CPU vs CUDA"
"$bin/mixdet" detect examples/images --device cpu --json "$out/detect_cpu.json" --no-overlay 2>&1 | tail -n 2
"$bin/mixdet" detect examples/images --device cuda:0 --json "$out/detect_cuda.json" --out "$out/overlays" 2>&1 | tail -n 2
python3 - "$out/detect_cpu.json" "$out/detect_cuda.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda d: (d["image_id"], d["category_id"], round(d["bbox"][0]), round(d["bbox"][1]))
a.sort(key=key); b.sort(key=key)
print(f"detections: cpu {len(a)}, cuda {len(b)}")
if len(a) == len(b):
    box = max((abs(x - y) for p, q in zip(a, b) for x, y in zip(p["bbox"], q["bbox"])), default=0.0)
    score = max((abs(p["score"] - q["score"]) for p, q in zip(a, b)), default=0.0)
    same = all(p["category_id"] == q["category_id"] and p["image_id"] == q["image_id"] for p, q in zip(a, b))
    print(f"same images and classes: {same}; max |box diff| {box:.2e} px; max |score diff| {score:.2e}")
PY

step "2b. COCO eval of the shipped detector on 500 fresh images (seed 7): CPU vs CUDA"
"$bin/mixdet" synth --out /tmp/val7 --train 0 --val 500 --seed 7 > /dev/null
for d in cpu cuda:0; do
  /usr/bin/time -f "$d: %e s wall" "$bin/mixdet" eval --images /tmp/val7/val --annotations /tmp/val7/annotations/instances_val.json \
    --device "$d" --batch 16 --json-out "$out/eval_${d%%:*}.json" --save-results "/tmp/dets_${d%%:*}.json" 2>&1 | grep -E 'Average Precision  \(AP\) @\[ IoU=0.50:0.95 \| area=   all|wall'
done
python3 - "$out/eval_cpu.json" "$out/eval_cuda.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["stats"] for p in sys.argv[1:3])
print("max |stat diff| cpu vs cuda over the 12 numbers:", max(abs(x - y) for x, y in zip(a, b)))
PY

if [ "$only_correctness" = --correctness-only ]; then step "done (correctness only)"; exit 0; fi

step "3. inference latency on the GPU: PyTorch vs mixdet"
for batch in 1 16; do
  python3 coco_tools/peers/bench_reference.py --device cuda --no-onnx --mixdet "$bin/mixdet" --batch "$batch" --iters 50 --warmup 10 \
    --models mixnet_s,mixnet_m,mixnet_l,tf_mixnet_s,mobilenetv2_100,mobilenet_v3_large,ssdlite320_mobilenet_v3_large 2>/dev/null
done
for batch in 1 16; do
  echo "ssdlite320_mixnet_s_c3_shapes batch $batch: $("$bin/mixdet" bench --model ssdlite320_mixnet_s_c3_shapes --batch "$batch" --iters 50 --device cuda:0 --json | tail -n 1)"
done

step "4. training throughput on the GPU (ssdlite320_mixnet_s_shapes, batch 16, 320x320)"
"$bin/mixdet" synth --out /tmp/synth --train 400 --val 0 --seed 1 > /dev/null
# The run of coco_tools/peers/train_speed.sh (its overrides), with 4 batches prefetched.
"$bin/mixdet" train --config configs/train/shapes_mixnet_s.json \
  --set train.images=/tmp/synth/train --set train.annotations=/tmp/synth/annotations/instances_train.json \
  --set val=null --set output_dir=/tmp/speed-run --set epochs=12 --set eval_every_epochs=0 \
  --set checkpoint_every_steps=1000 --set log_every_steps=1 --set prefetch_batches=4 \
  --device cuda:0 --max-steps 40 --quiet 2>&1 | tail -n 3
python3 - /tmp/speed-run/log.jsonl <<'PY'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
rs = [r for r in rs if r.get("type") == "step"][5:]
print(f"mixdet cuda: median model step {statistics.median(r['step_images_per_s'] for r in rs):.1f} images/s, "
      f"with data loading {statistics.median(r['images_per_s'] for r in rs):.1f} images/s; losses {rs[0]['loss']:.3f} -> {rs[-1]['loss']:.3f}")
PY
python3 coco_tools/peers/train_reference.py --detector crates/detect/configs/ssdlite320_mixnet_s_shapes.json --device cuda \
  --batch 16 --steps 20 --warmup 5 2>/dev/null | tail -n 1
step "done"
