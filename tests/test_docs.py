"""The guide's code runs as written: its specs validate and compile at full and at smoke scale."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler.cli import app

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-a-spec.md"
SPECS = ("SD3_MEDIUM", "SD3_MEDIUM_DEDUP", "MY_VIDEO_DIT", "MY_VIDEO_MMDIT", "MY_VIDEO_DIT_FROM_WAN")
runner = CliRunner()


@pytest.fixture(scope="module")
def guide_module(tmp_path_factory):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    module = tmp_path_factory.mktemp("guide") / "my_specs.py"
    module.write_text("\n".join(blocks))
    return module


def test_writing_a_spec_guide_code_validates(guide_module):
    for attr in SPECS:
        result = runner.invoke(app, ["validate", f"{guide_module}:{attr}"])
        assert result.exit_code == 0, result.output
    derived = runner.invoke(
        app, ["explain", f"{guide_module}:SD3_MEDIUM_DEDUP", "data.pipelines[main].ops[perceptual_dedup].max_hamming"]
    )
    assert "= 4" in derived.stdout


@pytest.mark.parametrize("attr", SPECS)
@pytest.mark.parametrize("cluster,scale", [("h100-64", "full"), ("local-cpu", "smoke")])
def test_the_guides_specs_compile_as_its_commands_say(guide_module, tmp_path, attr, cluster, scale):
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["compile", f"{guide_module}:{attr}", "--cluster", cluster, "--scale", scale,
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert list(out.glob("train/*/stage.yaml")), "no training stage written"
    assert "checkpoint every" in (out / "plan.md").read_text()
