"""Rules on the training objective: shifts and loss weightings that fit it, CFG dropout. (The masked loss's
mask source is checked on the stage graph: compiler/graph/checks.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from math import prod

from compiler.diagnostic import Diagnostic
from compiler.schema.objective import CONTINUOUS_OBJECTIVES
from compiler.schema.spec import Spec
from compiler.schema.support import OBJECTIVES
from compiler.validate import rule

# Loss weighting -> the objectives it was defined for (SD3 paper for sigma_sqrt and cosmap; Hang et al. 2023
# for min-SNR on DDPM targets; Karras et al. 2022 for EDM), as compiler/schema/support.py declares them.
WEIGHTING_OBJECTIVES = {
    weighting: tuple(kind for kind, weightings in OBJECTIVES.items() if weighting in weightings)
    for weighting in dict.fromkeys(w for weightings in OBJECTIVES.values() for w in weightings if w != "none")
}
JOINT_RATE_TOLERANCE = 1e-3  # per-encoder rates are usually rounded, e.g. 0.1 ** (1/3) = 0.464


@rule("objective.shift-needs-continuous-time", "a timestep shift applies to continuous-time objectives only")
def shift_needs_continuous_time(spec: Spec) -> Iterator[Diagnostic]:
    shift = getattr(spec.objective, "shift", None)
    if shift is not None and shift.kind != "none" and spec.objective.kind not in CONTINUOUS_OBJECTIVES:
        yield Diagnostic(
            "objective.shift",
            "objective.shift-needs-continuous-time",
            f"a {shift.kind} timestep shift with the discrete-time {spec.objective.kind} objective: "
            "t' = a t / (1 + (a - 1) t) needs t in [0, 1]",
            f"use shift NoShift(), or a continuous-time objective ({', '.join(CONTINUOUS_OBJECTIVES)})",
        )


@rule("objective.shift-token-range", "a token-dependent shift interpolates between two distinct token counts")
def shift_token_range(spec: Spec) -> Iterator[Diagnostic]:
    shift = getattr(spec.objective, "shift", None)
    base, top = getattr(shift, "base_tokens", None), getattr(shift, "max_tokens", None)
    if base is not None and top is not None and base >= top:
        yield Diagnostic(
            "objective.shift.base_tokens",
            "objective.shift-token-range",
            f"{shift.kind} shift: base_tokens {base} >= max_tokens {top}; mu is linear between them "
            "(FLUX: 256 -> 4096 tokens)",
            "set base_tokens below max_tokens",
        )


@rule("objective.loss-weighting-fits-objective", "a loss weighting belongs to the objective it was defined for")
def loss_weighting_fits_objective(spec: Spec) -> Iterator[Diagnostic]:
    weighting, kind = spec.objective.loss_weighting, spec.objective.kind
    allowed = WEIGHTING_OBJECTIVES.get(weighting)
    if allowed is not None and kind not in allowed:
        yield Diagnostic(
            "objective.loss_weighting",
            "objective.loss-weighting-fits-objective",
            f"loss_weighting {weighting!r} is defined for {', '.join(allowed)}, not for the {kind} objective",
            "use loss_weighting 'none', or one defined for this objective",
        )


@rule("objective.cfg-dropout-encoders-known", "per-encoder CFG dropout names the architecture's text encoders")
def cfg_dropout_encoders_known(spec: Spec) -> Iterator[Diagnostic]:
    dropout = spec.objective.cfg_dropout
    if dropout is None:
        return
    known = [encoder.name for encoder in spec.architecture.text_encoders]
    for name in dropout.per_encoder:
        if name not in known:
            yield Diagnostic(
                "objective.cfg_dropout.per_encoder",
                "objective.cfg-dropout-encoders-known",
                f"cfg_dropout drops text encoder {name!r}, which the architecture lacks (encoders: {known})",
                "key per_encoder by names from architecture.text_encoders",
            )


@rule("objective.cfg-dropout-joint-rate", "independent per-encoder drop rates multiply to the joint rate")
def cfg_dropout_joint_rate(spec: Spec) -> Iterator[Diagnostic]:
    dropout = spec.objective.cfg_dropout
    encoders = [encoder.name for encoder in spec.architecture.text_encoders]
    if dropout is None or not encoders or set(dropout.per_encoder) != set(encoders):
        return
    product = prod(dropout.per_encoder.values())
    if abs(product - dropout.joint_rate) > JOINT_RATE_TOLERANCE:
        each = dropout.joint_rate ** (1 / len(encoders))
        yield Diagnostic(
            "objective.cfg_dropout.joint_rate",
            "objective.cfg-dropout-joint-rate",
            f"per-encoder drop rates {dropout.per_encoder} drop all encoders together with probability {product:.4g}, "
            f"but joint_rate is {dropout.joint_rate:g}",
            f"set each encoder's rate to joint_rate ** (1/{len(encoders)}) = {each:.4g}, or joint_rate to {product:.4g}",
            "warning",
        )


