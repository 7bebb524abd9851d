"""LPIPS (Zhang et al., CVPR 2018) with its default AlexNet trunk, as richzhang/PerceptualSimilarity
lpips/lpips.py and lpips/pretrained_networks.py (v0.1) compute it:

    x -> (x - shift) / scale                          ScalingLayer, x in [-1, 1]
    features of AlexNet after each ReLU (5 taps)     slices of torchvision alexnet().features
    unit-normalise each tap over channels, (f0 - f1)^2, a 1x1 conv with one output (lin0..lin4,
    Dropout then Conv2d(C, 1, bias=False)), spatial mean, summed over the taps.

Weights (MODEL_DIR/lpips): the linear layers as released in the lpips package (weights/v0.1/alex.pth,
keys lin<k>.model.1.weight) and the ImageNet AlexNet of torchvision (alexnet-owt-7be5be79.pth, keys
features.<i>.weight/bias); each as .pth or .safetensors.
"""

from __future__ import annotations

from pathlib import Path

from runtime.curation.modelzoo.weights import Located, load_state_dict

LIN_FILES = ("alex.pth", "alex.safetensors")
TRUNK_FILES = ("alexnet-owt-7be5be79.pth", "alexnet.pth", "alexnet.safetensors")
LPIPS_FOLDER = f"the LPIPS linear layers ({' or '.join(LIN_FILES)}) and torchvision's AlexNet ({' or '.join(TRUNK_FILES)})"
TAP_CHANNELS = (64, 192, 384, 256, 256)
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # torchvision alexnet().features indices per tap
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor


def alexnet_features():
    """torchvision's AlexNet `features` (same indices, so its state dict keys load)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def build_lpips():
    import torch
    from torch import nn

    class LPIPS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
            self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])
            self.features = alexnet_features()
            for k, channels in enumerate(TAP_CHANNELS):
                self.add_module(f"lin{k}", nn.Module())
                getattr(self, f"lin{k}").model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

        def taps(self, x):
            x = (x - self.shift) / self.scale
            out = []
            for start, stop in SLICES:
                for index in range(start, stop):
                    x = self.features[index](x)
                out.append(x)
            return out

        def forward(self, in0, in1):
            """Distance per pair, images in [-1, 1] of shape [B, 3, H, W] -> [B]."""
            total = 0
            for k, (f0, f1) in enumerate(zip(self.taps(in0), self.taps(in1))):
                f0 = f0 / (f0.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
                f1 = f1 / (f1.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
                total = total + getattr(self, f"lin{k}").model((f0 - f1) ** 2).mean(dim=(2, 3))
            return total.squeeze(1)

    return LPIPS()


def random_lpips(seed: int):
    """A randomly initialised LPIPS whose linear layers are non-negative, as trained ones are (the lpips
    trainer clamps them), so it is still a distance: 0 for identical images, positive otherwise."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_lpips()
    with torch.no_grad():
        for k in range(len(TAP_CHANNELS)):
            getattr(model, f"lin{k}").model[1].weight.abs_()
    return model.eval()


def load_lpips(located: Located):
    """LPIPS-Alex from the folder, or a randomly initialised one (the stand-in) with the same structure."""
    if located.stand_in:
        return random_lpips(located.seed)
    model = build_lpips()
    trunk = load_state_dict(located.file(*TRUNK_FILES))
    model.features.load_state_dict({k.removeprefix("features."): v for k, v in trunk.items() if k.startswith("features.")})
    lins = load_state_dict(located.file(*LIN_FILES))
    for k in range(len(TAP_CHANNELS)):
        key = f"lin{k}.model.1.weight"
        if key not in lins:
            raise ValueError(f"{located.file(*LIN_FILES)} has no {key}: not the LPIPS v0.1 alex.pth format")
        getattr(model, f"lin{k}").load_state_dict({"model.1.weight": lins[key]})
    return model.eval()


def save_lpips(model, folder: Path) -> None:
    """Write a model in the folder format `load_lpips` reads (safetensors files)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items() if k.startswith("features.")}, str(folder / "alexnet.safetensors"))
    save_file({k: v.contiguous() for k, v in state.items() if k.startswith("lin")}, str(folder / "alex.safetensors"))
