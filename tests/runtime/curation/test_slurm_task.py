"""The Slurm array entry point: tasks split the shards, stages chain through manifests, finalize reports."""

import json

from compiler.schema.data import Blur, ExactDedup, PerceptualDedup, Pipeline
from runtime.curation import run
from runtime.curation.curate import CurationRun
from runtime.curation.slurm_task import array_position, array_slice, main

PIPELINE = Pipeline(
    name="images", sources=["web"], output="clean",
    ops=[Blur(min_laplacian_var=20), ExactDedup(), PerceptualDedup(max_hamming=4)],
)


def test_array_slices_cover_every_shard_once():
    shards = [f"s{i}" for i in range(7)]
    slices = [array_slice(shards, task, 3) for task in range(3)]
    assert [s for part in slices for s in part] == shards and [len(s) for s in slices] == [2, 2, 3]
    assert array_position({}) == (0, 1)
    assert array_position({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 4)


def test_array_tasks_per_stage_then_finalize_match_a_local_run(shards, tmp_path, monkeypatch, capsys):
    bundle = tmp_path / "bundle"  # the layout `genspec compile` writes (compiler/emit/bundle.py)
    (bundle / "curation" / "images").mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps({"scale": "full"}))
    (bundle / "curation" / "images" / "pipeline.json").write_text(
        json.dumps({"generated_by": "test", "pipeline": PIPELINE.model_dump(mode="json")}))
    common = ["--bundle", str(bundle), "--pipeline", "images", "--input", str(shards), "--output", str(tmp_path / "slurm")]
    assert main(common + ["--print-stages"]) == 0
    stages = int(capsys.readouterr().out)
    assert stages == 3  # two barriers
    assert main(common + ["--stage", "1"]) == 1  # stage 0 has not run
    assert "run the earlier stage" in capsys.readouterr().err
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert main(common + ["--stage", "0", "--barrier"]) == 1  # stage 0 starts with no barrier
    assert "no barrier" in capsys.readouterr().err

    def decided_again(*_):
        raise AssertionError("an array task decided the barrier again instead of reading barrier.json")

    for stage in range(stages):
        if stage > 0:  # the barrier's own job between the arrays: decides once, for every task
            assert main(common + ["--stage", str(stage), "--barrier"]) == 0
            assert (tmp_path / "slurm" / "_work" / f"stage{stage}" / "barrier.json").is_file()
        with monkeypatch.context() as patched:
            patched.setattr(CurationRun, "_barrier_verdicts", decided_again)
            for task in (1, 2):
                monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
                assert main(common + ["--stage", str(stage)]) == 0
    assert main(common + ["--finalize"]) == 0
    assert "kept" in capsys.readouterr().out
    run(PIPELINE, shards, tmp_path / "local", workers=1)
    for path in sorted((tmp_path / "local" / "shards").iterdir()):
        assert (tmp_path / "slurm" / "shards" / path.name).read_bytes() == path.read_bytes()


def test_missing_pipeline_is_an_error_exit(capsys):
    assert main(["--input", "x", "--output", "y"]) == 1
    assert "--bundle DIR --pipeline NAME" in capsys.readouterr().err
