"""Validation sets: every dataset of the stage, split over any number of ranks (also more ranks than samples)
with the same number of micro-batches on each, and noise that does not depend on the world size."""

import pytest
import torch
from conftest import SIDE, architecture, write_shards

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.bundle import DataInput
from runtime.train.batch import BatchBuilder
from runtime.train.data import StageData
from runtime.train.validation import VALIDATION_SAMPLES, validation_parts


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("validation")
    write_shards(root / "data" / "a", samples=40, per_shard=8)
    write_shards(root / "data" / "b", samples=12, per_shard=8)
    inputs = [DataInput(dataset=d, weight=0.5, shards=f"data/{d}") for d in ("a", "b")]
    builder = BatchBuilder(ArchitectureSpec(**architecture()), None, None)
    return root, inputs, builder


@pytest.mark.parametrize("world", [1, 3, 64])  # 64: the old split gave no rank a sample
def test_every_dataset_is_validated_once_at_any_world_size(stage, world):
    root, inputs, builder = stage
    noise_by_key = {}
    counted = {0: [], 1: []}
    lengths = set()
    for rank in range(world):
        data = StageData(inputs, root, 0, 2 * world, rank, world, micro_batch=2)
        parts = validation_parts(data, builder, (SIDE * 8, SIDE * 8), 2, seed=0, rank=rank, world=world,
                                 lowres_level=None)
        lengths.add(tuple(part.dataset for part in parts))  # the same forwards on every rank (ZeRO-3)
        for part in parts:
            for key, noise, weight in zip(part.batch.keys, part.noise, part.weight):
                if weight:
                    counted[part.dataset].append(key)
                    noise_by_key[part.dataset, key] = noise
    assert len(lengths) == 1
    assert sorted(counted[0]) == [f"{i:06d}" for i in range(VALIDATION_SAMPLES)]
    assert sorted(counted[1]) == [f"{i:06d}" for i in range(12)]
    reference = validation_parts(StageData(inputs, root, 0, 2, 0, 1, micro_batch=2), builder, (SIDE * 8, SIDE * 8),
                                 2, seed=0, rank=0, world=1, lowres_level=None)
    for part in reference:
        for key, noise in zip(part.batch.keys, part.noise):
            assert torch.equal(noise_by_key[part.dataset, key], noise)  # the noise of a sample, not of a rank
