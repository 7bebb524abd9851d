"""Rules on the network: attention heads, rotary axes, latent channels, text-encoder widths, U-Net cascades."""

from __future__ import annotations

from collections.abc import Iterator
from math import prod

from compiler.diagnostic import Diagnostic
from compiler.rules.lookups import item_path, repeated, transformer
from compiler.schema.architecture import MMDiT, MSRope, Rope, ScaledRope
from compiler.schema.spec import Spec
from compiler.validate import rule

BACKBONE = "architecture.backbone"
POSITIONS = f"{BACKBONE}.positions"
SEQUENCE_ROLES = ("tokens", "cross_attention")


def _rotary(spec: Spec) -> Rope | MSRope | ScaledRope | None:
    backbone = transformer(spec)
    if backbone is None or not isinstance(backbone.positions, (Rope, MSRope, ScaledRope)):
        return None
    return backbone.positions


@rule("architecture.heads-divide-hidden", "hidden_size equals num_heads x head_dim")
def heads_divide_hidden(spec: Spec) -> Iterator[Diagnostic]:
    backbone = transformer(spec)
    if backbone is None:
        return
    inner = backbone.num_heads * backbone.head_dim
    if inner == backbone.hidden_size:
        return
    if backbone.hidden_size % backbone.num_heads == 0:
        fix = f"set head_dim to hidden_size / num_heads = {backbone.hidden_size // backbone.num_heads}"
    else:
        fix = f"set hidden_size to {inner}, or num_heads to a divisor of {backbone.hidden_size}"
    yield Diagnostic(
        f"{BACKBONE}.hidden_size",
        "architecture.heads-divide-hidden",
        f"hidden_size {backbone.hidden_size} != num_heads {backbone.num_heads} x head_dim {backbone.head_dim} = {inner}",
        fix,
    )


@rule("architecture.rope-dims-sum-to-head-dim", "rotary axes_dims split the head dimension exactly")
def rope_dims_sum_to_head_dim(spec: Spec) -> Iterator[Diagnostic]:
    positions, backbone = _rotary(spec), transformer(spec)
    if positions is None or backbone is None or sum(positions.axes_dims) == backbone.head_dim:
        return
    yield Diagnostic(
        f"{POSITIONS}.axes_dims",
        "architecture.rope-dims-sum-to-head-dim",
        f"axes_dims {positions.axes_dims} sum to {sum(positions.axes_dims)}, but head_dim is {backbone.head_dim}",
        f"change axes_dims so they sum to {backbone.head_dim} (FLUX: 16+56+56 = 128; Wan: 44+42+42 = 128)",
    )


@rule("architecture.rope-axes-match-dims", "one rotary dim (and one reference grid size) per position axis")
def rope_axes_match_dims(spec: Spec) -> Iterator[Diagnostic]:
    positions = _rotary(spec)
    if positions is None:
        return
    if len(positions.axes) != len(positions.axes_dims):
        yield Diagnostic(
            f"{POSITIONS}.axes_dims",
            "architecture.rope-axes-match-dims",
            f"{len(positions.axes)} axes {positions.axes} but {len(positions.axes_dims)} axes_dims {positions.axes_dims}",
            "give one entry of axes_dims per entry of axes, in the same order",
        )
    if isinstance(positions, ScaledRope) and len(positions.reference_grid) != len(positions.axes):
        yield Diagnostic(
            f"{POSITIONS}.reference_grid",
            "architecture.rope-axes-match-dims",
            f"{len(positions.axes)} axes {positions.axes} but {len(positions.reference_grid)} reference_grid sizes "
            f"{positions.reference_grid}",
            "give one reference grid size per position axis",
        )


@rule("architecture.rope-dims-even", "every rotary axis rotates pairs of channels, so its dim is even")
def rope_dims_even(spec: Spec) -> Iterator[Diagnostic]:
    positions = _rotary(spec)
    if positions is None:
        return
    odd = [(axis, dim) for axis, dim in zip(positions.axes, positions.axes_dims) if dim % 2]
    if odd:
        shown = ", ".join(f"{axis}: {dim}" for axis, dim in odd)
        yield Diagnostic(
            f"{POSITIONS}.axes_dims",
            "architecture.rope-dims-even",
            f"axes_dims {positions.axes_dims} has odd dims ({shown}); rotary embeddings rotate channel pairs",
            "make every axis dim even, keeping the sum equal to head_dim",
        )


