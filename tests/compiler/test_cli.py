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


def test_list_catalogue_states_what_the_loaded_specs_say():
    import specs
    from specs.catalogue import CATALOGUE

    assert list(CATALOGUE) == list(specs.SHIPPED)
    for name in specs.SHIPPED:
        spec = specs.load(name)
        assert CATALOGUE[name] == {
            "family": spec.family, "modality": spec.modality, "organisation": spec.organisation,
            "backbone": spec.architecture.backbone.kind, "objective": spec.objective.kind,
            "params_documented": spec.architecture.params_documented, "derived_from": spec.derived_from,
        }, f"specs/catalogue.py's row of {name} differs from the spec: update the row"


def test_list_and_the_start_of_validate_load_no_spec_and_no_schema():  # typer itself imports pydantic
    probe = ("import sys\nfrom compiler.cli import app\n"
             "for args in (['list', '--json'], ['validate'], ['validate', '--help']):\n"
             "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('compiler.schema', 'specs.'))"
             " and m != 'specs.catalogue'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


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


# One pipeline: overrides after scaling, validate agreeing with compile, runtime support ---------------


def test_set_under_smoke_scale_wins_and_is_listed_as_an_override(tmp_path):
    out = tmp_path / "bundle"
    result = run("compile", "flux1-dev", "--cluster", "local-cpu", "--scale", "smoke", "-o", str(out),
                 "--set", "schedule.stages[pretrain].steps=10")
    assert result.exit_code == 0, result.output
    assert "steps: 10\n" in (out / "train/pretrain/stage.yaml").read_text()
    assumptions = (out / "assumptions.md").read_text()
    overrides = assumptions.split("## override", 1)[1].split("\n## ", 1)[0]
    assert "| `schedule.stages[pretrain].steps` | 10 | --set schedule.stages[pretrain].steps=10 |" in overrides
    assert "schedule.stages[pretrain].steps` | 3 |" not in assumptions  # the smoke value is gone


def test_compile_help_set_example_is_shown_whole_and_works(tmp_path):
    shown = "".join(run("compile", "--help").stdout.replace("│", "").split())  # rich wraps and boxes the help
    assert "e.g.schedule.stages[pretrain].steps=1000." in shown
    result = run("compile", "flux1-dev", "--cluster", "h100-64", "-o", str(tmp_path / "b"),
                 "--set", "schedule.stages[pretrain].steps=1000")
    assert result.exit_code == 0, result.output
    assert "steps: 1000\n" in (tmp_path / "b/train/pretrain/stage.yaml").read_text()


def _verdicts(target: str, cluster: str, scale: str, out, *extra: str) -> tuple[int, int]:
    validated = run("validate", target, "--scale", scale, *extra)
    compiled = run("compile", target, "--cluster", cluster, "--scale", scale, "-o", str(out), "--force", *extra)
    assert validated.exit_code in (0, 1) and compiled.exit_code in (0, 1), (validated.output, compiled.output)
    return validated.exit_code, compiled.exit_code


@pytest.mark.parametrize("target", __import__("compiler.regen", fromlist=["targets"]).targets(), ids=str)
def test_validate_and_compile_agree_on_every_shipped_spec(target, tmp_path):
    name, cluster, scale = target
    assert _verdicts(name, cluster, scale, tmp_path / "b") == (0, 0)


def _flux_document(change) -> dict:
    document = json.loads(run("show", "flux1-dev", "--format", "json").stdout)
    change(document["spec"])
    return document


def _late_corruption(spec):  # the example: a decode check after a decoding barrier
    spec["data"]["pipelines"][0]["ops"].append({"kind": "corruption", "name": "late_corruption"})


def _layernorm_qk_norm(spec):  # a field the runtime does not build
    spec["architecture"]["backbone"]["qk_norm"] = "layernorm_per_head"


def _undisclosed_steps(spec):  # a value the planner needs, missing
    spec["schedule"]["stages"][0]["steps"] = None


def _unknown_scorer(spec):  # a curation op implementation the runtime lacks
    op = next(op for op in spec["data"]["pipelines"][0]["ops"] if op["kind"] == "aesthetic")
    op.update(kind="technical_quality", scorer="musiq", scale={"low": 0, "high": 100, "unit": "MUSIQ"})


def _dataset_unused(spec):  # a warning only: both accept
    spec["data"]["datasets"].append({"name": "spare", "subset_of": spec["data"]["datasets"][0]["name"]})


@pytest.mark.parametrize("change,expected", [
    (_late_corruption, 1), (_layernorm_qk_norm, 1), (_undisclosed_steps, 1), (_unknown_scorer, 1), (_dataset_unused, 0),
], ids=lambda value: getattr(value, "__name__", str(value)))
def test_validate_and_compile_agree_on_broken_variants(change, expected, tmp_path):
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(_flux_document(change)))
    assert _verdicts(str(path), "h100-64", "full", tmp_path / "b") == (expected, expected)


