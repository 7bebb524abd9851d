"""Property tests: whatever a user feeds `genspec validate`, the answer is an exit code and a message,
never a traceback."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import specs
from compiler.cli import app
from compiler.yamlio import dump_json, dump_yaml

runner = CliRunner()
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BASE = specs.load("seedream-3.0")
BASE_YAML = dump_yaml(BASE)
BASE_DOC = json.loads(dump_json(BASE))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from(["flow_matching", "mmdit", "-1", "1e400", "[", "{"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def check(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1, 2)
    if result.exit_code:
        assert result.output.strip(), "a failure must say why"
    return result.exit_code


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text_as_yaml(tmp_path, text):
    assert check(tmp_path, "any.yaml", text) in (1, 2)


@FUZZ
@given(value=json_values)
def test_arbitrary_json(tmp_path, value):
    assert check(tmp_path, "any.json", json.dumps(value)) in (1, 2)


@FUZZ
@given(data=st.data())
def test_yaml_with_lines_cut_swapped_or_garbled(tmp_path, data):
    lines = BASE_YAML.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    action = data.draw(st.sampled_from(["drop", "duplicate", "garble", "indent"]))
    if action == "drop":
        del lines[index]
    elif action == "duplicate":
        lines.insert(index, lines[index])
    elif action == "garble":
        lines[index] = data.draw(st.text(max_size=30))
    else:
        lines[index] = "   " + lines[index]
    check(tmp_path, "mutated.yaml", "\n".join(lines))


def _leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaf_paths(value, prefix + (key,))
    elif isinstance(node, list) and node:
        for index, value in enumerate(node):
            yield from _leaf_paths(value, prefix + (index,))
    else:
        yield prefix


LEAVES = list(_leaf_paths(BASE_DOC["spec"]))


@FUZZ
@given(path=st.sampled_from(LEAVES), value=json_values, action=st.sampled_from(["set", "delete", "add"]))
def test_mutated_spec_values(tmp_path, path, value, action):
    document = json.loads(json.dumps(BASE_DOC))
    parent = document["spec"]
    for key in path[:-1]:
        parent = parent[key]
    if action == "set":
        parent[path[-1]] = value
    elif action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["unexpected_" + str(path[-1])] = value
    check(tmp_path, "mutated.json", json.dumps(document))