@rule("architecture.rope-axes-cover-inputs", "rotary axes include h and w, time for video, an index for context images")
def rope_axes_cover_inputs(spec: Spec) -> Iterator[Diagnostic]:
    positions, backbone = _rotary(spec), transformer(spec)
    if positions is None:
        return
    missing = [axis for axis in ("h", "w") if axis not in positions.axes]
    if missing:
        yield _missing_axis(positions.axes, f"no {' or '.join(missing)} axis: image tokens would share positions")
    if spec.modality == "video" and not {"t", "index"} & set(positions.axes):
        yield _missing_axis(positions.axes, "a video model without a t (or index) axis: all frames share positions")
    if isinstance(backbone, MMDiT) and backbone.context_images == "sequence" and not {"index", "t"} & set(positions.axes):
        yield _missing_axis(
            positions.axes,
            "context_images='sequence' needs an index axis to tell context from target (Kontext: ids[..., 0] = 1)",
        )


def _missing_axis(axes: list[str], why: str) -> Diagnostic:
    return Diagnostic(
        f"{POSITIONS}.axes",
        "architecture.rope-axes-cover-inputs",
        f"rotary axes {axes}: {why}",
        "add the missing axis to axes (and its dims to axes_dims)",
    )


@rule("architecture.channels-match-latent", "in/out channels are the space's channels, or those packed by the patch")
def channels_match_latent(spec: Spec) -> Iterator[Diagnostic]:
    backbone = transformer(spec)
    if backbone is None:
        return
    channels = spec.architecture.space.channels
    packed = channels * prod(backbone.patch_size)
    patch = "x".join(str(p) for p in backbone.patch_size)
    if backbone.out_channels not in (channels, packed):
        yield Diagnostic(
            f"{BACKBONE}.out_channels",
            "architecture.channels-match-latent",
            f"out_channels {backbone.out_channels} is neither the space's {channels} channels nor "
            f"{packed} = {channels} x patch {patch}; the network must predict the latent",
            f"set out_channels to {channels} (unpatchified by the head) or {packed} (packed, as FLUX's 64)",
        )
    if backbone.in_channels not in (channels, packed):
        yield Diagnostic(
            f"{BACKBONE}.in_channels",
            "architecture.channels-match-latent",
            f"in_channels {backbone.in_channels} is neither the space's {channels} channels nor "
            f"{packed} = {channels} x patch {patch}",
            f"set in_channels to {channels} or {packed}, unless extra conditioning channels are concatenated "
            "(then say so in architecture.extras)",
            "warning",
        )


@rule("architecture.context-dim-matches-encoder", "the backbone's text width equals its sequence text encoders' dim")
def context_dim_matches_encoder(spec: Spec) -> Iterator[Diagnostic]:
    backbone = transformer(spec)
    if backbone is None:
        return
    field = "context_dim" if isinstance(backbone, MMDiT) else "text_dim"
    width = getattr(backbone, field)
    if spec.architecture.joint_tokens:
        joined = spec.architecture.text_width()
        groups = [" + ".join(f"{e.name} {e.dim}" for e in group) for group in spec.architecture.token_groups()]
        if joined != width and all(e.dim is not None for g in spec.architecture.token_groups() for e in g):
            yield Diagnostic(
                f"{BACKBONE}.{field}",
                "architecture.context-dim-matches-encoder",
                f"{field} {width} != {joined}, the widest of the joint token lists ({'; '.join(groups)}): the "
                "lists are zero-padded to the widest",
                f"set {field} to {joined}, or correct the encoders' dims",
            )
        return
    for encoder in spec.architecture.text_encoders:
        if encoder.role in SEQUENCE_ROLES and encoder.dim is not None and encoder.dim != width:
            yield Diagnostic(
                f"{BACKBONE}.{field}",
                "architecture.context-dim-matches-encoder",
                f"{field} {width} != dim {encoder.dim} of text encoder {encoder.name!r} (role {encoder.role})",
                f"set {field} to {encoder.dim}, or correct the encoder's dim",
            )


@rule("architecture.joint-tokens-cover-encoders",
      "several token encoders are joined by joint_tokens, which names each once, with equal max_tokens per list")
