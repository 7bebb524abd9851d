"""A video stage trains from what precompute_embeddings stores (bf16 latents of the stage's clip, unpadded
text), with stage.conditioning 'precomputed': the shards hold no media and the trainer loads no encoders."""

import io
import math

import numpy as np
import tiny_model
import webdataset as wds
from conftest import SIDE, TEXT_LEN, VIDEO_FRAMES, architecture, write_mp4, write_stage
from ruamel.yaml import YAML

from compiler.schema.architecture import ArchitectureSpec
from runtime.curation.ops.precompute import TrainerMembers
from runtime.curation.records import Record
from runtime.train import RunOptions, train
from runtime.train.metrics import read_metrics

CAPTIONS = ("a", "ab", "sea", "rain at night")  # ByT5 bytes + EOS: 2, 3, 4 and (truncated) 4 tokens


def precomputed_shard(root, scratch) -> list[dict]:
    """data/clips/shard-00000.tar: four clips' precomputed members only; returns the members as arrays."""
    arch = ArchitectureSpec(**architecture(video=True))
    members = TrainerMembers(arch, "smoke", None, ["t5"], latents=True, resolution=(SIDE * 8, SIDE * 8),
                             clip=(VIDEO_FRAMES, None))
    directory = root / "data" / "clips"
    directory.mkdir(parents=True)
    stored = []
    with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
        for index, caption in enumerate(CAPTIONS):
            levels = [(40 * index + 20 * frame) % 255 for frame in range(VIDEO_FRAMES)]
            clip = write_mp4(scratch / f"{index}.mp4", levels, fps=8, size=(SIDE * 8, SIDE * 8))
            record = Record(f"{index:06d}", clip, "mp4", shard="clips")
            record.captions["original"] = caption
            written = members.members(record)
            sink.write({"__key__": record.key, **written})
            stored.append({name: np.load(io.BytesIO(data)) for name, data in written.items()})
    return stored


def test_a_video_stage_trains_from_precomputed_bf16_members_without_encoders(tmp_path):
    stored = precomputed_shard(tmp_path, tmp_path)
    assert all(sorted(sample) == ["latents.npy", "text.npy"] for sample in stored)
    assert {sample["latents.npy"].dtype for sample in stored} == {np.dtype(np.uint16)}  # bf16 bit patterns
    assert [sample["latents.npy"].shape for sample in stored] == [(4, 3, SIDE, SIDE)] * 4  # 9 frames -> 3
    assert [sample["text.npy"].shape[0] for sample in stored] == [2, 3, 4, TEXT_LEN]  # unpadded

    stage_path, ds_config = write_stage(tmp_path, name="from_precomputed", video=True, steps=2, micro=2,
                                        datasets=("clips",), validation_every=2)
    yaml = YAML(typ="safe")
    stage_file = yaml.load(stage_path.read_text())
    stage_file["stage"]["conditioning"] = "precomputed"  # what the compiler resolves for such a pipeline
    with open(stage_path, "w") as stream:
        yaml.dump(stage_file, stream)
    train(RunOptions(stage_path, ds_config, tmp_path, None, tiny_model.build))
    records = read_metrics(tmp_path / "runs" / "from_precomputed")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(math.isfinite(r.get("loss", 0.0)) and math.isfinite(r.get("val_loss", 0.0)) for r in records)
