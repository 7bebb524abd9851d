"""Rendering: every shipped spec that loads builds and renders; output is deterministic; svg needs `dot`."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import specs
from compiler.document import Insert, derive
from compiler.graph import FORMATS, RenderError, build, render
from compiler.schema import HumanReview

ROOT = Path(__file__).resolve().parents[3]
TEXT_FORMATS = ("dot", "mermaid", "json")


SHIPPED = list(specs.SHIPPED)  # a spec that fails to load fails its cases here too


@pytest.fixture(params=["image_spec", "video_spec", "cascade_spec", *SHIPPED])
def any_spec(request):
    if request.param in SHIPPED:
        return specs.load(request.param)
    return request.getfixturevalue(request.param)


def test_builds_and_renders_every_text_format_deterministically(any_spec):
    graph = build(any_spec)
    kinds = {data["kind"] for _, data in graph.graph.nodes(data=True)}
    assert {"source", "dataset", "stage", "checkpoint"} <= kinds
    for fmt in TEXT_FORMATS:
        text = render(any_spec, fmt)
        assert text == render(any_spec, fmt), f"{fmt} output differs between two runs"
        assert text.endswith("\n")
    document = json.loads(render(any_spec, "json"))
    assert list(document) == sorted(document)
    ids = [node["id"] for node in document["nodes"]]
    assert ids == sorted(ids) and len(document["edges"]) == graph.graph.number_of_edges()


def test_output_does_not_depend_on_the_hash_seed():
    """Set order changes with PYTHONHASHSEED; nothing rendered may follow it."""
    code = (
        "import hashlib, sys, specs\n"
        "from compiler.graph import render\n"
        "digest = hashlib.sha256()\n"
        "for name in sys.argv[1:]:\n"
        "    for fmt in ('dot', 'mermaid', 'json'):\n"
        "        digest.update(render(specs.load(name), fmt).encode())\n"
        "print(digest.hexdigest())\n"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code, *SHIPPED], capture_output=True, text=True, check=True, cwd=ROOT,
                       env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_graph_is_acyclic_and_every_stage_ends_in_a_checkpoint(any_spec):
    import networkx as nx

    graph = build(any_spec).graph
    assert nx.is_directed_acyclic_graph(graph)
    for node, data in graph.nodes(data=True):
        if data["kind"] == "stage":
            assert graph.has_edge(node, f"checkpoint:{data['name']}", key="produces")


def test_dot_has_shapes_per_kind_and_a_cluster_per_pipeline(image_spec):
    text = render(image_spec, "dot")
    assert text.startswith("// Stage graph of spec graph-test")
    assert 'subgraph "cluster_main" {' in text
    for line in ('"source:web" [shape=cylinder', '"dataset:pretrain" [shape=folder', '"stage:pretrain" [shape=box3d',
                 '"checkpoint:pretrain" [shape=note', '"op:main/perceptual_dedup" [shape=octagon'):
        assert line in text
    assert '"checkpoint:finetune" -> "stage:distill" [label="teaches", style=dashed];' in text
    assert '"checkpoint:finetune" -> "stage:distill" [label="initialises", style=bold];' in text


def test_mermaid_is_a_left_to_right_flowchart_with_a_subgraph_per_pipeline(video_spec):
    text = render(video_spec, "mermaid")
    lines = text.splitlines()
    assert lines[1] == "flowchart LR"
    assert '  subgraph pipeline_main["pipeline main"]' in lines
    assert any(line.strip().startswith("op_main_scene_split[/") for line in lines), "a split is a trapezoid"
    assert any(line.strip().startswith("op_main_exact_dedup{{") for line in lines), "a barrier is a hexagon"
    assert all(re.match(r"    op_\w+[\[{]", line) for line in lines if line.startswith("    op_")), "ids are words"


def test_json_carries_the_plan(image_spec):
    document = json.loads(render(image_spec, "json"))
    assert document["orders"]["main"][0] == "resolution"
    assert document["reorders"][0]["op"] == "resolution"
    assert {job["name"] for job in document["jobs"]} == {"main-00", "main-01", "main-02", "main-03"}
    assert document["decode_plan"][0]["short_side_px"] == 256


def test_nodes_a_diagnostic_points_at_are_outlined(image_spec):
    broken = derive(image_spec, {"data.pipelines[main].ops[review]": Insert(
        HumanReview(name="review", score_of="watermark", band=(0.4, 0.6)), after="safety")}, name="x")
    assert '"op:main/review" [shape=box, label="review (human_review)' in render(broken, "dot")
    assert 'color="#cc0000", penwidth=2' in render(broken, "dot")
    assert "class op_main_review error" in render(broken, "mermaid")
    assert json.loads(render(broken, "json"))["diagnostics"][0]["rule"] == "graph.no-producer"


def test_unknown_format_is_refused_with_the_formats(image_spec):
    with pytest.raises(RenderError, match="formats: dot, mermaid, json, svg"):
        render(image_spec, "png")
    assert FORMATS == ("dot", "mermaid", "json", "svg")


def test_svg_without_graphviz_says_how_to_get_it(image_spec, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RenderError) as error:
        render(image_spec, "svg")
    assert str(error.value) == (
        "svg needs Graphviz's `dot`; install graphviz (apt-get install graphviz) or use --format dot"
    )


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_with_graphviz(image_spec):
    assert "<svg" in render(image_spec, "svg")


def test_importing_the_graph_package_imports_no_heavy_library():
    code = (
        "import sys, compiler.graph\n"
        "heavy = {'torch', 'deepspeed', 'transformers', 'diffusers', 'ray'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    plain = "import sys, compiler, compiler.schema; assert 'networkx' not in sys.modules"
    subprocess.run([sys.executable, "-c", plain], check=True, cwd=ROOT)
