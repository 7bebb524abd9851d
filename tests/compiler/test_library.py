"""The shipped library: all 15 specs load, validate, round-trip through YAML and JSON, and give every
value a provenance."""

import pytest

import specs
from compiler.document import from_document, to_document, walk_leaves
from compiler.resolve import find_missing, needed_leaves, resolve
from compiler.validate import validate
from compiler.yamlio import dump_json, dump_yaml, load_file

EXPECTED = [
    "sora", "imagen-1", "imagen-2", "imagen-3", "flux1-dev", "flux1-schnell", "flux-kontext",
    "seedream-2.0", "seedream-3.0", "seedream-4.0", "qwen-image", "wan2.1-t2v-14b", "wan2.1-t2v-1.3b",
    "allegro", "hailuo-02",
]
AUTHORED = {"documented", "likely", "assumed", "undisclosed"}


def test_the_library_ships_exactly_the_fifteen_models():
    assert list(specs.SHIPPED) == EXPECTED


@pytest.fixture(scope="module", params=EXPECTED)
def spec(request):
    return specs.load(request.param)


@pytest.mark.parametrize("name", EXPECTED)
def test_spec_is_named_as_shipped(name):
    assert specs.load(name).name == name


def test_spec_passes_every_rule(spec):
    errors = [str(d) for d in validate(spec) if d.severity == "error"]
    assert errors == []


def test_document_round_trip_is_exact(spec):
    data, table = to_document(spec)
    assert from_document(data, table) == spec


@pytest.mark.parametrize("suffix,dump", [(".yaml", dump_yaml), (".json", dump_json)])
def test_file_round_trip_gives_an_equal_spec(spec, tmp_path, suffix, dump):
    path = tmp_path / f"{spec.name}{suffix}"
    path.write_text(dump(spec))
    loaded = load_file(path)
    assert loaded == spec
    assert dump(loaded) == dump(spec)


def test_every_value_has_a_provenance(spec):
    unrecorded = [path for path, node, field, _ in walk_leaves(spec) if node.provenance_of(field) is None]
    assert unrecorded == []


def test_no_needed_field_is_silently_empty(spec):
    """Needed values are given with an authored provenance; none is a bare default or empty."""
    problems = []
    for path, node, field, value in needed_leaves(spec):
        status = node.provenance_of(field).status
        if value is None and status != "undisclosed":
            problems.append(f"{path}: empty with status {status}")
        elif value is not None and status not in AUTHORED - {"undisclosed"}:
            problems.append(f"{path}: {value!r} has status {status}, not documented/likely/assumed")
    assert problems == []


def test_shipped_specs_need_nothing_more_to_compile(spec):
    assert find_missing(resolve(spec).spec) == []


PREDECESSORS = {
    "flux1-schnell": "flux1-dev",
    "flux-kontext": "flux1-dev",
    "seedream-3.0": "seedream-2.0",
    "seedream-4.0": "seedream-3.0",
    "imagen-2": "imagen-1",
    "wan2.1-t2v-1.3b": "wan2.1-t2v-14b",
}


def test_derived_versions_name_their_predecessor():
    derived = {name: specs.load(name).derived_from for name in EXPECTED}
    assert {name: base for name, base in derived.items() if base is not None} == PREDECESSORS
