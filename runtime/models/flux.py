"""FLUX-style MMDiT: double-stream blocks over [text, image], then single-stream blocks over the joint sequence.

Covers FLUX.1 dev (guidance embedding), schnell (none) and Kontext (context image tokens appended after the
target), and Seedream's variant: no pooled text vector, glyph-encoder tokens projected and appended after the
text tokens (Seedream 2.0 technical report, arXiv:2503.07703, Glyph-aligned ByT5). Module names and chunk orders are diffusers' FluxTransformer2DModel (transformer_flux.py), so its
state dict loads with strict=True; the structure is BFL's (black-forest-labs/flux src/flux/model.py).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from runtime.models.attention import Attention, JointAttention
from runtime.models.checkpointing import ActivationCheckpointing
from runtime.models.kernels import layer_norm_modulate
from runtime.models.layers import AdaLNOut, AdaLNZero, EmbeddingMLP, GeluMLP, init_dit_weights, timestep_embedding
from runtime.models.rope import RopeTables, rope_frequencies

TIMESTEP_CHANNELS = 256  # sinusoidal width before the MLP (flux src/flux/model.py: timestep_embedding(t, 256))
TIME_FACTOR = 1000.0  # FLUX takes t in [0, 1] and embeds 1000 t (flux src/flux/modules/layers.py time_factor)


@dataclass(frozen=True)
class MMDiTConfig:
    """Sizes of a FLUX-style MMDiT. Field names are diffusers FluxTransformer2DModel's, so its config.json
    keys map one to one (FLUX.1: 19 double + 38 single blocks, 24 heads x 128, in 64, T5 4096, CLIP 768)."""

    in_channels: int  # packed latent channels: 16 latent channels x 2 x 2 = 64 for FLUX.1
    num_layers: int  # double-stream blocks
    num_single_layers: int  # single-stream blocks
    num_attention_heads: int
    attention_head_dim: int
    joint_attention_dim: int  # text encoder width (T5-XXL: 4096)
    pooled_projection_dim: int | None  # pooled text vector width (CLIP-L: 768); None: no pooled text (Seedream)
    guidance_embeds: bool  # guidance-distilled (dev, Kontext) embed the CFG scale; schnell does not
    axes_dims_rope: tuple[int, ...]  # RoPE dims per position axis (index, row, col); sums to attention_head_dim
    out_channels: int | None = None  # None: same as in_channels
    rope_theta: float = 10000.0
    mlp_ratio: float = 4.0
    # Glyph encoder width (Seedream's Glyph-ByT5: 1472); its tokens are projected to joint_attention_dim and
    # follow the text tokens. None: no glyph encoder.
    glyph_dim: int | None = None

    def __post_init__(self):
        if sum(self.axes_dims_rope) != self.attention_head_dim:
            raise ValueError(
                f"MMDiTConfig.axes_dims_rope {tuple(self.axes_dims_rope)} sums to {sum(self.axes_dims_rope)} but "
                f"attention_head_dim is {self.attention_head_dim}; RoPE must cover the head dim exactly, "
                f"so make the axes sum to {self.attention_head_dim}"
            )
        if any(dim % 2 for dim in self.axes_dims_rope):
            raise ValueError(
                f"MMDiTConfig.axes_dims_rope {tuple(self.axes_dims_rope)} has an odd entry; RoPE rotates channel "
                "pairs, so every axis dim must be even"
            )

    @property
    def inner_dim(self) -> int:
        """Model width: heads x head dim."""
        return self.num_attention_heads * self.attention_head_dim


class TimestepGuidanceTextEmbedding(nn.Module):
    """Conditioning vector: MLP(sinusoid(t)) [+ MLP(sinusoid(guidance))] [+ MLP(pooled text)].

    As diffusers embeddings.py CombinedTimestep(Guidance)TextProjEmbeddings; guidance_embedder is None for
    models without guidance distillation and text_embedder for models without a pooled text vector, so their
    state dicts have no such keys.
    """

    def __init__(self, dim: int, pooled_dim: int | None, guidance_embeds: bool):
        super().__init__()
        self.timestep_embedder = EmbeddingMLP(TIMESTEP_CHANNELS, dim, nn.SiLU())
        self.guidance_embedder = EmbeddingMLP(TIMESTEP_CHANNELS, dim, nn.SiLU()) if guidance_embeds else None
        self.text_embedder = EmbeddingMLP(pooled_dim, dim, nn.SiLU()) if pooled_dim else None

    def forward(
        self, timestep: torch.Tensor, guidance: torch.Tensor | None, pooled: torch.Tensor | None
    ) -> torch.Tensor:
        """Already scaled timestep and guidance (B,), pooled text (B, pooled_dim) or None -> (B, dim)."""
        # The sinusoids are cast to the pooled text's dtype, as diffusers does, else to the weights'.
        dtype = self.timestep_embedder.linear_1.weight.dtype if pooled is None else pooled.dtype
        emb = self.timestep_embedder(timestep_embedding(timestep, TIMESTEP_CHANNELS).to(dtype))
        if self.guidance_embedder is not None:
            emb = emb + self.guidance_embedder(timestep_embedding(guidance, TIMESTEP_CHANNELS).to(dtype))
        return emb if self.text_embedder is None else emb + self.text_embedder(pooled)


class DoubleStreamBlock(nn.Module):
    """FLUX double-stream block: image and text keep their own modulation, QKV and MLP weights and meet in
    joint attention. adaLN chunks: shift, scale, gate (attention), shift, scale, gate (MLP)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = AdaLNZero(dim, 6)
        self.norm1_context = AdaLNZero(dim, 6)
        self.attn = JointAttention(dim, heads, head_dim)
        self.ff = GeluMLP(dim, int(dim * mlp_ratio))
        self.ff_context = GeluMLP(dim, int(dim * mlp_ratio))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor, rope: RopeTables
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S_x, D) image, context (B, S_c, D) text, temb (B, D), rope over [text, image] -> (x, context)."""
        x_mod, (gate_msa, shift_mlp, scale_mlp, gate_mlp) = self.norm1(x, temb)
        c_mod, (c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp) = self.norm1_context(context, temb)
        x_attn, c_attn = self.attn(x_mod, c_mod, rope)

        x = x + gate_msa[:, None] * x_attn
        x = x + gate_mlp[:, None] * self.ff(layer_norm_modulate(x, shift_mlp, scale_mlp))
        context = context + c_gate_msa[:, None] * c_attn
        c_mlp = self.ff_context(layer_norm_modulate(context, c_shift_mlp, c_scale_mlp))
        context = context + c_gate_mlp[:, None] * c_mlp
        return x, context


class SingleStreamBlock(nn.Module):
    """FLUX single-stream block over the joint sequence: attention and MLP run in parallel from one
    modulated input and share the output projection proj_out over concat[attention, MLP]
    (flux src/flux/modules/layers.py SingleStreamBlock). adaLN chunks: shift, scale, gate."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm = AdaLNZero(dim, 3)
        self.proj_mlp = nn.Linear(dim, hidden)
        self.attn = Attention(dim, heads, head_dim, qk_norm="per_head", out_proj=False)
        self.proj_out = nn.Linear(dim + hidden, dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, rope: RopeTables, text_tokens: int = 0) -> torch.Tensor:
        """x (B, S, D) joint [text, image] sequence, temb (B, D) -> (B, S, D). `text_tokens` leading tokens are
        text (replicated across ranks under sequence parallelism; unused without it)."""
        x_mod, (gate,) = self.norm(x, temb)
        mlp = F.gelu(self.proj_mlp(x_mod), approximate="tanh")
        attn = self.attn(x_mod, rope=rope, replicated=text_tokens)
        return x + gate[:, None] * self.proj_out(torch.cat([attn, mlp], dim=-1))


