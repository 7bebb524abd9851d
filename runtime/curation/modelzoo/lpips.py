"""LPIPS (Zhang et al., CVPR 2018) with an AlexNet or VGG-16 trunk, as richzhang/PerceptualSimilarity
lpips/lpips.py and lpips/pretrained_networks.py (v0.1) compute it:

    x -> (x - shift) / scale                          ScalingLayer, x in [-1, 1]
    features of the trunk after each tapped ReLU (5 taps)   net.slice1..slice5 of torchvision's features
    unit-normalise each tap over channels, (f0 - f1)^2, a 1x1 conv with one output (lin0..lin4,
    Dropout then Conv2d(C, 1, bias=False)), spatial mean, summed over the taps.

Module names are the lpips package's (`scaling_layer.shift`, `net.slice<k>.<i>`, `lin<k>.model.1.weight`),
so a whole `lpips.LPIPS` state dict loads strictly too.

Weights (MODEL_DIR/lpips): the linear layers as released in the lpips package (weights/v0.1/alex.pth or
vgg.pth, keys lin<k>.model.1.weight; the file present picks the trunk) and torchvision's ImageNet trunk
(alexnet-owt-7be5be79.pth or vgg16-397923af.pth, keys features.<i>.weight/bias); each as .pth or
.safetensors. Or one file lpips.pth / lpips.safetensors holding a whole lpips.LPIPS state dict plus the
lin file that names the trunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.curation.modelzoo.weights import Located, load_state_dict


@dataclass(frozen=True)
class Trunk:
    """One LPIPS backbone: its lin file, torchvision checkpoint names, tap widths and slice bounds."""

    name: str
    trunk_files: tuple[str, ...]
    channels: tuple[int, ...]
    slices: tuple[tuple[int, int], ...]  # torchvision `features` indices per tap (lpips pretrained_networks.py)

    @property
    def lin_files(self) -> tuple[str, ...]:
        return (f"{self.name}.pth", f"{self.name}.safetensors")


TRUNKS = {
    "alex": Trunk("alex", ("alexnet-owt-7be5be79.pth", "alexnet.pth", "alexnet.safetensors"),
                  (64, 192, 384, 256, 256), ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))),
    "vgg": Trunk("vgg", ("vgg16-397923af.pth", "vgg16.pth", "vgg16.safetensors"),
                 (64, 128, 256, 512, 512), ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))),
}
LIN_FILES = tuple(name for trunk in TRUNKS.values() for name in trunk.lin_files)
TRUNK_FILES = (*(name for trunk in TRUNKS.values() for name in trunk.trunk_files), "lpips.pth", "lpips.safetensors")
WHOLE_FILES = ("lpips.pth", "lpips.safetensors")
LPIPS_FOLDER = (
    "the LPIPS linear layers (alex.pth or vgg.pth, as the lpips package ships them) and torchvision's trunk "
    "(alexnet-owt-7be5be79.pth or vgg16-397923af.pth), each also as .safetensors"
)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")  # torchvision cfg "D"


def trunk_features(trunk: Trunk) -> list:
    """torchvision's alexnet().features or vgg16().features as a list (same indices, so its keys map)."""
    from torch import nn

    if trunk.name == "alex":
        return [
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        ]
    layers, channels = [], 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return layers


