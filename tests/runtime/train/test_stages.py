"""Stage kinds end to end on tiny models: learning happens, Wan-like video, guidance distillation, LADD,
Diffusion-DPO, and noise prediction."""

import math

import pytest
import tiny_model
from conftest import write_shards, write_stage

from compiler.schema.objective import CfgDropout, FlowMatching, LogitNormal, NoisePrediction
from compiler.schema.schedule import AdversarialDistillation, GuidanceDistillation, PreferenceLoss, TimestepDistillation
from runtime.train import RunOptions, train
from runtime.train.metrics import read_metrics


def run(root, name, **stage):
    stage_path, ds_config = write_stage(root, name=name, **stage)
    train(RunOptions(stage_path, ds_config, root, None, tiny_model.build))
    return read_metrics(root / "runs" / name)


@pytest.mark.slow
def test_flow_matching_learns_class_patterns(image_root):
    records = run(
        image_root,
        "learn",
        steps=200,
        micro=8,
        lr=3e-3,
        ema=None,
        validation_every=50,
        checkpoint_every=200,
        objective=FlowMatching(timesteps=LogitNormal(), cfg_dropout=CfgDropout(joint_rate=0.1)),
    )
    validation = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(validation) == 5
    assert validation[-1] < 0.7 * validation[0], validation


def test_wan_like_video_trains(tmp_path):
    write_shards(tmp_path / "data" / "clips", samples=8, per_shard=4, video=True)
    records = run(tmp_path, "video", video=True, steps=3, micro=2, datasets=("clips",))
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert all(math.isfinite(r.get("loss", 0.0)) and math.isfinite(r["val_loss"]) for r in records)


def test_noise_prediction_trains(image_root):
    records = run(image_root, "ddpm", steps=3, micro=4, objective=NoisePrediction(loss_weighting="min_snr"))
    assert all(math.isfinite(r.get("loss", 0.0)) for r in records)


@pytest.fixture(scope="module")
def teacher_root(tmp_path_factory):
    """A run root whose `teacher` stage has finished (its final/ weights exist)."""
    root = tmp_path_factory.mktemp("distill")
    write_shards(root / "data" / "patterns", samples=16, per_shard=8, rejected=True)
    run(root, "teacher", steps=3, micro=4)
    return root


def test_guidance_distillation_student_gets_a_fresh_guidance_embedding(teacher_root):
    records = run(
        teacher_root,
        "guided",
        steps=3,
        micro=4,
        guidance=True,
        init_from="teacher",
        teacher="teacher",
        stage_kind="guidance_distillation",
        loss=GuidanceDistillation(guidance_range=(1.0, 4.0)),
    )
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert all(math.isfinite(r.get("loss", 0.0)) for r in records)


@pytest.mark.parametrize("loss", [AdversarialDistillation(student_steps=4), TimestepDistillation(student_steps=2)])
def test_ladd_trains_student_and_discriminator(teacher_root, loss):
    name = f"ladd_{loss.kind}"
    records = run(
        teacher_root,
        name,
        steps=4,
        micro=4,
        init_from="teacher",
        teacher="teacher",
        checkpoint_every=2,
        stage_kind="adversarial_distillation",
        loss=loss,
    )
    assert all(math.isfinite(r.get("loss", 0.0)) for r in records)


def test_ladd_resumes_exactly(teacher_root):
    config = dict(
        steps=4,
        micro=4,
        init_from="teacher",
        teacher="teacher",
        checkpoint_every=2,
        stage_kind="adversarial_distillation",
        loss=AdversarialDistillation(),
    )
    whole = run(teacher_root, "ladd_whole", **config)
    stage_path, ds_config = write_stage(teacher_root, name="ladd_split", **config)
    train(RunOptions(stage_path, ds_config, teacher_root, 2, tiny_model.build))
    split = run(teacher_root, "ladd_split", **config)
    assert [r.get("loss") for r in split] == [r.get("loss") for r in whole]


def test_diffusion_dpo_starts_at_log_2(teacher_root):
    records = run(
        teacher_root,
        "dpo",
        steps=3,
        micro=4,
        init_from="teacher",
        stage_kind="rlhf",
        loss=PreferenceLoss(reward_model="test-vlm", beta=500.0),
    )
    assert records[1]["loss"] == pytest.approx(math.log(2))  # model == reference before the first update
    assert all(math.isfinite(r.get("loss", 0.0)) for r in records)
