"""Where released weights live: the layouts and models.yaml mapping of compiler/schema/model_dir.py (shared
with `genspec preflight`, which checks the very folders the runtime loads from), and the runtime's error."""

from __future__ import annotations

from compiler.schema.model_dir import (
    ENVIRONMENT,
    MODELS_YAML,
    ModelDirectory,
    ModelEntry,
    folder_name,
    hub_snapshot,
    model_folder,
)

__all__ = ["ENVIRONMENT", "MODELS_YAML", "MissingWeightsError", "ModelDirectory", "ModelEntry", "folder_name",
           "hub_snapshot", "model_folder"]


class MissingWeightsError(FileNotFoundError):
    """A model the spec needs has no weights in the model directory."""
