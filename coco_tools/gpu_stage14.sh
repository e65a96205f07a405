#!/usr/bin/env bash
# The script that ran stage 14 of the shipped detector on a GPU machine (README, "The shipped
# detector"), kept as it ran: `bash coco_tools/gpu_stage14.sh 555 cuda:0` from the repository root,
# with a stripped CUDA build of mixdet in .gpu/bins.tar.xz (or MIXDET=path/to/mixdet) and the
# nvidia cu13 wheels of a PyTorch install for the CUDA libraries. Outputs go to $OUT.
# Usage: DEADLINE_S [DEVICE]
# Sizes the training set from a short speed probe so that one epoch ends before DEADLINE_S.
set -u
T0=$(date +%s); DEADLINE=${1:-570}; DEV=${2:-cuda:0}
OUT=${OUT:-/tmp/out14}; mkdir -p "$OUT"
el() { echo $(( $(date +%s) - T0 )); }
if [ -f .gpu/bins.tar.xz ] && [ -z "${MIXDET:-}" ]; then
  mkdir -p /tmp/gb && tar -xJf .gpu/bins.tar.xz -C /tmp/gb; B=/tmp/gb/mixdet
  export LD_LIBRARY_PATH=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])')/cu13/lib
  nvidia-smi -L
else B=$MIXDET; fi
NTRAIN=${NTRAIN:-30000}; PROBE=${PROBE:-40}
CFG=configs/train/shapes_mixnet_s_c3_448_stage14.json
ANN=data/synth17/annotations
echo "[$(el)] synth"
$B synth --out data/val7 --train 0 --val 500 --seed 7 > $OUT/synth7.txt 2>&1 &
$B synth --out data/synth17 --train $NTRAIN --val 100 --seed 17 > $OUT/synth17.txt 2>&1
wait
mv $ANN/instances_train.json $ANN/instances_train_full.json
cp $ANN/instances_train_full.json $ANN/instances_train.json
echo "[$(el)] probe"
$B train --config $CFG --device $DEV --max-steps $PROBE --output-dir /tmp/probe --quiet > $OUT/probe.txt 2>&1
cp /tmp/probe/log.jsonl $OUT/probe_log.jsonl
RATE=$(python3 -c "
import json
r = [json.loads(l) for l in open('/tmp/probe/log.jsonl')]
r = [x for x in r if x.get('type') == 'step']
a, b = r[len(r) // 2], r[-1]
print((b['step'] - a['step']) * 16 / (b['elapsed_s'] - a['elapsed_s']))")
LEFT=$(( DEADLINE - $(el) - ${RESERVE:-75} ))
N=$(python3 -c "print(min($NTRAIN, int($RATE * $LEFT * 0.95) // 16 * 16))")
echo "[$(el)] rate $RATE img/s, $LEFT s left: training on the first $N images"
python3 - $N <<'EOF'
import json, sys
n = int(sys.argv[1]); p = 'data/synth17/annotations/'
d = json.load(open(p + 'instances_train_full.json'))
d['images'] = [i for i in d['images'] if i['id'] <= n]
d['annotations'] = [a for a in d['annotations'] if a['image_id'] <= n]
json.dump(d, open(p + 'instances_train.json', 'w'))
print(len(d['images']), 'images', len(d['annotations']), 'boxes')
EOF
RUN=runs/shapes_mixnet_s_c3_448_stage14
( while sleep 30; do for f in model.safetensors log.jsonl; do [ -f $RUN/$f ] && cp $RUN/$f $OUT/.$f.tmp && mv $OUT/.$f.tmp $OUT/$f; done; done ) &
SYNC=$!
echo "[$(el)] train"
$B train --config $CFG --device $DEV --quiet > $OUT/train.txt 2>&1; echo "train rc $?"
kill $SYNC
cp $RUN/model.safetensors $RUN/log.jsonl $OUT/; cp $RUN/plot.png $OUT/ 2>/dev/null
echo "[$(el)] eval"
$B eval --images data/val7/val --annotations data/val7/annotations/instances_val.json \
  --model configs/detectors/ssdlite448_mixnet_s_c3_shapes.json --weights $RUN/model.safetensors \
  --device $DEV --batch 16 --save-results $OUT/val7_s14.json > $OUT/val7_s14.txt 2>&1
cat $OUT/val7_s14.txt | head -14
echo "[$(el)] done"
