"""Cluster arguments: a preset name, `file.py:attr` (a Cluster in the user's Python), or a YAML/JSON file."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from compiler.schema.cluster import PRESETS, Cluster
from compiler.yamlio import SpecLoadError, parse_json, parse_yaml


def load_cluster(name: str) -> Cluster:
    """The Cluster a --cluster argument names."""
    if name in PRESETS:
        return PRESETS[name]
    if name.endswith((".yaml", ".yml", ".json")):
        path = Path(name)
        if not path.is_file():
            raise SpecLoadError(f"{name}: no such cluster file")
        text = path.read_text(encoding="utf-8")
        raw = parse_json(text, name) if name.endswith(".json") else parse_yaml(text, name)
        try:
            return Cluster.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise SpecLoadError(f"{name}: not a valid cluster: {problems}") from error
    if ":" in name:
        from compiler.targets import _load_python_attr

        value = _load_python_attr(*name.rsplit(":", 1))
        if not isinstance(value, Cluster):
            raise SpecLoadError(f"{name} is a {type(value).__name__}, not a genspec Cluster")
        return value
    raise SpecLoadError(f"unknown cluster {name!r}; presets: {', '.join(PRESETS)} "
                        "(or a .yaml/.json file, or file.py:ATTRIBUTE)")
