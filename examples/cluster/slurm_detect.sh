#!/usr/bin/env bash
# Detection over a large image collection as a Slurm job array: each array task runs one shard
# (mixdet reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT) and streams
# its results into DIR/part-IIIII-of-NNNNN.jsonl, committed every 1000 images. A task that is
# preempted or killed and requeued continues where its last checkpoint left off (--resume).
#
#   MANIFEST=/shared/images.txt PARTS=/shared/parts sbatch examples/cluster/slurm_detect.sh
#   MANIFEST=... PARTS=... sbatch --dependency=afterany:<jobid> examples/cluster/slurm_merge.sh
# (afterany: merge itself checks that every shard is complete and names the ones that are not)
#
# The manifest lists one image path per line; its order defines the shards, so keep it fixed
# for the life of the job (and the array size with it).
#SBATCH --job-name=mixdet-detect
#SBATCH --array=0-15
#SBATCH --cpus-per-task=2
#SBATCH --mem=2G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=mixdet-detect-%A_%a.log
set -euo pipefail
: "${MANIFEST:?set MANIFEST to the list of image paths}"
: "${PARTS:?set PARTS to the folder for the parts (shared storage)}"
export RAYON_NUM_THREADS="${SLURM_CPUS_PER_TASK:-2}"
exec mixdet detect --manifest "$MANIFEST" --parts "$PARTS" --resume --no-overlay \
    --model "${MODEL:-ssdlite300_mobilenet_v2_person}" --batch "${BATCH:-4}"
