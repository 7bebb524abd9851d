"""compiler/pipeline.py: the passes run in order, each once, the stage graph built once; check is compile
without the plan."""

import pytest

import specs
from compiler import pipeline
from compiler.schema.cluster import PRESETS

PASSES = [("compiler.scale", "scaled"), ("compiler.resolve", "apply_overrides"), ("compiler.resolve", "resolve"),
          ("compiler.graph", "build"), ("compiler.validate", "validate"), ("compiler.plan", "plan"),
          ("compiler.emit.bundle", "render_bundle")]


@pytest.fixture
def calls(monkeypatch):
    """The order in which the passes are called, recorded by wrapping each."""
    import importlib

    order: list[str] = []
    for module_name, name in PASSES:
        module = importlib.import_module(module_name)
        original = getattr(module, name)

        def wrapped(*args, _original=original, _name=name, **kwargs):
            order.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)
    return order


def test_compile_runs_each_pass_once_in_order(calls):
    pipeline.emit(pipeline.compile(specs.load("flux1-dev"), PRESETS["local-cpu"], "smoke",
                                   ["schedule.stages[pretrain].steps=10"]))
    assert calls == [name for _, name in PASSES]


def test_check_runs_every_pass_before_the_plan(calls):
    checked = pipeline.check(specs.load("wan2.1-t2v-1.3b"))
    assert calls == [name for _, name in PASSES[:5]]
    assert checked.errors == [] and checked.stage_graph.spec == "wan2.1-t2v-1.3b"


def test_an_override_wins_over_the_smoke_value_and_is_recorded():
    checked = pipeline.check(specs.load("flux1-dev"), "smoke", ["schedule.stages[pretrain].steps=10"])
    assert checked.spec.schedule.stages[0].steps == 10
    assert checked.resolved.table["schedule.stages[pretrain].steps"].status == "override"
    assert checked.spec.schedule.stages[1].steps == 3  # the other stages keep their smoke value


def test_compile_refuses_what_check_finds_with_every_error():
    spec = specs.load("flux1-dev")
    overrides = ["architecture.backbone.qk_norm=layernorm_per_head", "inference.sampler=ddim"]
    errors = pipeline.check(spec, "full", overrides).errors
    assert [d.path for d in errors] == ["architecture.backbone.qk_norm", "inference.sampler"]
    with pytest.raises(pipeline.CompileError) as refused:
        pipeline.compile(spec, PRESETS["h100-64"], "full", overrides)
    assert errors and all(str(d) in str(refused.value) for d in errors)