class MMDiT(ActivationCheckpointing, nn.Module):
    """FLUX-style MMDiT denoiser over packed latent tokens; returns the prediction for the target tokens.

    Forward mirrors diffusers FluxTransformer2DModel.forward (packed tokens, 2D ids, t in [0, 1]) and adds
    Flux Kontext: context image tokens and their ids (index 1) are appended after the target on the sequence
    axis and the output is sliced back to the target (flux src/flux/sampling.py prepare_kontext, diffusers
    pipeline_flux_kontext.py).
    """

    repeated_blocks = ("transformer_blocks", "single_transformer_blocks")  # compiled one by one

    def __init__(self, config: MMDiTConfig):
        super().__init__()
        self.config = config
        dim, heads, head_dim = config.inner_dim, config.num_attention_heads, config.attention_head_dim
        self.time_text_embed = TimestepGuidanceTextEmbedding(dim, config.pooled_projection_dim, config.guidance_embeds)
        self.context_embedder = nn.Linear(config.joint_attention_dim, dim)
        self.glyph_embedder = (
            EmbeddingMLP(config.glyph_dim, config.joint_attention_dim, nn.GELU(approximate="tanh"))
            if config.glyph_dim
            else None
        )
        self.x_embedder = nn.Linear(config.in_channels, dim)
        self.transformer_blocks = nn.ModuleList(
            DoubleStreamBlock(dim, heads, head_dim, config.mlp_ratio) for _ in range(config.num_layers)
        )
        self.single_transformer_blocks = nn.ModuleList(
            SingleStreamBlock(dim, heads, head_dim, config.mlp_ratio) for _ in range(config.num_single_layers)
        )
        self.norm_out = AdaLNOut(dim)
        self.proj_out = nn.Linear(dim, config.out_channels or config.in_channels)
        self.sequence_parallel = None  # set by sequence_parallel.enable_sequence_parallel

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        pooled_projections: torch.Tensor | None,
        timestep: torch.Tensor,
        img_ids: torch.Tensor,
        txt_ids: torch.Tensor,
        guidance: torch.Tensor | None = None,
        context_latents: torch.Tensor | None = None,
        context_ids: torch.Tensor | None = None,
        glyph_hidden_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict for the target tokens.

        hidden_states (B, L, in_channels) packed target latents; encoder_hidden_states (B, T, joint_dim);
        pooled_projections (B, pooled_dim), None exactly when config.pooled_projection_dim is; timestep (B,)
        in [0, 1]; img_ids (L, axes) and txt_ids (T + T_g, axes) positions; guidance (B,) CFG scale, required
        exactly when config.guidance_embeds; context_latents (B, L_c, in_channels) and context_ids (L_c, axes)
        for Kontext; glyph_hidden_states (B, T_g, glyph_dim), glyph tokens that follow the text tokens.
        Returns (B, L, out_channels).
        """
        self._check_inputs(
            hidden_states, encoder_hidden_states, pooled_projections, img_ids, txt_ids, guidance, context_latents,
            context_ids, glyph_hidden_states,
        )
        if glyph_hidden_states is not None:
            glyphs = self.glyph_embedder(glyph_hidden_states).to(encoder_hidden_states.dtype)
            encoder_hidden_states = torch.cat([encoder_hidden_states, glyphs], dim=1)
        target_len = hidden_states.shape[1]
        if context_latents is not None:
            hidden_states = torch.cat([hidden_states, context_latents], dim=1)
            img_ids = torch.cat([img_ids, context_ids], dim=0)

        x = self.x_embedder(hidden_states)
        # Scaled in the activation dtype before embedding, as diffusers does, so bf16 runs round alike.
        timestep = timestep.to(x.dtype) * TIME_FACTOR
        guidance = None if guidance is None else guidance.to(x.dtype) * TIME_FACTOR
        temb = self.time_text_embed(timestep, guidance, pooled_projections)
        context = self.context_embedder(encoder_hidden_states)
        rope = rope_frequencies(torch.cat([txt_ids, img_ids]), self.config.axes_dims_rope, self.config.rope_theta)
        sp = self.sequence_parallel
        if sp is not None:  # this rank keeps its slice of the image (+ Kontext context) tokens; text stays whole
            sp.check_shardable(x.shape[1], self.config.num_attention_heads, "image (+ Kontext context)")
            x, rope = sp.shard(x), sp.shard_rope(rope, replicated=context.shape[1])

        for block in self.transformer_blocks:
            x, context = block(x, context, temb, rope)
        joint = torch.cat([context, x], dim=1)
        for block in self.single_transformer_blocks:
            joint = block(joint, temb, rope, context.shape[1])
        x = joint[:, context.shape[1] :]
        if sp is None:
            # Norm and projection act per token, so dropping context-image tokens first is exact.
            return self.proj_out(self.norm_out(x[:, :target_len], temb))
        # Each rank projects its slice; the whole prediction is gathered for the loss every rank computes.
        return sp.gather_output(self.proj_out(self.norm_out(x, temb)))[:, :target_len]

    def init_weights(self) -> None:
        """Initialise for training from scratch: DiT's scheme with adaLN-Zero (layers.init_dit_weights).

        Zeroed: every block's modulation projection (so all gates start at zero and each block is the
        identity), the final modulation and the output projection (so the prediction starts at zero).
        """
        init_dit_weights(
            self,
            embedders=[self.time_text_embed] + ([self.glyph_embedder] if self.glyph_embedder else []),
            zeroed=[
                *(block.norm1.linear for block in self.transformer_blocks),
                *(block.norm1_context.linear for block in self.transformer_blocks),
                *(block.norm.linear for block in self.single_transformer_blocks),
                self.norm_out.linear,
                self.proj_out,
            ],
        )

    def _check_inputs(
        self, hidden_states, encoder_hidden_states, pooled, img_ids, txt_ids, guidance, context_latents, context_ids,
        glyphs,
    ):
        if (pooled is None) != (self.config.pooled_projection_dim is None):
            needs = "needs" if self.config.pooled_projection_dim else "takes no"
            raise ValueError(f"this MMDiT {needs} pooled_projections (config.pooled_projection_dim)")
        if glyphs is not None and self.glyph_embedder is None:
            raise ValueError(
                "glyph_hidden_states was passed but config.glyph_dim is None: the model has no glyph encoder"
            )
        if self.config.guidance_embeds and guidance is None:
            raise ValueError("config.guidance_embeds is True but guidance is None: pass one CFG scale per sample")
        if not self.config.guidance_embeds and guidance is not None:
            raise ValueError("guidance was passed but config.guidance_embeds is False: drop it or enable the embedding")
        if (context_latents is None) != (context_ids is None):
            raise ValueError("Kontext needs context_latents and context_ids (ids[..., 0] = 1): pass both or neither")
        text_len = encoder_hidden_states.shape[1] + (0 if glyphs is None else glyphs.shape[1])
        pairs = [("img_ids", img_ids, hidden_states.shape[1]), ("txt_ids", txt_ids, text_len)]
        if context_latents is not None:
            pairs.append(("context_ids", context_ids, context_latents.shape[1]))
        axes = len(self.config.axes_dims_rope)
        for name, ids, count in pairs:
            if tuple(ids.shape) != (count, axes):
                raise ValueError(
                    f"{name} has shape {tuple(ids.shape)} but its tokens need ({count}, {axes}): one position "
                    "per token (text then glyph tokens for txt_ids) and RoPE axis, without a batch dim"
                )
