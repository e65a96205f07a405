"""PyTorch training throughput of the same SSDLite architecture as a mixdet detector config:
torchvision's SSDLite head, extra layers, anchors, matcher and loss on a timm `features_only`
MixNet trunk (C4, and C3 when the config has `c3_level`, tapped where mixdet taps them: the
expansion output of the first block of the last two stride-2 stages, at strides 16 and 8), or torchvision's
ssdlite320_mobilenet_v3_large.
Random images and boxes of the detector's input size; `torch.set_num_threads(N)`; SGD momentum;
prints the median images/s over the timed steps. `--device cuda` trains on the GPU (each timed
step ends with `torch.cuda.synchronize()`).

    /work/pyenv/venv/bin/python coco_tools/peers/train_reference.py \
        --detector crates/detect/configs/ssdlite320_mixnet_s_shapes.json --batch 16 --steps 10 --threads 2
"""

import argparse
import json
import statistics
import time
from functools import partial

import torch
from torch import nn


def mixnet_ssdlite(cfg):
    import timm
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead, _extra_block, _normal_init

    class Trunk(nn.Module):
        # timm's features_only trunk; mixdet taps C4 inside the last stride-32 stage's first block
        # (its expansion output) and C5 at the end, like torchvision's MobileNetV3 SSDLite.
        def __init__(self):
            super().__init__()
            self.body = timm.create_model(cfg["backbone"], pretrained=False, features_only=True, out_indices=(3, 4))
            chs = self.body.feature_info.channels()
            self.c4_block = self.body.blocks[5][0]
            self.c4_channels = self.c4_block.conv_pw.out_channels
            norm = partial(nn.BatchNorm2d, eps=cfg["bn_eps"], momentum=0.03)
            extras, prev = [], chs[-1]
            for out in cfg["extra_channels"]:
                extras.append(_extra_block(prev, out, norm))
                prev = out
            self.extra = nn.ModuleList(extras)
            _normal_init(self.extra)
            self.taps = {}
            self.c4_block.bn1.register_forward_hook(lambda m, i, o: self.taps.__setitem__("c4", o))
            # `c3_level`: mixdet taps C3 the same way one stride-2 stage earlier (blocks[3] in the
            # MixNet S/M/L layouts), the expansion output of its first block, at stride 8.
            self.c3_channels = []
            if cfg.get("c3_level"):
                c3_block = self.body.blocks[3][0]
                self.c3_channels = [c3_block.bn1.num_features]
                c3_block.bn1.register_forward_hook(lambda m, i, o: self.taps.__setitem__("c3", o))

        def out_channels(self):
            return self.c3_channels + [self.c4_channels, self.body.feature_info.channels()[-1]] + cfg["extra_channels"]

        def forward(self, x):
            feats = self.body(x)
            out = ([self.taps["c3"]] if self.c3_channels else []) + [self.taps["c4"], feats[-1]]
            for e in self.extra:
                out.append(e(out[-1]))
            return {str(i): t for i, t in enumerate(out)}

    trunk = Trunk()
    a = cfg["anchors"]
    anchor_gen = DefaultBoxGenerator(a["aspect_ratios"], min_ratio=a["min_ratio"], max_ratio=a["max_ratio"],
                                     scales=a.get("scales"), clip=a.get("clip", True))
    norm = partial(nn.BatchNorm2d, eps=cfg["bn_eps"], momentum=0.03)
    head = SSDLiteHead(trunk.out_channels(), anchor_gen.num_anchors_per_location(), cfg["num_classes"], norm)
    size = tuple(cfg["input_size"])
    return SSD(trunk, anchor_gen, size, cfg["num_classes"], image_mean=cfg["image_mean"], image_std=cfg["image_std"],
               head=head, score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--detector", default="crates/detect/configs/ssdlite320_mixnet_s_shapes.json")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--boxes", type=int, default=6, help="random boxes per image")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = json.load(open(args.detector))
    if cfg["backbone"] == "mobilenet_v3_large":
        from torchvision.models.detection import ssdlite320_mobilenet_v3_large
        model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=cfg["num_classes"])
    else:
        model = mixnet_ssdlite(cfg)
    model.to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    h, w = cfg["input_size"]
    rates = []
    for step in range(args.warmup + args.steps):
        images = [torch.rand(3, h, w, device=dev) for _ in range(args.batch)]
        targets = []
        for _ in range(args.batch):
            xy = torch.rand(args.boxes, 2) * torch.tensor([w * 0.7, h * 0.7])
            wh = 8 + torch.rand(args.boxes, 2) * torch.tensor([w * 0.3, h * 0.3])
            targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(dev),
                            "labels": torch.randint(1, cfg["num_classes"], (args.boxes,)).to(dev)})
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if step >= args.warmup:
            rates.append(args.batch / dt)
    print(json.dumps({"detector": cfg["name"], "input": [h, w], "batch": args.batch, "threads": args.threads,
                      "device": args.device, "torch": torch.__version__, "median_images_per_s": statistics.median(rates),
                      "rates": [round(r, 2) for r in rates]}))


if __name__ == "__main__":
    main()
