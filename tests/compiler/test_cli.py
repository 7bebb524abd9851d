"""The command line as a user runs it: exit codes, output, and no heavy imports."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from compiler.cli import app

runner = CliRunner()
EXPECTED = [
    "sora", "imagen-1", "imagen-2", "imagen-3", "flux1-dev", "flux1-schnell", "flux-kontext",
    "seedream-2.0", "seedream-3.0", "seedream-4.0", "qwen-image", "wan2.1-t2v-14b", "wan2.1-t2v-1.3b",
    "allegro", "hailuo-02",
]
HEAVY = ["torch", "deepspeed", "transformers", "diffusers", "ray"]


def run(*args):
    return runner.invoke(app, list(args))


def test_list_json_names_all_fifteen_specs():
    result = run("list", "--json")
    assert result.exit_code == 0
    assert [row["name"] for row in json.loads(result.stdout)] == EXPECTED


def test_validate_all_exits_zero():
    result = run("validate", "--all")
    assert result.exit_code == 0, result.output
    assert result.output.count(": valid (0 error(s)") == 15


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_show_then_validate_the_file(tmp_path, fmt):
    shown = run("show", "seedream-3.0", "--format", fmt)
    assert shown.exit_code == 0
    path = tmp_path / f"spec.{fmt}"
    path.write_text(shown.stdout)
    assert run("validate", str(path)).exit_code == 0


def test_yaml_carries_provenance_comments():
    shown = run("show", "flux1-dev").stdout
    assert "# documented:" in shown and "provenance:" in shown


def test_show_with_set_records_the_override(tmp_path):
    stage = json.loads(run("show", "flux1-dev", "--format", "json").stdout)["spec"]["schedule"]["stages"][0]["name"]
    shown = run("show", "flux1-dev", "--format", "json", "--set", f"schedule.stages[{stage}].steps=7")
    document = json.loads(shown.stdout)
    assert document["spec"]["schedule"]["stages"][0]["steps"] == 7
    assert document["provenance"][f"schedule.stages[{stage}].steps"]["status"] == "override"


def test_invalid_spec_exits_one_with_path_and_rule(tmp_path):
    document = json.loads(run("show", "flux1-dev", "--format", "json").stdout)
    document["spec"]["architecture"]["backbone"]["num_heads"] = 7
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document))
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert "architecture.backbone" in result.output and "[architecture." in result.output


@pytest.mark.parametrize("content,message", [
    ("spec: !!python/object/apply:os.system ['echo pwned']", "not a plain YAML document"),
    ("genspec: 1\nspec: {}\nextra: 1\n", "unknown top-level key"),
    ("[1, 2]", "expected a mapping"),
])
def test_hostile_or_malformed_yaml_is_a_load_error(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = run("validate", str(path))
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_key_is_a_field_error_naming_the_path(tmp_path):
    document = json.loads(run("show", "wan2.1-t2v-1.3b", "--format", "json").stdout)
    document["spec"]["objective"]["learning_speed"] = "fast"
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(document))
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert "objective.learning_speed" in result.output and "remove this key" in result.output


def test_unknown_target_is_a_usage_error():
    result = run("validate", "flux3-ultra")
    assert result.exit_code == 2
    assert "not a shipped spec" in result.output


def test_python_file_target(tmp_path):
    user = tmp_path / "mine.py"
    user.write_text("import specs\nfrom compiler.document import derive\n"
                    "MINE = derive(specs.load('flux1-dev'), {}, name='mine')\n")
    assert run("validate", f"{user}:MINE").exit_code == 0
    missing = run("validate", f"{user}:NOPE")
    assert missing.exit_code == 2 and "Spec objects in it: MINE" in missing.output


def test_explain_leaf_and_summary():
    leaf = run("explain", "flux1-dev", "architecture.backbone.hidden_size")
    assert leaf.exit_code == 0
    assert "= 3072" in leaf.stdout and "documented" in leaf.stdout
    summary = run("explain", "hailuo-02")
    assert summary.exit_code == 0 and "undisclosed:" in summary.stdout


def test_explain_lists_every_undisclosed_value():
    import specs
    from compiler.document import walk_leaves

    for name in EXPECTED:
        output = run("explain", name).stdout
        for path, node, field, _ in walk_leaves(specs.load(name)):
            if node.provenance_of(field).status == "undisclosed":
                assert f"  {path}" in output, (name, path)


def test_schema_is_json_schema():
    schema = json.loads(run("schema").stdout)
    assert schema["title"] == "Spec" and "architecture" in schema["properties"]


@pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["validate", "--all"],
                                  ["diff", "seedream-2.0", "seedream-3.0"], ["graph", "wan2.1-t2v-14b"]])
def test_fast_commands_import_no_heavy_library(args):
    probe = (
        "import sys\nfrom compiler.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_demo_of_an_unknown_spec_names_the_shipped_ones_and_writes_nothing(tmp_path):
    result = runner.invoke(app, ["demo", "--spec", "nope", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert "'nope' is not a shipped spec" in result.output and "flux1-dev" in result.output
    assert not (tmp_path / "demo").exists()
