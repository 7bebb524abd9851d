"""RAFT optical flow (Teed & Deng, ECCV 2020, "RAFT: Recurrent All-Pairs Field Transforms") with the module
names of torchvision's port (torchvision/models/optical_flow/raft.py, v0.28), so its released checkpoints
(raft_small_C_T_V2-01064c6d.pth, raft_large_C_T_SKHT_V2-ff5fadd5.pth, ...) load strictly without torchvision,
whose wheels need a matching CUDA/CPU torch build.

    feature encoder (shared by both frames) and context encoder: a 7x7 stride-2 conv and three stages of
    two residual (large) or bottleneck (small) blocks, downsampling 8x; a 1x1 conv to the feature width
    correlation pyramid: all-pairs dot products / sqrt(C), average-pooled num_levels - 1 times, indexed
    around the current estimate within `radius`
    update block: motion encoder (corr + flow convs), a ConvGRU (two separable GRUs for large), a flow head
    flow upsampled 8x: learned convex combination (large, mask predictor) or bilinear (small)

Inputs are RGB in [-1, 1] (torchvision's OpticalFlow preset), height and width multiples of 8. Each
Conv2dNormActivation of torchvision is a Sequential (conv, norm, ReLU) here too: keys `<name>.0.weight`,
`<name>.1.*` for a batch norm (instance norm has no parameters), bias on the conv only without a norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.curation.modelzoo.weights import Located, load_state_dict


@dataclass(frozen=True)
class RaftConfig:
    """One of torchvision's two RAFT variants (raft_large / raft_small arguments to `_raft`)."""

    feature_layers: tuple[int, ...]
    context_layers: tuple[int, ...]
    bottleneck: bool  # BottleneckBlock (small) or ResidualBlock (large)
    context_norm: str | None  # "batch" (large) or None (small); the feature encoder uses instance norm
    corr_levels: int
    corr_radius: int
    motion_corr_layers: tuple[int, ...]
    motion_flow_layers: tuple[int, int]
    motion_out: int
    hidden: int
    gru_kernels: tuple[tuple[int, int], ...]
    gru_paddings: tuple[tuple[int, int], ...]
    flow_head_hidden: int
    mask_predictor: bool


RAFT_VARIANTS = {
    "raft_large": RaftConfig((64, 64, 96, 128, 256), (64, 64, 96, 128, 256), False, "batch", 4, 4, (256, 192),
                             (128, 64), 128, 128, ((1, 5), (5, 1)), ((0, 2), (2, 0)), 256, True),
    "raft_small": RaftConfig((32, 32, 64, 96, 128), (32, 32, 64, 96, 160), True, None, 4, 3, (96,), (64, 32), 82,
                             96, ((3, 3),), ((1, 1),), 128, False),
}
WEIGHT_FILES = {
    "raft_large": ("raft_large_C_T_SKHT_V2-ff5fadd5.pth", "raft_large_C_T_V2-1bb1363a.pth", "raft_large.pth",
                   "raft_large.safetensors"),
    "raft_small": ("raft_small_C_T_V2-01064c6d.pth", "raft_small.pth", "raft_small.safetensors"),
}
RAFT_FOLDER = "torchvision's RAFT weights (raft_large_*.pth or raft_small_*.pth, also as raft_<size>.safetensors)"
FLOW_UPDATES = 12  # torchvision's default num_flow_updates


