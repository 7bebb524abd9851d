"""Our family configs as diffusers model classes and their config.json: what the final export writes beside
the weights, and what the parity tests build their diffusers reference from.

Our networks use diffusers' parameter names, and their config dataclasses diffusers' keyword names
(runtime/models/*.py), so a config maps field for field, less the fields diffusers has no keyword for. Each of
those must hold the value diffusers builds in (FLUX's RoPE theta 10000, Wan's RoPE split, ...); a config that
departs from it has no diffusers class, and `diffusers_model` says which field and why (NoDiffusersClass).

  MMDiTConfig         -> FluxTransformer2DModel (FLUX.1 dev, schnell, Kontext; not Seedream: glyph encoder,
                         no pooled text, two RoPE axes)
  QwenImageConfig     -> QwenImageTransformer2DModel
  WanDiTConfig        -> WanTransformer3DModel (Wan 2.1; Allegro, Sora, Hailuo only where they keep Wan's
                         RoPE split and QK norm)
  HunyuanVideoConfig  -> HunyuanVideoTransformer3DModel
  SD3Config           -> SD3Transformer2DModel
  CogVideoXConfig     -> CogVideoXTransformer3DModel
  UNetConfig          -> none: Imagen's U-Nets have no diffusers class

diffusers is not imported here (it is a test dependency; the export only writes JSON); `DiffusersModel.diffusers_class`
imports it when asked.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from runtime.models.cogvideox import CogVideoXConfig
from runtime.models.flux import MMDiTConfig
from runtime.models.hunyuan_video import HunyuanVideoConfig
from runtime.models.qwen_image import QwenImageConfig
from runtime.models.rope import wan_axes_dims
from runtime.models.sd3 import SD3Config
from runtime.models.wan import WanDiTConfig

DIFFUSERS_ROPE_THETA = 10000.0  # FLUX, Qwen-Image and Wan build their RoPE with it; CogVideoX's pipeline too
DIFFUSERS_MLP_RATIO = 4.0  # FLUX's and Qwen-Image's feed-forward width, 4 x the model width
WAN_QK_NORM = {"across_heads": "rms_norm_across_heads"}  # diffusers' Wan has only the across-heads RMSNorm


class NoDiffusersClass(ValueError):
    """A config no diffusers class builds: the family has none, or a field departs from what diffusers builds in."""


@dataclass(frozen=True)
class DiffusersModel:
    """A diffusers model class by name and the keyword arguments of its constructor (its config.json)."""

    class_name: str
    config: dict

    def config_json(self) -> str:
        """config.json as diffusers' save_pretrained writes it: the class name and the keywords, keys sorted."""
        return json.dumps({"_class_name": self.class_name, **self.config}, indent=2, sort_keys=True) + "\n"

    def diffusers_class(self):
        """The diffusers class itself (imports diffusers)."""
        import diffusers

        return getattr(diffusers, self.class_name)


def diffusers_model(config) -> DiffusersModel:
    """The diffusers class and config.json equivalent to one of our family configs; NoDiffusersClass otherwise."""
    for kind, convert in CONVERSIONS.items():
        if isinstance(config, kind):
            return convert(config)
    raise NoDiffusersClass(
        f"{type(config).__name__} has no diffusers class (diffusers has FLUX, Qwen-Image, Wan, HunyuanVideo, SD3 and "
        "CogVideoX transformers, not Imagen's U-Nets)"
    )


def _fields(config, *, leave_out: tuple[str, ...]) -> dict:
    """The config's fields as JSON values (tuples as lists; None stays, diffusers' keywords take it too), less
    those diffusers has no keyword for."""
    values = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in values.items() if name not in leave_out}


def _require(config, class_name: str, field: str, value, accepted, why: str) -> None:
    if value != accepted:
        raise NoDiffusersClass(
            f"{type(config).__name__}.{field} is {value!r}; diffusers' {class_name} builds in {accepted!r} ({why}), so "
            "this network has no diffusers class"
        )


