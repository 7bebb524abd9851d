"""Stage kinds end to end on tiny models: learning happens, Wan-like video, guidance distillation, LADD,
Diffusion-DPO, and noise prediction."""

import math

import pytest
import tiny_model
import torch
from conftest import class_embeddings, patterns, trained_losses, write_shards, write_stage
from safetensors.torch import load_file

from compiler.schema.objective import CfgDropout, FlowMatching, LogitNormal, NoisePrediction
from compiler.schema.schedule import AdversarialDistillation, GuidanceDistillation, PreferenceLoss, TimestepDistillation
from runtime.objectives.ddpm import alphas_cumprod
from runtime.train import RunOptions, train
from runtime.train.metrics import read_metrics


def run(root, name, factory=tiny_model.build, **stage):
    stage_path, ds_config = write_stage(root, name=name, **stage)
    train(RunOptions(stage_path, ds_config, root, None, factory))
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
    trained_losses(records, 3)
    assert all(math.isfinite(r["val_loss"]) for r in records)


def test_noise_prediction_trains(image_root):
    records = run(image_root, "ddpm", steps=3, micro=4, objective=NoisePrediction(loss_weighting="min_snr"))
    trained_losses(records, 3)
    validation = [r["val_loss"] for r in records]
    assert validation[-1] < validation[0], validation


class NoiseOracle(torch.nn.Module):
    """Returns the exact noise eps of x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (cosine schedule): it knows
    each class's clean latents x0 (conftest.patterns) and tells a sample's class by its text embedding."""

    time_scale = 1000.0

    def __init__(self):
        super().__init__()
        self.alpha_bar = alphas_cumprod("cosine", 1000)
        self.latents = torch.from_numpy(patterns(video=False)).double()
        self.texts = torch.from_numpy(class_embeddings()[0])
        self.unused = torch.nn.Parameter(torch.zeros(1))  # DeepSpeed needs a parameter to optimise

    def forward(self, latents, timestep, text, **conditioning):
        classes = (text[:, None] - self.texts[None]).abs().flatten(2).sum(-1).argmin(dim=1)
        abar = self.alpha_bar[timestep.long()].view(-1, 1, 1, 1)
        noise = (latents.double() - abar.sqrt() * self.latents[classes]) / (1 - abar).sqrt()
        return noise.float() + 0 * self.unused


def test_noise_prediction_regresses_the_added_noise(tmp_path):
    """A model that returns the very noise added has zero loss: the stage's target is the noise."""
    write_shards(tmp_path / "data" / "patterns", samples=8, per_shard=8)  # clean class patterns: x0 is known
    objective = NoisePrediction(loss_weighting="min_snr")
    records = run(tmp_path, "oracle", lambda architecture, model: NoiseOracle(), steps=2, micro=4, objective=objective)
    losses = trained_losses(records, 2)
    assert max(losses + [r["val_loss"] for r in records]) < 1e-6, records


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
    trained_losses(records, 3)


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
    trained_losses(records, 4)
    # Checkpoints at steps 2 and 4 hold the discriminator heads: every head tensor moved in between.
    checkpoints = teacher_root / "runs" / name / "checkpoints"
    heads = [
        torch.load(checkpoints / f"step{step:08d}" / "trainer_rank0.pt", weights_only=False)["loss"]["heads"]
        for step in (2, 4)
    ]
    assert heads[0].keys() == heads[1].keys() and heads[0]
    assert [key for key in heads[0] if torch.equal(heads[0][key], heads[1][key])] == [], "discriminator unchanged"
    # The student started from the teacher's weights and moved away from them.
    student = load_file(teacher_root / "runs" / name / "final" / "model.safetensors")
    teacher = load_file(teacher_root / "runs" / "teacher" / "final" / "model.safetensors")
    assert student.keys() == teacher.keys()
    assert [key for key in student if torch.equal(student[key], teacher[key])] == [], "student unchanged"


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
    assert trained_losses(split, 4) == trained_losses(whole, 4)


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
    assert trained_losses(records, 3)[0] == pytest.approx(math.log(2))  # model == reference before any update
