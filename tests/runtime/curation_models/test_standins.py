"""Scorers the model cards name but genspec has not ported: refused at full scale (by the compiler and by
the runtime), reported at smoke."""

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


def test_stand_ins_are_listed_at_smoke_scale_and_refused_at_full_scale():
    import specs
    from compiler.emit import render
    from compiler.pipeline import CompileError, compile
    from compiler.schema.cluster import PRESETS

    allegro = specs.load("allegro")
    ported = [f"data.pipelines[allegro].ops[{op}].scorer={scorer}"
              for op, scorer in (("technical_quality", "dover"), ("motion_score", "unimatch"))]
    report = render(allegro, PRESETS["local-cpu"], "smoke", ported).files["assumptions.md"]
    assert "## Runs at smoke scale only" in report
    for op in ("technical_quality", "motion_score"):
        assert f"data.pipelines[allegro].ops[{op}]" in report
    with pytest.raises(CompileError) as refused:
        compile(allegro, PRESETS["h100-64"], "full", ported)
    message = str(refused.value)
    assert message.count("[runtime.stand-in-at-full-scale]") == 2
    assert "DOVER's released checkpoint" in message and "scorer=clip-technical-regressor" in message
    assert "UniMatch flow network" in message and "scorer=raft" in message
