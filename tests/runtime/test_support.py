"""compiler/schema/support.py against the runtime: what it declares supported builds and runs, what it
declares unsupported is refused by the runtime, and the runtime's registries hold nothing undeclared."""

import importlib.util
from pathlib import Path

import pytest

import specs
from compiler.scale import scaled
from compiler.schema import support
from compiler.schema.architecture import LearnedPositions, MSRope, Rope, ScaledRope
from compiler.schema.objective import FlowMatching, NoisePrediction, ScoreMatching, VPrediction
from runtime.curation import registry
from runtime.models import build_network
from runtime.objectives.build import build_objective

def _load_family_specs():
    """tests/runtime/family_specs.py by path: pytest runs with --import-mode=importlib, so tests/ is not on
    sys.path."""
    location = Path(__file__).with_name("family_specs.py")
    module_spec = importlib.util.spec_from_file_location("family_specs", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


FAMILY_SPECS = _load_family_specs().FAMILY_SPECS
# One shipped spec per family the runtime builds (cascades have no backbone-wide fields to vary).
REPRESENTATIVES = {"mmdit/flux": "flux1-dev", "mmdit/qwen_image": "qwen-image", "dit": "wan2.1-t2v-1.3b",
                   "spacetime_dit": "sora"}


def positions_variants(positions):
    axes, dims = list(getattr(positions, "axes", ["h", "w"])), list(getattr(positions, "axes_dims", [8, 8]))
    return [
        Rope(axes=axes, axes_dims=dims), Rope(axes=axes, axes_dims=dims, text="cross_modality"),
        Rope(axes=axes, axes_dims=dims, text="none"),
        MSRope(axes=axes, axes_dims=dims), MSRope(axes=axes, axes_dims=dims, centred=False),
        ScaledRope(axes=axes, axes_dims=dims, reference_grid=[64] * len(axes)), LearnedPositions(),
        LearnedPositions(max_size=8), LearnedPositions(max_size=8, trained=False),
    ]


def backbone_variants(backbone):
    """(field, value) pairs covering every schema value of the fields support.py declares for backbones."""
    variants = [("qk_norm", value) for value in ("none", "rmsnorm_per_head", "rmsnorm_across_heads",
                                                  "layernorm_per_head")]
    variants += [("qkv_bias", False), ("qkv_bias", True), ("norm_eps", 1e-5), ("norm_eps", 1e-6)]
    variants += [("positions", p) for p in positions_variants(backbone.positions)]
    if backbone.kind == "mmdit":
        variants += [("text_input_norm", True), ("text_input_norm", False), ("patch_size", (1, 2, 2)),
                     ("patch_size", (1, 1, 2)), ("patch_size", (2, 2, 2))]
    else:
        variants += [("modulation", "adaln_single"), ("modulation", "adaln_per_block"),
                     ("text_conditioning", "cross_attention"), ("text_conditioning", "in_context")]
    return variants


def representative(family: str):
    """A shipped spec of the family, or for issue 17's families the test spec (tests/family_specs.py)."""
    return specs.load(REPRESENTATIVES[family]) if family in REPRESENTATIVES else FAMILY_SPECS[family]


@pytest.mark.parametrize("family", [*REPRESENTATIVES, *FAMILY_SPECS])
def test_declared_backbone_values_build_and_the_rest_are_refused(family):
    spec = scaled(representative(family), "smoke")
    assert support.family_of(spec.architecture.backbone) == family
    checked = 0
    for field, value in backbone_variants(spec.architecture.backbone):
        backbone = spec.architecture.backbone.model_copy(update={field: value})
        architecture = spec.architecture.model_copy(update={"backbone": backbone})
        declared = [u for u in support.unsupported(spec.model_copy(update={"architecture": architecture}))
                    if u.path.startswith(support.BACKBONE)]
        if declared:
            with pytest.raises(NotImplementedError):
                build_network(architecture)
        else:
            build_network(architecture)  # declared supported: it must build
        checked += 1
    assert checked >= 12


def test_every_family_of_the_schema_is_declared_and_built():
    shipped = [specs.load(name) for name in specs.SHIPPED] + list(FAMILY_SPECS.values())
    built = {support.family_of(scaled(spec, "smoke").architecture.backbone) for spec in shipped}
    assert built == set(support.FAMILIES)


@pytest.mark.parametrize("kind", list(support.OBJECTIVES))
def test_declared_loss_weightings_build_and_the_rest_are_refused(kind):
    stage = scaled(specs.load("flux1-dev"), "smoke").schedule.stages[0]
    make = {"flow_matching": FlowMatching, "noise_prediction": NoisePrediction, "v_prediction": VPrediction,
            "score_matching": ScoreMatching}[kind]
    for weighting in ("none", "sigma_sqrt", "cosmap", "min_snr", "edm"):
        objective = make(loss_weighting=weighting)
        if weighting in support.OBJECTIVES[kind]:
            build_objective(objective, stage, image_tokens=256)
        else:
            with pytest.raises((ValueError, NotImplementedError)):
                build_objective(objective, stage, image_tokens=256)


def test_declared_samplers_are_the_ones_the_checkpoint_sampler_runs():
    from runtime.samplers import from_checkpoint as sample

    assert support.SAMPLERS["flow_matching"] == sample.FLOW_SAMPLERS
    assert support.SAMPLERS["score_matching"] == sample.EDM_SAMPLERS
    assert support.SAMPLERS["noise_prediction"] == support.SAMPLERS["v_prediction"] == sample.DDPM_SAMPLERS


def test_declared_curation_ops_are_exactly_the_registered_implementations():
    # tests/runtime/curation/model_ops.py registers "test-*" scorers for the executor tests in this session
    table = {kind: kept for kind, scorers in registry.registered().items()
             if (kept := [scorer for scorer in scorers if not scorer.startswith("test-")])}
    assert {kind: sorted(scorers) for kind, scorers in support.OPS.items()} == table
    for kind, scorers in table.items():
        for scorer in scorers:
            implementation = registry.implementation_for(_op(kind, None if scorer == "*" else scorer))
            assert support.op_smoke_only(kind, scorer) == getattr(implementation, "smoke_only", False), (kind, scorer)


def _op(kind, scorer):
    class Op:  # implementation_for reads only kind, scorer and name
        pass

    op = Op()
    op.kind, op.scorer, op.name = kind, scorer, kind
    return op


def test_two_glyph_encoders_are_declared_unsupported_as_the_trainer_refuses_them():
    from runtime.objectives.conditioning import ROLE_INPUT, text_input_widths

    assert support.ENCODER_INPUTS == ROLE_INPUT
    spec = specs.load("seedream-3.0")
    glyph = next(e for e in spec.architecture.text_encoders if e.role == "glyph")
    doubled = [*spec.architecture.text_encoders, glyph.model_copy(update={"name": "x"})]
    architecture = spec.architecture.model_copy(update={"text_encoders": doubled})
    assert [u.path for u in support.unsupported(spec.model_copy(update={"architecture": architecture}))] == [
        "architecture.text_encoders"]
    with pytest.raises(NotImplementedError, match="second glyph encoder"):
        text_input_widths(architecture)


def test_released_layouts_are_those_the_runtime_maps():
    from runtime.models.released import LAYOUTS

    assert support.RELEASED_LAYOUTS and sorted(support.RELEASED_LAYOUTS) == sorted(LAYOUTS)
    assert all(set(families) <= set(support.FAMILIES) for families in support.RELEASED_LAYOUTS.values())
