"""Specs as YAML and JSON files, provenance included, loss-free both ways.

A file holds three keys::

    genspec: 1                 # format version
    spec: {...}                # the spec's fields, every value spelled out
    provenance:                # path -> {status, source | reason}
      architecture.backbone.hidden_size: {status: documented, source: black-forest-labs/flux ...}

YAML output also puts each leaf's provenance in a comment beside it, for people; the loader reads only
the table. Loading is safe-only: tags, Python objects, duplicate keys and unknown fields are refused.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compiler.document import PathError, Table, from_document, item_key, to_document
from compiler.schema.provenance import Provenance
from compiler.schema.spec import Spec

FORMAT_VERSION = 1
_TOP_KEYS = {"genspec", "spec", "provenance"}


class SpecLoadError(Exception):
    """A file that cannot be read as a spec document at all (syntax, tags, layout)."""


class SpecFieldError(Exception):
    """A document whose values break the schema's field rules; carries the diagnostics."""

    def __init__(self, origin: str, diagnostics: list[Any]):
        self.origin = origin
        self.diagnostics = diagnostics
        super().__init__(f"{origin}: {len(diagnostics)} field error(s)")


# Writing ------------------------------------------------------------------------------------------


def document(spec: Spec) -> dict[str, Any]:
    """The spec as the three-key document (plain JSON-compatible data)."""
    data, table = to_document(spec)
    return {
        "genspec": FORMAT_VERSION,
        "spec": data,
        "provenance": {path: prov.model_dump(exclude_none=True) for path, prov in table.items()},
    }


def dump_json(spec: Spec) -> str:
    """JSON text of the document, keys in schema order, newline-terminated."""
    return json.dumps(document(spec), indent=2, ensure_ascii=False) + "\n"


def dump_yaml(spec: Spec, header: str | None = None) -> str:
    """YAML text of the document, with each leaf's provenance as a comment beside it."""
    from ruamel.yaml import YAML

    doc = document(spec)
    table = {path: Provenance.model_validate(p) for path, p in doc["provenance"].items()}
    body = {
        "genspec": FORMAT_VERSION,
        "spec": _commented(doc["spec"], table, ""),
        "provenance": _flow_table(doc["provenance"]),
    }
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096  # keep long sources on one line: a wrapped comment reads as a new key
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    if header:
        out.write("".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()))
    yaml.dump(body, out)
    return out.getvalue()


def _commented(value: Any, table: Table, path: str) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            mapping[key] = _commented(item, table, child)
            if child in table and not _is_node_list(item) and not isinstance(item, dict):
                mapping.yaml_add_eol_comment(_one_line(table[child].describe()), key)
        return mapping
    if _is_node_list(value):
        return CommentedSeq(_commented(item, table, f"{path}[{item_key(item, i)}]") for i, item in enumerate(value))
    if isinstance(value, list):
        seq = CommentedSeq(value)
        seq.fa.set_flow_style()  # short leaf lists read best inline: [16, 56, 56]
        return seq
    return value


def _is_node_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _flow_table(table: dict[str, dict[str, Any]]) -> Any:
    from ruamel.yaml.comments import CommentedMap

    out = CommentedMap()
    for path, entry in table.items():
        flow = CommentedMap(entry)
        flow.fa.set_flow_style()
        out[path] = flow
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


# Reading ------------------------------------------------------------------------------------------


def load_file(path: str | Path) -> Spec:
    """Read a .yaml/.yml/.json spec file into an equal Spec, or raise SpecLoadError / SpecFieldError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecLoadError(f"{path}: cannot read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise SpecLoadError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    if path.suffix == ".json":
        raw = parse_json(text, str(path))
    elif path.suffix in (".yaml", ".yml"):
        raw = parse_yaml(text, str(path))
    else:
        raise SpecLoadError(f"{path}: unknown spec file type {path.suffix!r}; use .yaml, .yml or .json")
    return from_raw(raw, str(path))


def parse_yaml(text: str, origin: str) -> Any:
    """Safe YAML: plain maps, lists and scalars only. Tags and duplicate keys are errors."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    try:
        return yaml.load(text)
    except YAMLError as error:
        raise SpecLoadError(f"{origin}: not a plain YAML document: {_one_line(str(error))}") from error
    except (ValueError, TypeError, RecursionError) as error:  # odd scalars the safe constructor rejects
        raise SpecLoadError(f"{origin}: unreadable YAML value: {_one_line(str(error))}") from error


def parse_json(text: str, origin: str) -> Any:
    """Strict JSON: duplicate keys and NaN/Infinity are errors."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise SpecLoadError(f"{origin}: duplicate key(s) {', '.join(map(repr, dupes))}")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise SpecLoadError(f"{origin}: {name} is not a valid spec value; use a number")

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as error:
        raise SpecLoadError(f"{origin}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from error
    except RecursionError as error:
        raise SpecLoadError(f"{origin}: JSON nested too deeply") from error


def from_raw(raw: Any, origin: str) -> Spec:
    """A parsed document (or a bare spec mapping) into a Spec."""
    from compiler.diagnostic import field_diagnostics

    if not isinstance(raw, dict):
        raise SpecLoadError(f"{origin}: expected a mapping with keys genspec, spec, provenance; got {type(raw).__name__}")
    if "spec" in raw:
        unknown = set(raw) - _TOP_KEYS
        if unknown:
            raise SpecLoadError(f"{origin}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}; "
                                "allowed: genspec, spec, provenance")
        if raw.get("genspec", FORMAT_VERSION) != FORMAT_VERSION:
            raise SpecLoadError(f"{origin}: format version {raw.get('genspec')!r} is not supported; "
                                f"this genspec reads version {FORMAT_VERSION}")
        data, table_raw = raw["spec"], raw.get("provenance") or {}
    else:
        data, table_raw = raw, {}
    if not isinstance(data, dict):
        raise SpecLoadError(f"{origin}: `spec` must be a mapping, got {type(data).__name__}")
    table = _read_table(table_raw, origin)
    try:
        return from_document(data, table)
    except ValidationError as error:
        raise SpecFieldError(origin, field_diagnostics(error, data)) from error
    except PathError as error:
        raise SpecLoadError(f"{origin}: {error}") from error


def _read_table(raw: Any, origin: str) -> Table:
    if not isinstance(raw, dict):
        raise SpecLoadError(f"{origin}: `provenance` must map paths to {{status, source | reason}}")
    table: Table = {}
    for path, entry in raw.items():
        try:
            table[str(path)] = Provenance.model_validate(entry)
        except ValidationError as error:
            first = error.errors()[0]
            raise SpecLoadError(f"{origin}: provenance of {path!r}: {first['msg']} "
                                f"(statuses: documented, likely, assumed, undisclosed, default, derived, override)") from error
    return table
