"""A spec's network, built from its architecture section, behind the trainer's model-call protocol.

`build_network(architecture, model_name)` maps the backbone onto a family:

- MMDiT, block_style flux -> `MMDiT` (FLUX.1 dev / schnell / Kontext: guidance embedding, context images;
  Seedream: no pooled text, a glyph encoder, RoPE over (h, w) and cross-modality text positions).
- MMDiT, block_style qwen_image -> `QwenImageMMDiT`.
- DiT and SpacetimeDiT -> `WanDiT`, the cross-attention DiT: self-attention over patch tokens with
  factorised RoPE, cross-attention to the text tokens, adaLN-single modulation (one time projection shared
  by all blocks plus a learned table per block). Wan 2.1 is the reference implementation. Allegro
  (PixArt-style DiT: T5 by cross-attention, adaLN-single), Sora (a spacetime DiT; images are one-frame
  videos) and Hailuo (undisclosed, assumed like Wan) use this same structure, at their own sizes.
- MMDiT, block_style hunyuan_video -> `HunyuanVideoMMDiT` (video MMDiT with a token refiner).
- MMDiT, block_style sd3 -> `SD3MMDiT` (SD3 / SD3.5 large: cropped position table, context-pre-only last block).
- DiT, modulation adaln_expert -> `CogVideoXDiT` (expert adaLN, text in the sequence).
- Cascade -> the `UNet` or `EfficientUNet` of the UNetStage named `model_name` (Imagen 1 and 2).

`model_adapter(network, architecture, model_name)` wraps a network in a `ModelAdapter`, the denoiser of
runtime/train/protocol.py: latents in the VAE's layout in, the prediction in the same layout out, tokens
packed and position ids built inside, the timestep in the network's units (`time_scale`).
`build_model(architecture, model_name)` is the two together, initialised for training from scratch: the
trainer's default model factory.

Fields the runtime does not implement (another QK norm, bias-free QKV, in-context text, per-block adaLN,
learned or rescaled positions) raise NotImplementedError naming the field, rather than building a network
that differs from the spec.
"""

from __future__ import annotations

import torch
from torch import nn

from compiler.schema.architecture import (
    ArchitectureSpec,
    Cascade,
    DiT,
    LatentSpace,
    LearnedPositions,
    MSRope,
    PixelSpace,
    Rope,
    ScaledRope,
)
from compiler.schema.architecture import MMDiT as MMDiTSpec
from runtime.models.cogvideox import CogVideoXConfig, CogVideoXDiT
from runtime.models.compile import compile_blocks
from runtime.models.flux import MMDiT, MMDiTConfig
from runtime.models.hunyuan_video import HunyuanVideoConfig, HunyuanVideoMMDiT
from runtime.models.layers import patchify_2d, unpatchify_2d
from runtime.models.qwen_image import QwenImageConfig, QwenImageMMDiT
from runtime.models.rope import cross_modality_text_ids, flux_image_ids
from runtime.models.sd3 import SD3Config, SD3MMDiT
from runtime.models.unet import UNetConfig
from runtime.models.wan import WanDiT, WanDiTConfig

BACKBONE = "architecture.backbone"
MMDIT_TIME_SCALE = 1.0  # FLUX and Qwen-Image take t in [0, 1] and embed 1000 t themselves
DIT_TIME_SCALE = 1000.0  # Wan takes t in [0, 1000] (Wan2.1 wan/text2video.py), as DDPM's step index
UNET_TIME_SCALE = 1000.0  # the U-Nets embed the DDPM step index, [0, 1000)
# The optional inputs of ModelAdapter.forward each family reads; text is read by all.
FAMILY_INPUTS = {
    "flux": ("pooled", "text_mask", "guidance", "context_latents", "glyph"),
    "qwen_image": ("text_mask",),
    "dit": ("text_mask",),
    "hunyuan_video": ("pooled", "text_mask", "guidance"),
    "sd3": ("pooled", "text_mask"),
    "cogvideox": ("text_mask",),
    "unet": ("text_mask", "lowres", "aug_level"),
}
VIDEO_FAMILIES = ("dit", "hunyuan_video", "cogvideox")  # take (B, C, F, H, W) latents; images as one frame
QK_NORMS = {"rmsnorm_per_head": "per_head", "rmsnorm_across_heads": "across_heads", "none": "none"}
AXIS_COLUMNS = {"index": 0, "h": 1, "w": 2}  # columns of FLUX's (index, row, col) position ids


