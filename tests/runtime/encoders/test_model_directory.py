"""Model ids resolve to local folders; a missing model says exactly where its weights go."""

import pytest

from runtime.encoders.model_directory import ModelDirectory


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


def missing(directory: ModelDirectory, model_id: str, needed_by: str, contents: str) -> str:
    """The message runtime.encoders raises (MissingWeightsError) for a model whose folder is not there."""
    return directory.missing_message(directory.entry(model_id), needed_by, contents)


def test_missing_weights_name_the_model_and_the_folder(tmp_path):
    message = missing(ModelDirectory(tmp_path), "google/t5-v1_1-xxl", "architecture.text_encoders[t5_xxl]", "a folder")
    assert "'google/t5-v1_1-xxl'" in message
    assert str(tmp_path / "google--t5-v1_1-xxl") in message
    assert "models.yaml" in message and "smoke" in message


def test_a_folder_without_config_is_reported_as_incomplete(tmp_path):
    (tmp_path / "google--umt5-xxl").mkdir()
    message = missing(ModelDirectory(tmp_path), "google/umt5-xxl", "architecture.text_encoders[umt5]", "a folder")
    assert "exists but has no config.json" in message


def test_without_a_directory_the_error_asks_for_one():
    message = missing(ModelDirectory(None), "Wan-VAE", "architecture.space.vae", "a VAE folder")
    assert "pass model_dir=<folder> holding the sub-folder 'Wan-VAE'" in message


def test_genspec_model_dir_names_the_directory_when_none_is_passed(tmp_path, monkeypatch):
    """Bundle scripts pass no --model-dir: GENSPEC_MODEL_DIR is how their processes find weights (the demo's
    fitted smoke VAE); an explicit directory still wins."""
    (tmp_path / "org--vae").mkdir()
    (tmp_path / "org--vae" / "config.json").write_text("{}")
    monkeypatch.setenv("GENSPEC_MODEL_DIR", str(tmp_path))
    assert ModelDirectory(None).entry("org/vae").path == tmp_path / "org--vae"
    assert ModelDirectory(None).entry("org/vae").present
    other = tmp_path / "other"
    other.mkdir()
    assert ModelDirectory(other).entry("org/vae").path == other / "org--vae"
    monkeypatch.delenv("GENSPEC_MODEL_DIR")
    assert ModelDirectory(None).entry("org/vae").path is None
