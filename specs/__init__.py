"""The spec library: one module per model family; `SHIPPED` maps each shipped name to its object.

Modules are imported only when one of their specs is asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compiler.schema.spec import Spec

SHIPPED: dict[str, str] = {
    "sora": "specs.sora:SORA",
    "imagen-1": "specs.imagen:IMAGEN_1",
    "imagen-2": "specs.imagen:IMAGEN_2",
    "imagen-3": "specs.imagen:IMAGEN_3",
    "flux1-dev": "specs.flux:FLUX1_DEV",
    "flux1-schnell": "specs.flux:FLUX1_SCHNELL",
    "flux-kontext": "specs.flux:FLUX_KONTEXT",
    "seedream-2.0": "specs.seedream:SEEDREAM_2_0",
    "seedream-3.0": "specs.seedream:SEEDREAM_3_0",
    "seedream-4.0": "specs.seedream:SEEDREAM_4_0",
    "qwen-image": "specs.qwen_image:QWEN_IMAGE",
    "wan2.1-t2v-14b": "specs.wan:WAN21_T2V_14B",
    "wan2.1-t2v-1.3b": "specs.wan:WAN21_T2V_1_3B",
    "allegro": "specs.minimax:ALLEGRO",
    "hailuo-02": "specs.minimax:HAILUO_02",
}

# The cluster each shipped spec is compiled for in generated/: sized to the model and its batch.
NATURAL_CLUSTER: dict[str, str] = {
    "sora": "h100-512",
    "imagen-1": "a100-64",
    "imagen-2": "a100-64",
    "imagen-3": "h100-512",
    "flux1-dev": "h100-64",
    "flux1-schnell": "h100-64",
    "flux-kontext": "h100-64",
    "seedream-2.0": "h100-64",
    "seedream-3.0": "h100-64",
    "seedream-4.0": "h100-512",
    "qwen-image": "h100-512",
    "wan2.1-t2v-14b": "h100-512",
    "wan2.1-t2v-1.3b": "h100-64",
    "allegro": "h100-64",
    "hailuo-02": "h100-512",
}


def load(name: str) -> Spec:
    """The shipped spec called `name`."""
    if name not in SHIPPED:
        raise KeyError(f"no shipped spec {name!r}; shipped: {', '.join(SHIPPED)}")
    module, attr = SHIPPED[name].split(":")
    return getattr(import_module(module), attr)
