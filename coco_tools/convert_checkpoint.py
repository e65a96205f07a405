"""Convert a PyTorch checkpoint (timm / torchvision state dict) to safetensors for mixdet.

mixdet reads .pth files directly; safetensors loads faster (memory-mapped) and needs no pickle.
Key names are kept unchanged, so the strict loader still checks every key and shape.

Usage: python coco_tools/convert_checkpoint.py IN.pth OUT.safetensors
       (e.g. torchvision's ssdlite320_mobilenet_v3_large_coco-a79551df.pth, or timm's mixnet_s)
"""

import sys

import torch
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    obj = torch.load(src, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    tensors = {k: v.contiguous() for k, v in obj.items() if isinstance(v, torch.Tensor)}
    skipped = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    save_file(tensors, dst)
    print(f"{dst}: {len(tensors)} tensors" + (f" (skipped non-tensors: {skipped})" if skipped else ""))


if __name__ == "__main__":
    main()
