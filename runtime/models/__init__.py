"""Denoiser families and their building blocks; transformer names and outputs match diffusers so released
weights load.

- MMDiT (FLUX.1 dev / schnell / Kontext, Seedream): `MMDiTConfig`, `MMDiT`
- Qwen-Image MMDiT: `QwenImageConfig`, `QwenImageMMDiT`
- Cross-attention DiT (Wan 2.1; Allegro, Sora, Hailuo): `WanDiTConfig`, `WanDiT`
- Video MMDiT (HunyuanVideo): `HunyuanVideoConfig`, `HunyuanVideoMMDiT`
- SD3-class MMDiT (SD3, SD3.5 large): `SD3Config`, `SD3MMDiT`
- Expert-adaLN video DiT (CogVideoX): `CogVideoXConfig`, `CogVideoXDiT`
- Imagen's cascade U-Nets: `UNetConfig`, `UNet`, `EfficientUNet`
- `build_model(architecture, model_name)`: a spec's denoiser behind runtime/train/protocol.py;
  `build_network` the bare family network, `model_adapter` / `ModelAdapter` the protocol around one
- `compile_blocks(model)`: torch.compile each repeated block with fullgraph=True
- every family: `init_weights()` for training from scratch, `enable_activation_checkpointing()`
"""

from runtime.models.cogvideox import CogVideoXConfig, CogVideoXDiT
from runtime.models.compile import compile_blocks
from runtime.models.factory import ModelAdapter, build_model, build_network, model_adapter
from runtime.models.flux import MMDiT, MMDiTConfig
from runtime.models.hunyuan_video import HunyuanVideoConfig, HunyuanVideoMMDiT
from runtime.models.qwen_image import QwenImageConfig, QwenImageMMDiT
from runtime.models.sd3 import SD3Config, SD3MMDiT
from runtime.models.unet import EfficientUNet, UNet, UNetConfig
from runtime.models.wan import WanDiT, WanDiTConfig

__all__ = [
    "CogVideoXConfig",
    "CogVideoXDiT",
    "EfficientUNet",
    "HunyuanVideoConfig",
    "HunyuanVideoMMDiT",
    "MMDiT",
    "MMDiTConfig",
    "ModelAdapter",
    "QwenImageConfig",
    "QwenImageMMDiT",
    "SD3Config",
    "SD3MMDiT",
    "UNet",
    "UNetConfig",
    "WanDiT",
    "WanDiTConfig",
    "build_model",
    "build_network",
    "compile_blocks",
    "model_adapter",
]
