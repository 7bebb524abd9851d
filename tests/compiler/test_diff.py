"""Spec diffs: the version pairs reviewers read, and the properties that make diffs trustworthy."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import specs
from compiler.cli import app
from compiler.diff import diff
from compiler.document import from_document, to_document

runner = CliRunner()
FAST = settings(max_examples=25, deadline=None)


def changes_by_kind(a, b):
    result = diff(specs.load(a), specs.load(b))
    grouped = {}
    for change in result.changes:
        grouped.setdefault(change.kind, []).append(change)
    return result, grouped


def paths(changes):
    return [c.path for c in changes]


def test_seedream_2_to_3_shows_what_the_model_card_says_changed():
    result, by_kind = changes_by_kind("seedream-2.0", "seedream-3.0")
    replaced = {c.path: c for c in by_kind.get("replaced", [])}
    assert replaced["objective"].detail == "score_matching -> flow_matching"
    added = paths(by_kind["added"])
    assert any(p.endswith("ops[defect_mask]") for p in added), added
    stage_kinds = {c.after["kind"] for c in by_kind["added"] if c.path.startswith("schedule.stages")}
    assert {"continuing_training", "prompt_engineering"} <= stage_kinds
    changed = {c.path: c for c in by_kind["changed"]}
    scale = [c for p, c in changed.items() if p.startswith("data.sources") and p.endswith(".count")]
    assert scale and scale[0].before < scale[0].after
    assert any("resolutions" in p or "inference.resolution" in p for p in changed), list(changed)


def test_seedream_diff_cli_exits_one_and_prints_a_summary():
    result = runner.invoke(app, ["diff", "seedream-2.0", "seedream-3.0"])
    assert result.exit_code == 1
    assert "-/+ objective: replaced, score_matching -> flow_matching" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("Summary:")


def test_flux_dev_to_schnell():
    _, by_kind = changes_by_kind("flux1-dev", "flux1-schnell")
    changed = paths(by_kind["changed"])
    assert "architecture.backbone.guidance_embed" in changed
    touched = paths(by_kind.get("added", [])) + paths(by_kind.get("removed", []))
    assert any(p.startswith("schedule.stages") for p in touched)


def test_flux_dev_to_kontext():
    _, by_kind = changes_by_kind("flux1-dev", "flux-kontext")
    all_paths = [c.path for group in by_kind.values() for c in group]
    assert "architecture.backbone.context_images" in all_paths
    assert any(p.startswith("schedule.stages") for p in all_paths)


def test_wan_14b_to_1_3b_changes_width_and_depth_only_in_architecture():
    """The 1.3B model changes only the backbone's sizes and its parameter count; the rest of the diff is the
    720p stage and datasets the 1.3B model card does not train, its 480p default output size, and the notes."""
    _, by_kind = changes_by_kind("wan2.1-t2v-14b", "wan2.1-t2v-1.3b")
    assert set(by_kind) == {"changed", "removed"}
    sizes = [f"architecture.backbone.{field}" for field in ("hidden_size", "num_heads", "depth", "ffn_dim")]
    assert sorted(paths(by_kind["changed"])) == sorted(
        [*sizes, "architecture.params_documented", "inference.resolution.height", "inference.resolution.width", "notes"]
    )
    assert sorted(paths(by_kind["removed"])) == [
        "data.datasets[wan_images_720p]",
        "data.datasets[wan_videos_720p]",
        "schedule.stages[joint_720p]",
    ]


def test_imagen_1_to_3_replaces_the_cascade_and_the_space():
    _, by_kind = changes_by_kind("imagen-1", "imagen-3")
    replaced = paths(by_kind["replaced"])
    assert "architecture.backbone" in replaced and "architecture.space" in replaced
    assert any(p.endswith("ops[ai_generated]") for p in paths(by_kind["added"]))


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_other_formats(fmt):
    result = runner.invoke(app, ["diff", "seedream-2.0", "seedream-3.0", "--format", fmt])
    assert result.exit_code == 1
    if fmt == "json":
        document = json.loads(result.stdout)
        assert document["format_version"] == 1 and document["summary"]["replaced"] >= 1
    else:
        assert "| `-/+` replaced | `objective` |" in result.stdout


def test_only_filters_sections():
    result = runner.invoke(app, ["diff", "seedream-2.0", "seedream-3.0", "--only", "objective", "--format", "json"])
    assert {c["section"] for c in json.loads(result.stdout)["changes"]} == {"objective"}


def test_identical_specs_exit_zero():
    result = runner.invoke(app, ["diff", "allegro", "allegro"])
    assert result.exit_code == 0 and "No differences." in result.stdout


NAMES = list(specs.SHIPPED)


@FAST
@given(name=st.sampled_from(NAMES))
def test_diff_with_itself_is_empty(name):
    spec = specs.load(name)
    assert diff(spec, spec).changes == []


def mirrored(change):
    """The change as diff(b, a) must show it: added <-> removed, before <-> after, [old=>new] <-> [new=>old]."""
    flip = {"added": "removed", "removed": "added"}
    path = re.sub(r"\[([^\]=]+)=>([^\]]+)\]", r"[\2=>\1]", change.path)
    return (flip.get(change.kind, change.kind), path, json.dumps(change.after, sort_keys=True),
            json.dumps(change.before, sort_keys=True))


def key(change):
    return (change.kind, change.path, json.dumps(change.before, sort_keys=True), json.dumps(change.after, sort_keys=True))


@FAST
@given(pair=st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)))
def test_diff_b_a_mirrors_diff_a_b(pair):
    a, b = (specs.load(n) for n in pair)
    forward, backward = diff(a, b), diff(b, a)
    assert sorted(mirrored(c) for c in forward.changes) == sorted(key(c) for c in backward.changes)
    assert forward.unchanged == backward.unchanged


@FAST
@given(name=st.sampled_from(NAMES), data=st.data())
def test_reordering_ops_yields_only_moves(name, data):
    spec = specs.load(name)
    document, table = to_document(spec)
    pipelines = document["data"]["pipelines"]
    index = data.draw(st.integers(0, len(pipelines) - 1))
    ops = pipelines[index]["ops"]
    permuted = data.draw(st.permutations(ops))
    pipelines[index]["ops"] = list(permuted)
    reordered = from_document(document, table)
    changes = diff(spec, reordered).changes
    assert {c.kind for c in changes} <= {"moved"}
    assert bool(changes) == ([op["name"] for op in permuted] != [op["name"] for op in ops])


def test_graph_diff_colours_added_removed_and_changed_nodes():
    result = runner.invoke(app, ["diff", "flux1-dev", "flux1-schnell", "--graph"])
    assert result.exit_code == 1
    dot = result.stdout
    assert dot.startswith('digraph "flux1-dev -> flux1-schnell"')
    assert "fillcolor=palegreen" in dot and "fillcolor=lightpink" in dot
    removed = [line for line in dot.splitlines() if "(removed)" in line]
    assert any("stage:guidance_distillation" in line for line in removed)
    import shutil
    import subprocess

    assert shutil.which("dot"), "graphviz is installed by `make setup`"
    subprocess.run(["dot", "-Tsvg"], input=dot, text=True, capture_output=True, check=True)
