"""Facts of the shipped specs that were once stated wrong: each value and the provenance that says where it
comes from (issue 13, "corrected facts"). A value checked here is checked against a named public source;
the test fails when either the value or its provenance drifts from it."""

import math
from pathlib import Path

import pytest

import specs
from compiler.document import walk_leaves


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


# Allegro ----------------------------------------------------------------------------------------------

ALLEGRO_ARCHITECTURE = [
    "architecture.backbone.hidden_size", "architecture.backbone.num_heads", "architecture.backbone.head_dim",
    "architecture.backbone.patch_size", "architecture.backbone.in_channels", "architecture.backbone.depth",
    "architecture.backbone.text_dim", "architecture.backbone.modulation", "architecture.backbone.text_conditioning",
    "architecture.text_encoders[t5_xxl].role", "architecture.text_encoders[t5_xxl].dim",
    "architecture.space.channels", "architecture.space.spatial_compression",
    "architecture.space.temporal_compression", "architecture.space.causal",
]


@pytest.mark.parametrize("path", ALLEGRO_ARCHITECTURE)
def test_allegros_architecture_cites_diffusers_not_the_readme(path):
    _, provenance = leaf("allegro", path)
    assert documented_by(provenance, "huggingface/diffusers src/diffusers/models/"), (path, provenance)
    assert "README" not in provenance.source and "train.py" not in provenance.source


def test_allegro_samples_720_by_1280_with_the_text_to_video_script():
    resolution = specs.load("allegro").inference.resolution
    assert (resolution.height, resolution.width) == (720, 1280)
    assert documented_by(leaf("allegro", "inference.resolution.width")[1], "rhymes-ai/Allegro README.md")
    sampler, provenance = leaf("allegro", "inference.sampler")
    assert sampler == "euler" and documented_by(provenance, "rhymes-ai/Allegro single_inference.py")
    assert "ti2v" not in provenance.source
    # The README states the sizes it gives: the DiT's 2.8B and the VAE's 175M.
    for path, value in (("architecture.params_documented", 2.8e9), ("architecture.space.params", 175e6)):
        found, provenance = leaf("allegro", path)
        assert found == value and documented_by(provenance, "rhymes-ai/Allegro README.md")


def test_sources_md_does_not_say_the_survey_states_175m():
    text = (Path(__file__).resolve().parents[2] / "docs" / "sources.md").read_text()
    assert "175M" in text and "Allegro's README" in text  # the VAE size is named, with its source...
    assert '"175M"' not in text  # ...never quoted as the survey's words (the survey has no 175M)


# Video sizes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,size,source", [
    ("wan2.1-t2v-14b", (720, 1280), "Wan-Video/Wan2.1 generate.py"),
    # generate.py refuses its 1280*720 default for t2v-1.3B: 480p only.
    ("wan2.1-t2v-1.3b", (480, 832), "Wan-Video/Wan2.1 wan/configs/__init__.py SUPPORTED_SIZES"),
])
def test_wan_samples_at_generate_pys_supported_default(name, size, source):
    resolution = specs.load(name).inference.resolution
    assert (resolution.height, resolution.width) == size
    assert documented_by(leaf(name, "inference.resolution.height")[1], source)


@pytest.mark.parametrize("name", ["sora", "hailuo-02"])
def test_1080p_is_1920_wide_sampled_at_16_px_rows(name):
    resolution = specs.load(name).inference.resolution
    assert (resolution.height, resolution.width) == (1088, 1920)  # 1920 x 1080, rows rounded up to 16 px
    _, provenance = leaf(name, "inference.resolution.width")
    assert provenance.status == "assumed" and "1920 x 1080" in provenance.reason


# Imagen 1 ---------------------------------------------------------------------------------------------

NEMO = "NVIDIA/NeMo examples/multimodal/text_to_image/imagen/conf/"


def test_imagen_sr1024_trains_on_nemos_256_px_crops():
    value, provenance = leaf("imagen-1", "schedule.stages[sr1024].resolutions[0].height")
    assert value == 256 and documented_by(provenance, f"{NEMO}sr1024-600m.yaml", "center_crop_h_w 256")
    assert "survey" not in provenance.source  # the survey's 1024 is the output side
    value, provenance = leaf("imagen-1", "architecture.backbone.stages[sr1024].train_crop")
    assert value == 256 and documented_by(provenance, f"{NEMO}sr1024-600m.yaml")


@pytest.mark.parametrize(
    "stage,config,attention", [("sr256", "sr256-600m.yaml", [16]), ("sr1024", "sr1024-600m.yaml", [])]
)
def test_imagen_sr_attention_follows_nemo(stage, config, attention):
    prefix = f"architecture.backbone.stages[{stage}]"
    expected = {"attention_resolutions": attention, "num_heads": 8, "head_dim": 64}
    for field, value in expected.items():
        found, provenance = leaf("imagen-1", f"{prefix}.{field}")
        assert found == value and documented_by(provenance, f"{NEMO}{config}"), (field, found, provenance)


# Qwen-Image, Hailuo, Sora -----------------------------------------------------------------------------


QWEN_VAE = "huggingface/diffusers src/diffusers/models/autoencoders/autoencoder_kl_qwenimage.py"


def test_qwen_image_vae_is_a_causal_3d_vae_with_4x_time():
    space = specs.load("qwen-image").architecture.space
    assert (space.temporal_compression, space.causal, space.spatial_compression) == (4, True, 8)
    for field in ("temporal_compression", "causal"):
        _, provenance = leaf("qwen-image", f"architecture.space.{field}")
        assert documented_by(provenance, QWEN_VAE)


def test_hailuo_user_feedback_modality_is_an_assumption():
    value, provenance = leaf("hailuo-02", "data.sources[hailuo01_user_feedback].modality")
    assert value == "video_text" and provenance.status == "assumed"


@pytest.mark.parametrize("op", ["csam", "explicit_violent"])
def test_soras_frame_reduction_is_an_assumption(op):
    value, provenance = leaf("sora", f"data.pipelines[sora].ops[{op}].reduce")
    assert value == "max" and provenance.status == "assumed"
