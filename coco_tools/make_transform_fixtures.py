"""timm's evaluation transform on photographs, for mixdet's exact port (crates/backbones/src/transforms.rs).

For each input (the example photos as the PNGs of tests/fixtures/tf_ssd/inputs, so both sides
start from the same pixels, plus synthetic images whose sizes exercise upscaling and the
half-pixel crop offset), runs the transform timm builds for mixnet_s's pretrained config
(`timm.data.create_transform(**resolve_data_config({}, model=...))`: bicubic, 224, crop_pct
0.875) and the same with bilinear interpolation (torchvision's ImageNet preset for its
MobileNetV3: resize 256 bilinear, crop 224) on a few of the inputs. Writes to tests/fixtures/transforms/:

  synth_*_input.png             the synthetic inputs
  astronaut_bicubic.png         one crop, to look at
  manifest.json                 versions, the transforms, and per input/interpolation the 8-bit crop
                                after Resize + CenterCrop (timm's first two steps) as its FNV-1a 64
                                hash and per-channel sums, the first 16 values of the normalised
                                tensor and its sum (float64 of float32s)

Usage: python coco_tools/make_transform_fixtures.py   (pip install torch torchvision timm pillow numpy)
"""

import json
import os

import numpy as np
import PIL
import timm
import torch
import torchvision
from PIL import Image
from timm.data import create_transform, resolve_data_config

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "transforms")
PHOTOS = ["astronaut", "camera", "cat", "coffee", "grace_hopper", "rocket"]
# interpolation -> the inputs it is checked on (bilinear on fewer, to keep the fixtures small)
CASES = {"bicubic": None, "bilinear": ["astronaut", "synth_100x150", "synth_257x256"]}


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def synthetic(h, w, seed):
    """Smooth gradients plus noise: enough texture for the filters' negative lobes to matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), (x + y) % 256], axis=-1)
    noisy = base + rng.normal(0, 3, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))



def inputs():
    for name in PHOTOS:
        yield name, Image.open(os.path.join(ROOT, "tests", "fixtures", "tf_ssd", "inputs", f"{name}.png")).convert("RGB")
    # Upscaling (short side 100 -> 256), a half-pixel crop offset (height 257: (257 - 224) / 2 = 16.5,
    # which Python rounds to 16), a tall image.
    for name, (h, w), seed in [("synth_100x150", (100, 150), 1), ("synth_257x256", (257, 256), 2), ("synth_700x90", (700, 90), 3)]:
        img = synthetic(h, w, seed)
        img.save(os.path.join(OUT, f"{name}_input.png"))
        yield name, img


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {"timm": timm.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "pillow": PIL.__version__, "transforms": {}, "cases": []}
    base = resolve_data_config({}, model=timm.create_model("mixnet_s", pretrained=False))
    for interp, names in CASES.items():
        cfg = {**base, "interpolation": interp}
        transform = create_transform(**cfg)
        manifest["transforms"][interp] = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                                          "steps": [repr(t) for t in transform.transforms]}
        resize_crop = torchvision.transforms.Compose(transform.transforms[:2])
        for name, img in inputs():
            if names is not None and name not in names:
                continue
            crop = np.asarray(resize_crop(img))
            if (name, interp) == ("astronaut", "bicubic"):
                Image.fromarray(crop).save(os.path.join(OUT, f"{name}_{interp}.png"))
            tensor = transform(img).numpy().astype(np.float32)
            manifest["cases"].append({"input": name, "interpolation": interp, "size": list(img.size),
                                      "crop_fnv1a64": f"{fnv1a64(crop.tobytes()):016x}",
                                      "crop_channel_sums": crop.reshape(-1, 3).sum(axis=0).tolist(),
                                      "first": tensor.reshape(-1)[:16].tolist(), "sum": float(tensor.astype(np.float64).sum())})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(manifest['cases'])} cases to {OUT}")


if __name__ == "__main__":
    main()