def build_network(architecture: ArchitectureSpec, model_name: str = "main") -> nn.Module:
    """The family network `model_name` of a spec, with PyTorch's default initialisation.

    model_name is "main" for a single-backbone spec and a stage name ("base64", "sr256", ...) for a cascade.
    Call `init_weights()` to train from scratch (DiT / adaLN-Zero for the transformers, zeroed residual
    outputs for the U-Nets); a stage that starts from a checkpoint loads it instead.
    """
    backbone = architecture.backbone
    if isinstance(backbone, Cascade):
        return UNetConfig.from_stage(
            _cascade_stage(backbone, model_name),
            text_dim=_cascade_text_dim(architecture),
            image_channels=_pixel_space(architecture).channels,
        ).build()
    if model_name != "main":
        raise ValueError(f"model_name is {model_name!r} but a {backbone.kind} spec has one model: use 'main'")
    _check_width(backbone)
    if isinstance(backbone, MMDiTSpec) and backbone.block_style == "flux":
        return MMDiT(_flux_config(architecture))
    if isinstance(backbone, MMDiTSpec) and backbone.block_style == "hunyuan_video":
        return HunyuanVideoMMDiT(_hunyuan_video_config(architecture))
    if isinstance(backbone, MMDiTSpec) and backbone.block_style == "sd3":
        return SD3MMDiT(_sd3_config(architecture))
    if isinstance(backbone, MMDiTSpec):
        return QwenImageMMDiT(_qwen_image_config(architecture))
    if backbone.modulation == "adaln_expert":
        return CogVideoXDiT(_cogvideox_config(architecture))
    return WanDiT(_dit_config(architecture))


def build_model(architecture: ArchitectureSpec, model_name: str = "main") -> ModelAdapter:
    """The denoiser `model_name` of a spec, initialised for training from scratch: its network with
    `init_weights()` applied, behind the model-call protocol (runtime/train/protocol.py ModelFactory, whose
    default this is). DiT and NeMo's U-Nets initialise so in their constructors; a stage with init_from
    loads its checkpoint over it."""
    network = build_network(architecture, model_name)
    network.init_weights()
    return model_adapter(network, architecture, model_name)


def model_adapter(network: nn.Module, architecture: ArchitectureSpec, model_name: str = "main") -> ModelAdapter:
    """`network` (built by build_network from the same architecture, or loaded) behind the protocol."""
    return ModelAdapter(network, architecture, model_name)