def _flux(config: MMDiTConfig) -> DiffusersModel:
    name = "FluxTransformer2DModel"
    _require(config, name, "glyph_dim", config.glyph_dim, None, "no glyph encoder")
    if config.pooled_projection_dim is None:
        raise NoDiffusersClass(
            f"MMDiTConfig.pooled_projection_dim is None; diffusers' {name} always conditions on a pooled text vector"
        )
    _require(config, name, "rope_theta", config.rope_theta, DIFFUSERS_ROPE_THETA, "FluxPosEmbed's theta")
    _require(config, name, "mlp_ratio", config.mlp_ratio, DIFFUSERS_MLP_RATIO, "its feed-forward width")
    if len(config.axes_dims_rope) != 3:
        raise NoDiffusersClass(
            f"MMDiTConfig.axes_dims_rope is {config.axes_dims_rope}; diffusers' {name} pipelines build position ids "
            "over (index, row, col), three axes"
        )
    values = _fields(config, leave_out=("rope_theta", "mlp_ratio", "glyph_dim"))
    return DiffusersModel(name, {"patch_size": 1, **values})  # tokens come packed 2 x 2 (patchify_2d)


def _qwen_image(config: QwenImageConfig) -> DiffusersModel:
    name = "QwenImageTransformer2DModel"
    _require(config, name, "rope_theta", config.rope_theta, DIFFUSERS_ROPE_THETA, "QwenEmbedRope's theta")
    _require(config, name, "mlp_ratio", config.mlp_ratio, DIFFUSERS_MLP_RATIO, "its feed-forward width")
    return DiffusersModel(name, {**_fields(config, leave_out=("rope_theta", "mlp_ratio")), "guidance_embeds": False})


def _wan(config: WanDiTConfig) -> DiffusersModel:
    name = "WanTransformer3DModel"
    _require(config, name, "rope_theta", config.rope_theta, DIFFUSERS_ROPE_THETA, "WanRotaryPosEmbed's theta")
    _require(config, name, "rope_axes_dims", config.axes_dims_rope, wan_axes_dims(config.attention_head_dim),
             "Wan's split of the head dim over (frame, row, col)")
    if config.qk_norm not in WAN_QK_NORM:
        raise NoDiffusersClass(
            f"WanDiTConfig.qk_norm is {config.qk_norm!r}; diffusers' {name} normalises q and k across heads only "
            "('across_heads'), so this network has no diffusers class"
        )
    values = _fields(config, leave_out=("rope_theta", "rope_axes_dims", "qk_norm"))
    return DiffusersModel(name, {**values, "qk_norm": WAN_QK_NORM[config.qk_norm]})


def _hunyuan_video(config: HunyuanVideoConfig) -> DiffusersModel:
    return DiffusersModel("HunyuanVideoTransformer3DModel", _fields(config, leave_out=()))


def _sd3(config: SD3Config) -> DiffusersModel:
    return DiffusersModel("SD3Transformer2DModel", _fields(config, leave_out=()))


def _cogvideox(config: CogVideoXConfig) -> DiffusersModel:
    name = "CogVideoXTransformer3DModel"
    # The RoPE tables are the pipeline's (get_3d_rotary_pos_embed, theta 10000), the model takes them as input.
    _require(config, name, "rope_theta", config.rope_theta, DIFFUSERS_ROPE_THETA, "its pipeline's RoPE theta")
    width = config.num_attention_heads * config.attention_head_dim
    _require(config, name, "freq_dim", config.freq_dim or width, width, "the timestep sinusoid as wide as the model")
    return DiffusersModel(name, _fields(config, leave_out=("rope_theta", "freq_dim")))


CONVERSIONS = {
    MMDiTConfig: _flux,
    QwenImageConfig: _qwen_image,
    WanDiTConfig: _wan,
    HunyuanVideoConfig: _hunyuan_video,
    SD3Config: _sd3,
    CogVideoXConfig: _cogvideox,
}