def build_lpips(net: str = "alex"):
    import torch
    from torch import nn

    trunk = TRUNKS[net]

    class ScalingLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
            self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])

    class Slices(nn.Module):
        """lpips.pretrained_networks.alexnet / vgg16: slice<k> holds features[start:stop] under their indices."""

        def __init__(self) -> None:
            super().__init__()
            features = trunk_features(trunk)
            for number, (start, stop) in enumerate(trunk.slices, start=1):
                sliced = nn.Sequential()
                for index in range(start, stop):
                    sliced.add_module(str(index), features[index])
                setattr(self, f"slice{number}", sliced)

        def forward(self, x):
            out = []
            for number in range(1, len(trunk.slices) + 1):
                x = getattr(self, f"slice{number}")(x)
                out.append(x)
            return out

    class LPIPS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net_name = net
            self.scaling_layer = ScalingLayer()
            self.net = Slices()
            for k, channels in enumerate(trunk.channels):
                self.add_module(f"lin{k}", nn.Module())
                getattr(self, f"lin{k}").model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

        def taps(self, x):
            return self.net((x - self.scaling_layer.shift) / self.scaling_layer.scale)

        def forward(self, in0, in1):
            """Distance per pair, images in [-1, 1] of shape [B, 3, H, W] -> [B]."""
            total = 0
            for k, (f0, f1) in enumerate(zip(self.taps(in0), self.taps(in1))):
                f0 = f0 / (f0.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
                f1 = f1 / (f1.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
                total = total + getattr(self, f"lin{k}").model((f0 - f1) ** 2).mean(dim=(2, 3))
            return total.squeeze(1)

    return LPIPS()


def random_lpips(seed: int, net: str = "alex"):
    """A randomly initialised LPIPS whose linear layers are non-negative, as trained ones are (the lpips
    trainer clamps them), so it is still a distance: 0 for identical images, positive otherwise."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_lpips(net)
    with torch.no_grad():
        for k in range(len(TRUNKS[net].channels)):
            getattr(model, f"lin{k}").model[1].weight.abs_()
    return model.eval()


def folder_net(path: Path) -> str:
    """The trunk a folder holds: the one whose lin file (alex.pth / vgg.pth) is there."""
    found = [name for name, trunk in TRUNKS.items() if any((path / f).exists() for f in trunk.lin_files)]
    if len(found) != 1:
        raise ValueError(
            f"{path}: LPIPS folder must hold the lin file of exactly one trunk (alex.pth or vgg.pth), found "
            f"{found or 'none'}; keep the one whose trunk you want"
        )
    return found[0]


def trunk_state(trunk: Trunk, torchvision_state: dict) -> dict:
    """torchvision's `features.<i>.*` keys renamed to the lpips package's `net.slice<k>.<i>.*`."""
    slice_of = {index: number for number, (start, stop) in enumerate(trunk.slices, start=1) for index in range(start, stop)}
    state = {}
    for key, value in torchvision_state.items():
        if not key.startswith("features."):
            continue  # the classifier head of torchvision's checkpoint is not part of LPIPS
        index, rest = key.removeprefix("features.").split(".", 1)
        if int(index) in slice_of:  # layers past the last tap (vgg's final pool) hold no weights anyway
            state[f"net.slice{slice_of[int(index)]}.{index}.{rest}"] = value
    return state


def load_lpips(located: Located):
    """LPIPS from the folder (trunk chosen by its lin file), or a random LPIPS-Alex (the stand-in)."""
    if located.stand_in:
        return random_lpips(located.seed)
    net = folder_net(located.path)
    trunk = TRUNKS[net]
    model = build_lpips(net)
    lins = {k: v for k, v in load_state_dict(located.file(*trunk.lin_files)).items() if k.startswith("lin")}
    whole = [name for name in WHOLE_FILES if (located.path / name).exists()]
    if whole:
        state = dict(load_state_dict(located.path / whole[0]))
    else:
        state = trunk_state(trunk, load_state_dict(located.file(*trunk.trunk_files)))
        state.update({f"scaling_layer.{name}": buffer for name, buffer in model.scaling_layer.state_dict().items()})
    state.update(lins)
    model.load_state_dict(state, strict=True)
    return model.eval()


def save_lpips(model, folder: Path) -> None:
    """Write a model in the released folder format `load_lpips` reads (torchvision trunk keys + lin file)."""
    from safetensors.torch import save_file

    trunk = TRUNKS[model.net_name]
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    features = {f"features.{k.split('.', 2)[2]}": v.contiguous() for k, v in state.items() if k.startswith("net.")}
    save_file(features, str(folder / trunk.trunk_files[-1]))
    save_file({k: v.contiguous() for k, v in state.items() if k.startswith("lin")}, str(folder / trunk.lin_files[-1]))
