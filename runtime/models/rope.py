"""Rotary position embeddings over several axes, in real arithmetic.

RoPE (Su et al. 2021, arXiv:2104.09864) rotates channel pair i of q and k by the angle
`position * theta ** (-2i / d)`. The multi-axis variants used here split the head dim into one block per
axis and rotate each block by that axis's position:

- FLUX: axes (index, row, col) with dims (16, 56, 56); text tokens sit at (0, 0, 0), Kontext context
  images at index 1 (black-forest-labs/flux src/flux/sampling.py prepare, prepare_kontext).
- Wan 2.1: axes (frame, row, col); the head dim d splits as d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6),
  44 / 42 / 42 for d = 128 (Wan-Video/Wan2.1 wan/modules/model.py rope_apply).
- Qwen-Image (MSRoPE): axes (frame, row, col), image rows and columns centred on zero, text tokens on the
  diagonal starting after the largest image half-extent (diffusers transformer_qwenimage.py QwenEmbedRope).
- Seedream 3.0 (cross-modality RoPE): FLUX's image ids; text tokens are a one-row image placed after the
  image's last column.

All of them rotate interleaved pairs (x[2i], x[2i+1]). The reference implementations multiply complex numbers;
this module writes the product out with cos/sin tables because inductor cannot generate code for complex
tensors.
"""

from collections.abc import Sequence

import torch

RopeTables = tuple[torch.Tensor, torch.Tensor]


def rope_frequencies(
    ids: torch.Tensor, axes_dims: Sequence[int], theta: float, dtype: torch.dtype = torch.float64
) -> RopeTables:
    """cos and sin tables of shape (S, sum(axes_dims)) in float32, each angle repeated for its channel pair.

    ids is (S, len(axes_dims)): one position per token and axis. `dtype` is the precision the angles are
    computed in, which matters at large positions: float64 for FLUX and Wan, float32 for Qwen-Image, as in
    the implementations their weights were trained with (diffusers transformer_flux.py FluxPosEmbed,
    transformer_wan.py WanRotaryPosEmbed, transformer_qwenimage.py QwenEmbedRope.rope_params).
    """
    if ids.ndim != 2 or ids.shape[-1] != len(axes_dims):
        raise ValueError(
            f"ids has shape {tuple(ids.shape)} but {len(axes_dims)} RoPE axes {tuple(axes_dims)} need "
            f"(sequence, {len(axes_dims)}); pass one position per token and axis"
        )
    angles = []
    for axis, dim in enumerate(axes_dims):
        inverse_frequency = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=dtype, device=ids.device) / dim)
        angles.append(ids[:, axis].to(dtype)[:, None] * inverse_frequency[None, :])
    pair_angles = torch.cat(angles, dim=-1).repeat_interleave(2, dim=-1)
    return pair_angles.cos().float(), pair_angles.sin().float()


def apply_rope(x: torch.Tensor, rope: RopeTables) -> torch.Tensor:
    """Rotate the interleaved channel pairs of x (B, S, H, D) by tables (S, D); computed in float32.

    (x_even, x_odd) -> (x_even cos - x_odd sin, x_even sin + x_odd cos), the real form of the complex product
    in diffusers embeddings.py apply_rotary_emb (use_real_unbind_dim=-1).
    """
    cos, sin = rope
    x32 = x.float()
    x_even, x_odd = x32.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack((-x_odd, x_even), dim=-1).flatten(-2)
    return (x32 * cos[:, None, :] + rotated * sin[:, None, :]).to(x.dtype)


def grid_ids(
    frames: int, height: int, width: int, offset: tuple[int, int, int] = (0, 0, 0), device=None
) -> torch.Tensor:
    """Positions (frames * height * width, 3) of a token grid in (frame, row, col) order, float32.

    Tokens are ordered frame-major then row-major, the order patchified latents are flattened in.
    """
    sizes = (frames, height, width)
    axes = [torch.arange(n, device=device, dtype=torch.float32) + start for n, start in zip(sizes, offset)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def flux_image_ids(height: int, width: int, index: int = 0, device=None) -> torch.Tensor:
    """FLUX image positions (height * width, 3): (index, row, col) over the packed latent grid.

    index 0 marks the image being denoised, 1 a Kontext context image (flux src/flux/sampling.py).
    """
    return grid_ids(1, height, width, offset=(index, 0, 0), device=device)


def wan_axes_dims(head_dim: int) -> tuple[int, int, int]:
    """Wan's split of the head dim over (frame, row, col): d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6).

    Wan-Video/Wan2.1 wan/modules/model.py rope_apply splits the d / 2 rotation pairs as c - 2 * (c // 3),
    c // 3, c // 3; in channels that is the above (diffusers transformer_wan.py WanRotaryPosEmbed agrees).
    44 / 42 / 42 for d = 128.
    """
    row = 2 * (head_dim // 6)
    return head_dim - 2 * row, row, row


def qwen_image_ids(img_shapes: Sequence[tuple[int, int, int]], device=None) -> torch.Tensor:
    """Qwen-Image MSRoPE positions of the image tokens, (sum of f * h * w, 3).

    Image i's frames start at index i (Qwen-Image-Edit appends reference images as later segments); rows run
    from -(h - h // 2) to h // 2 - 1 and columns likewise, so the image centre sits at zero
    (diffusers transformer_qwenimage.py QwenEmbedRope._compute_video_freqs with scale_rope=True).
    """
    segments = [
        grid_ids(frames, height, width, offset=(index, -(height - height // 2), -(width - width // 2)), device=device)
        for index, (frames, height, width) in enumerate(img_shapes)
    ]
    return torch.cat(segments, dim=0)


def qwen_text_ids(img_shapes: Sequence[tuple[int, int, int]], text_len: int, device=None) -> torch.Tensor:
    """Qwen-Image MSRoPE positions of the text tokens, (text_len, 3): (s + j, s + j, s + j).

    s = max over images of max(h // 2, w // 2), so text positions continue past every centred image position
    (diffusers transformer_qwenimage.py QwenEmbedRope.forward).
    """
    start = max(max(height // 2, width // 2) for _, height, width in img_shapes)
    positions = torch.arange(text_len, device=device, dtype=torch.float32) + start
    return positions[:, None].expand(text_len, 3)


def cross_modality_text_ids(text_len: int, grid_width: int, device=None) -> torch.Tensor:
    """Seedream 3.0 cross-modality RoPE: text tokens form a 1 x text_len row of 2D tokens whose column
    positions continue after the image's, (0, 0, grid_width + j) in (index, row, col) order, (text_len, 3).

    Seedream 3.0 Technical Report (arXiv:2504.11346), "Cross-modality RoPE".
    """
    ids = torch.zeros(text_len, 3, device=device)
    ids[:, 2] = torch.arange(text_len, device=device, dtype=torch.float32) + grid_width
    return ids
