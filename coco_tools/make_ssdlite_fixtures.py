"""Reference outputs of torchvision's ssdlite320_mobilenet_v3_large for mixdet's detection tests.

The model (weights=None, weights_backbone=None: the reduced tail, as the COCO checkpoint) gets the
synthetic state dict of `synthetic.py` (BN statistics included). The input image is synthetic
too and already 320x320, so torchvision's resize is the identity and the Rust test rebuilds the
network input exactly; the resize itself is checked on small separate cases.

Writes tests/fixtures/ssdlite/:
  ssdlite320_mobilenet_v3_large.json         state-dict manifest
  ssdlite320_mobilenet_v3_large.safetensors  bn.<key> (calibrated BatchNorm statistics),
                                             cls_logits, bbox_regression, anchors,
                                             det.boxes/scores/labels (input pixels),
                                             det_orig.boxes (after transform.postprocess to 240x300)
  resize.safetensors                         F.interpolate(bilinear, align_corners=False) cases
  nms.safetensors                            torchvision.ops.batched_nms keep indices on synthetic boxes

Usage: python coco_tools/make_ssdlite_fixtures.py [--out tests/fixtures/ssdlite]
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic import synthetic_array, uniform01  # noqa: E402


def synthetic_image(key, shape):
    """[0, 1] pixels: (v + 1) / 2 in float32."""
    v = synthetic_array(key, shape)
    return ((v + np.float32(1.0)) * np.float32(0.5)).astype(np.float32)


def nms_case(n, num_classes):
    u = uniform01(f"nms.boxes.{n}", n * 4).reshape(n, 4)
    x1, y1 = u[:, 0] * 100.0, u[:, 1] * 100.0
    boxes = np.stack([x1, y1, x1 + 1.0 + u[:, 2] * 60.0, y1 + 1.0 + u[:, 3] * 60.0], 1).astype(np.float32)
    scores = uniform01(f"nms.scores.{n}", n).astype(np.float32)
    classes = np.floor(uniform01(f"nms.classes.{n}", n) * num_classes).astype(np.int64)
    keep = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5)
    return keep.numpy().astype(np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "ssdlite"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    model.eval()
    sd = model.state_dict()
    new_sd, manifest = {}, []
    for k, t in sd.items():
        new_sd[k] = torch.from_numpy(synthetic_array(k, tuple(t.shape))).to(t.dtype)
        manifest.append([k, list(t.shape), str(t.dtype).replace("torch.", "")])
    model.load_state_dict(new_sd, strict=True)

    img = torch.from_numpy(synthetic_image("image.ssdlite", (3, 320, 320)))
    out = {}
    # Calibrate BatchNorm on the input, its mirror image and six more synthetic images: with purely synthetic statistics
    # the activations grow ~1000x through the trunk and float32 rounding alone then differs by
    # ~1e-3 between two correct implementations. The calibrated statistics are stored in the
    # fixture (bn.<key>) and override the synthetic ones on the Rust side.
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.momentum = 1.0
        model.train()
        extra = [torch.from_numpy(synthetic_image(f"image.calibration.{i}", (3, 320, 320))) for i in range(6)]
        calib, _ = model.transform([img, torch.flip(img, dims=[2])] + extra)
        feats = list(model.backbone(calib.tensors).values())
        model.head(feats)
        model.eval()
        # Near-constant channels (dead ReLU6 units, the 1x1 maps seen 8 times) would otherwise
        # divide rounding noise by sqrt(eps): with a floor of 0.05 the boxes of two correct f32
        # implementations still differed by 1.5e-3 px, with 0.25 by 3e-4 px.
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.clamp_(min=0.25)
    for k, t in model.state_dict().items():
        if k.endswith("running_mean") or k.endswith("running_var"):
            out[f"bn.{k}"] = t.numpy().astype(np.float32)
    with torch.no_grad():
        images, _ = model.transform([img])
        assert tuple(images.tensors.shape) == (1, 3, 320, 320)
        feats = list(model.backbone(images.tensors).values())
        head = model.head(feats)
        anchors = model.anchor_generator(images, feats)
        dets = model.postprocess_detections(head, anchors, images.image_sizes)
        orig = model.transform.postprocess([dict(d) for d in dets], images.image_sizes, [(240, 300)])
    out["cls_logits"] = head["cls_logits"].numpy()
    out["bbox_regression"] = head["bbox_regression"].numpy()
    out["anchors"] = anchors[0].numpy()
    out["det.boxes"] = dets[0]["boxes"].numpy()
    out["det.scores"] = dets[0]["scores"].numpy()
    out["det.labels"] = dets[0]["labels"].numpy().astype(np.int64)
    out["det_orig.boxes"] = orig[0]["boxes"].numpy()
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()},
              os.path.join(args.out, "ssdlite320_mobilenet_v3_large.safetensors"))
    n_params = sum(p.numel() for p in model.parameters())
    with open(os.path.join(args.out, "ssdlite320_mobilenet_v3_large.json"), "w") as f:
        json.dump({"model": "ssdlite320_mobilenet_v3_large", "params": n_params,
                   "image": [3, 320, 320], "orig_size": [240, 300], "state_dict": manifest},
                  f, separators=(",", ":"))
    print(f"ssdlite: {len(manifest)} keys, {n_params} params, {len(out['det.scores'])} detections, "
          f"anchors {out['anchors'].shape}")

    resize = {}
    for name, (shape, size) in {"up": ((3, 37, 53), (64, 48)), "down": ((3, 97, 131), (40, 30))}.items():
        src = synthetic_image(f"resize.{name}", shape)
        dst = F.interpolate(torch.from_numpy(src)[None], size=size, mode="bilinear", align_corners=False)[0]
        resize[f"{name}.output"] = dst.numpy()
    save_file(resize, os.path.join(args.out, "resize.safetensors"))

    nms = {f"keep.{n}": nms_case(n, c) for n, c in ((500, 3), (3000, 20))}
    save_file(nms, os.path.join(args.out, "nms.safetensors"))
    print({k: v.shape for k, v in nms.items()})


if __name__ == "__main__":
    main()
