"""The demo's fitted smoke text encoders (runtime/smoke_text.py): written as a model-directory folder that the
runtime loads like released weights, reused when already fitted, and only for encoders with a pooled output."""

from __future__ import annotations

import torch

from runtime.encoders.model_directory import ModelDirectory
from runtime.encoders.text import build_text_encoder
from runtime.smoke_text import fit_smoke_text_encoders
from specs import load


def test_fitted_pooled_encoder_is_loaded_from_the_model_directory_and_reused(tmp_path):
    from compiler.scale import scaled

    architecture = scaled(load("flux1-dev"), "smoke").architecture
    lines: list[str] = []
    folders = fit_smoke_text_encoders(architecture, tmp_path, steps=3, log=lines.append)
    pooled = [e for e in architecture.text_encoders if e.role == "pooled"]
    assert [f.name for f in folders] == [e.model.replace("/", "--") for e in pooled] != []
    assert "held-out accuracy" in lines[0]

    spec = pooled[0]
    fitted, note = build_text_encoder(spec, "smoke", ModelDirectory(tmp_path))
    random, _ = build_text_encoder(spec, "smoke", ModelDirectory(None))
    assert f"loaded from {folders[0]}" in note
    prompts = ["a red circle on a blue background"]
    with torch.no_grad():
        assert not torch.allclose(fitted(prompts).pooled, random(prompts).pooled)

    assert fit_smoke_text_encoders(architecture, tmp_path, steps=3, log=lines.append) == folders
    assert lines[-1].endswith(f"reusing the fit in {folders[0]}")