def joint_tokens_cover_encoders(spec: Spec) -> Iterator[Diagnostic]:
    architecture = spec.architecture
    # Distinct names: two encoders of one name are architecture.unique-names's problem.
    tokens = list(dict.fromkeys(e.name for e in architecture.text_encoders if e.role in SEQUENCE_ROLES))
    listed = [name for group in architecture.joint_tokens for name in group]
    path = "architecture.joint_tokens"
    if not listed:
        if len(tokens) > 1:
            yield Diagnostic(
                path, "architecture.joint-tokens-cover-encoders",
                f"text encoders {tokens} all feed the text tokens, but joint_tokens is empty, so nothing says how "
                "their outputs make one sequence",
                f"set joint_tokens, e.g. [[{', '.join(tokens[:-1])}], [{tokens[-1]}]] (SD3: [[clip_l, clip_g], [t5]])",
            )
        return
    unknown = [name for name in listed if name not in tokens]
    if unknown:
        yield Diagnostic(
            path, "architecture.joint-tokens-cover-encoders",
            f"joint_tokens names {unknown}, which are not text encoders of role tokens or cross_attention "
            f"(those are {tokens})",
            "name only token encoders in joint_tokens",
        )
    missing = [name for name in tokens if name not in listed]
    if missing:
        yield Diagnostic(
            path, "architecture.joint-tokens-cover-encoders",
            f"token encoders {missing} are not in joint_tokens {architecture.joint_tokens}, so their tokens "
            "would be dropped",
            "add each token encoder to one of the joint_tokens lists",
        )
    for index, group in enumerate(architecture.token_groups()):
        lengths = {e.max_tokens for e in group if e.max_tokens is not None}
        if len(lengths) > 1:
            shown = ", ".join(f"{e.name} {e.max_tokens}" for e in group)
            yield Diagnostic(
                f"{path}[{index}]", "architecture.joint-tokens-cover-encoders",
                f"the encoders of one joint list are concatenated along the feature axis token by token, but their "
                f"max_tokens differ ({shown})",
                "give them one max_tokens (SD3's CLIPs: 77), or put them in separate lists (joined on the sequence)",
            )


@rule(
    "architecture.pooled-dim-matches-encoder",
    "MMDiT pooled_dim is set exactly when pooled encoders exist, and equals their total dim",
)
def pooled_dim_matches_encoder(spec: Spec) -> Iterator[Diagnostic]:
    backbone = spec.architecture.backbone
    if not isinstance(backbone, MMDiT):
        return
    pooled = [encoder for encoder in spec.architecture.text_encoders if "pooled" in encoder.inputs]
    path = f"{BACKBONE}.pooled_dim"
    if backbone.pooled_dim is not None and not pooled:
        yield Diagnostic(
            path,
            "architecture.pooled-dim-matches-encoder",
            f"pooled_dim {backbone.pooled_dim} is set but no text encoder has role 'pooled' or pooled true",
            "add the pooled encoder (FLUX: CLIP-L, dim 768, role 'pooled') or set pooled_dim to None",
        )
    elif backbone.pooled_dim is None and pooled:
        names = [encoder.name for encoder in pooled]
        yield Diagnostic(
            path,
            "architecture.pooled-dim-matches-encoder",
            f"text encoders {names} have role 'pooled' but pooled_dim is None: nothing consumes their vectors",
            "set pooled_dim to their total dim, or change their role",
        )
    elif pooled and all(encoder.dim is not None for encoder in pooled):
        total = sum(encoder.dim for encoder in pooled if encoder.dim is not None)
        if total != backbone.pooled_dim:
            shown = " + ".join(f"{encoder.name} {encoder.dim}" for encoder in pooled)
            yield Diagnostic(
                path,
                "architecture.pooled-dim-matches-encoder",
                f"pooled_dim {backbone.pooled_dim} != {shown} = {total} (pooled vectors are concatenated)",
                f"set pooled_dim to {total}",
            )


@rule("architecture.unique-names", "text encoders and cascade U-Nets have distinct names")
def unique_names(spec: Spec) -> Iterator[Diagnostic]:
    for name, count in repeated(encoder.name for encoder in spec.architecture.text_encoders).items():
        yield Diagnostic(
            "architecture.text_encoders",
            "architecture.unique-names",
            f"text encoder name {name!r} is used {count} times; cfg_dropout and precompute ops refer to encoders by name",
            "give each text encoder its own name",
        )
    stages = getattr(spec.architecture.backbone, "stages", [])
    for name, count in repeated(unet.name for unet in stages).items():
        yield Diagnostic(
            f"{BACKBONE}.stages",
            "architecture.unique-names",
            f"cascade U-Net name {name!r} is used {count} times; training stages refer to U-Nets by name",
            "give each U-Net its own name",
        )


