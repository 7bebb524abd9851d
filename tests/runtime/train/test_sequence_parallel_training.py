"""Ulysses sequence parallelism end to end through the trainer: FLUX.1 dev's smoke pretrain stage (the runtime's
real MMDiT through the default factory) trained by one process at sp 1 and by two processes forming one SP group
(stage.yaml layout.sp_size 2, ds_config sequence_parallel_size 2). Both runs have one data-parallel rank and the
same micro batch, so they read the same samples and draw the same noise: the logged training and validation
losses must agree to fp32 round-off, and both ranks of the group must have trained on the same sample keys."""

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch.multiprocessing as mp
from conftest import RENDEZVOUS, trained_losses
from ruamel.yaml import YAML
from test_generated_bundle import BUNDLE, write_latent_shards

from runtime.train import RunOptions, load_stage_file
from runtime.train.metrics import read_metrics

STEPS = 5
TOLERANCE = 1e-5
LR = 1e-2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_stage(root: Path, sp: int) -> tuple[Path, Path]:
    """The smoke bundle's pretrain stage in fp32 with `sp` ranks per sample, validated every step."""
    document = YAML(typ="safe").load((BUNDLE / "pretrain" / "stage.yaml").read_text())
    document["stage"]["precision"] = document["layout"]["precision"] = "fp32"  # parity to 1e-5 needs fp32
    document["layout"]["sp_size"] = sp
    document["output_dir"] = f"runs/sp{sp}"
    document["validation_every"] = 1
    document["stage"]["steps"] = STEPS
    ds_config = json.loads((BUNDLE / "pretrain" / "ds_config.json").read_text())
    ds_config["bf16"] = {"enabled": False}
    # A learning rate that moves the tiny model within three steps, so later steps' losses test the gradients.
    ds_config["optimizer"]["params"]["lr"] = ds_config["scheduler"]["params"]["warmup_max_lr"] = LR
    if sp > 1:
        ds_config["sequence_parallel_size"] = sp
    stage, config = root / f"stage-sp{sp}.yaml", root / f"ds_config-sp{sp}.json"
    stage.write_text(json.dumps(document))  # JSON is YAML
    config.write_text(json.dumps(ds_config))
    return stage, config


def train_recording_keys(stage: Path, ds_config: Path, root: Path, keys_file: Path) -> None:
    """Train the stage in this process, writing the sample keys of every micro-batch it trained on to keys_file."""
    from runtime.train.trainer import Run

    class Recording(Run):
        def train_step(self, step):
            if not hasattr(self, "seen"):  # the loader exists from run()'s start; wrap its next() once
                self.seen, next_item = [], self.loader.next

                def recorded():
                    item = next_item()
                    self.seen.append(list(item.keys))
                    return item

                self.loader.next = recorded
            return super().train_step(step)

    run = Recording(RunOptions(stage, ds_config, root, max_steps=STEPS))
    run.run()
    keys_file.write_text(json.dumps(run.seen))


def rank_main(rank: int, world: int, port: int, stage: str, ds_config: str, root: str) -> None:
    import multiprocessing

    import torch.distributed as dist

    # mp.spawn's children inherit its "spawn" start method, under which the data loader's workers would pickle
    # the engine; a launched rank (python -m runtime.train) forks them, as here.
    multiprocessing.set_start_method("fork", force=True)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    try:
        train_recording_keys(Path(stage), Path(ds_config), Path(root), Path(root) / f"keys-rank{rank}.json")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_rank_ulysses_group_trains_to_the_single_rank_losses(tmp_path, deepspeed_ops_built, monkeypatch):
    assert BUNDLE.is_dir(), f"{BUNDLE} is missing: `make regen` writes generated/ (and it is committed)"
    write_latent_shards(tmp_path, load_stage_file(BUNDLE / "pretrain" / "stage.yaml"))
    for name in RENDEZVOUS:
        monkeypatch.delenv(name, raising=False)

    single = write_stage(tmp_path, 1)
    train_recording_keys(*single, tmp_path, tmp_path / "keys-single.json")
    double = write_stage(tmp_path, 2)
    mp.spawn(rank_main, args=(2, free_port(), str(double[0]), str(double[1]), str(tmp_path)), nprocs=2, join=True)

    # Same samples first: a group whose ranks read different samples cannot match the single rank's losses.
    keys = {name: json.loads((tmp_path / f"keys-{name}.json").read_text()) for name in ("single", "rank0", "rank1")}
    assert len(keys["single"]) == STEPS and all(len(batch) == 2 for batch in keys["single"]), keys
    assert keys["rank0"] == keys["rank1"] == keys["single"], keys
    records = {sp: read_metrics(tmp_path / "runs" / f"sp{sp}") for sp in (1, 2)}
    losses = {sp: trained_losses(records[sp], STEPS) for sp in (1, 2)}
    validation = {sp: [r["val_loss"] for r in records[sp]] for sp in (1, 2)}
    assert len(validation[1]) == STEPS + 1 and all(math.isfinite(v) for v in validation[1]), validation
    for got, want in zip(losses[2] + validation[2], losses[1] + validation[1], strict=True):
        assert abs(got - want) <= TOLERANCE * max(1.0, abs(want)), (losses, validation)
    # The training must move the model well past the tolerance, or equal losses would say nothing about the
    # gradients (the validation draw is fixed, so its change is the weights').
    assert abs(validation[1][-1] - validation[1][0]) > 100 * TOLERANCE, validation

