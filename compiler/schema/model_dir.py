"""Where released weights live on this machine: one folder per model id, optionally remapped by models.yaml.

Nothing is fetched from a model hub. A model id such as `google/t5-v1_1-xxl` is looked up (`model_folder`) as,
in this order: the nested folder `google/t5-v1_1-xxl`; the folder `google--t5-v1_1-xxl` (the '/' replaced by
'--'); the Hugging Face hub cache layout `models--google--t5-v1_1-xxl/snapshots/<revision>` (the revision
named by its `refs/main`, or its only snapshot), directly in the directory or under its `hub/` (so
HF_HOME or HF_HUB_CACHE can serve as the model directory). The directory's `models.yaml` maps an id
elsewhere:

    google/t5-v1_1-xxl: /data/weights/t5-xxl          # a folder, absolute or relative to the directory
    my-lab/text-encoder: {path: encoders/mine, family: generic}   # and the loader family to use

A folder counts as present when it holds a `config.json` (transformers and diffusers both write one).

With no directory given, the environment variable GENSPEC_MODEL_DIR names one: that is how a bundle's scripts
(run_local.sh, launch.sh, which pass no --model-dir) reach weights, e.g. the demo's fitted smoke VAE.

Pure path logic shared by the runtime (runtime/encoders/model_directory.py re-exports it; the encoders and
curation ops load from the folder it finds) and `genspec preflight` (compiler/preflight.py checks the same
folders before a job starts), so the two can never disagree about where a model is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODELS_YAML = "models.yaml"
ENVIRONMENT = "GENSPEC_MODEL_DIR"  # the model directory when none is passed
ENTRY_KEYS = frozenset({"path", "family"})


@dataclass(frozen=True)
class ModelEntry:
    """One model id's location and, when models.yaml names it, its loader family."""

    model_id: str
    path: Path | None  # None when no model directory was given
    family: str | None = None
    mapped: bool = False  # True when models.yaml chose the path

    @property
    def present(self) -> bool:
        """True when the folder exists and holds a config.json."""
        return self.path is not None and (self.path / "config.json").is_file()


class ModelDirectory:
    """A local folder of released weights, one sub-folder per model id ('/' replaced by '--')."""

    def __init__(self, root: str | Path | None):
        root = root if root is not None else (os.environ.get(ENVIRONMENT) or None)
        self.root = Path(root).expanduser().resolve() if root is not None else None
        self._mapping = self._read_mapping() if self.root is not None else {}

    def entry(self, model_id: str) -> ModelEntry:
        """Where `model_id` is expected, whether or not it is there."""
        if self.root is None:
            return ModelEntry(model_id, None)
        mapped = self._mapping.get(model_id)
        if mapped is not None:
            return ModelEntry(model_id, mapped.path, mapped.family, mapped=True)
        return ModelEntry(model_id, model_folder(self.root, model_id) or self.root / folder_name(model_id))

    def missing_message(self, entry: ModelEntry, needed_by: str, contents: str) -> str:
        """The error text for a missing model: which id, which folder, what goes in it, and the alternatives."""
        if entry.path is None:
            where = (
                f"no model directory was given: pass model_dir=<folder> holding the sub-folder "
                f"{folder_name(entry.model_id)!r} ({contents})"
            )
        elif entry.path.is_dir():
            where = f"the folder {entry.path} exists but has no config.json: it must hold {contents}"
        else:
            how = f"as mapped in {self.root / MODELS_YAML}" if entry.mapped else (
                f"or map the id to another folder in {self.root / MODELS_YAML}")
            where = f"put {contents} in {entry.path} ({how})"
        return (
            f"{needed_by} needs the weights of {entry.model_id!r}: {where}. "
            "To run without them, use scale 'smoke', which builds a tiny randomly initialised stand-in."
        )

    def _read_mapping(self) -> dict[str, ModelEntry]:
        assert self.root is not None
        file = self.root / MODELS_YAML
        if not file.is_file():
            return {}
        from ruamel.yaml import (
            YAML,  # the project's YAML reader (safe loader: no tags, no code)
        )

        data = YAML(typ="safe").load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise TypeError(f"{file}: expected a mapping of model id -> folder, got {type(data).__name__}")
        return {str(model_id): self._parse_entry(file, str(model_id), value) for model_id, value in data.items()}

    def _parse_entry(self, file: Path, model_id: str, value: object) -> ModelEntry:
        assert self.root is not None
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, dict) or not set(value) <= ENTRY_KEYS or "path" not in value:
            raise ValueError(
                f"{file}: entry {model_id!r} is {value!r}; give a folder path, or a mapping with 'path' and "
                f"optionally 'family' (keys allowed: {', '.join(sorted(ENTRY_KEYS))})"
            )
        path = Path(str(value["path"])).expanduser()
        family = value.get("family")
        return ModelEntry(model_id, path if path.is_absolute() else self.root / path,
                          str(family) if family is not None else None, mapped=True)


def folder_name(model_id: str) -> str:
    """The sub-folder a model id is looked up in: '/' replaced by '--' (google/umt5-xxl -> google--umt5-xxl)."""
    return model_id.replace("/", "--")


def model_folder(root: Path, model_id: str) -> Path | None:
    """The existing folder of `model_id` under `root` in any layout the module docstring lists, else None."""
    candidates = [root / model_id, root / folder_name(model_id)]
    for cache in (root, root / "hub"):
        candidates.append(hub_snapshot(cache / f"models--{folder_name(model_id)}"))
    return next((path for path in candidates if path is not None and path.is_dir()), None)


def hub_snapshot(repo: Path) -> Path | None:
    """The snapshot folder of a Hugging Face hub cache entry: the revision in refs/main, or its only snapshot.

    A cache with several snapshots and no refs/main is ambiguous: an error saying which revisions it holds.
    """
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        revision = ref.read_text().strip()
        if not (snapshots / revision).is_dir():
            raise FileNotFoundError(
                f"{ref} names revision {revision!r} but {snapshots} has no such folder; download that revision "
                "again or fix refs/main"
            )
        return snapshots / revision
    revisions = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
    if len(revisions) == 1:
        return snapshots / revisions[0]
    if not revisions:
        return None
    raise FileNotFoundError(
        f"{repo} holds snapshots {revisions} and no refs/main saying which to use; write the revision to "
        f"{ref} or remove the others"
    )
