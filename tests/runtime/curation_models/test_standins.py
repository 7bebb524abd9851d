"""Scorers the model cards name but genspec has not ported: refused at full scale, reported at smoke."""

import pytest

from compiler.schema import MotionScore, TechnicalQuality
from runtime.curation.api import OpConfigError, OpContext
from runtime.curation.registry import implementation_for


@pytest.mark.parametrize("op", [TechnicalQuality(scorer="dover", min_score=0.0),
                                MotionScore(scorer="unimatch", min_score=0.5)], ids=["dover", "unimatch"])
def test_unported_scorer_refuses_at_full_scale_and_says_so_at_smoke(op, tmp_path):
    implementation = implementation_for(op)
    assert implementation.smoke_only
    with pytest.raises(OpConfigError, match="no implementation in genspec"):
        implementation(op, OpContext(tmp_path, "full"))
    smoke = implementation(op, OpContext(tmp_path, "smoke"))
    assert any("not implemented" in note for note in smoke.notes())


def test_bundle_lists_ops_that_run_at_smoke_scale_only():
    import specs
    from compiler.emit import render
    from compiler.schema.cluster import PRESETS

    allegro = specs.load("allegro")
    report = render(allegro, PRESETS["h100-64"], "full").files["assumptions.md"]
    assert "## Runs at smoke scale only" in report
    unported = [(p.name, op.name) for p in allegro.data.pipelines for op in p.ops
                if getattr(op, "scorer", None) in ("dover", "unimatch")]
    assert len(unported) == 2
    for pipeline, op in unported:
        assert f"data.pipelines[{pipeline}].ops[{op}]" in report
