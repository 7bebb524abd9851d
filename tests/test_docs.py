"""The guide's code runs as written and its spec validates."""

import re
from pathlib import Path

from typer.testing import CliRunner

from compiler.cli import app

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-a-spec.md"


def test_writing_a_spec_guide_code_validates(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    module = tmp_path / "my_specs.py"
    module.write_text("\n".join(blocks))
    runner = CliRunner()
    for attr in ("SD3_MEDIUM", "SD3_MEDIUM_DEDUP"):
        result = runner.invoke(app, ["validate", f"{module}:{attr}"])
        assert result.exit_code == 0, result.output
    derived = runner.invoke(app, ["explain", f"{module}:SD3_MEDIUM_DEDUP", "data.pipelines[main].ops[perceptual_dedup].max_hamming"])
    assert "= 4" in derived.stdout
