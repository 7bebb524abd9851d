"""What the runtime builds and runs, declared without importing it: the contract between a spec and runtime/.

A spec can name anything the schema accepts; the runtime implements a subset (runtime/models/factory.py,
runtime/objectives, runtime/samplers/from_checkpoint.py, runtime/curation/ops/*.py). This module states that subset so that
`genspec validate` and `compile` refuse a spec the runtime cannot run, naming the field, instead of a
NotImplementedError minutes into a run. Like compiler/schema/bundle.py it is a contract: it imports only the
standard library and pydantic, and tests/runtime/test_support.py fails when the runtime builds something
undeclared here or lacks something declared here.

Public API (stable; docs/reference.md's "runtime supports" column is generated from it):

  unsupported(spec) -> list[Unsupported]     every (path, value, missing) of a spec the runtime lacks
  field_support(model, field) -> str | None  for a schema class and one of its fields, what the runtime
                                             supports when it is narrower than the schema, else None
  op_implemented(kind, scorer) -> bool       whether a curation op kind (with that scorer) has an implementation
  op_smoke_only(kind, scorer) -> bool        whether that implementation is a stand-in run only at smoke scale
  stand_ins(spec) -> list                    (path, scorer, support) of each op of a spec only a stand-in runs

The tables (FAMILIES, QK_NORMS, OBJECTIVES, SAMPLERS, OPS, ...) are data; read them, do not mutate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from compiler.schema.architecture import ROLE_INPUT

BACKBONE = "architecture.backbone"
ANY_SCORER = "*"


@dataclass(frozen=True)
class Unsupported:
    """One value of a spec the runtime does not implement: where it is, what it is, and what exists instead."""

    path: str
    value: Any
    missing: str

    def __str__(self) -> str:
        return f"{self.path} = {self.value!r}: {self.missing}"


@dataclass(frozen=True)
class Family:
    """A network the runtime builds (runtime/models/factory.py) and the backbone values it accepts."""

    name: str
    module: str
    qk_norms: tuple[str, ...]
    positions: str  # what positional encodings it builds, in words
    fixed: tuple[tuple[str, Any], ...] = ()  # backbone fields the implementation hard-codes: (field, value)


# Backbone kind (and MMDiT block style) -> the family network built for it.
FAMILIES: dict[str, Family] = {
    "mmdit/flux": Family(
        "mmdit/flux", "runtime.models.flux.MMDiT", ("rmsnorm_per_head",),
        "rope over (index, h, w) or (h, w), text at zeros or cross_modality",
        (("qkv_bias", True), ("norm_eps", 1e-6), ("text_input_norm", False)),
    ),
    "mmdit/qwen_image": Family(
        "mmdit/qwen_image", "runtime.models.qwen_image.QwenImageMMDiT", ("rmsnorm_per_head",), "centred msrope",
        (("qkv_bias", True), ("norm_eps", 1e-6), ("single_blocks", 0), ("pooled_dim", None),
         ("guidance_embed", False), ("context_images", "none"), ("text_input_norm", True)),
    ),
    "mmdit/hunyuan_video": Family(
        "mmdit/hunyuan_video", "runtime.models.hunyuan_video.HunyuanVideoMMDiT", ("rmsnorm_per_head",),
        "rope over (t, h, w), text unrotated",
        (("qkv_bias", True), ("norm_eps", 1e-6), ("text_input_norm", False), ("context_images", "none")),
    ),
    "mmdit/sd3": Family(
        "mmdit/sd3", "runtime.models.sd3.SD3MMDiT", ("none", "rmsnorm_per_head"),
        "a fixed table cropped at its centre (learned, max_size set, trained false)",
        (("qkv_bias", True), ("norm_eps", 1e-6), ("text_input_norm", False), ("context_images", "none"),
         ("single_blocks", 0), ("guidance_embed", False), ("mlp_ratio", 4.0)),
    ),
    "dit/adaln_expert": Family(
        "dit/adaln_expert", "runtime.models.cogvideox.CogVideoXDiT", ("layernorm_per_head",),
        "scaled_rope over (t, h, w) split d/4, 3d/8, 3d/8",
        (("qkv_bias", True), ("text_conditioning", "in_context"), ("mlp_ratio", 4.0)),
    ),
    "dit": Family(
        "dit", "runtime.models.wan.WanDiT", ("rmsnorm_per_head", "rmsnorm_across_heads", "none"),
        "rope over a subset of (t, h, w)",
        (("qkv_bias", True), ("modulation", "adaln_single"), ("text_conditioning", "cross_attention")),
    ),
    "spacetime_dit": Family(
        "spacetime_dit", "runtime.models.wan.WanDiT", ("rmsnorm_per_head", "rmsnorm_across_heads", "none"),
        "rope over a subset of (t, h, w)",
        (("qkv_bias", True), ("modulation", "adaln_single"), ("text_conditioning", "cross_attention")),
    ),
    "cascade": Family("cascade", "runtime.models.unet.UNet / EfficientUNet", (), "none (U-Nets)"),
}
# Released-weight layouts (runtime/models/released.py LAYOUTS) -> the families whose parameters they name. Every
# transformer family carries diffusers' parameter names; BFL's file names FLUX's, Wan2.1's names WanDiT's.
RELEASED_LAYOUTS: dict[str, tuple[str, ...]] = {
    "diffusers": tuple(name for name in FAMILIES if name != "cascade"),
    "bfl": ("mmdit/flux",),
    "wan": ("dit", "spacetime_dit"),
}
QK_NORMS = ("rmsnorm_per_head", "rmsnorm_across_heads", "layernorm_per_head", "none")  # every family's together
POSITIONS = ("rope", "msrope", "learned", "scaled_rope")  # learned: SD3's fixed table; scaled_rope: CogVideoX's
MODULATIONS = ("adaln_single", "adaln_expert")
TEXT_CONDITIONING = ("cross_attention", "in_context")
# Objective kind -> loss weightings its runtime objective implements (runtime/objectives/*.py).
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "flow_matching": ("none", "sigma_sqrt", "cosmap"),
    "noise_prediction": ("none", "min_snr"),
    "v_prediction": ("none", "min_snr"),
    "score_matching": ("none", "edm"),
}
# Objective kind -> inference.sampler values runtime/samplers/from_checkpoint.py runs for it.
SAMPLERS: dict[str, tuple[str, ...]] = {
    "flow_matching": ("euler", "heun", "dpm_solver", "unipc"),
    "score_matching": ("heun",),
    "noise_prediction": ("ddim", "ddpm", "euler"),
    "v_prediction": ("ddim", "ddpm", "euler"),
}
# Text-encoder role -> the denoiser input it feeds; the trainer reads one tensor per input, several token
# encoders joined by architecture.joint_tokens and pooled vectors concatenated (ArchitectureSpec.text_regions).
ENCODER_INPUTS = ROLE_INPUT


@dataclass(frozen=True)
class OpSupport:
    """A curation op implementation: `smoke_only` marks a stand-in that the compiler refuses at full scale,
    `why` says what is not ported, `instead` names the full-scale scorer to use and `instead_is` what it is."""

    smoke_only: bool = False
    why: str = ""
    instead: str = ""
    instead_is: str = ""


# Curation op kind -> scorer ("*" for every scorer) -> its implementation (runtime/curation/ops/*.py).
OPS: dict[str, dict[str, OpSupport]] = {
    **{kind: {ANY_SCORER: OpSupport()} for kind in (
        "active_learning", "aesthetic", "ai_generated", "aspect_ratio", "balance", "blur", "caption_pii",
        "clip_similarity", "corruption", "defect_mask", "duration", "exact_dedup", "exposure", "human_review",
        "motion_tiers", "perceptual_dedup", "precompute_embeddings", "probe", "recaption", "resolution", "safety", "scene_split",
        "score_conditioning", "semantic_dedup", "synthetic_text", "trim", "visual_quality",
    )},
    "frame_consistency": {"dssim": OpSupport(), "lpips": OpSupport()},
    "motion_score": {"farneback": OpSupport(), "raft": OpSupport(), "unimatch": OpSupport(
        smoke_only=True, why="the UniMatch flow network (Xu et al. 2023) is not ported",
        instead="raft", instead_is="torchvision's RAFT, a real optical-flow network on the same pixels-per-frame scale")},
    "ocr_text_area": {"craft": OpSupport()},
    "watermark": {ANY_SCORER: OpSupport(), "laion-watermark": OpSupport()},
    "technical_quality": {"clip-technical-regressor": OpSupport(), "dover": OpSupport(
        smoke_only=True, why="DOVER's released checkpoint (DOVER.pth: a fragment-sampled Video Swin-T technical "
        "branch and an inflated ConvNeXt-T aesthetic branch, each with its own head) is not ported",
        instead="clip-technical-regressor",
        instead_is="a regression head on CLIP features; state its `scale`, that of the ratings it learned")},
}


def family_of(backbone: Any) -> str:
    """The FAMILIES key of a backbone: its kind, for an MMDiT its block style, for an expert-adaLN DiT
    `dit/adaln_expert`."""
    if backbone.kind == "mmdit":
        return f"mmdit/{backbone.block_style}"
    if backbone.kind == "dit" and backbone.modulation == "adaln_expert":
        return "dit/adaln_expert"
    return backbone.kind


def _op_support(kind: str, scorer: str | None) -> OpSupport | None:
    scorers = OPS.get(kind, {})
    return scorers.get(scorer or ANY_SCORER) or scorers.get(ANY_SCORER)


def op_implemented(kind: str, scorer: str | None = None) -> bool:
    """Whether the runtime implements curation op `kind` for `scorer` (None: the op has no scorer)."""
    return _op_support(kind, scorer) is not None


def op_smoke_only(kind: str, scorer: str | None = None) -> bool:
    """Whether the implementation of `kind` / `scorer` is a stand-in the runtime runs only at smoke scale."""
    found = _op_support(kind, scorer)
    return found is not None and found.smoke_only


def stand_ins(spec: Any) -> list[tuple[str, str, OpSupport]]:
    """(path of the scorer, scorer, support) of every op of `spec` that only a smoke-scale stand-in runs."""
    found = []
    for pipeline in spec.data.pipelines:
        for op in pipeline.ops:
            support = _op_support(op.kind, getattr(op, "scorer", None))
            if support is not None and support.smoke_only:
                found.append((f"data.pipelines[{pipeline.name}].ops[{op.name}].scorer", op.scorer, support))
    return found


# What the runtime supports where it is narrower than the schema: (schema class, field) -> in words.
_FIELD_SUPPORT: dict[tuple[str, str], str] = {
    ("Backbone", "qk_norm"): ", ".join(QK_NORMS) + " (MMDiTs: rmsnorm_per_head, and none in the sd3 block style; "
    "layernorm_per_head with adaln_expert only)",
    ("Backbone", "qkv_bias"): "true only",
    ("Backbone", "positions"): "rope (MMDiT flux and hunyuan_video styles, DiT), msrope (MMDiT qwen_image style), "
    "learned with max_size and trained false (sd3 style), scaled_rope over (t, h, w) (adaln_expert DiT)",
    ("MMDiT", "norm_eps"): "1e-6 only",
    ("MMDiT", "patch_size"): "square image patches (1, p, p)",
    ("MMDiT", "text_input_norm"): "false for block_style flux, true for qwen_image",
    ("DiT", "modulation"): ", ".join(MODULATIONS),
    ("DiT", "text_conditioning"): "cross_attention with adaln_single, in_context with adaln_expert",
    ("LearnedPositions", "trained"): "false only (sd3 block style)",
    ("ObjectiveBase", "loss_weighting"): "; ".join(f"{k}: {', '.join(v)}" for k, v in OBJECTIVES.items()),
    ("InferenceSpec", "sampler"): "; ".join(f"{k}: {', '.join(v)}" for k, v in SAMPLERS.items()),
    ("TextEncoder", "role"): "any number of token encoders (joined by architecture.joint_tokens) and pooled "
    "encoders (concatenated); at most one glyph encoder",
    ("TextEncoder", "pooled_projection"): "clip family encoders only (CLIPTextModelWithProjection)",
    ("ArchitectureSpec", "joint_tokens"): "MMDiT and DiT backbones (a cascade U-Net reads one token encoder)",
    ("MMDiT", "block_style"): "flux; qwen_image with single_blocks 0, no pooled_dim, no guidance_embed, "
    "context_images none and text_input_norm true; hunyuan_video and sd3 with a pooled_dim",
    ("Rope", "axes"): "(index, h, w) or (h, w) in an MMDiT; any of t, h, w in a DiT",
    ("MSRope", "centred"): "true only",
    ("FlowMatching", "adaptive"): "true only with objective.noise_aware_compute set",
}


def field_support(model: type[BaseModel], field: str) -> str | None:
    """What the runtime supports of `model.field`, when narrower than the schema allows; None otherwise.

    Looks the field up on `model` and its schema base classes, so `field_support(DiT, "qk_norm")` finds the
    entry declared on Backbone."""
    for klass in model.__mro__:
        found = _FIELD_SUPPORT.get((klass.__name__, field))
        if found is not None:
            return found
    kind = getattr(model.model_fields.get("kind"), "default", None) if field == "scorer" else None
    if kind in OPS and ANY_SCORER not in OPS[kind]:  # an op kind implemented for some scorers only
        return ", ".join(f"{scorer} (smoke scale only)" if support.smoke_only else scorer
                         for scorer, support in OPS[kind].items())
    return None


# Checks -----------------------------------------------------------------------------------------


def unsupported(spec: Any) -> list[Unsupported]:
    """Every value of `spec` (a compiler.schema.spec.Spec) the runtime does not implement, in spec order.

    Loss weightings are not repeated here: the objective.loss-weighting-fits-objective rule reads OBJECTIVES."""
    return [*_backbone(spec.architecture), *_encoders(spec.architecture), *_objective(spec), *_sampler(spec),
            *_ops(spec)]


def _backbone(architecture: Any) -> list[Unsupported]:
    backbone = architecture.backbone
    family = FAMILIES.get(family_of(backbone))
    if family is None:
        return [Unsupported(f"{BACKBONE}.kind", family_of(backbone), f"the runtime builds {', '.join(FAMILIES)}")]
    if backbone.kind == "cascade":
        return []
    found = []
    if backbone.qk_norm not in family.qk_norms:
        found.append(Unsupported(f"{BACKBONE}.qk_norm", backbone.qk_norm,
                                 f"the {family.name} network implements {', '.join(family.qk_norms)}"))
    for field, value in family.fixed:
        if getattr(backbone, field) != value:
            found.append(Unsupported(f"{BACKBONE}.{field}", getattr(backbone, field),
                                     f"the {family.name} network implements only {field} = {value!r}"))
    _, patch_h, patch_w = backbone.patch_size
    time_patches = family.name == "mmdit/hunyuan_video"  # spacetime patches (t, p, p)
    if (backbone.kind == "mmdit" or family.name == "dit/adaln_expert") and (
            (backbone.patch_size[0] != 1 and not time_patches) or patch_h != patch_w):
        found.append(Unsupported(f"{BACKBONE}.patch_size", tuple(backbone.patch_size),
                                 f"the {family.name} network packs square image patches (1, p, p)"))
    if family.name == "dit/adaln_expert" and backbone.ffn_dim not in (None, 4 * backbone.hidden_size):
        found.append(Unsupported(f"{BACKBONE}.ffn_dim", backbone.ffn_dim,
                                 f"the {family.name} network's MLP is 4 x hidden_size wide: leave ffn_dim null"))
    if family.name in ("mmdit/hunyuan_video", "mmdit/sd3") and backbone.pooled_dim is None:
        found.append(Unsupported(f"{BACKBONE}.pooled_dim", None,
                                 f"the {family.name} network conditions on a pooled text vector: set pooled_dim"))
    positions = backbone.positions
    if not _positions_built(family.name, positions, backbone):
        expected_kind = {"mmdit/qwen_image": "msrope", "mmdit/sd3": "learned",
                         "dit/adaln_expert": "scaled_rope"}.get(family.name, "rope")
        path, value = ((f"{BACKBONE}.positions.kind", positions.kind) if positions.kind != expected_kind else
                       (f"{BACKBONE}.positions", positions.model_dump(exclude={"axes_dims", "theta"})))
        found.append(Unsupported(path, value, f"the {family.name} network builds {family.positions}"))
    return found


def _positions_built(family: str, positions: Any, backbone: Any) -> bool:
    axes = list(getattr(positions, "axes", []))
    if len(set(axes)) != len(axes):
        return True  # a repeated axis: architecture.rope-axes-cover-inputs reports the axes, whatever the family
    if family == "mmdit/hunyuan_video":
        return positions.kind == "rope" and axes == ["t", "h", "w"] and positions.text == "none"
    if family == "mmdit/sd3":
        return positions.kind == "learned" and positions.max_size is not None and not positions.trained
    if family == "dit/adaln_expert":
        d = backbone.head_dim
        return (positions.kind == "scaled_rope" and axes == ["t", "h", "w"]
                and list(positions.axes_dims) == [d // 4, d // 8 * 3, d // 8 * 3])
    if family == "mmdit/flux":
        return positions.kind == "rope" and axes in (["index", "h", "w"], ["h", "w"]) and positions.text in (
            "zeros", "cross_modality")
    if family == "mmdit/qwen_image":
        return positions.kind == "msrope" and positions.centred
    return positions.kind == "rope" and set(axes) <= {"t", "h", "w"}


def _encoders(architecture: Any) -> list[Unsupported]:
    if architecture.backbone.kind == "cascade":
        return []  # a cascade U-Net attends to one token encoder; architecture rules check its width
    # Several token encoders without joint_tokens: architecture.joint-tokens-cover-encoders reports them.
    # Distinct names: two encoders of one name are architecture.unique-names's problem.
    glyphs = list(dict.fromkeys(e.name for e in architecture.text_encoders if e.role == "glyph"))
    if len(glyphs) > 1:
        return [Unsupported("architecture.text_encoders", glyphs,
                            "the trainer feeds one encoder into the 'glyph' input")]
    return []


def _objective(spec: Any) -> list[Unsupported]:
    objective = spec.objective
    weightings = OBJECTIVES.get(objective.kind)
    if weightings is None:
        return [Unsupported("objective.kind", objective.kind, f"the runtime trains {', '.join(OBJECTIVES)}")]
    found = []  # loss weightings: the objective.loss-weighting-fits-objective rule reads OBJECTIVES
    if getattr(objective, "adaptive", False) and objective.noise_aware_compute is None:
        found.append(Unsupported("objective.adaptive", True, "the runtime implements adaptive flow matching only "
                                 "as noise-aware timestep sampling: set objective.noise_aware_compute"))
    return found


def _sampler(spec: Any) -> list[Unsupported]:
    samplers = SAMPLERS.get(spec.objective.kind, ())
    if spec.inference.sampler in samplers:
        return []
    return [Unsupported("inference.sampler", spec.inference.sampler,
                        f"runtime/samplers/from_checkpoint.py samples a {spec.objective.kind} model with {', '.join(samplers)}")]


def _ops(spec: Any) -> list[Unsupported]:
    found = []
    for pipeline in spec.data.pipelines:
        for op in pipeline.ops:
            scorer = getattr(op, "scorer", None)
            if op_implemented(op.kind, scorer):
                continue
            path = f"data.pipelines[{pipeline.name}].ops[{op.name}]"
            if op.kind in OPS:
                found.append(Unsupported(f"{path}.scorer", scorer,
                                         f"op kind {op.kind} is implemented for scorers {', '.join(OPS[op.kind])}"))
            else:
                found.append(Unsupported(f"{path}.kind", op.kind, "no runtime implementation of this op kind"))
    return found
