"""The resolve pass: --set overrides coerced through the schema, derived values, missing values."""

import pytest

import specs
from compiler.document import provenance_table
from compiler.resolve import OverrideError, apply_overrides, parse_override, resolve


def test_override_is_parsed_as_a_literal_and_coerced_through_the_field_type():
    spec = apply_overrides(specs.load("flux1-dev"), ["schedule.stages[0].steps=1000"])
    assert spec.schedule.stages[0].steps == 1000
    entry = provenance_table(spec)[f"schedule.stages[{spec.schedule.stages[0].name}].steps"]
    assert entry.status == "override"
    assert "1000" in entry.reason


@pytest.mark.parametrize("text,expected", [
    ("a.b=3e-4", 3e-4), ("a.b=true", True), ("a.b=[1, 2]", [1, 2]), ("a.b=hello world", "hello world"),
    ("a.b=$(rm -rf /)", "$(rm -rf /)"), ("a.b=__import__('os')", "__import__('os')"),
])
def test_values_are_data_never_code(text, expected):
    assert parse_override(text) == ("a.b", expected)


@pytest.mark.parametrize("text,message", [
    ("no-equals-sign", "expected PATH=VALUE"),
    ("architecture.backbone.nonsense=1", "no field 'nonsense'"),
    ("schedule.stages[nope].steps=1", "no item [nope]"),
    ("architecture.backbone.hidden_size=wide", "hidden_size"),
])
def test_bad_overrides_name_the_problem(text, message):
    with pytest.raises(OverrideError, match=message.replace("[", r"\[")):
        apply_overrides(specs.load("flux1-dev"), [text])


def test_cfg_dropout_per_encoder_is_derived_from_the_joint_rate():
    spec = specs.load("flux1-dev")
    if spec.objective.cfg_dropout is None or spec.objective.cfg_dropout.per_encoder:
        spec = apply_overrides(spec, ["objective.cfg_dropout={joint_rate: 0.1}"])
    resolved = resolve(spec)
    rates = resolved.spec.objective.cfg_dropout.per_encoder
    k = len(spec.architecture.text_encoders)
    assert len(rates) == k
    joint = 1.0
    for rate in rates.values():
        joint *= rate
    assert joint == pytest.approx(0.1, rel=1e-4)
    assert resolved.table["objective.cfg_dropout.per_encoder"].status == "derived"


def test_an_undisclosed_needed_value_is_reported_with_its_fix():
    base = specs.load("flux1-dev")
    stage = base.schedule.stages[0].name
    broken = apply_overrides(base, [f"schedule.stages[{stage}].batch_size=null"])
    missing = resolve(broken).missing
    assert [m.path for m in missing] == [f"schedule.stages[{stage}].batch_size"]
    assert "--set" in str(missing[0])
