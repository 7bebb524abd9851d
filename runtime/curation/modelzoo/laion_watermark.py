"""LAION's watermark detector (LAION-AI/LAION-5B-WatermarkDetection, models/watermark_model_v1.pt) without timm.

The released file is the state dict of timm's `efficientnet_b3a` (timm >= 0.9 names it efficientnet_b3)
whose `classifier` was replaced by an MLP (example_use.py):

    Linear(1536, 625), ReLU, Dropout(0.3), Linear(625, 256), ReLU, Linear(256, 2)   -> classifier.0/.3/.5

EfficientNet-B3 as timm builds it (timm/models/efficientnet.py `_gen_efficientnet`, channel multiplier 1.2,
depth multiplier 1.4): conv_stem 3x3/2 to 40 + bn1 (SiLU); seven stages `blocks.<s>.<b>` of a depthwise-
separable block (stage 0: conv_dw, bn1, se, conv_pw, bn2) or inverted residuals (conv_pw expand x6, bn1,
conv_dw, bn2, se, conv_pwl, bn3), squeeze-excite to a quarter of the block's input width, a skip when
the stride is 1 and the width is unchanged; conv_head 1x1 to 1536 + bn2 (SiLU); global average pool.
Module names are timm's, so the file loads strictly; the key layout was checked against timm 1.0.31.

Input (example_use.py): resized to 256x256, ImageNet mean/std. Output: softmax; index 0 is "watermark".
"""

from __future__ import annotations

from runtime.curation.modelzoo.weights import Located, load_state_dict

WEIGHT_FILES = ("watermark_model_v1.pt", "watermark_model_v1.safetensors")
WATERMARK_FOLDER = "LAION's watermark_model_v1.pt (LAION-AI/LAION-5B-WatermarkDetection, models/)"
INPUT_SIDE = 256
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# (blocks, output width, kernel, stride, expansion) per stage: EfficientNet-B0's arch_def scaled to B3.
B3_STAGES = ((2, 24, 3, 1, 1), (3, 32, 3, 2, 6), (3, 48, 5, 2, 6), (5, 96, 3, 2, 6), (5, 136, 5, 1, 6),
             (6, 232, 5, 2, 6), (2, 384, 3, 1, 6))
B3_STEM, B3_FEATURES = 40, 1536
SE_RATIO = 0.25  # of the block's input width
HEAD = (625, 256)  # LAION's MLP widths


def build_watermark_model(stages=B3_STAGES, stem: int = B3_STEM, features: int = B3_FEATURES, head=HEAD):
    """The released architecture; smaller `stages`/`stem`/`features`/`head` give a tiny one for tests."""
    from torch import nn

    class BatchNormAct2d(nn.BatchNorm2d):
        """timm's BatchNormAct2d: BatchNorm2d's parameters at the module itself, then SiLU (or nothing)."""

        def __init__(self, channels: int, act: bool) -> None:
            super().__init__(channels)
            self.act = nn.SiLU(inplace=True) if act else nn.Identity()

        def forward(self, x):
            return self.act(super().forward(x))

    bn = BatchNormAct2d

    class SqueezeExcite(nn.Module):
        def __init__(self, channels: int, reduced: int) -> None:
            super().__init__()
            self.conv_reduce = nn.Conv2d(channels, reduced, 1)
            self.conv_expand = nn.Conv2d(reduced, channels, 1)
            self.act1 = nn.SiLU(inplace=True)

        def forward(self, x):
            scale = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
            return x * scale.sigmoid()

    class Block(nn.Module):
        """DepthwiseSeparableConv (expansion 1) or InvertedResidual, with timm's attribute names."""

        def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
            super().__init__()
            mid = cin * expansion
            self.expand = expansion != 1
            self.skip = stride == 1 and cin == cout
            if self.expand:
                self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
                self.bn1 = bn(mid, act=True)
            dw_norm = "bn2" if self.expand else "bn1"
            self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
            setattr(self, dw_norm, bn(mid, act=True))
            self.se = SqueezeExcite(mid, max(1, round(cin * SE_RATIO)))
            project, project_norm = ("conv_pwl", "bn3") if self.expand else ("conv_pw", "bn2")
            setattr(self, project, nn.Conv2d(mid, cout, 1, bias=False))
            setattr(self, project_norm, bn(cout, act=False))

        def forward(self, x):
            if self.expand:
                y = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
                y = self.bn3(self.conv_pwl(self.se(y)))
            else:
                y = self.bn2(self.conv_pw(self.se(self.bn1(self.conv_dw(x)))))
            return x + y if self.skip else y

    class EfficientNetWatermark(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_stem = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
            self.bn1 = bn(stem, act=True)
            blocks, cin = [], stem
            for depth, cout, kernel, stride, expansion in stages:
                stage = []
                for index in range(depth):
                    stage.append(Block(cin, cout, kernel, stride if index == 0 else 1, expansion))
                    cin = cout
                blocks.append(nn.Sequential(*stage))
            self.blocks = nn.Sequential(*blocks)
            self.conv_head = nn.Conv2d(cin, features, 1, bias=False)
            self.bn2 = bn(features, act=True)
            self.classifier = nn.Sequential(
                nn.Linear(features, head[0]), nn.ReLU(), nn.Dropout(p=0.3),
                nn.Linear(head[0], head[1]), nn.ReLU(), nn.Linear(head[1], 2),
            )

        def forward(self, x):
            x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
            return self.classifier(x.mean((2, 3)))

    return EfficientNetWatermark()


def load_watermark_model(located: Located, **tiny):
    """The released model from watermark_model_v1.pt, strictly; `tiny` passes a smaller architecture."""
    model = build_watermark_model(**tiny)
    model.load_state_dict(load_state_dict(located.file(*WEIGHT_FILES)), strict=True)
    return model.eval()


def watermark_probabilities(model, images) -> list[float]:
    """P(watermark) per RGB uint8 image, preprocessed as example_use.py does."""
    import cv2
    import numpy as np
    import torch

    batch = np.stack([cv2.resize(image, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_AREA) for image in images])
    pixels = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    parameter = next(model.parameters())
    with torch.inference_mode():
        probabilities = torch.softmax(model(pixels.to(parameter.device, parameter.dtype)).float(), dim=1)[:, 0]
    return probabilities.cpu().tolist()
