"""docs/reference.md: generated from the schema, complete, and failing a test when it drifts."""

import re

from compiler import reference
from compiler.plan.fields import PLANNER_FIELDS
from compiler.schema.architecture import DiT


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (\w+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_reference_md_is_what_the_generator_writes():
    """Fails when the schema, the planner's field table or the runtime's declaration changes without
    `python -m compiler.reference` (make regen)."""
    assert reference.REFERENCE.read_text(encoding="utf-8") == reference.render(), (
        "docs/reference.md has drifted: run python -m compiler.reference")
    assert reference.main(["--check"]) == 0


def test_every_type_and_field_has_a_row():
    text = reference.render()
    by_type = sections(text)
    types = reference.schema_types()
    assert len(types) > 50 and set(by_type) == {model.__name__ for model in types}
    for model in types:
        rows = re.findall(r"^\| `(\w+)` \|", by_type[model.__name__], flags=re.M)
        assert rows == list(model.model_fields), model.__name__


def test_planner_table_names_only_real_fields():
    known = {}
    for model in reference.schema_types():
        for klass in model.__mro__:
            known.setdefault(klass.__name__, set()).update(model.model_fields)
    stale = [key for key in PLANNER_FIELDS if key[1] not in known.get(key[0], set())]
    assert not stale and PLANNER_FIELDS


def test_rows_carry_unit_default_planner_and_runtime():
    dit = sections(reference.render())["DiT"]
    modulation = next(line for line in dit.splitlines() if line.startswith("| `modulation` |"))
    cells = [cell.strip() for cell in modulation.strip("|").split("|")]
    assert cells == ["`modulation`", "one of `adaln_single`, `adaln_per_block`, `adaln_expert`", "", "`adaln_single`",
                     PLANNER_FIELDS[("DiT", "modulation")], "adaln_single, adaln_expert",
                     DiT.model_fields["modulation"].description]
    depth = next(line for line in dit.splitlines() if line.startswith("| `depth` |"))
    assert "| int; > 0 | blocks | required | parameters and FLOPs | all |" in depth
    assert "Runtime: builds runtime.models.wan.WanDiT." in dit
    assert DiT.model_fields["depth"].is_required()
