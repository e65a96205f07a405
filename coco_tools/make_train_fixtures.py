"""torchvision's SSD matching and loss for fixed random inputs: the reference for
crates/train/tests/loss_parity.rs. Writes tests/fixtures/train/ssd_loss.json.

Run with the project's venv (torch, torchvision):
    /work/pyenv/venv/bin/python coco_tools/make_train_fixtures.py
"""

import json
import types
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.ssd import SSD
from torchvision.ops import boxes as box_ops

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "train" / "ssd_loss.json"


def main() -> None:
    rng = np.random.default_rng(20240606)
    num_anchors, num_classes, size = 48, 4, 64.0
    centres = rng.uniform(0, size, (num_anchors, 2))
    wh = rng.uniform(6, 40, (num_anchors, 2))
    anchors = np.concatenate([centres - wh / 2, centres + wh / 2], 1).astype(np.float32)
    # Image 0: three boxes, two of them near anchors; image 1: no boxes (contributes no negatives).
    gt0 = np.array([anchors[3] + [1, -1, 2, 0], anchors[10] + [0, 0, -3, 2], [5, 5, 12, 9]], dtype=np.float32)
    targets = [
        {"boxes": torch.from_numpy(gt0), "labels": torch.tensor([1, 3, 2])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},
    ]
    anchors_t = torch.from_numpy(anchors)
    cls_logits = torch.from_numpy(rng.normal(0, 2, (2, num_anchors, num_classes)).astype(np.float32)).requires_grad_()
    bbox_reg = torch.from_numpy(rng.normal(0, 1.5, (2, num_anchors, 4)).astype(np.float32)).requires_grad_()

    matcher = det_utils.SSDMatcher(0.5)
    matched = []
    for t in targets:
        if t["boxes"].numel() == 0:
            matched.append(torch.full((num_anchors,), -1, dtype=torch.int64))
            continue
        matched.append(matcher(box_ops.box_iou(t["boxes"], anchors_t)))
    fake = types.SimpleNamespace(box_coder=det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    losses = SSD.compute_loss(fake, targets, {"cls_logits": cls_logits, "bbox_regression": bbox_reg},
                              [anchors_t, anchors_t], matched)
    total = losses["bbox_regression"] + losses["classification"]
    total.backward()
    fixture = {
        "anchors": anchors.tolist(),
        "boxes": [gt0.tolist(), []],
        "labels": [[1, 3, 2], []],
        "num_classes": num_classes,
        "cls_logits": cls_logits.detach().numpy().tolist(),
        "bbox_regression": bbox_reg.detach().numpy().tolist(),
        "matched_idxs": [m.tolist() for m in matched],
        "classification": losses["classification"].item(),
        "regression": losses["bbox_regression"].item(),
        "grad_cls_logits": cls_logits.grad.numpy().tolist(),
        "grad_bbox_regression": bbox_reg.grad.numpy().tolist(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture))
    print(f"wrote {OUT}: classification {fixture['classification']:.6f} regression {fixture['regression']:.6f}")


if __name__ == "__main__":
    main()