def build_raft(config: RaftConfig):
    import torch
    import torch.nn.functional as F
    from torch import nn

    def conv_norm_act(cin, cout, kernel, stride=1, norm=None, act=True):
        """torchvision.ops.Conv2dNormActivation as RAFT builds it: conv with bias, norm, ReLU."""
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2)]  # RAFT passes bias=True everywhere
        if norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        elif norm == "instance":
            layers.append(nn.InstanceNorm2d(cout))
        if act:
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    class Block(nn.Module):
        """ResidualBlock (two 3x3) or BottleneckBlock (1x1, 3x3, 1x1 at a quarter width), extra ReLU."""

        def __init__(self, cin, cout, norm, stride):
            super().__init__()
            if config.bottleneck:
                self.convnormrelu1 = conv_norm_act(cin, cout // 4, 1, norm=norm)
                self.convnormrelu2 = conv_norm_act(cout // 4, cout // 4, 3, stride, norm)
                self.convnormrelu3 = conv_norm_act(cout // 4, cout, 1, norm=norm)
            else:
                self.convnormrelu1 = conv_norm_act(cin, cout, 3, stride, norm)
                self.convnormrelu2 = conv_norm_act(cout, cout, 3, norm=norm)
            self.downsample = nn.Identity() if stride == 1 else conv_norm_act(cin, cout, 1, stride, norm, act=False)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.convnormrelu2(self.convnormrelu1(x))
            if config.bottleneck:
                y = self.convnormrelu3(y)
            return self.relu(self.downsample(x) + y)

    class FeatureEncoder(nn.Module):
        def __init__(self, layers, norm):
            super().__init__()
            self.convnormrelu = conv_norm_act(3, layers[0], 7, 2, norm)
            for number, (cin, cout, stride) in enumerate(zip(layers[:3], layers[1:4], (1, 2, 2)), start=1):
                setattr(self, f"layer{number}", nn.Sequential(Block(cin, cout, norm, stride), Block(cout, cout, norm, 1)))
            self.conv = nn.Conv2d(layers[3], layers[4], kernel_size=1)

        def forward(self, x):
            return self.conv(self.layer3(self.layer2(self.layer1(self.convnormrelu(x)))))

    class MotionEncoder(nn.Module):
        def __init__(self, corr_channels):
            super().__init__()
            corr, flow = config.motion_corr_layers, config.motion_flow_layers
            self.convcorr1 = conv_norm_act(corr_channels, corr[0], 1)
            self.convcorr2 = conv_norm_act(corr[0], corr[1], 3) if len(corr) == 2 else nn.Identity()
            self.convflow1 = conv_norm_act(2, flow[0], 7)
            self.convflow2 = conv_norm_act(flow[0], flow[1], 3)
            self.conv = conv_norm_act(corr[-1] + flow[-1], config.motion_out - 2, 3)

        def forward(self, flow, corr):
            corr = self.convcorr2(self.convcorr1(corr))
            moved = self.convflow2(self.convflow1(flow))
            return torch.cat([self.conv(torch.cat([corr, moved], dim=1)), flow], dim=1)

    class ConvGRU(nn.Module):
        def __init__(self, inputs, kernel, padding):
            super().__init__()
            for gate in ("convz", "convr", "convq"):
                setattr(self, gate, nn.Conv2d(config.hidden + inputs, config.hidden, kernel, padding=padding))

        def forward(self, h, x):
            hx = torch.cat([h, x], dim=1)
            z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
            q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
            return (1 - z) * h + z * q

    class RecurrentBlock(nn.Module):
        def __init__(self, inputs):
            super().__init__()
            for number, (kernel, padding) in enumerate(zip(config.gru_kernels, config.gru_paddings), start=1):
                setattr(self, f"convgru{number}", ConvGRU(inputs, kernel, padding))

        def forward(self, h, x):
            for number in range(1, len(config.gru_kernels) + 1):
                h = getattr(self, f"convgru{number}")(h, x)
            return h

    class FlowHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(config.hidden, config.flow_head_hidden, 3, padding=1)
            self.conv2 = nn.Conv2d(config.flow_head_hidden, 2, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.conv2(self.relu(self.conv1(x)))

    class UpdateBlock(nn.Module):
        def __init__(self, corr_channels):
            super().__init__()
            self.motion_encoder = MotionEncoder(corr_channels)
            context = config.context_layers[-1] - config.hidden
            self.recurrent_block = RecurrentBlock(config.motion_out + context)
            self.flow_head = FlowHead()

        def forward(self, hidden, context, corr, flow):
            hidden = self.recurrent_block(hidden, torch.cat([context, self.motion_encoder(flow, corr)], dim=1))
            return hidden, self.flow_head(hidden)

    class MaskPredictor(nn.Module):
        def __init__(self):
            super().__init__()
            self.convrelu = conv_norm_act(config.hidden, 256, 3)
            self.conv = nn.Conv2d(256, 8 * 8 * 9, 1)

        def forward(self, x):
            return 0.25 * self.conv(self.convrelu(x))  # torchvision scales the mask logits by 0.25

    def grid(batch, h, w, device):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return torch.stack([xs, ys]).float()[None].repeat(batch, 1, 1, 1)

    def sample(volume, coords):
        """grid_sample at absolute pixel coordinates (torchvision optical_flow/_utils.grid_sample)."""
        h, w = volume.shape[-2:]
        x, y = coords.split([1, 1], dim=-1)
        x = 2 * x / (w - 1) - 1
        if h > 1:
            y = 2 * y / (h - 1) - 1
        return F.grid_sample(volume, torch.cat([x, y], dim=-1), mode="bilinear", align_corners=True)

    class RAFT(nn.Module):
        def __init__(self):
            super().__init__()
            self.feature_encoder = FeatureEncoder(config.feature_layers, "instance")
            self.context_encoder = FeatureEncoder(config.context_layers, config.context_norm)
            corr_channels = config.corr_levels * (2 * config.corr_radius + 1) ** 2
            self.update_block = UpdateBlock(corr_channels)
            self.mask_predictor = MaskPredictor() if config.mask_predictor else None

        def forward(self, image1, image2, num_flow_updates: int = FLOW_UPDATES):
            """Final flow [B, 2, H, W] in pixels from image1 to image2 (RGB in [-1, 1], H and W multiples of 8)."""
            batch, _, h, w = image1.shape
            if h % 8 or w % 8:
                raise ValueError(f"RAFT needs height and width divisible by 8, got {h}x{w}")
            fmap1, fmap2 = self.feature_encoder(torch.cat([image1, image2])).chunk(2)
            channels, fh, fw = fmap1.shape[1:]
            corr = torch.matmul(fmap1.flatten(2).transpose(1, 2), fmap2.flatten(2)) / torch.sqrt(torch.tensor(float(channels)))
            pyramid = [corr.reshape(batch * fh * fw, 1, fh, fw)]
            for _ in range(config.corr_levels - 1):
                pyramid.append(F.avg_pool2d(pyramid[-1], kernel_size=2, stride=2))
            hidden, context = self.context_encoder(image1).split([config.hidden, config.context_layers[-1] - config.hidden], dim=1)
            hidden, context = torch.tanh(hidden), F.relu(context)
            coords0 = grid(batch, fh, fw, image1.device)
            coords1 = coords0.clone()
            side = 2 * config.corr_radius + 1
            offsets = torch.linspace(-config.corr_radius, config.corr_radius, side, device=image1.device)
            delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1).view(1, side, side, 2)
            for _ in range(num_flow_updates):
                centres = coords1.permute(0, 2, 3, 1).reshape(batch * fh * fw, 1, 1, 2)
                features = []
                for level in pyramid:
                    features.append(sample(level, centres + delta).view(batch, fh, fw, -1))
                    centres = centres / 2
                corr_features = torch.cat(features, dim=-1).permute(0, 3, 1, 2).contiguous()
                hidden, delta_flow = self.update_block(hidden, context, corr_features, coords1 - coords0)
                coords1 = coords1 + delta_flow
            return upsample(coords1 - coords0, None if self.mask_predictor is None else self.mask_predictor(hidden))

    def upsample(flow, mask, factor=8):
        """torchvision optical_flow/_utils.upsample_flow: bilinear, or the convex combination of a 3x3 window."""
        batch, channels, h, w = flow.shape
        if mask is None:
            return factor * F.interpolate(flow, size=(h * factor, w * factor), mode="bilinear", align_corners=True)
        mask = torch.softmax(mask.view(batch, 1, 9, factor, factor, h, w), dim=2)
        window = F.unfold(factor * flow, kernel_size=3, padding=1).view(batch, channels, 9, 1, 1, h, w)
        up = torch.sum(mask * window, dim=2)
        return up.permute(0, 1, 4, 2, 5, 3).reshape(batch, channels, h * factor, w * factor)

    return RAFT()


def folder_variant(path: Path) -> str:
    """raft_large or raft_small: the one whose weights file the folder holds."""
    found = [name for name, files in WEIGHT_FILES.items() if any((path / f).exists() for f in files)]
    if len(found) != 1:
        raise ValueError(f"{path}: expected the weights of exactly one of raft_large, raft_small; found {found or 'none'}")
    return found[0]


def load_raft(located: Located):
    """torchvision's RAFT from its released state dict, loaded strictly."""
    variant = folder_variant(located.path)
    model = build_raft(RAFT_VARIANTS[variant])
    model.load_state_dict(load_state_dict(located.file(*WEIGHT_FILES[variant])), strict=True)
    return model.eval()
