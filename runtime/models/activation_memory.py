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
differ in one of d/h/f at a time. The cascade U-Nets are measured per ResBlock and attention block instead
(`unet_coefficients`). `python scripts/measure_activations.py` prints the tables for every family the runtime
builds; paste them into compiler/plan/memory.py.

Measured in eager mode on CPU: torch.compile'd blocks (the GPU runs) may save less, as AOTAutograd's
partitioner recomputes cheap pointwise results (the norms' float32 upcasts) instead of saving them, so the
plan is an upper bound there. Attention is fused (scaled_dot_product_attention's flash kernel on CPU as on
GPUs): no score matrix is saved.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from compiler.resolve import apply_overrides
from compiler.schema.architecture import DiT, MMDiT
from compiler.schema.spec import Spec
from runtime.models.factory import FAMILY_INPUTS, ModelAdapter, build_model
from runtime.objectives.conditioning import text_input_widths

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
    widths = text_input_widths(architecture)  # joined encoders (SD3's CLIP-L + CLIP-G | T5) give one width
    inputs = {"text": torch.randn(1, text_tokens, widths["text"], dtype=dtype)}
    if "text_mask" in wanted and model.family != "flux":  # FLUX attends to every token; the mask is unused
        inputs["text_mask"] = torch.ones(1, text_tokens, dtype=torch.long)
    if "pooled" in widths and "pooled" in wanted:
        inputs["pooled"] = torch.randn(1, widths["pooled"], dtype=dtype)
    if getattr(architecture.backbone, "guidance_embed", False):
        inputs["guidance"] = torch.full((1,), 3.5, dtype=dtype)
    if "glyph" in widths and "glyph" in wanted:
        inputs["glyph"] = torch.randn(1, text_tokens, widths["glyph"], dtype=dtype)
    if model.family == "unet" and model.model.config.low_res_conditioning:
        inputs["lowres"] = torch.randn(1, channels, side // 2, side // 2, dtype=dtype)
        if model.model.config.noise_conditioning_augmentation:
            inputs["aug_level"] = torch.rand(1, dtype=dtype)
    timestep = (torch.rand(1) * model.time_scale).to(dtype)
    return latents, timestep, inputs


def saved_bytes(spec: Spec, side: int, text_tokens: int, frames: int = 5, dtype=torch.bfloat16,
                model_name: str = "main", frozen: bool = False, checkpointing: bool = False) -> dict[str, int]:
    """Bytes saved for backward by one forward of one sample, per repeated-block list and OUTSIDE.

    frozen: the network's weights take no gradient and the gradient flows to its input latents only, as
    through LADD's teacher (runtime/train/losses.py LaddLoss: the student's sample re-noised through the frozen
    teacher with gradients on); linear layers then keep no input, as only their weight is needed.
    checkpointing: the repeated blocks run under activation checkpointing (enable_activation_checkpointing):
    what the forward keeps is then what the rest of the network saves plus every block's inputs, which the
    checkpoint holds for the recompute (keyword and RoPE-table inputs by reference, past the saved-tensor
    hooks, so they are counted from the blocks' arguments). The recompute's one block at a time is not in it."""
    torch.manual_seed(0)
    model = build_model(spec.architecture, model_name).to(dtype)
    if frozen:
        model.requires_grad_(False)
    if checkpointing:
        model.enable_activation_checkpointing()
    network = model.model
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    where = [OUTSIDE]
    given: dict[int, int] = defaultdict(int)  # storage -> how many blocks took it as an input
    inputs: dict[int, tuple[str, int]] = {}  # storage -> (the first block that took it, its bytes)

    def enter(module, args, kwargs, name):
        where[0] = name
        for tensor in _tensors((args, kwargs)):
            storage = tensor.untyped_storage()
            given[storage.data_ptr()] += 1
            inputs.setdefault(storage.data_ptr(), (name, storage.nbytes()))

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

    latents, timestep, arguments = _inputs(model, spec, side, text_tokens, frames, dtype)
    latents.requires_grad_(frozen)
    with saved_tensors_hooks(pack, lambda tensor: tensor):
        model(latents, timestep, **arguments)
    if checkpointing:
        for pointer, (name, nbytes) in inputs.items():
            if pointer not in parameters:
                saved.setdefault(pointer, (name, nbytes))
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


def unet_saved_bytes(spec: Spec, model_name: str, side: int, text_tokens: int = 16,
                     dtype=torch.bfloat16) -> dict[str, list]:
    """What one forward of a cascade U-Net saves, booked to the ResBlock or attention block that saved it:
    {"resblock": [(positions, c_in, c_out, bytes)], "attention_<kind>": [(positions, channels, bytes)],
    OUTSIDE: [bytes]} (kind: self_text, self or text, as the block attends)."""
    from runtime.models.unet import AttentionBlock, ResBlock

    torch.manual_seed(0)
    model = build_model(spec.architecture, model_name).to(dtype)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    stack: list = [None]
    booked: dict[int, int] = defaultdict(int)  # id(module) or 0 (outside) -> bytes
    shapes: dict[int, tuple] = {}

    def enter(module, args) -> None:
        stack.append(module)
        shapes.setdefault(id(module), args[0].shape)

    def leave(module, args, output) -> None:
        stack.pop()

    for module in model.modules():
        if isinstance(module, (ResBlock, AttentionBlock)):
            module.register_forward_pre_hook(enter)
            module.register_forward_hook(leave)
    saved: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and storage.data_ptr() not in saved:
            saved.add(storage.data_ptr())
            booked[0 if stack[-1] is None else id(stack[-1])] += storage.nbytes()
        return tensor

    latents, timestep, inputs = _inputs(model, spec, side, text_tokens, 1, dtype)
    with saved_tensors_hooks(pack, lambda tensor: tensor):
        model(latents, timestep, **inputs)
    result: dict[str, list] = defaultdict(list)
    result[OUTSIDE].append(booked[0])
    for module in model.modules():
        if id(module) not in shapes:
            continue
        _, channels, height, width = shapes[id(module)]
        if isinstance(module, ResBlock):
            result["resblock"].append((height * width, channels, module.conv1.out_channels, booked[id(module)]))
        else:
            kind = "self_text" if module.to_k is not None and module.add_k_proj is not None else (
                "self" if module.to_k is not None else "text")
            result[f"attention_{kind}"].append((height * width, channels, booked[id(module)]))
    return dict(result)


def unet_coefficients(spec: Spec, dtype=torch.bfloat16) -> dict[str, float]:
    """Bytes per activation element of each kind compiler/plan/params.py's U-Net walk counts
    (unet_activation_elements), over every U-Net of a cascade spec at its training side: ResBlocks as
    a n c_in + b n c_out (least squares over all ResBlocks), attention blocks as a n c per kind, and "input"
    (the convolutions and norms outside the blocks) as the rest over the walk's input elements."""
    from compiler.plan.cost import _cascade_text_dim, _image_channels
    from compiler.plan.params import unet_activation_elements

    rows, sizes, attention, outside, inputs = [], [], defaultdict(lambda: [0.0, 0.0]), 0.0, 0.0
    names = [unet.name for unet in spec.architecture.backbone.stages]
    # The cascade as specified, then with self-attention only and with text attention only (at the deepest
    # level), so that every kind of attention block is measured.
    variants = [spec,
                apply_overrides(spec, [f"architecture.backbone.stages[{n}].cross_attention=false" for n in names]),
                apply_overrides(spec, [f"architecture.backbone.stages[{n}].attention_resolutions=[]" for n in names])]
    for variant, unet in ((variant, unet) for variant in variants for unet in variant.architecture.backbone.stages):
        side = unet.train_crop or unet.resolution
        measured = unet_saved_bytes(variant, unet.name, side, dtype=dtype)
        for positions, c_in, c_out, nbytes in measured["resblock"]:
            rows.append([positions * c_in, positions * c_out])
            sizes.append(nbytes)
        for kind, blocks in measured.items():
            if kind.startswith("attention_"):
                for positions, channels, nbytes in blocks:
                    attention[kind][0] += nbytes
                    attention[kind][1] += positions * channels
        outside += measured[OUTSIDE][0]
        inputs += unet_activation_elements(unet, _cascade_text_dim(variant), _image_channels(variant), side).total["input"]
    fit = torch.linalg.lstsq(torch.tensor(rows, dtype=torch.float64), torch.tensor(sizes, dtype=torch.float64)[:, None])
    a, b = fit.solution.flatten().tolist()
    result = {"resblock_in": round(a, 4), "resblock_out": round(b, 4), "input": round(outside / inputs, 4)}
    result.update({kind: round(nbytes / elements, 4) for kind, (nbytes, elements) in sorted(attention.items())})
    return result
