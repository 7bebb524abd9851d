"""Denoiser families and their building blocks; transformer names and outputs match diffusers so released
weights load.

- MMDiT (FLUX.1 dev / schnell / Kontext, Seedream): `MMDiTConfig`, `MMDiT`
- Qwen-Image MMDiT: `QwenImageConfig`, `QwenImageMMDiT`
- Cross-attention DiT (Wan 2.1; Allegro, Sora, Hailuo): `WanDiTConfig`, `WanDiT`
- Imagen's cascade U-Nets: `UNetConfig`, `UNet`, `EfficientUNet`
- `build_model(architecture, model_name)`: a spec's denoiser behind runtime/train/protocol.py;
  `build_network` the bare family network, `model_adapter` / `ModelAdapter` the protocol around one
- `compile_blocks(model)`: torch.compile each repeated block with fullgraph=True
- every family: `init_weights()` for training from scratch, `enable_activation_checkpointing()`
"""

from runtime.models.compile import compile_blocks
from runtime.models.factory import ModelAdapter, build_model, build_network, model_adapter
from runtime.models.flux import MMDiT, MMDiTConfig
from runtime.models.qwen_image import QwenImageConfig, QwenImageMMDiT
from runtime.models.unet import EfficientUNet, UNet, UNetConfig
from runtime.models.wan import WanDiT, WanDiTConfig

__all__ = [
    "EfficientUNet",
    "MMDiT",
    "MMDiTConfig",
    "ModelAdapter",
    "QwenImageConfig",
    "QwenImageMMDiT",
    "UNet",
    "UNetConfig",
    "WanDiT",
    "WanDiTConfig",
    "build_model",
    "build_network",
    "compile_blocks",
    "model_adapter",
]
