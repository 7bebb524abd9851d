"""Per-rank data through DataLoader workers, with two processes: the ranks read disjoint shares that together
are the epoch, a loader resumed from its state continues exactly, and a two-process training run through the
DeepSpeed launcher resumes to the uninterrupted losses."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import subprocess_env, write_shards, write_stage

from compiler.schema.bundle import DataInput
from runtime.train.data import StageData
from runtime.train.loader import Loader, pin
from runtime.train.metrics import read_metrics

SHARDS, PER_SHARD = 8, 6  # 48 samples: 2 shards for each of 2 ranks x 2 lanes per epoch
MICRO, ACCUM = 2, 2  # 12 micro-batches per rank and epoch: 6 steps


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_main(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    inputs = [DataInput(dataset="patterns", weight=1.0, shards="data/patterns")]

    def data():
        return StageData(inputs, Path(root), 0, MICRO * ACCUM * world, dist.get_rank(), dist.get_world_size(),
                         micro_batch=MICRO, lanes=2)

    loader = Loader(data(), 0, workers=2)
    items = []
    for index in range(6 * ACCUM):
        items.append(loader.next())
        if index == 3 * ACCUM - 1:
            state = loader.state_dict()  # after step 3, while the workers have prefetched further
    resumed_data = data()
    resumed_data.load_state_dict(state)
    resumed = Loader(resumed_data, 3, workers=2)
    after = [resumed.next() for _ in range(3 * ACCUM)]
    result = {
        "keys": [list(item.keys) for item in items],
        "lanes": [item.lane for item in items],
        "resumed": [list(item.keys) for item in after],
    }
    Path(root, f"rank{rank}.json").write_text(json.dumps(result))
    loader.close()
    resumed.close()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_read_disjoint_shares_covering_the_epoch_and_resume(tmp_path):
    write_shards(tmp_path / "data" / "patterns", samples=SHARDS * PER_SHARD, per_shard=PER_SHARD)
    mp.spawn(rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    shares = [{key for micro in rank["keys"] for key in micro} for rank in ranks]
    assert sum(len(micro) for micro in ranks[0]["keys"]) == len(shares[0]) == 24  # no repeats within a rank
    assert shares[0].isdisjoint(shares[1])
    assert shares[0] | shares[1] == {f"{i:06d}" for i in range(SHARDS * PER_SHARD)}
    assert ranks[0]["lanes"] == [0, 1] * (3 * ACCUM)
    for rank in ranks:
        assert rank["resumed"] == rank["keys"][3 * ACCUM :]


def test_pin_reaches_tensors_inside_dataclasses():
    from runtime.objectives.conditioning import Conditioning
    from runtime.train.batch import Batch

    batch = Batch(torch.zeros(2, 3), Conditioning(text=torch.ones(2, 4, 5)), keys=("a", "b"))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):  # pinning needs an accelerator: the loader pins only where one exists
            pin(batch)
        return
    pinned = pin(batch)
    assert pinned.latents.is_pinned() and pinned.cond.text.is_pinned() and pinned.keys == ("a", "b")


@pytest.mark.slow
def test_two_process_run_resumes_to_the_uninterrupted_losses(tmp_path, deepspeed_ops_built):
    write_shards(tmp_path / "data" / "patterns", samples=32, per_shard=4, noise=0.05)
    launcher = Path(sys.executable).parent / "deepspeed"
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"
    env["GENSPEC_DATA_WORKERS"] = "2"  # two DataLoader workers (lanes) per rank

    def launch(name, max_steps=None):
        stage, ds_config = write_stage(tmp_path, name=name, steps=4, micro=2, accum=2, dp=2, zero=2,
                                       precision="bf16", checkpoint_every=2)
        command = [
            str(launcher), "--num_gpus", "2", "--no_local_rank", "--master_port", str(free_port()),
            "--module", "runtime.train", "--stage", str(stage), "--ds-config", str(ds_config),
            "--run-root", str(tmp_path), "--model-factory", "tiny_model:build",
        ] + ([] if max_steps is None else ["--max-steps", str(max_steps)])
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in read_metrics(tmp_path / "runs" / name)]

    whole = launch("whole")
    assert [step for step, _, _ in whole] == [0, 1, 2, 3, 4]
    launch("split", max_steps=2)
    state = torch.load(tmp_path / "runs" / "split" / "checkpoints" / "step00000002" / "trainer_rank1.pt",
                       weights_only=False)
    assert state["data"]["lanes"] == 2 and len(state["data"]["lane_consumed"]) == 2
    assert launch("split") == whole
