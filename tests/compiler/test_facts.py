"""Facts of the shipped specs that were once stated wrong: each value and the provenance that says where it
comes from (issue 13, "corrected facts"). A value checked here is checked against a named public source;
the test fails when either the value or its provenance drifts from it."""

import math

import pytest

import specs
from compiler.document import walk_leaves
from compiler.schema import Size


def leaf(name: str, path: str):
    """(value, provenance) of one leaf of a shipped spec."""
    for found, node, field, value in walk_leaves(specs.load(name)):
        if found == path:
            return value, node.provenance_of(field)
    raise AssertionError(f"{name} has no leaf {path}")


def leaves(name: str, prefix: str):
    """{path: (value, provenance)} of every leaf of a shipped spec under `prefix`."""
    found = {path: (value, node.provenance_of(field)) for path, node, field, value in walk_leaves(specs.load(name))
             if path.startswith(prefix)}
    assert found, f"{name} has no leaves under {prefix}"
    return found


def documented_by(provenance, *sources: str) -> bool:
    return provenance.status == "documented" and all(source in provenance.source for source in sources)


# FLUX -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,caller", [("flux1-dev", "src/flux/cli.py"), ("flux-kontext", "src/flux/cli_kontext.py")])
def test_flux_samples_with_bfls_mu_linear_schedule(name, caller):
    shift = leaves(name, "inference.shift.")
    assert {path.rsplit(".", 1)[1]: value for path, (value, _) in shift.items()} == {
        "kind": "mu_linear", "base_tokens": 256, "max_tokens": 4096, "base_shift": 0.5, "max_shift": 1.15,
        "applies": "sampling",
    }
    for path, (_, provenance) in shift.items():
        assert documented_by(provenance, "black-forest-labs/flux src/flux/sampling.py get_schedule", caller), path
    # 1024^2: 128^2 latents in 2x2 patches are 4096 tokens, so mu = 1.15 and the shift e^mu = 3.16.
    tokens = (1024 // 8 // 2) ** 2
    spec = specs.load(name).inference.shift
    mu = spec.base_shift + (spec.max_shift - spec.base_shift) * (tokens - spec.base_tokens) / (
        spec.max_tokens - spec.base_tokens)
    assert math.exp(mu) == pytest.approx(3.16, abs=0.01)


@pytest.mark.parametrize("name", ["flux1-dev", "flux1-schnell", "flux-kontext"])
def test_the_surveys_resolution_shift_is_a_training_rule(name):
    kind, _ = leaf(name, "objective.shift.kind")
    applies, provenance = leaf(name, "objective.shift.applies")
    assert (kind, applies) == ("resolution", "training")
    assert documented_by(provenance, "survey, §3 FLUX.1 & Flux Kontext, Training Recipe")


def test_schnell_samples_unshifted_as_cli_py_says():
    kind, provenance = leaf("flux1-schnell", "inference.shift.kind")
    assert kind == "none"
    assert documented_by(provenance, "black-forest-labs/flux src/flux/cli.py", "flux-schnell")
    _, applies = leaf("flux1-schnell", "objective.shift.applies")
    assert "cli.py" not in (applies.source or "")  # cli.py says nothing of training


@pytest.mark.parametrize("name", ["flux1-dev", "flux1-schnell", "flux-kontext"])
def test_no_flux_note_claims_a_schema_gap_for_the_sampling_shift(name):
    notes = specs.load(name).notes
    assert any("inference.shift" in note for note in notes)
    assert not [note for note in notes if "get_schedule" in note and "schema gap" in note]


def test_dev_guidance_cites_diffusers_whose_default_it_is():
    value, provenance = leaf("flux1-dev", "inference.guidance_embedded")
    assert value == 3.5
    assert documented_by(provenance, "huggingface/diffusers src/diffusers/pipelines/flux/pipeline_flux.py")
    value, provenance = leaf("flux-kontext", "inference.guidance_embedded")
    assert value == 2.5 and documented_by(provenance, "src/flux/cli_kontext.py")


@pytest.mark.parametrize("path", ["data.sources[edit_triplets].count", "data.datasets[kontext_triplets].count"])
def test_kontexts_millions_of_pairs_is_a_lower_bound(path):
    value, provenance = leaf("flux-kontext", path)
    assert value == 1e6 and provenance.status == "assumed" and "lower bound" in provenance.reason


# Seedream ---------------------------------------------------------------------------------------------


def test_seedream_4_data_scale_is_billions_not_300m():
    value, provenance = leaf("seedream-4.0", "data.sources[image_text].count")
    assert value is None and provenance.status == "undisclosed" and "Billions" in provenance.reason
    assert leaf("seedream-3.0", "data.sources[image_text].count")[0] == 300e6


def test_defect_masks_are_3_0_facts_and_4_0_assumptions():
    for name, status in (("seedream-3.0", "documented"), ("seedream-4.0", "assumed")):
        mask = leaves(name, "data.pipelines[seedream].ops[defect_mask].")
        loss = leaves(name, "objective.masked_loss.")
        assert loss["objective.masked_loss.mask_from"][0] == "defect_mask"
        stated = {provenance.status for _, provenance in [*mask.values(), *loss.values()]} - {"default"}
        assert stated == {status}, name
    _, provenance = leaf("seedream-4.0", "objective.masked_loss.mask_from")
    assert "Seedream 3.0" in provenance.reason


@pytest.mark.parametrize("name", ["seedream-4.0", "imagen-2"])
def test_versions_without_an_overview_row_cite_none(name):
    citing = [path for path, node, field, _ in walk_leaves(specs.load(name))
              if "Overview Comparison" in (node.provenance_of(field).source or "")]
    assert citing == []


@pytest.mark.parametrize("name", ["seedream-2.0", "seedream-3.0", "seedream-4.0"])
def test_the_reward_models_20b_is_a_lower_bound(name):
    value, provenance = leaf(name, "schedule.stages[rlhf].loss.reward_model_params")
    assert value == 20e9
    assert provenance.status == "assumed" and "lower bound" in provenance.reason and ">20B" in provenance.reason


def test_seedream_2_buckets_are_documented_for_pre_training_only():
    buckets = {path: provenance.status for path, (_, provenance) in leaves("seedream-2.0", "schedule.stages[").items()
               if path.endswith(".aspect_ratio_buckets")}
    assert buckets.pop("schedule.stages[pretrain].aspect_ratio_buckets") == "documented"
    assert buckets and set(buckets.values()) == {"assumed"}, buckets
