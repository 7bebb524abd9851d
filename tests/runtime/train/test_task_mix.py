"""A stage that trains text-to-image generation and editing jointly (Seedream 4.0's post-training): each
micro-batch is drawn from one dataset by weight, edit micro-batches carry reference-image latents that join
the MMDiT's sequence, and a micro-batch that does not fit its dataset's task is refused."""

import pytest
import torch
import webdataset as wds
from conftest import class_embeddings, patterns, trained_losses, write_stage
from ruamel.yaml import YAML

from compiler.schema.bundle import DataInput
from compiler.schema.schedule import TaskShare
from runtime.objectives.conditioning import Conditioning
from runtime.train import RunOptions, train
from runtime.train.batch import Batch, check_task
from runtime.train.metrics import read_metrics


def write_samples(directory, samples: int, edit: bool) -> None:
    """One shard of class-pattern latents with text and pooled embeddings; edits also hold context.npy, the
    reference image's latents (the next class's pattern)."""
    directory.mkdir(parents=True, exist_ok=True)
    latents, (texts, pooled) = patterns(False), class_embeddings()
    with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
        for index in range(samples):
            c = index % len(latents)
            sample = {"__key__": f"{index:06d}", "latents.npy": latents[c], "text.npy": texts[c],
                      "pooled.npy": pooled[c]}
            if edit:
                sample["context.npy"] = latents[(c + 1) % len(latents)]
            sink.write(sample)


def test_a_joint_stage_trains_both_tasks(tmp_path):
    write_samples(tmp_path / "data" / "t2i", 8, edit=False)
    write_samples(tmp_path / "data" / "edits", 8, edit=True)
    stage_path, ds_config = write_stage(tmp_path, name="joint", steps=4, micro=2, datasets=("t2i", "edits"),
                                        weights=[0.5, 0.5], ema=None, validation_every=4, checkpoint_every=4)
    yaml = YAML(typ="safe")
    stage_file = yaml.load(stage_path.read_text())
    stage_file["architecture"]["backbone"]["context_images"] = "sequence"  # Kontext-style references
    stage_file["stage"]["tasks"] = [TaskShare(task="generation", weight=0.5).model_dump(mode="json"),
                                    TaskShare(task="edit", weight=0.5).model_dump(mode="json")]
    stage_file["data"][1]["task"] = "edit"
    with open(stage_path, "w") as stream:
        yaml.dump(stage_file, stream)
    train(RunOptions(stage_path, ds_config, tmp_path, data_workers=0))
    records = read_metrics(tmp_path / "runs" / "joint")
    trained_losses(records, 4)
    drawn = {key for record in records[1:] for key in record if key.startswith("loss/")}
    assert drawn == {"loss/t2i", "loss/edits"}, records  # both tasks' micro-batches trained


def test_a_micro_batch_that_does_not_fit_its_task_is_refused():
    latents = torch.zeros(2, 4, 2, 2)
    plain = Batch(latents, Conditioning(text=torch.zeros(2, 3, 8)), keys=("a", "b"))
    edit = Batch(latents, Conditioning(text=torch.zeros(2, 3, 8), context_latents=latents), keys=("a", "b"))
    edits = DataInput(dataset="edits", weight=1.0, shards="data/edits", task="edit")
    plains = DataInput(dataset="t2i", weight=1.0, shards="data/t2i")
    check_task(edit, edits)
    check_task(plain, plains)
    with pytest.raises(ValueError, match="'edits' trains the edit task .* has no reference image"):
        check_task(plain, edits)
    with pytest.raises(ValueError, match="'t2i' trains the generation task .* has reference images"):
        check_task(edit, plains)
