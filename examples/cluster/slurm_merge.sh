#!/usr/bin/env bash
# Joins the parts of slurm_detect.sh's array into one COCO results file once every task is done;
# with GT set, image ids come from its file names and the results are evaluated.
#SBATCH --job-name=mixdet-merge
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=01:00:00
#SBATCH --output=mixdet-merge-%j.log
set -euo pipefail
: "${PARTS:?set PARTS to the folder the detection tasks wrote}"
exec mixdet merge "$PARTS" --json "${RESULTS:-$PARTS/results.json}" ${GT:+--gt "$GT"}
