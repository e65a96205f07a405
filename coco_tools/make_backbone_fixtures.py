"""Reference outputs of timm / torchvision backbones for mixdet's parity tests.

For every model, the script builds the reference network, fills its whole state dict with the
deterministic synthetic values of `synthetic.py` (BatchNorm statistics and affine parameters
included, so BN is not the identity), runs it in eval mode on two synthetic inputs (square and
non-square, odd and even sizes) and writes:

  tests/fixtures/backbones/<model>.safetensors   <case>.logits, <case>.features.<i>
  tests/fixtures/backbones/<model>.json          state-dict keys/shapes/dtypes in order,
                                                 feature channels/strides, input shapes

Usage: python coco_tools/make_backbone_fixtures.py [--out tests/fixtures/backbones] [model ...]
"""

import argparse
import json
import os
import sys
from functools import partial

import numpy as np
import torch
import torch.nn as nn
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic import synthetic_array  # noqa: E402

CASES = {"square": (1, 3, 37, 37), "nonsquare": (1, 3, 32, 48)}
MIX_KERNELS = [3, 5, 7, 9]


def timm_model(name):
    import timm
    return timm.create_model(name, pretrained=False)


def timm_mobilenetv2_mixconv():
    """timm's mobilenetv2_100 with every 3x3 depthwise conv replaced by MixConv {3,5,7,9}."""
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.efficientnet import EfficientNet
    arch_def = [
        ['ds_r1_k3_s1_c16'], ['ir_r2_k3_s2_e6_c24'], ['ir_r3_k3_s2_e6_c32'], ['ir_r4_k3_s2_e6_c64'],
        ['ir_r3_k3_s1_e6_c96'], ['ir_r3_k3_s2_e6_c160'], ['ir_r1_k3_s1_e6_c320'],
    ]
    ks = "k" + ".".join(str(k) for k in MIX_KERNELS)
    arch_def = [[s.replace("_k3_", f"_{ks}_") for s in stage] for stage in arch_def]
    return EfficientNet(
        block_args=decode_arch_def(arch_def), num_features=1280, stem_size=32,
        round_chs_fn=partial(round_channels, multiplier=1.0), norm_layer=nn.BatchNorm2d,
        act_layer=nn.ReLU6)


def tv_mobilenet_v3_large(mixconv=False):
    import torchvision
    from timm.layers import MixedConv2d
    m = torchvision.models.mobilenet_v3_large(weights=None)
    if mixconv:
        # Replace each block's depthwise conv (the conv with groups == channels) by a MixConv with
        # the same stride/dilation; its children are keyed .0, .1, ... like timm's MixedConv2d.
        for feat in m.features[1:-1]:
            for cna in feat.block:
                conv = cna[0] if isinstance(cna, nn.Sequential) else None
                if isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels and conv.groups > 1:
                    cna[0] = MixedConv2d(conv.in_channels, conv.out_channels, MIX_KERNELS,
                                         stride=conv.stride[0], dilation=conv.dilation[0],
                                         padding="", depthwise=True)
    return m


MODELS = {
    "mixnet_s": partial(timm_model, "mixnet_s"),
    "mixnet_m": partial(timm_model, "mixnet_m"),
    "mixnet_l": partial(timm_model, "mixnet_l"),
    "mixnet_xl": partial(timm_model, "mixnet_xl"),
    "tf_mixnet_s": partial(timm_model, "tf_mixnet_s"),
    "tf_mixnet_m": partial(timm_model, "tf_mixnet_m"),
    "tf_mixnet_l": partial(timm_model, "tf_mixnet_l"),
    "mobilenetv2_100": partial(timm_model, "mobilenetv2_100"),
    "mobilenetv2_100_mixconv": timm_mobilenetv2_mixconv,
    "mobilenet_v3_large": tv_mobilenet_v3_large,
    "mobilenet_v3_large_mixconv": partial(tv_mobilenet_v3_large, mixconv=True),
}

# torchvision MobileNetV3-Large: the last module of each resolution (strides 2, 4, 8, 16, 32).
TV_MBV3_TAPS = [1, 3, 6, 12, 16]


def forward_with_features(name, model, x):
    """Returns (logits, [feature maps in stride order], [(channels, stride)])."""
    feats = []
    if name.startswith("mobilenet_v3"):
        h = x
        for i, layer in enumerate(model.features):
            h = layer(h)
            if i in TV_MBV3_TAPS:
                feats.append(h)
        logits = model.classifier(torch.flatten(model.avgpool(h), 1))
        info = [(int(f.shape[1]), 2 ** (k + 1)) for k, f in enumerate(feats)]
        return logits, feats, info
    taps = {f["module"]: f for f in model.feature_info}
    h = model.bn1(model.conv_stem(x))
    if "bn1" in taps:
        feats.append(h)
    for i, stage in enumerate(model.blocks):
        h = stage(h)
        if f"blocks.{i}" in taps:
            feats.append(h)
    logits = model.forward_head(model.bn2(model.conv_head(h)))
    info = [(int(f["num_chs"]), int(f["reduction"])) for f in model.feature_info]
    return logits, feats, info


def build(name, out_dir):
    model = MODELS[name]()
    model.eval()
    sd = model.state_dict()
    manifest_keys = []
    new_sd = {}
    for key, t in sd.items():
        arr = synthetic_array(key, tuple(t.shape))
        new_sd[key] = torch.from_numpy(arr).to(t.dtype)
        manifest_keys.append([key, list(t.shape), str(t.dtype).replace("torch.", "")])
    model.load_state_dict(new_sd, strict=True)
    tensors = {}
    info = None
    with torch.no_grad():
        for case, shape in CASES.items():
            x = torch.from_numpy(synthetic_array(f"input.{case}", shape))
            logits, feats, info = forward_with_features(name, model, x)
            tensors[f"{case}.logits"] = logits.numpy().astype(np.float32)
            for i, f in enumerate(feats):
                tensors[f"{case}.features.{i}"] = np.ascontiguousarray(f.numpy().astype(np.float32))
    save_file(tensors, os.path.join(out_dir, f"{name}.safetensors"))
    n_params = sum(p.numel() for p in model.parameters())
    if name == "mixnet_s":
        # A real PyTorch pickle (torch.save of a state dict) for the .pth loader tests: the first
        # 40 tensors only, so that it stays small and the loader must report the missing keys.
        partial_sd = {k: new_sd[k] for k in list(new_sd)[:40]}
        torch.save(partial_sd, os.path.join(out_dir, "mixnet_s_first40.pth"))
    manifest = {
        "model": name,
        "params": n_params,
        "cases": {c: list(s) for c, s in CASES.items()},
        "features": [{"channels": c, "stride": s} for c, s in info],
        "state_dict": manifest_keys,
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(manifest, f, separators=(",", ":"))
    scale = max(float(np.abs(v).max()) for v in tensors.values())
    print(f"{name}: {len(manifest_keys)} keys, {n_params} params, features {info}, max |out| {scale:.3g}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "backbones"))
    ap.add_argument("models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    for name in args.models:
        build(name, args.out)


if __name__ == "__main__":
    main()
