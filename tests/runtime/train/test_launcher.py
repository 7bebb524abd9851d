"""Two processes through the real DeepSpeed launcher: both ranks train, rank 0 writes the metrics, and the
ZeRO-3 EMA gathered from both ranks' partitions comes out whole."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env, trained_losses, write_shards, write_stage
from safetensors.torch import load_file

from runtime.train.metrics import read_metrics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_process_zero3_run_through_the_deepspeed_launcher(tmp_path, deepspeed_ops_built):
    write_shards(tmp_path / "data" / "patterns", samples=32, per_shard=8, noise=0.05)
    stage, ds_config = write_stage(tmp_path, name="two", steps=4, micro=2, accum=2, dp=2, zero=3, checkpoint_every=2)
    launcher = Path(sys.executable).parent / "deepspeed"
    port = free_port()
    command = [
        str(launcher),
        "--num_gpus",
        "2",
        "--no_local_rank",
        "--master_port",
        str(port),
        "--module",
        "runtime.train",
        "--stage",
        str(stage),
        "--ds-config",
        str(ds_config),
        "--run-root",
        str(tmp_path),
        "--model-factory",
        "tiny_model:build",
    ]
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"  # two processes on two cores
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # DeepSpeed's CPU all-reduce segments (one per rank, named with the port) are gone with the run.
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))

    output = tmp_path / "runs" / "two"
    trained_losses(read_metrics(output), 4)
    checkpoint = output / "checkpoints" / "step00000004"
    assert {p.name for p in checkpoint.glob("trainer_rank*.pt")} == {"trainer_rank0.pt", "trainer_rank1.pt"}
    model, ema = (
        load_file(str(output / "final" / "model.safetensors")),
        load_file(str(output / "final" / "ema.safetensors")),
    )
    assert {k: v.shape for k, v in model.items()} == {k: v.shape for k, v in ema.items()}
    for name, weight in model.items():  # partitions put back in the wrong order would differ by ~sqrt(2) |w|
        assert (ema[name] - weight).norm() < 0.2 * weight.norm() + 1e-3, name
