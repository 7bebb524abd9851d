"""Bytes a network keeps for its backward pass, measured with saved-tensor hooks, and the per-token
coefficients compiler/plan/memory.py plans activations with.

`saved_bytes` runs one forward of a spec's network (build_model) under
torch.autograd.graph.saved_tensors_hooks and adds up the storages autograd saves for backward: each storage
once (a view, a chunk or a transposed copy saved by two ops is one allocation), parameters left out (they are
model states). Each storage is booked to the repeated block (`repeated_blocks`) whose forward first saved it,
or to "outside" (embedders, final layer, the U-Nets' conditioning).

`coefficients` derives the planner's form from the measurement. A block saves tensors of (tokens x width),
each width one of the model width d, the MLP width f or the number of heads h (the attention's log-sum-exp,
float32), plus per-sample modulation vectors (B x k d, not counted: under 0.1% at full scale). So the bytes a
block saves are linear in the image/video tokens and the text tokens, with slopes a d + b f + c h. Slopes come
from differences (two image sizes, two text lengths: per-sample terms cancel); a, b, c from three widths that
differ in one of d/h/f at a time. `python -m runtime.models.activation_memory` prints the table for every
family the runtime builds; paste it into compiler/plan/memory.py ACTIVATION_COEFFICIENTS.

Measured in eager mode on CPU: torch.compile'd blocks (the GPU runs) may save less, as AOTAutograd's
partitioner recomputes cheap pointwise results (the norms' float32 upcasts) instead of saving them, so the
plan is an upper bound there. Attention is fused (scaled_dot_product_attention's flash kernel on CPU as on
GPUs): no score matrix is saved.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from compiler.resolve import apply_overrides
from compiler.scale import scaled
from compiler.schema.architecture import Cascade, DiT, MMDiT
from compiler.schema.spec import Spec
from runtime.models.factory import FAMILY_INPUTS, ModelAdapter, build_model

OUTSIDE = "outside"
TEXT_TOKENS = (16, 8)  # two text lengths, for the text slope
SIDES = (16, 8)  # two latent sides, for the image slope; 16 first: the test's sample


def _inputs(model: ModelAdapter, spec: Spec, side: int, text_tokens: int, frames: int, dtype) -> tuple:
    """One sample's (latents, timestep, keyword inputs) for `model` at `side` latent cells a side."""
    architecture = spec.architecture
    video = _video(spec)
    channels = architecture.space.channels
    latents = torch.randn(1, channels, *((frames,) if video else ()), side, side, dtype=dtype)
    wanted = FAMILY_INPUTS[model.family]
    token_encoder = next(e for e in architecture.text_encoders if e.role in ("tokens", "cross_attention"))
    inputs = {"text": torch.randn(1, text_tokens, token_encoder.dim, dtype=dtype)}
    if "text_mask" in wanted and model.family != "flux":  # FLUX attends to every token; the mask is unused
        inputs["text_mask"] = torch.ones(1, text_tokens, dtype=torch.long)
    pooled = [e for e in architecture.text_encoders if e.role == "pooled"]
    if pooled and "pooled" in wanted:
        inputs["pooled"] = torch.randn(1, pooled[0].dim, dtype=dtype)
    if getattr(architecture.backbone, "guidance_embed", False):
        inputs["guidance"] = torch.full((1,), 3.5, dtype=dtype)
    glyphs = [e for e in architecture.text_encoders if e.role == "glyph"]
    if glyphs and "glyph" in wanted:
        inputs["glyph"] = torch.randn(1, text_tokens, glyphs[0].dim, dtype=dtype)
    if model.family == "unet" and model.model.config.low_res_conditioning:
        inputs["lowres"] = torch.randn(1, channels, side // 2, side // 2, dtype=dtype)
        if model.model.config.noise_conditioning_augmentation:
            inputs["aug_level"] = torch.rand(1, dtype=dtype)
    timestep = (torch.rand(1) * model.time_scale).to(dtype)
    return latents, timestep, inputs


def saved_bytes(spec: Spec, side: int, text_tokens: int, frames: int = 5, dtype=torch.bfloat16,
                model_name: str = "main", frozen: bool = False) -> dict[str, int]:
    """Bytes saved for backward by one forward of one sample, per repeated-block list and OUTSIDE.

    frozen: the network's weights take no gradient and the gradient flows to its input latents only, as
    through LADD's teacher (runtime/train/losses.py LaddLoss: the student's sample re-noised through the frozen
    teacher with gradients on); linear layers then keep no input, as only their weight is needed."""
    torch.manual_seed(0)
    model = build_model(spec.architecture, model_name).to(dtype)
    if frozen:
        model.requires_grad_(False)
    network = model.model
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    where = [OUTSIDE]
    given: dict[int, int] = defaultdict(int)  # storage -> how many blocks took it as an input

    def enter(module, args, kwargs, name):
        where[0] = name
        for tensor in _tensors((args, kwargs)):
            given[tensor.untyped_storage().data_ptr()] += 1

    for name in network.repeated_blocks:
        for block in getattr(network, name):
            block.register_forward_pre_hook(lambda m, a, k, name=name: enter(m, a, k, name), with_kwargs=True)
            block.register_forward_hook(lambda module, args, out: where.__setitem__(0, OUTSIDE))
    saved: dict[int, tuple[str, int]] = {}  # storage -> (where it was first saved, its bytes)

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in parameters and pointer not in saved:
            saved[pointer] = (where[0], storage.nbytes())
        return tensor

    latents, timestep, inputs = _inputs(model, spec, side, text_tokens, frames, dtype)
    latents.requires_grad_(frozen)
    with saved_tensors_hooks(pack, lambda tensor: tensor):
        model(latents, timestep, **inputs)
    booked: dict[str, int] = defaultdict(int)
    for pointer, (name, nbytes) in saved.items():
        # Inputs every block shares (RoPE tables, the time embedding, Wan's text) are the network's, not a block's.
        booked[OUTSIDE if given[pointer] > 1 else name] += nbytes
    return dict(booked)


def _tensors(value) -> list[torch.Tensor]:
    """The tensors in a block's arguments, through tuples, lists, dicts and dataclasses (RopeTables)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [t for field in value.__dataclass_fields__ for t in _tensors(getattr(value, field))]
    return []


def block_counts(network: nn.Module) -> dict[str, int]:
    """Blocks in each repeated-block list."""
    return {name: len(getattr(network, name)) for name in network.repeated_blocks}


def tokens(spec: Spec, side: int, frames: int) -> int:
    """Image/video tokens of a (side x side [x frames]) latent: what the planner's workload counts."""
    pt, ph, pw = spec.architecture.backbone.patch_size
    return (side // ph) * (side // pw) * (max(frames // pt, 1) if _video(spec) else 1)


def _video(spec: Spec) -> bool:
    """Whether the network takes (B, C, F, H, W) latents (runtime/models/factory.py VIDEO_FAMILIES)."""
    backbone = spec.architecture.backbone
    video_family = isinstance(backbone, DiT) or (isinstance(backbone, MMDiT) and backbone.block_style == "hunyuan_video")
    return video_family and spec.modality == "video"


def widths(spec: Spec) -> tuple[int, int, int]:
    """(d, f, h): model width, MLP width, attention heads."""
    backbone = spec.architecture.backbone
    ffn = getattr(backbone, "ffn_dim", None) or int(backbone.hidden_size * backbone.mlp_ratio)
    return backbone.hidden_size, ffn, backbone.num_heads


def slopes(spec: Spec, dtype, frozen: bool = False) -> dict[str, tuple[float, float]]:
    """Bytes per image token and per text token, per block (per block list) or OUTSIDE (whole)."""
    (big, small), (long, short) = SIDES, TEXT_TOKENS
    base = saved_bytes(spec, big, long, dtype=dtype, frozen=frozen)
    fewer_image = saved_bytes(spec, small, long, dtype=dtype, frozen=frozen)
    fewer_text = saved_bytes(spec, big, short, dtype=dtype, frozen=frozen)
    image_tokens = tokens(spec, big, 5) - tokens(spec, small, 5)
    counts = block_counts(build_model(spec.architecture).model)
    result = {}
    for name in base:
        per = counts.get(name, 1)
        result[name] = ((base[name] - fewer_image.get(name, 0)) / image_tokens / per,
                        (base[name] - fewer_text.get(name, 0)) / (long - short) / per)
    return result


def _width_variants(spec: Spec) -> dict[str, Spec]:
    """The smoke spec and one variant each with fewer heads (same d) and, where the family lets the MLP width
    vary, a narrower MLP."""
    backbone = spec.architecture.backbone
    positions = backbone.positions
    heads = ["architecture.backbone.num_heads=1", f"architecture.backbone.head_dim={backbone.hidden_size}"]
    if hasattr(positions, "axes_dims"):
        dims = [d * 2 for d in positions.axes_dims]  # head_dim doubles from 16 to 32
        heads.append(f"architecture.backbone.positions.axes_dims={dims}")
    variants = {"base": spec, "heads": apply_overrides(spec, heads)}
    if isinstance(backbone, DiT) and backbone.modulation != "adaln_expert":
        variants["ffn"] = apply_overrides(spec, [f"architecture.backbone.ffn_dim={widths(spec)[1] // 2}"])
    elif isinstance(backbone, MMDiT) and backbone.block_style != "sd3":
        variants["ffn"] = apply_overrides(spec, [f"architecture.backbone.mlp_ratio={backbone.mlp_ratio / 2}"])
    return variants


def coefficients(spec: Spec, dtype=torch.bfloat16, frozen: bool = False) -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
    """Per block list and OUTSIDE: (per image token, per text token) coefficients (a, b, c, e) of
    bytes = a d + b f + c h + e head_dim.

    Blocks: e = 0; the heads variant (h halves, head_dim doubles, d fixed) gives c, from the per-head
    float32 statistics (log-sum-exp, RMSNorm's). Families whose MLP is 4 d by construction (SD3, CogVideoX)
    get b = 0 and the MLP in a. OUTSIDE: b = c = 0; the heads variant gives e, from the RoPE tables (tokens x
    head_dim, float32) every block shares; its other widths (latent channels, the encoders') are the spec's."""
    variants = _width_variants(spec)
    measured = {key: slopes(variant, dtype, frozen) for key, variant in variants.items()}
    d, f, h = widths(spec)
    head_dim = spec.architecture.backbone.head_dim
    result = {}
    for name, base in measured["base"].items():
        per_stream = []
        for stream in (0, 1):
            change = base[stream] - measured["heads"][name][stream]
            if name == OUTSIDE:
                e = -change / head_dim  # head_dim doubles in the variant
                per_stream.append((round((base[stream] - e * head_dim) / d, 4), 0.0, 0.0, round(e, 4)))
                continue
            c = change / (h - 1)
            b = (base[stream] - measured["ffn"][name][stream]) / (f / 2) if "ffn" in measured else 0.0
            per_stream.append((round((base[stream] - b * f - c * h) / d, 4), round(b, 4), round(c, 4), 0.0))
        result[name] = tuple(per_stream)
    return result


def family_specs() -> dict[str, Spec]:
    """One smoke-scale spec per family the runtime builds: shipped specs, and the test specs of the families
    without one (tests/runtime/family_specs.py)."""
    import specs

    location = Path(__file__).resolve().parents[2] / "tests" / "runtime" / "family_specs.py"
    module_spec = importlib.util.spec_from_file_location("family_specs", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    chosen = {
        "flux": specs.load("flux1-dev"), "qwen_image": specs.load("qwen-image"),
        "dit": specs.load("wan2.1-t2v-1.3b"), "hunyuan_video": module.HUNYUAN_VIDEO, "sd3": module.SD3_MEDIUM,
        "cogvideox": module.COGVIDEOX_5B,
    }
    return {family: scaled(spec, "smoke") for family, spec in chosen.items()}


def main() -> None:
    """Print ACTIVATION_COEFFICIENTS and FROZEN_ACTIVATION_COEFFICIENTS for compiler/plan/memory.py, measured
    now (about a minute on one core)."""
    for frozen, name in ((False, "ACTIVATION_COEFFICIENTS"), (True, "FROZEN_ACTIVATION_COEFFICIENTS")):
        print(f"{name}: dict[str, dict[str, dict[str, tuple]]] = {{")
        for dtype, label in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
            print(f'    "{label}": {{')
            for family, spec in family_specs().items():
                table = coefficients(spec, dtype, frozen)
                rows = ", ".join(f'"{block}": ({_row(image)}, {_row(text)})' for block, (image, text) in table.items())
                print(f'        "{family}": {{{rows}}},')
            print("    },")
        print("}")


def _row(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value + 0.0:g}" for value in values) + ")"


if __name__ == "__main__":
    main()
