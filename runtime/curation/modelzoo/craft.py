"""CRAFT text detection (Baek et al., CVPR 2019) as clovaai/CRAFT-pytorch builds and post-processes it.

Network (craft.py, basenet/vgg16_bn.py): VGG16-BN cut into slices after conv2_2, conv3_2, conv4_3 and
conv5_2 (the BatchNorm of each, before its ReLU), slice5 = MaxPool(3, 1, 1), Conv(512, 1024, 3, dilation 6),
Conv(1024, 1024, 1); a U-Net of four double_conv blocks (1x1 conv-BN-ReLU, 3x3 conv-BN-ReLU) upsampling
bilinearly to each skip; conv_cls to two maps at half the input resolution: the region score (character
centres) and the affinity score (links between characters). Module names and slice indices are the
original's, so craft_mlt_25k.pth loads (its DataParallel "module." prefix is stripped).

Input (imgproc.py): the long side scaled to min(mag_ratio x long side, canvas_size), padded to multiples
of 32 with zeros, ImageNet mean/std normalised on the 0-255 scale.

Boxes (craft_utils.getDetBoxes_core): region >= low_text or affinity >= link_threshold, 4-connected
components of at least 10 cells whose peak region score reaches text_threshold, dilated by
sqrt(size x min(w, h) / (w x h)) x 2, enclosed in a minimum-area rectangle. The text area here is the
union of those rectangles over the image's part of the heatmap: the fraction of the frame covered by text.

`CraftConfig.widths` scales every width (1.0 is CRAFT); the smoke stand-in and tests use narrow ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.curation.modelzoo.weights import Located, load_state_dict

WEIGHT_FILES = ("craft_mlt_25k.pth", "model.safetensors")
CRAFT_FOLDER = f"CRAFT weights ({' or '.join(WEIGHT_FILES)}) and, for non-standard widths, config.json"
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")  # torchvision cfg "D"
SLICE_ENDS = (12, 19, 29, 39)  # vgg16_bn.features indices ending slices 1-4
TEXT_THRESHOLD, LINK_THRESHOLD, LOW_TEXT = 0.7, 0.4, 0.4  # CRAFT-pytorch test.py defaults
CANVAS_SIZE, MAG_RATIO = 1280, 1.0  # long side cap; no magnification (curation reads a 512 px decode)
MIN_COMPONENT = 10  # cells


@dataclass(frozen=True)
class CraftConfig:
    """Width multiplier of every layer (1.0: the released CRAFT)."""

    widths: float = 1.0

    def width(self, channels: int) -> int:
        return max(2, round(channels * self.widths))


def build_craft(config: CraftConfig):
    import torch
    import torch.nn.functional as F
    from torch import nn

    w = config.width

    def vgg16_bn_features() -> list:
        layers, channels = [], 3
        for item in VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, w(item), kernel_size=3, padding=1), nn.BatchNorm2d(w(item)), nn.ReLU(inplace=True)]
                channels = w(item)
        return layers

    class DoubleConv(nn.Module):
        """craft.py's double_conv: its layers sit in `.conv`, so the released keys are upconv<k>.conv.<i>."""

        def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(in_ch + mid_ch, mid_ch, kernel_size=1), nn.BatchNorm2d(mid_ch), nn.ReLU(inplace=True),
                nn.Conv2d(mid_ch, out_ch, kernel_size=3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            )

        def forward(self, x):
            return self.conv(x)

    double_conv = DoubleConv

    class BaseNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            features = vgg16_bn_features()
            for number, (start, stop) in enumerate(zip((0, *SLICE_ENDS[:-1]), SLICE_ENDS), start=1):
                sliced = nn.Sequential()
                for index in range(start, stop):
                    sliced.add_module(str(index), features[index])
                setattr(self, f"slice{number}", sliced)
            self.slice5 = nn.Sequential(
                nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                nn.Conv2d(w(512), w(1024), kernel_size=3, padding=6, dilation=6),
                nn.Conv2d(w(1024), w(1024), kernel_size=1),
            )

        def forward(self, x):
            relu2_2 = self.slice1(x)
            relu3_2 = self.slice2(relu2_2)
            relu4_3 = self.slice3(relu3_2)
            relu5_3 = self.slice4(relu4_3)
            return self.slice5(relu5_3), relu5_3, relu4_3, relu3_2, relu2_2

    class CRAFT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.basenet = BaseNet()
            self.upconv1 = double_conv(w(1024), w(512), w(256))
            self.upconv2 = double_conv(w(512), w(256), w(128))
            self.upconv3 = double_conv(w(256), w(128), w(64))
            self.upconv4 = double_conv(w(128), w(64), w(32))
            self.conv_cls = nn.Sequential(
                nn.Conv2d(w(32), w(32), kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(w(32), w(32), kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(w(32), w(16), kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(w(16), w(16), kernel_size=1), nn.ReLU(inplace=True),
                nn.Conv2d(w(16), 2, kernel_size=1),
            )

        def forward(self, x):
            sources = self.basenet(x)
            y = self.upconv1(torch.cat([sources[0], sources[1]], dim=1))
            for skip, block in zip(sources[2:], (self.upconv2, self.upconv3, self.upconv4)):
                y = F.interpolate(y, size=skip.shape[2:], mode="bilinear", align_corners=False)
                y = block(torch.cat([y, skip], dim=1))
            return self.conv_cls(y).permute(0, 2, 3, 1)  # [B, H/2, W/2, (region, affinity)]

    return CRAFT()


def load_craft(located: Located):
    import torch

    if located.stand_in:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(located.seed)
            return build_craft(CraftConfig(widths=0.125)).eval()
    config_file = located.path / "config.json"
    config = CraftConfig(**json.loads(config_file.read_text())) if config_file.is_file() else CraftConfig()
    model = build_craft(config)
    state = load_state_dict(located.file(*WEIGHT_FILES))
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=True)
    return model.eval()


def save_craft(model, config: CraftConfig, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(asdict(config)))


def prepare(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """CRAFT's input: resized, zero-padded to multiples of 32, normalised [H, W, 3]; and the image's
    (height, width) inside the canvas."""
    height, width = image.shape[:2]
    target = min(MAG_RATIO * max(height, width), CANVAS_SIZE)
    ratio = target / max(height, width)
    h, w = int(height * ratio), int(width * ratio)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((h + (-h) % 32, w + (-w) % 32, 3), dtype=np.float32)
    canvas[:h, :w] = resized
    canvas -= np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
    canvas /= np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
    return canvas, (h, w)


def text_mask(region: np.ndarray, affinity: np.ndarray) -> np.ndarray:
    """uint8 mask (1 = text) of the union of CRAFT's detected boxes on the heatmap grid."""
    _, text_score = cv2.threshold(region, LOW_TEXT, 1, 0)
    _, link_score = cv2.threshold(affinity, LINK_THRESHOLD, 1, 0)
    combined = np.clip(text_score + link_score, 0, 1).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(combined, connectivity=4)
    mask = np.zeros(region.shape, dtype=np.uint8)
    height, width = region.shape
    for k in range(1, count):
        size = stats[k, cv2.CC_STAT_AREA]
        if size < MIN_COMPONENT or region[labels == k].max() < TEXT_THRESHOLD:
            continue
        segment = np.zeros(region.shape, dtype=np.uint8)
        segment[labels == k] = 255
        segment[(link_score == 1) & (text_score == 0)] = 0  # links join characters but are not text
        x, y, w, h = (stats[k, c] for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        grow = int(math.sqrt(size * min(w, h) / (w * h)) * 2)
        sx, ex, sy, ey = max(0, x - grow), min(width, x + w + grow + 1), max(0, y - grow), min(height, y + h + grow + 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (1 + grow, 1 + grow))
        segment[sy:ey, sx:ex] = cv2.dilate(segment[sy:ey, sx:ex], kernel)
        points = np.roll(np.array(np.where(segment != 0)), 1, axis=0).transpose().reshape(-1, 2)
        box = cv2.boxPoints(cv2.minAreaRect(points.astype(np.float32)))
        sides = np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[1] - box[2])
        if abs(1 - max(sides) / (min(sides) + 1e-5)) <= 0.1:  # near-square: CRAFT aligns it to the axes
            (l, t), (r, b) = points.min(axis=0), points.max(axis=0)
            box = np.array([[l, t], [r, t], [r, b], [l, b]], dtype=np.float32)
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    return mask


def text_area_ratio(model, images: list[np.ndarray]) -> list[float]:
    """Fraction of each image covered by detected text boxes."""
    import torch

    ratios = []
    for image in images:  # one at a time: images differ in size, and CRAFT's canvas follows each
        canvas, (h, w) = prepare(image)
        with torch.inference_mode():
            maps = model(torch.from_numpy(canvas).permute(2, 0, 1)[None].to(next(model.parameters()).device))[0]
        maps = maps.float().cpu().numpy()
        mask = text_mask(maps[..., 0], maps[..., 1])
        ratios.append(float(mask[: max(1, h // 2), : max(1, w // 2)].mean()))
    return ratios
