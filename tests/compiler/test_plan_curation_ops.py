"""plan.md's curation table: every op of a pipeline, where it runs and the GPU memory one copy of its model takes."""

import specs
from compiler.emit import render
from compiler.schema.cluster import PRESETS


def test_plan_lists_each_curation_op_with_its_gpu_memory():
    allegro = specs.load("allegro")
    plan = render(allegro, PRESETS["h100-64"], "full").files["plan.md"]
    table = plan.split("## Curation ops", 1)[1].split("\n## ", 1)[0]  # up to the next section
    rows = {line.split(" | ")[2]: line.split(" | ")[3:5] for line in table.splitlines() if line.startswith("| allegro |")}
    assert set(rows) == {op.name for p in allegro.data.pipelines for op in p.ops}
    assert rows["resolution"] == ["cpu", "0"]
    assert rows["coarse_captioning"] == ["gpu", "24"] and rows["aesthetic"] == ["gpu", "4"]
