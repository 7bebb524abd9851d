"""Diffusion transformer families and their building blocks; names and outputs match diffusers so released
weights load.

- MMDiT (FLUX.1 dev / schnell / Kontext): `MMDiTConfig`, `MMDiT`
- Qwen-Image MMDiT: `QwenImageConfig`, `QwenImageMMDiT`
- Wan 2.1 cross-attention DiT: `WanDiTConfig`, `WanDiT`
- `compile_blocks(model)`: torch.compile each repeated block with fullgraph=True
"""

from runtime.models.compile import compile_blocks
from runtime.models.flux import MMDiT, MMDiTConfig
from runtime.models.qwen_image import QwenImageConfig, QwenImageMMDiT
from runtime.models.wan import WanDiT, WanDiTConfig

__all__ = [
    "MMDiT",
    "MMDiTConfig",
    "QwenImageConfig",
    "QwenImageMMDiT",
    "WanDiT",
    "WanDiTConfig",
    "compile_blocks",
]
