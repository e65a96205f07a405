# The training config of the speed measurements (train_speed.sh on the CPU, cuda_check.sh on a
# GPU), so that both time the same run: batch 16, SSD augmentation, no evaluation, a log line
# every step.
#
# usage (sourced): speed_config DATA_DIR RUN_DIR PREFETCH_BATCHES [DETECTOR_JSON] > CONFIG.json
#   DATA_DIR: a `mixdet synth` set (DATA_DIR/train, DATA_DIR/annotations/instances_train.json)
#   DETECTOR_JSON: default configs/detectors/ssdlite320_mixnet_s_shapes.json
speed_config() {
  local root detector
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  detector=$(realpath "${4:-$root/configs/detectors/ssdlite320_mixnet_s_shapes.json}")
  cat <<JSON
{"detector": "$detector",
 "train": {"images": "$1/train", "annotations": "$1/annotations/instances_train.json"},
 "val": null, "output_dir": "$2", "batch_size": 16, "epochs": 12, "lr": 0.04, "min_lr": 0.0,
 "warmup_steps": 300, "warmup_factor": 0.001,
 "optimizer": {"kind": "sgd", "momentum": 0.9, "weight_decay": 4e-05},
 "augment": {"photometric": true, "zoom_out": true, "iou_crop": true, "hflip": true},
 "eval_every_epochs": 0, "eval_score_threshold": 0.01, "checkpoint_every_steps": 1000,
 "log_every_steps": 1, "seed": 0, "prefetch_batches": $3}
JSON
}
