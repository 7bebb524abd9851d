"""Model ids resolve to local folders; a missing model says exactly where its weights go."""

import pytest

from runtime.encoders.model_directory import MissingWeightsError, ModelDirectory


def test_model_id_maps_to_a_folder_with_slashes_replaced(tmp_path):
    entry = ModelDirectory(tmp_path).entry("google/t5-v1_1-xxl")
    assert entry.path == tmp_path / "google--t5-v1_1-xxl"
    assert not entry.present


def test_models_yaml_maps_ids_to_folders_and_families(tmp_path):
    (tmp_path / "models.yaml").write_text(
        "google/umt5-xxl: weights/umt5\n"
        "my-lab/encoder: {path: /opt/enc, family: generic}\n"
    )
    directory = ModelDirectory(tmp_path)
    assert directory.entry("google/umt5-xxl").path == tmp_path / "weights" / "umt5"
    custom = directory.entry("my-lab/encoder")
    assert (str(custom.path), custom.family) == ("/opt/enc", "generic")


def test_a_malformed_models_yaml_entry_is_named(tmp_path):
    (tmp_path / "models.yaml").write_text("my-lab/encoder: {folder: x}\n")
    with pytest.raises(ValueError, match="my-lab/encoder.*'path'"):
        ModelDirectory(tmp_path)


def test_missing_weights_name_the_model_and_the_folder(tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        ModelDirectory(tmp_path).require("google/t5-v1_1-xxl", "architecture.text_encoders[t5_xxl]", "a folder")
    message = str(error.value)
    assert "'google/t5-v1_1-xxl'" in message
    assert str(tmp_path / "google--t5-v1_1-xxl") in message
    assert "models.yaml" in message and "smoke" in message


def test_a_folder_without_config_is_reported_as_incomplete(tmp_path):
    (tmp_path / "google--umt5-xxl").mkdir()
    with pytest.raises(MissingWeightsError, match="exists but has no config.json"):
        ModelDirectory(tmp_path).require("google/umt5-xxl", "architecture.text_encoders[umt5]", "a folder")


def test_without_a_directory_the_error_asks_for_one():
    with pytest.raises(MissingWeightsError, match="pass model_dir=<folder> holding the sub-folder 'Wan-VAE'"):
        ModelDirectory(None).require("Wan-VAE", "architecture.space.vae", "a VAE folder")