def test_a_field_the_runtime_does_not_build_fails_validate_naming_it(tmp_path):
    document = json.loads(run("show", "wan2.1-t2v-1.3b", "--format", "json").stdout)
    document["spec"]["architecture"]["backbone"]["text_conditioning"] = "in_context"
    document["spec"]["architecture"]["backbone"]["modulation"] = "adaln_per_block"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(document))
    result = run("validate", str(path))
    assert result.exit_code == 1
    for field, value in [("text_conditioning", "'in_context'"), ("modulation", "'adaln_per_block'")]:
        assert f"error: architecture.backbone.{field}: {value} is not implemented by the runtime" in result.output
    assert "[runtime.supported]" in result.output


def test_compile_imports_nothing_from_the_runtime(tmp_path):
    probe = (
        "import sys\nfrom compiler.cli import app\n"
        f"try:\n    app(['compile', 'wan2.1-t2v-1.3b', '--cluster', 'h100-64', '-o', {str(tmp_path / 'b')!r}])\n"
        "except SystemExit as exit_:\n    assert exit_.code in (0, None), exit_.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('runtime', 'cv2', 'numpy', 'PIL', *"
        f"{HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_value_derived_without_a_marker_is_a_warning_and_listed_in_assumptions(tmp_path):
    user = tmp_path / "mine.py"
    user.write_text("import specs\nfrom compiler.document import derive\n"
                    "MINE = derive(specs.load('flux1-dev'), {'schedule.stages[pretrain].lr_schedule.warmup_steps': 500},"
                    " name='mine')\n")
    validated = run("validate", f"{user}:MINE")
    assert validated.exit_code == 0, validated.output
    assert ("warning: schedule.stages[pretrain].lr_schedule.warmup_steps: the value has no provenance"
            in validated.output) and "[provenance.recorded]" in validated.output
    assert run("compile", f"{user}:MINE", "--cluster", "h100-64", "-o", str(tmp_path / "b")).exit_code == 0
    unrecorded = (tmp_path / "b/assumptions.md").read_text().split("## unrecorded (1)", 1)[1].split("\n## ", 1)[0]
    assert "| `schedule.stages[pretrain].lr_schedule.warmup_steps` | 500 |" in unrecorded


def test_diff_hide_provenance_shows_value_changes_only():
    full = json.loads(run("diff", "seedream-2.0", "seedream-3.0", "--format", "json").stdout)["changes"]
    shown = run("diff", "seedream-2.0", "seedream-3.0", "--format", "json", "--hide-provenance")
    assert shown.exit_code == 1
    values = json.loads(shown.stdout)["changes"]
    assert any(c["detail"] == "provenance only" for c in full)  # so there is something to hide
    assert [c["path"] for c in values] == [c["path"] for c in full if c["detail"] != "provenance only"]
    assert values and all(c["before_provenance"] is None and c["after_provenance"] is None for c in values)
    assert "provenance" not in run("diff", "seedream-2.0", "seedream-3.0", "--hide-provenance").stdout


@pytest.mark.parametrize("path,expected", [
    ("schedule.stages[nope].steps", "items are selected by name: pretrain, highres_finetune"),
    ("schedule.stages[pretrain].resolutions[3].height", "these items have no names: select them by index, 0 to 0"),
])
def test_a_wrong_list_item_says_whether_names_or_indexes_select_it(path, expected):
    result = run("show", "flux1-dev", "--set", f"{path}=7")
    assert result.exit_code == 2
    assert expected in result.output


def test_a_custom_specs_bundle_readme_prints_a_rerun_command_that_works(tmp_path, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text("import specs\nfrom compiler.document import derive\n"
                                      "MINE = derive(specs.load('wan2.1-t2v-1.3b'), {}, name='my-wan')\n")
    assert run("compile", "mine.py:MINE", "--cluster", "h100-64", "-o", "first").exit_code == 0
    readme = (tmp_path / "first/README.md").read_text()
    command = readme.split("change the spec and run\n`", 1)[1].split("`", 1)[0]
    assert command == "genspec compile mine.py:MINE --cluster h100-64 --scale full"
    again = run(*shlex.split(command)[1:], "-o", "again")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again/manifest.json").read_text() == (tmp_path / "first/manifest.json").read_text()


def test_demo_takes_any_target_and_finds_a_file_from_the_current_directory(tmp_path, monkeypatch):
    from compiler.targets import absolute_target
    from runtime.demo import compile_bundle

    assert "AnyTARGET" in "".join(run("demo", "--help").stdout.replace("│", "").split())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text("import specs\nfrom compiler.document import derive\n"
                                      "MINE = derive(specs.load('flux1-dev'), {}, name='my-flux')\n")
    target = absolute_target("mine.py:MINE")
    assert target == f"{tmp_path / 'mine.py'}:MINE" and absolute_target("flux1-dev") == "flux1-dev"
    compile_bundle(target, tmp_path / "bundle", "my-flux")  # the demo compiles from the project root
    assert json.loads((tmp_path / "bundle/manifest.json").read_text())["spec"] == "my-flux"


def test_preflight_names_every_missing_model_and_an_unwritable_run_root(tmp_path):
    import subprocess as sp
    import sys as _sys

    bundle = tmp_path / "bundle"
    assert runner.invoke(app, ["compile", "flux1-dev", "--cluster", "h100-64", "-o", str(bundle)]).exit_code == 0
    from compiler.preflight import _model_ids

    needed = sorted(_model_ids(bundle)[0])
    assert len(needed) >= 3, needed
    models = tmp_path / "models"
    present = needed[2:]
    for index, model_id in enumerate(present):  # both accepted layouts
        folder = (models / model_id) if index % 2 else (models / f"models--{model_id.replace('/', '--')}" / "snapshots" / "abc")
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    # Under a regular file no directory can be made, whoever runs the test (root ignores permission bits).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    run_root = blocker / "run"
    done = sp.run([_sys.executable, "-m", "compiler.cli", "preflight", str(bundle), "--model-dir", str(models),
                   "--run-root", str(run_root)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ") and "problem(s)" not in line]
    assert len(errors) == 3, done.stderr
    for model_id in needed[:2]:
        assert any(model_id in line and str(models) in line for line in errors), (model_id, done.stderr)
    assert any(str(run_root) in line and "not writable" in line for line in errors), done.stderr


def test_preflight_finds_models_where_the_runtime_loads_them(tmp_path):
    """Every layout the runtime's ModelDirectory reads (org/name, org--name, the hub cache's refs/main snapshot,
    a models.yaml mapping) passes preflight; a folder without config.json, which the runtime refuses, does not."""
    from compiler.preflight import _model_ids, _model_problems
    from compiler.schema.model_dir import ModelDirectory

    bundle = tmp_path / "bundle"
    assert runner.invoke(app, ["compile", "flux1-dev", "--cluster", "h100-64", "-o", str(bundle)]).exit_code == 0
    needed = _model_ids(bundle)[0]
    ids = sorted(needed)
    assert len(ids) >= 4, ids
    models = tmp_path / "models"
    hub = models / f"models--{ids[2].replace('/', '--')}"
    folders = [models / ids[0], models / ids[1].replace("/", "--"), hub / "snapshots" / "rev2",
               models / "elsewhere"]
    (hub / "snapshots" / "rev1").mkdir(parents=True)  # an older snapshot: refs/main chooses rev2
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text("rev2")
    (models / "models.yaml").write_text(f"{json.dumps(ids[3])}: elsewhere\n")
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    directory = ModelDirectory(models)
    assert [directory.entry(model_id).path for model_id in ids[:4]] == folders
    unchecked = {model_id: needed[model_id] for model_id in ids[:4]}
    assert _model_problems(directory, unchecked) == []
    (folders[1] / "config.json").unlink()
    (problem,) = _model_problems(directory, unchecked)
    assert ids[1] in problem and str(folders[1]) in problem and "config.json" in problem, problem
