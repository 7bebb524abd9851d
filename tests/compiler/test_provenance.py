"""Provenance markers: lifted onto leaves, inherited by sub-nodes, defaults marked as defaults."""

import pytest
from pydantic import ValidationError

from compiler.document import provenance_table
from compiler.schema import (
    Aesthetic,
    LatentSpace,
    Pipeline,
    Provenance,
    Safety,
    assumed,
    documented,
    likely,
    undisclosed,
)


def test_marker_on_a_leaf_is_recorded_on_that_field():
    space = LatentSpace(vae="v", channels=documented(16, "flux util.py"), spatial_compression=8)
    assert space.provenance_of("channels") == Provenance(status="documented", source="flux util.py")
    assert space.provenance_of("spatial_compression") is None  # set, but nobody said where from
    assert space.provenance_of("temporal_compression").status == "default"


def test_marker_on_a_sub_node_marks_its_set_leaves_and_kind_but_not_its_defaults():
    pipe = Pipeline(name="p", sources=["web"], output="d", ops=[likely(Aesthetic(min_score=6.5), "card")])
    table = provenance_table(pipe)
    assert table["ops[aesthetic].min_score"].status == "likely"
    assert table["ops[aesthetic].kind"].status == "likely"
    assert table["ops[aesthetic].frames"].status == "default"


def test_default_sub_node_keeps_default_status_and_is_not_shared():
    first = Pipeline(name="a", sources=["w"], output="d", ops=documented([Safety(categories=["nsfw"])], "x"))
    second = Safety(categories=["csam"])
    assert provenance_table(first)["ops[safety].scale.high"].status == "default"
    assert first.ops[0].scale is not second.scale


def test_undisclosed_holds_no_value():
    space = LatentSpace(vae="v", channels=16, spatial_compression=8, params=undisclosed("not published"))
    assert space.params is None
    assert space.provenance_of("params").status == "undisclosed"


@pytest.mark.parametrize("status", ["documented", "likely"])
def test_documented_and_likely_need_a_source(status):
    with pytest.raises(ValidationError, match="needs a source"):
        Provenance(status=status)


def test_assumed_needs_a_reason():
    with pytest.raises(ValidationError, match="needs a reason"):
        Provenance(status="assumed")
    assert assumed(3, "because").provenance.reason == "because"


def test_marker_on_a_plain_list_item_is_refused():
    with pytest.raises(ValidationError, match="mark the whole list"):
        Pipeline(name="p", sources=[documented("web", "x")], output="d", ops=[])


def test_inner_marker_on_a_sub_node_survives_an_outer_marker():
    from compiler.schema import AdamW, DatasetUse, Stage, square

    stage = documented(
        Stage(name="s", kind="pretrain", datasets=[DatasetUse(dataset="d")], resolutions=[square(256)],
              optimizer=assumed(AdamW(lr=1e-4), "typical")),
        "card",
    )
    from compiler.schema import ScheduleSpec

    table = provenance_table(ScheduleSpec(stages=[stage]))
    assert table["stages[s].optimizer.kind"].status == "assumed"
    assert table["stages[s].optimizer.lr"].status == "assumed"
    assert table["stages[s].kind"].status == "documented"
