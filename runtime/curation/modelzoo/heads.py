"""The LAION aesthetic predictor's head: an MLP over an L2-normalised CLIP image embedding.

christophschuhmann/improved-aesthetic-predictor, simple_inference.py: `MLP.layers = Sequential(Linear(768,
1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2), Linear(128, 64), Dropout(0.1), Linear(64, 16),
Linear(16, 1))` with no activations, applied to `normalized(model.encode_image(x))` of CLIP ViT-L/14. The
released state dict (sac+logos+ava1-l14-linearMSE.pth) has keys layers.{0,2,4,6,7}.{weight,bias}; the
network is rebuilt from those keys and shapes, so a head of other widths in the same format loads too.
"""

from __future__ import annotations

import re
from pathlib import Path

from runtime.curation.modelzoo.weights import load_state_dict

LAION_WIDTHS = (1024, 128, 64, 16, 1)  # output widths of the five Linear layers
LAION_DROPOUT_AT = (1, 3, 5)  # Sequential indices of the dropout layers (identity at inference)
HEAD_FILES = ("head.safetensors", "head.pth", "sac+logos+ava1-l14-linearMSE.pth")


def mlp_head(state: dict):
    """The Sequential the state dict describes: Linear at each `layers.<i>` key, Dropout in the gaps."""
    from torch import nn

    pattern = re.compile(r"layers\.(\d+)\.weight")
    shapes = {int(m.group(1)): tuple(state[k].shape) for k in state if (m := pattern.fullmatch(k))}
    if not shapes or any(not k.startswith("layers.") for k in state):
        raise ValueError(f"not a LAION aesthetic head state dict (keys layers.<i>.weight/bias): {sorted(state)[:6]}")
    layers = []
    for index in range(max(shapes) + 1):
        if index in shapes:
            out_features, in_features = shapes[index]
            layers.append(nn.Linear(in_features, out_features))
        else:
            layers.append(nn.Dropout())
    head = nn.Module()
    head.layers = nn.Sequential(*layers)
    head.load_state_dict(state, strict=True)
    return head.eval()


def load_head(path: Path):
    return mlp_head(load_state_dict(path))


def laion_head_state(input_dim: int, seed: int) -> dict:
    """A randomly initialised head in the released format (LAION widths) over `input_dim` features."""
    import torch
    from torch import nn

    layers, width = [], input_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for out in LAION_WIDTHS:
            layers.append(nn.Linear(width, out))
            width = out
    indices = [i for i in range(len(LAION_WIDTHS) + len(LAION_DROPOUT_AT)) if i not in LAION_DROPOUT_AT]
    return {f"layers.{i}.{name}": tensor for i, layer in zip(indices, layers) for name, tensor in layer.state_dict().items()}