@rule("architecture.cascade-pixel-space", "a U-Net cascade denoises pixels")
def cascade_pixel_space(spec: Spec) -> Iterator[Diagnostic]:
    space = spec.architecture.space
    if spec.architecture.backbone.kind == "cascade" and space.kind != "pixel":
        yield Diagnostic(
            "architecture.space",
            "architecture.cascade-pixel-space",
            f"a cascade of pixel U-Nets with a {space.kind} space (vae {getattr(space, 'vae', None)!r}); "
            "its super-resolution stages condition on low-resolution images",
            "set space to PixelSpace(), or use a transformer backbone for latent diffusion",
        )


@rule("architecture.cascade-chain", "each super-resolution U-Net upsamples the previous stage's output")
def cascade_chain(spec: Spec) -> Iterator[Diagnostic]:
    stages = getattr(spec.architecture.backbone, "stages", [])
    for index, unet in enumerate(stages):
        path = item_path(f"{BACKBONE}.stages", stages, index)
        if index == 0:
            if unet.input_resolution is not None:
                yield Diagnostic(
                    f"{path}.input_resolution",
                    "architecture.cascade-chain",
                    f"the base U-Net {unet.name!r} has input_resolution {unet.input_resolution}; "
                    "it has no low-resolution input",
                    "set input_resolution to None on the first cascade stage",
                )
            continue
        previous = stages[index - 1]
        if unet.input_resolution != previous.resolution:
            yield Diagnostic(
                f"{path}.input_resolution",
                "architecture.cascade-chain",
                f"super-resolution U-Net {unet.name!r} takes input_resolution {unet.input_resolution}, "
                f"but the previous stage {previous.name!r} outputs {previous.resolution}",
                f"set input_resolution to {previous.resolution}",
            )
        if unet.resolution <= previous.resolution:
            yield Diagnostic(
                f"{path}.resolution",
                "architecture.cascade-chain",
                f"super-resolution U-Net {unet.name!r} outputs {unet.resolution}, not above the previous "
                f"stage's {previous.resolution}",
                "order the cascade from the base to the largest output, each stage larger than the last",
            )


@rule("architecture.unet-levels-match", "a U-Net gives res_blocks for each level of channel_mult")
def unet_levels_match(spec: Spec) -> Iterator[Diagnostic]:
    stages = getattr(spec.architecture.backbone, "stages", [])
    for index, unet in enumerate(stages):
        if len(unet.res_blocks) != len(unet.channel_mult):
            yield Diagnostic(
                f"{item_path(f'{BACKBONE}.stages', stages, index)}.res_blocks",
                "architecture.unet-levels-match",
                f"U-Net {unet.name!r} has {len(unet.channel_mult)} levels (channel_mult {unet.channel_mult}) but "
                f"{len(unet.res_blocks)} res_blocks entries {unet.res_blocks}",
                "give one res_blocks count per channel_mult level",
            )


@rule("architecture.unet-attention-resolutions", "U-Net attention resolutions are feature sides the U-Net has")
def unet_attention_resolutions(spec: Spec) -> Iterator[Diagnostic]:
    stages = getattr(spec.architecture.backbone, "stages", [])
    for index, unet in enumerate(stages):
        bases = {unet.resolution} | ({unet.train_crop} if unet.train_crop else set())
        sides = {base // 2**level for base in bases for level in range(len(unet.channel_mult))}
        wrong = [side for side in unet.attention_resolutions if side not in sides]
        if wrong:
            yield Diagnostic(
                f"{item_path(f'{BACKBONE}.stages', stages, index)}.attention_resolutions",
                "architecture.unet-attention-resolutions",
                f"U-Net {unet.name!r} attends at {wrong}, but its feature sides are {sorted(sides, reverse=True)} "
                f"({unet.resolution} halved over {len(unet.channel_mult)} levels)",
                "list feature-map sides (e.g. 32, 16, 8 for a 64 px base), not downsampling factors",
            )