class ModelAdapter(nn.Module):
    """The denoiser of runtime/train/protocol.py around one family network, held as `self.model`.

    forward(latents, timestep, *, text, pooled, text_mask, guidance, lowres, aug_level, context_latents,
    glyph): see forward. `time_scale` is what the network multiplies flow matching's t in [0, 1] by before
    embedding it: FLUX and Qwen-Image 1 (they embed 1000 t themselves), the DiTs and U-Nets 1000 (they embed
    the timestep as given, a DDPM step index in [0, 1000)). init_weights and enable_activation_checkpointing
    reach the network; its `repeated_blocks` name its block lists.
    """

    def __init__(self, network: nn.Module, architecture: ArchitectureSpec, model_name: str = "main"):
        super().__init__()
        self.model = network
        backbone = architecture.backbone
        if isinstance(backbone, Cascade):
            _cascade_stage(backbone, model_name)
            self.family, self.time_scale = "unet", UNET_TIME_SCALE
        elif isinstance(backbone, MMDiTSpec) and backbone.block_style in ("hunyuan_video", "sd3"):
            # Both embed the timestep as their pipelines pass it, sigma x 1000.
            self.family, self.time_scale = backbone.block_style, DIT_TIME_SCALE
        elif isinstance(backbone, DiT) and backbone.modulation == "adaln_expert":
            self.family, self.time_scale = "cogvideox", DIT_TIME_SCALE
        elif isinstance(backbone, MMDiTSpec):
            self.family = "flux" if backbone.block_style == "flux" else "qwen_image"
            self.time_scale = MMDIT_TIME_SCALE
            self.patch = backbone.patch_size[1]
            if self.family == "flux":  # build_network checked the positions; Qwen-Image builds its own
                self.id_columns = [AXIS_COLUMNS[axis] for axis in backbone.positions.axes]
                self.text_positions = backbone.positions.text
        else:
            self.family, self.time_scale = "dit", DIT_TIME_SCALE

    def init_weights(self) -> None:
        """Initialise the network for training from scratch (its own init_weights)."""
        self.model.init_weights()

    def compile_blocks(self, **options) -> None:
        """torch.compile the network's repeated blocks one by one (runtime.models.compile.compile_blocks)."""
        compile_blocks(self.model, **options)

    def enable_activation_checkpointing(self) -> None:
        """Checkpoint the network's repeated blocks (ActivationCheckpointing)."""
        self.model.enable_activation_checkpointing()

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        *,
        text: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        lowres: torch.Tensor | None = None,
        aug_level: torch.Tensor | None = None,
        context_latents: torch.Tensor | None = None,
        glyph: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network's prediction for `latents`, in their layout and shape.

        latents: (B, C, H, W) images or (B, C, F, H, W) videos (DiTs only) in the VAE's layout, pixels for a
        cascade; timestep: (B,) in the network's units (t * time_scale for flow matching);
        text: (B, L, D) token embeddings, required; text_mask: (B, L), nonzero for real tokens. Qwen-Image
        and the U-Nets mask padding in attention; the DiTs zero the padded embeddings, as Wan's pipeline pads;
        FLUX-style MMDiTs attend to every token, as BFL's does, so the mask is not used.
        pooled: (B, D) pooled text and guidance: (B,) CFG scale, for FLUX-style models that have them.
        context_latents: (B, C, H', W') reference image latents, FLUX-style models with context images
        (Kontext), at position index 1. glyph: (B, L_g, D_g) glyph-encoder tokens (Seedream), joined after
        the text tokens. lowres, aug_level: (B, C, h, w) noise-augmented low-resolution image and (B,) its
        level in [0, 1], super-resolution U-Nets only.
        Inputs a family does not read raise ValueError instead of being dropped.
        """
        optional = {
            "pooled": pooled, "text_mask": text_mask, "guidance": guidance, "lowres": lowres, "aug_level": aug_level,
            "context_latents": context_latents, "glyph": glyph,
        }
        self._check_inputs(latents, timestep, text, optional)
        if self.family == "flux":
            return self._flux(latents, timestep, text, pooled, guidance, context_latents, glyph)
        if self.family == "qwen_image":
            return self._qwen_image(latents, timestep, text, text_mask)
        if self.family == "dit":
            return self._dit(latents, timestep, text, text_mask)
        if self.family == "hunyuan_video":
            return self._hunyuan_video(latents, timestep, text, pooled, text_mask, guidance)
        if self.family == "sd3":
            if text_mask is not None:  # SD3's pipeline pads with the encoders' padding embeddings; zero them
                text = text * text_mask[..., None].to(text.dtype)
            return self.model(hidden_states=latents, encoder_hidden_states=text, pooled_projections=pooled,
                              timestep=timestep)
        if self.family == "cogvideox":
            return self._cogvideox(latents, timestep, text, text_mask)
        return self.model(
            sample=latents, timestep=timestep, text=text, text_mask=text_mask, low_res=lowres,
            low_res_noise_level=aug_level,
        )

    def _check_inputs(self, latents, timestep, text, optional: dict) -> None:
        if timestep.shape != latents.shape[:1]:
            raise ValueError(
                f"timestep has shape {tuple(timestep.shape)} but latents have batch {latents.shape[0]}: "
                "pass one timestep per sample"
            )
        if text is None:
            raise ValueError(f"text is None: a {self.family} model is conditioned on text tokens (B, L, D)")
        unused = sorted(
            name for name, value in optional.items() if value is not None and name not in FAMILY_INPUTS[self.family]
        )
        if unused:
            raise ValueError(f"{', '.join(unused)} passed to a {self.family} model, which reads none of them")
        if latents.ndim not in (4, 5) or (latents.ndim == 5 and self.family not in VIDEO_FAMILIES):
            layouts = "(B, C, H, W) or (B, C, F, H, W)" if self.family in VIDEO_FAMILIES else "(B, C, H, W)"
            raise ValueError(f"latents have shape {tuple(latents.shape)}; a {self.family} model takes {layouts}")

    def _flux(self, latents, timestep, text, pooled, guidance, context_latents, glyph) -> torch.Tensor:
        height, width = latents.shape[-2:]
        device, patch = latents.device, self.patch
        grid_width = width // patch
        context_ids = None
        if context_latents is not None:
            # Kontext: the reference image's tokens follow the target's, at position index 1.
            context_grid = (side // patch for side in context_latents.shape[-2:])
            context_ids = flux_image_ids(*context_grid, index=1, device=device)[:, self.id_columns]
            context_latents = patchify_2d(context_latents, patch)
        text_len = text.shape[1] + (0 if glyph is None else glyph.shape[1])
        if self.text_positions == "cross_modality":
            txt_ids = cross_modality_text_ids(text_len, grid_width, device=device)
        else:
            txt_ids = torch.zeros(text_len, 3, device=device)  # FLUX text tokens sit at (0, 0, 0)
        prediction = self.model(
            hidden_states=patchify_2d(latents, patch),
            encoder_hidden_states=text,
            pooled_projections=pooled,
            timestep=timestep,
            img_ids=flux_image_ids(height // patch, grid_width, device=device)[:, self.id_columns],
            txt_ids=txt_ids[:, self.id_columns],
            guidance=guidance,
            context_latents=context_latents,
            context_ids=context_ids,
            glyph_hidden_states=glyph,
        )
        return unpatchify_2d(prediction, height, width, patch)

    def _qwen_image(self, latents, timestep, text, text_mask) -> torch.Tensor:
        height, width = latents.shape[-2:]
        patch = self.patch
        prediction = self.model(
            hidden_states=patchify_2d(latents, patch),
            encoder_hidden_states=text,
            timestep=timestep,
            img_shapes=[(1, height // patch, width // patch)],
            encoder_hidden_states_mask=text_mask,
        )
        return unpatchify_2d(prediction, height, width, patch)

    def _dit(self, latents, timestep, text, text_mask) -> torch.Tensor:
        video = latents if latents.ndim == 5 else latents[:, :, None]  # an image is a one-frame video
        if text_mask is not None:
            text = text * text_mask[..., None].to(text.dtype)
        prediction = self.model(hidden_states=video, timestep=timestep, encoder_hidden_states=text)
        return prediction if latents.ndim == 5 else prediction[:, :, 0]


    def _hunyuan_video(self, latents, timestep, text, pooled, text_mask, guidance) -> torch.Tensor:
        video = latents if latents.ndim == 5 else latents[:, :, None]
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.long, device=text.device)
        # HunyuanVideo's pipeline embeds the CFG scale x 1000, like the timestep.
        guidance = None if guidance is None else guidance * DIT_TIME_SCALE
        prediction = self.model(
            hidden_states=video, timestep=timestep, encoder_hidden_states=text, encoder_attention_mask=text_mask,
            pooled_projections=pooled, guidance=guidance,
        )
        return prediction if latents.ndim == 5 else prediction[:, :, 0]

    def _cogvideox(self, latents, timestep, text, text_mask) -> torch.Tensor:
        video = latents if latents.ndim == 5 else latents[:, :, None]
        if text_mask is not None:  # CogVideoX pads T5 to 226 tokens and attends to all: zero the padding
            text = text * text_mask[..., None].to(text.dtype)
        # CogVideoX's layout is frame-major, (B, F, C, H, W).
        prediction = self.model(
            hidden_states=video.transpose(1, 2), encoder_hidden_states=text, timestep=timestep
        ).transpose(1, 2)
        return prediction if latents.ndim == 5 else prediction[:, :, 0]


def _check_width(backbone) -> None:
    if backbone.hidden_size != backbone.num_heads * backbone.head_dim:
        raise ValueError(
            f"{BACKBONE}.hidden_size is {backbone.hidden_size} but num_heads x head_dim is "
            f"{backbone.num_heads} x {backbone.head_dim} = {backbone.num_heads * backbone.head_dim}; the runtime's "
            "attention keeps the model width, so make them equal"
        )


def _unsupported(field: str, value, supported) -> NotImplementedError:
    return NotImplementedError(
        f"{BACKBONE}.{field} is {value!r}; runtime.models implements {supported} for this family. Change the "
        "spec, or add the variant to runtime/models and its mapping to runtime/models/factory.py"
    )


def _qk_norm(backbone) -> str:
    if backbone.qk_norm not in QK_NORMS:
        raise _unsupported("qk_norm", backbone.qk_norm, " and ".join(QK_NORMS))
    return QK_NORMS[backbone.qk_norm]


def _check_shared(backbone, qk_norm: str) -> None:
    """Fields fixed in the transformer implementations: QKV bias, eps 1e-6, one QK norm per family."""
    if _qk_norm(backbone) != qk_norm:
        raise _unsupported("qk_norm", backbone.qk_norm, f"{qk_norm} RMSNorm")
    if not backbone.qkv_bias:
        raise _unsupported("qkv_bias", False, "QKV projections with bias")
    if backbone.norm_eps != 1e-6:
        raise _unsupported("norm_eps", backbone.norm_eps, "eps 1e-6")


def _latent_space(architecture: ArchitectureSpec) -> LatentSpace:
    if not isinstance(architecture.space, LatentSpace):
        kind = architecture.backbone.kind
        raise ValueError(f"architecture.space is {architecture.space.kind}; a {kind} backbone denoises latents")
    return architecture.space


def _check_packing(architecture: ArchitectureSpec) -> int:
    """MMDiTs pack p x p latent cells into a token: in_channels must be channels x p x p. Returns p."""
    backbone, space = architecture.backbone, _latent_space(architecture)
    _, patch_h, patch_w = backbone.patch_size
    if backbone.patch_size[0] != 1 or patch_h != patch_w:
        raise _unsupported("patch_size", backbone.patch_size, "square image patches (1, p, p)")
    if backbone.in_channels != space.channels * patch_h * patch_w:
        raise ValueError(
            f"{BACKBONE}.in_channels is {backbone.in_channels} but {space.channels} latent channels packed "
            f"{patch_h} x {patch_w} make {space.channels * patch_h * patch_w}; set it to that"
        )
    return patch_h


def _flux_config(architecture: ArchitectureSpec) -> MMDiTConfig:
    backbone = architecture.backbone
    _check_packing(architecture)
    _check_shared(backbone, "per_head")
    positions = backbone.positions
    if (
        not isinstance(positions, Rope)
        or positions.axes not in (["index", "h", "w"], ["h", "w"])
        or positions.text not in ("zeros", "cross_modality")
    ):
        raise _unsupported(
            "positions", positions, "RoPE over (index, h, w) or (h, w), text at zeros or cross_modality"
        )
    if backbone.context_images == "sequence" and "index" not in positions.axes:
        raise ValueError(
            f"{BACKBONE}.context_images is 'sequence' but positions.axes {positions.axes} has no 'index' axis: "
            "context images are told from the target by index 1 (Kontext); add the axis"
        )
    if backbone.text_input_norm:
        raise _unsupported("text_input_norm", True, "no text input norm in the flux block style")
    glyph_encoders = [encoder for encoder in architecture.text_encoders if encoder.role == "glyph"]
    if len(glyph_encoders) > 1 or any(encoder.dim is None for encoder in glyph_encoders):
        raise ValueError(
            f"architecture.text_encoders has glyph encoders {[(e.name, e.dim) for e in glyph_encoders]}; the flux "
            "block style takes at most one, with its dim set"
        )
    return MMDiTConfig(
        in_channels=backbone.in_channels,
        out_channels=backbone.out_channels,
        num_layers=backbone.double_blocks,
        num_single_layers=backbone.single_blocks,
        num_attention_heads=backbone.num_heads,
        attention_head_dim=backbone.head_dim,
        joint_attention_dim=backbone.context_dim,
        pooled_projection_dim=backbone.pooled_dim,
        guidance_embeds=backbone.guidance_embed,
        axes_dims_rope=tuple(positions.axes_dims),
        rope_theta=positions.theta,
        mlp_ratio=backbone.mlp_ratio,
        glyph_dim=glyph_encoders[0].dim if glyph_encoders else None,
    )


def _qwen_image_config(architecture: ArchitectureSpec) -> QwenImageConfig:
    backbone = architecture.backbone
    patch = _check_packing(architecture)
    _check_shared(backbone, "per_head")
    for field, value, expected in [
        ("single_blocks", backbone.single_blocks, 0),
        ("pooled_dim", backbone.pooled_dim, None),
        ("guidance_embed", backbone.guidance_embed, False),
        ("context_images", backbone.context_images, "none"),
        ("text_input_norm", backbone.text_input_norm, True),
    ]:
        if value != expected:
            raise _unsupported(field, value, f"{field} = {expected!r} in the qwen_image block style")
    if not isinstance(backbone.positions, MSRope) or not backbone.positions.centred:
        raise _unsupported("positions", backbone.positions, "centred MSRoPE")
    if backbone.out_channels != _latent_space(architecture).channels:
        raise ValueError(
            f"{BACKBONE}.out_channels is {backbone.out_channels}; Qwen-Image's is the latent channels per cell, "
            f"{architecture.space.channels}"
        )
    return QwenImageConfig(
        in_channels=backbone.in_channels,
        out_channels=backbone.out_channels,
        num_layers=backbone.double_blocks,
        num_attention_heads=backbone.num_heads,
        attention_head_dim=backbone.head_dim,
        joint_attention_dim=backbone.context_dim,
        axes_dims_rope=tuple(backbone.positions.axes_dims),
        patch_size=patch,
        rope_theta=backbone.positions.theta,
        mlp_ratio=backbone.mlp_ratio,
    )


def _dit_config(architecture: ArchitectureSpec) -> WanDiTConfig:
    backbone: DiT = architecture.backbone
    space = _latent_space(architecture)
    if backbone.modulation != "adaln_single":
        raise _unsupported("modulation", backbone.modulation, "adaln_single")
    if backbone.text_conditioning != "cross_attention":
        raise _unsupported("text_conditioning", backbone.text_conditioning, "cross_attention")
    if not backbone.qkv_bias:
        raise _unsupported("qkv_bias", False, "QKV projections with bias")
    positions = backbone.positions
    if not isinstance(positions, Rope) or not set(positions.axes) <= {"t", "h", "w"}:
        raise _unsupported("positions", positions, "RoPE over a subset of (t, h, w)")
    for field, value in [("in_channels", backbone.in_channels), ("out_channels", backbone.out_channels)]:
        if value != space.channels:
            raise ValueError(
                f"{BACKBONE}.{field} is {value}; a DiT's is the latent channels per cell, {space.channels}"
            )
    axes = dict(zip(positions.axes, positions.axes_dims))
    return WanDiTConfig(
        patch_size=tuple(backbone.patch_size),
        num_attention_heads=backbone.num_heads,
        attention_head_dim=backbone.head_dim,
        in_channels=backbone.in_channels,
        out_channels=backbone.out_channels,
        text_dim=backbone.text_dim,
        freq_dim=backbone.freq_dim,
        ffn_dim=backbone.ffn_dim or int(backbone.hidden_size * backbone.mlp_ratio),
        num_layers=backbone.depth,
        cross_attn_norm=backbone.cross_attn_norm,
        eps=backbone.norm_eps,
        rope_theta=positions.theta,
        rope_axes_dims=(axes.get("t", 0), axes.get("h", 0), axes.get("w", 0)),
        qk_norm=_qk_norm(backbone),
    )


def _check_fixed(backbone, fields: list[tuple[str, object]], family: str) -> None:
    for field, expected in fields:
        value = getattr(backbone, field)
        if value != expected:
            raise _unsupported(field, value, f"{field} = {expected!r} in the {family} network")


def _per_cell_channels(architecture: ArchitectureSpec) -> None:
    backbone, space = architecture.backbone, _latent_space(architecture)
    for field in ("in_channels", "out_channels"):
        if getattr(backbone, field) != space.channels:
            raise ValueError(
                f"{BACKBONE}.{field} is {getattr(backbone, field)}; this family's is the latent channels per cell "
                f"(as its diffusers config), {space.channels}"
            )


def _hunyuan_video_config(architecture: ArchitectureSpec) -> HunyuanVideoConfig:
    backbone = architecture.backbone
    _check_shared(backbone, "per_head")
    _per_cell_channels(architecture)
    pt, ph, pw = backbone.patch_size
    if ph != pw:
        raise _unsupported("patch_size", backbone.patch_size, "square spatial patches (t, p, p)")
    _check_fixed(backbone, [("context_images", "none"), ("text_input_norm", False)], "hunyuan_video")
    if backbone.pooled_dim is None:
        raise ValueError(f"{BACKBONE}.pooled_dim is None; a hunyuan_video MMDiT conditions on a pooled text vector")
    positions = backbone.positions
    if not isinstance(positions, Rope) or positions.axes != ["t", "h", "w"] or positions.text != "none":
        raise _unsupported("positions", positions, "RoPE over (t, h, w) with text unrotated (text: none)")
    return HunyuanVideoConfig(
        in_channels=backbone.in_channels,
        out_channels=backbone.out_channels,
        num_attention_heads=backbone.num_heads,
        attention_head_dim=backbone.head_dim,
        num_layers=backbone.double_blocks,
        num_single_layers=backbone.single_blocks,
        num_refiner_layers=backbone.token_refiner_blocks,
        text_embed_dim=backbone.context_dim,
        pooled_projection_dim=backbone.pooled_dim,
        guidance_embeds=backbone.guidance_embed,
        rope_axes_dim=tuple(positions.axes_dims),
        patch_size=ph,
        patch_size_t=pt,
        mlp_ratio=backbone.mlp_ratio,
        rope_theta=positions.theta,
    )


def _sd3_config(architecture: ArchitectureSpec) -> SD3Config:
    backbone = architecture.backbone
    if backbone.qk_norm not in ("none", "rmsnorm_per_head"):
        raise _unsupported("qk_norm", backbone.qk_norm, "none and rmsnorm_per_head")
    _check_fixed(backbone, [("qkv_bias", True), ("norm_eps", 1e-6), ("guidance_embed", False),
                            ("context_images", "none"), ("text_input_norm", False), ("mlp_ratio", 4.0)], "sd3")
    _per_cell_channels(architecture)
    pt, ph, pw = backbone.patch_size
    if pt != 1 or ph != pw:
        raise _unsupported("patch_size", backbone.patch_size, "square image patches (1, p, p)")
    positions = backbone.positions
    if not isinstance(positions, LearnedPositions) or positions.max_size is None or positions.trained:
        raise _unsupported("positions", positions, "a fixed table cropped at its centre (learned, max_size set, "
                           "trained false: SD3's sin-cos buffer)")
    if backbone.pooled_dim is None:
        raise ValueError(f"{BACKBONE}.pooled_dim is None; an sd3 MMDiT conditions on a pooled text vector")
    return SD3Config(
        num_layers=backbone.double_blocks,
        num_attention_heads=backbone.num_heads,
        attention_head_dim=backbone.head_dim,
        joint_attention_dim=backbone.context_dim,
        caption_projection_dim=backbone.hidden_size,
        pooled_projection_dim=backbone.pooled_dim,
        pos_embed_max_size=positions.max_size,
        in_channels=backbone.in_channels,
        out_channels=backbone.out_channels,
        patch_size=ph,
        # The sin-cos table's base: SD3's 128-latent side for its 192-patch table, two thirds of the table.
        sample_size=max(positions.max_size * 2 // 3, 1) * ph,
        qk_norm="rms_norm" if backbone.qk_norm == "rmsnorm_per_head" else None,
    )


def _cogvideox_config(architecture: ArchitectureSpec) -> CogVideoXConfig:
    backbone: DiT = architecture.backbone
    _check_width(backbone)
    if backbone.qk_norm != "layernorm_per_head":
        raise _unsupported("qk_norm", backbone.qk_norm, "layernorm_per_head")
    _check_fixed(backbone, [("qkv_bias", True), ("text_conditioning", "in_context"), ("mlp_ratio", 4.0)],
                 "expert-adaLN (CogVideoX)")
    if backbone.ffn_dim not in (None, 4 * backbone.hidden_size):
        raise _unsupported("ffn_dim", backbone.ffn_dim, f"{4 * backbone.hidden_size} (4 x hidden_size) or null")
    _per_cell_channels(architecture)
    pt, ph, pw = backbone.patch_size
    if pt != 1 or ph != pw:
        raise _unsupported("patch_size", backbone.patch_size, "square patches of one frame (1, p, p)")
    positions = backbone.positions
    d = backbone.head_dim
    split = [d // 4, d // 8 * 3, d // 8 * 3]
    if (not isinstance(positions, ScaledRope) or positions.axes != ["t", "h", "w"]
            or list(positions.axes_dims) != split):
        raise _unsupported(
            "positions", positions,
            f"scaled_rope over (t, h, w) with axes_dims {split} (d/4, 3d/8, 3d/8) and reference_grid "
            "[frames, height, width] in patches, the training grid rows and columns are spread over",
        )
    _, grid_h, grid_w = positions.reference_grid
    return CogVideoXConfig(
        num_attention_heads=backbone.num_heads,
        attention_head_dim=backbone.head_dim,
        num_layers=backbone.depth,
        in_channels=backbone.in_channels,
        out_channels=backbone.out_channels,
        time_embed_dim=backbone.cond_dim or backbone.hidden_size,
        text_embed_dim=backbone.text_dim,
        patch_size=ph,
        sample_height=grid_h * ph,
        sample_width=grid_w * pw,
        norm_eps=backbone.norm_eps,
        rope_theta=positions.theta,
        freq_dim=backbone.freq_dim,
    )


def _cascade_stage(backbone: Cascade, model_name: str):
    names = [stage.name for stage in backbone.stages]
    if model_name not in names:
        raise ValueError(f"model_name is {model_name!r}; this cascade's models are {', '.join(names)}")
    return backbone.stages[names.index(model_name)]


def _cascade_text_dim(architecture: ArchitectureSpec) -> int:
    encoders = [e for e in architecture.text_encoders if e.role in ("cross_attention", "tokens")]
    if len(encoders) != 1 or encoders[0].dim is None:
        found = [(e.name, e.role, e.dim) for e in architecture.text_encoders]
        raise ValueError(
            f"architecture.text_encoders is {found}; a cascade U-Net attends to one token encoder "
            "(role cross_attention or tokens) whose dim is set"
        )
    return encoders[0].dim


def _pixel_space(architecture: ArchitectureSpec) -> PixelSpace:
    if not isinstance(architecture.space, PixelSpace):
        raise ValueError(f"architecture.space is {architecture.space.kind}; a cascade of U-Nets denoises pixels")
    return architecture.space
