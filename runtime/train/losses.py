"""What one micro-batch costs, per kind of stage: the objective's denoising loss, guidance distillation,
LADD (timestep and adversarial distillation) or Diffusion-DPO.

Every loss draws its randomness from the micro-batch generator in a fixed order (timesteps, noise, CFG
dropout, augmentation level, then stage-specific draws), so a rerun reproduces it exactly. The generator is a
CPU one and every draw moves to the batch's device (`on`): the same numbers on every device, so CPU runs stay
bit-identical and a GPU run reproduces them too, at the price of one host-to-device copy of the noise per
micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.distributed as dist

from compiler.schema.schedule import GuidanceDistillation, PreferenceLoss
from runtime.objectives.adversarial import (
    DiscriminatorHeads,
    FeatureTap,
    discriminator_timesteps,
    hinge_discriminator_loss,
    hinge_generator_loss,
    student_timesteps,
)
from runtime.objectives.base import DiffusionObjective
from runtime.objectives.cfg import ConditioningDropout
from runtime.objectives.conditioning import Conditioning, augment_lowres
from runtime.objectives.distillation import guided_teacher_target, sample_guidance
from runtime.objectives.flow import FlowMatchingObjective
from runtime.objectives.masked import masked_mean
from runtime.objectives.preference import diffusion_dpo_loss
from runtime.train.batch import Batch

DISCRIMINATOR_BETAS = (0.0, 0.99)  # no first moment for the heads, as GAN discriminators usually train


def on(batch: Batch, drawn: torch.Tensor) -> torch.Tensor:
    """A value drawn on the host, moved to the batch's device."""
    return drawn.to(batch.latents.device)


@dataclass
class LossOutput:
    """The scalar to backpropagate, and per-sample losses and timesteps for noise-aware compute."""

    loss: torch.Tensor
    per_sample: torch.Tensor
    t: torch.Tensor


@dataclass
class Denoise:
    """A protocol denoiser as the losses call it: inputs cast to `dtype`, output float32; a model that embeds
    the guidance scale (FLUX.1 dev's architecture) gets guidance 1 unless told otherwise, since w = 1 makes
    the CFG output the conditional prediction, which is what a model without distillation predicts."""

    model: object
    dtype: torch.dtype
    embeds_guidance: bool = False

    def __call__(self, x, timestep, cond: Conditioning, guidance: torch.Tensor | None = None) -> torch.Tensor:
        """The model's output at (x, timestep, cond)."""
        if guidance is None and self.embeds_guidance:
            guidance = torch.ones(x.shape[0], device=x.device)
        extra = {} if guidance is None else {"guidance": guidance.to(self.dtype)}
        kwargs = cond.map(lambda v: v.to(self.dtype) if v.is_floating_point() else v).kwargs()
        return self.model(x.to(self.dtype), timestep.to(self.dtype), **kwargs, **extra).float()


@dataclass
class Noised:
    """A batch noised for one training call."""

    t: torch.Tensor
    noise: torch.Tensor
    model_input: torch.Tensor
    timestep: torch.Tensor
    cond: Conditioning


class DenoisingLoss:
    """The objective's own loss: output vs objective.target at sampled timesteps.

    augment_lowres: noise a super-resolution stage's low-res input at a level ~ U(0, 1) and pass the level
    (noise conditioning augmentation, when the cascade stage has it)."""

    def __init__(self, dropout: ConditioningDropout | None, augment_lowres: bool = False):
        self.dropout = dropout
        self.augment_lowres = augment_lowres

    def noised(self, objective: DiffusionObjective, batch: Batch, generator: torch.Generator) -> Noised:
        """Timesteps, noise, CFG dropout and low-res augmentation for a batch, drawn in that order."""
        t = on(batch, objective.sample_timesteps(batch.size, generator))
        noise = on(batch, torch.randn(batch.latents.shape, generator=generator))
        cond = batch.cond if self.dropout is None else self.dropout(batch.cond, generator)
        if cond.lowres is not None and self.augment_lowres:
            level = on(batch, torch.rand(batch.size, generator=generator))
            lowres_noise = on(batch, torch.randn(cond.lowres.shape, generator=generator))
            cond = replace(cond, lowres=augment_lowres(cond.lowres, level, lowres_noise), aug_level=level)
        x_t = objective.add_noise(batch.latents, noise, t)
        return Noised(t, noise, objective.model_input(x_t, t), objective.model_timestep(t), cond)

    def __call__(self, model: Denoise, objective, batch: Batch, generator) -> LossOutput:
        """The weighted denoising loss of one micro-batch."""
        n = self.noised(objective, batch, generator)
        output = model(n.model_input, n.timestep, n.cond)
        per_sample = objective.loss(output, objective.target(batch.latents, n.noise, n.t), n.t, batch.mask)
        return LossOutput(per_sample.mean(), per_sample.detach(), n.t)

    def after_step(self) -> None:
        """Work after the optimizer step (none for plain denoising)."""

    def state_dict(self) -> dict:
        """State to checkpoint (none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore state (none)."""


class GuidanceDistillationLoss(DenoisingLoss):
    """Student with a guidance input regresses the frozen teacher's CFG output (distillation.py)."""

    def __init__(self, dropout, teacher: Denoise, config: GuidanceDistillation):
        super().__init__(dropout)
        self.teacher = teacher
        self.config = config

    def __call__(self, model, objective, batch, generator) -> LossOutput:
        """Weighted loss against the teacher's guided prediction at w ~ U(guidance_range)."""
        n = self.noised(objective, batch, generator)
        scale = on(batch, sample_guidance(batch.size, self.config.guidance_range, generator))
        target = guided_teacher_target(self.teacher, n.model_input, n.timestep, n.cond, scale)
        output = model(n.model_input, n.timestep, n.cond, guidance=scale)
        per_sample = objective.loss(output, target, n.t, batch.mask)
        return LossOutput(per_sample.mean(), per_sample.detach(), n.t)


class PreferenceDPOLoss(DenoisingLoss):
    """Diffusion-DPO on (latents = preferred, rejected) pairs against a frozen reference model."""

    def __init__(self, dropout, reference: Denoise, config: PreferenceLoss):
        super().__init__(dropout)
        self.reference = reference
        self.config = config

    def __call__(self, model, objective, batch, generator) -> LossOutput:
        """DPO loss with preferred and rejected noised alike (same t, noise and conditioning)."""
        if batch.rejected is None:
            raise ValueError(
                f"stage.loss is diffusion_dpo but samples {batch.keys[:3]} have no rejected.npy or rejected media; "
                "preference shards carry the preferred sample (latents.npy or media) and a rejected one "
                "(rejected.npy or rejected.<ext>)"
            )
        n = self.noised(objective, batch, generator)
        rejected_t = objective.add_noise(batch.rejected, n.noise, n.t)
        x_in = torch.cat([n.model_input, objective.model_input(rejected_t, n.t)])
        timestep, cond = torch.cat([n.timestep, n.timestep]), n.cond.cat(n.cond)
        targets = torch.cat(
            [objective.target(batch.latents, n.noise, n.t), objective.target(batch.rejected, n.noise, n.t)]
        )
        t2 = torch.cat([n.t, n.t])
        mask = None if batch.mask is None else torch.cat([batch.mask, batch.mask])
        errors = objective.loss(model(x_in, timestep, cond), targets, t2, mask)
        with torch.no_grad():
            reference = objective.loss(self.reference(x_in, timestep, cond), targets, t2, mask)
        model_w, model_l = errors.chunk(2)
        ref_w, ref_l = reference.chunk(2)
        per_sample = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, self.config.beta)
        return LossOutput(per_sample.mean(), per_sample.detach(), n.t)


class LaddLoss(DenoisingLoss):
    """LADD (objectives/adversarial.py): one-step student, teacher-feature discriminator heads, hinge losses.

    The heads train after every student micro-step with their own AdamW (stage lr, betas (0, 0.99)); their
    gradients are averaged over data-parallel ranks by hand since DeepSpeed manages the student only.

    checkpoint_teacher: run the teacher's repeated blocks under activation checkpointing (the stage's
    layout.activation_checkpointing, the flag that checkpoints the student). The student's loss backpropagates
    through the teacher's features at its tapped blocks, the last of them its last block, so the
    grad-enabled teacher call keeps a frozen network's activations of every block until the student's
    backward: about half the student's, and most of what a checkpointed student's step keeps. Checkpointed,
    each block keeps its input, and the backward recomputes the whole teacher forward once: one forward per
    sample on top of the step's seven (student 3, teacher 4), where checkpointing the student saves twice the
    bytes for the same forward. So the teacher is checkpointed when the plan checkpoints the student (memory
    is short), not always (a stage that fits would pay 1/7 more time for nothing); compiler/plan counts both.
    """

    def __init__(self, dropout, teacher: Denoise, config, objective, probe: Batch, lr: float,
                 checkpoint_teacher: bool = False):
        super().__init__(dropout)
        if not isinstance(objective, FlowMatchingObjective):
            raise TypeError(
                f"stage.loss is {config.kind} (LADD), which distils flow-matching models; the objective is "
                f"{type(objective).__name__}: use a FlowMatching objective"
            )
        if checkpoint_teacher:
            if not hasattr(teacher.model, "enable_activation_checkpointing"):
                raise TypeError(
                    f"layout.activation_checkpointing is on but the LADD teacher's {type(teacher.model).__name__} "
                    "has no enable_activation_checkpointing(); add it or turn checkpointing off in the plan"
                )
            teacher.model.enable_activation_checkpointing()
        self.teacher = teacher
        self.steps = config.student_steps
        self.adversarial_weight = getattr(config, "adversarial_weight", 1.0)
        self.distillation_weight = getattr(config, "distillation_weight", 1.0)
        self.tap = FeatureTap(teacher.model)
        with torch.no_grad():
            t = torch.full((probe.size,), 0.5, dtype=torch.float64, device=probe.latents.device)
            teacher(probe.latents, objective.model_timestep(t), probe.cond)
        dims = [feature.shape[-1] for feature in self.tap.take()]
        self.heads = DiscriminatorHeads(dims).to(probe.latents.device)
        self.optimizer = torch.optim.AdamW(self.heads.parameters(), lr=lr, betas=DISCRIMINATOR_BETAS)
        self._pending: tuple | None = None

    def _teacher_features(self, objective, x0, noise, level, cond):
        noisy = objective.add_noise(x0, noise, level)
        output = self.teacher(noisy, objective.model_timestep(level), cond)
        return self.tap.take(), objective.predict_x0(output, noisy, level)

    def __call__(self, model, objective, batch, generator) -> LossOutput:
        """Student loss: adversarial_weight * -D(fake) + distillation_weight * ||x0_hat - sg(teacher x0)||^2."""
        t = on(batch, student_timesteps(self.steps, batch.size, generator))
        noise = on(batch, torch.randn(batch.latents.shape, generator=generator))
        cond = batch.cond if self.dropout is None else self.dropout(batch.cond, generator)
        x_t = objective.add_noise(batch.latents, noise, t)
        x0_hat = objective.predict_x0(model(x_t, objective.model_timestep(t), cond), x_t, t)
        level = on(batch, discriminator_timesteps(batch.size, generator))
        renoise, real_noise = (
            on(batch, torch.randn(x0_hat.shape, generator=generator)),
            on(batch, torch.randn(x0_hat.shape, generator=generator)),
        )
        self.heads.requires_grad_(False)
        features, teacher_x0 = self._teacher_features(objective, x0_hat, renoise, level, cond)
        adversarial = hinge_generator_loss(self.heads(features, level))
        distillation = masked_mean((x0_hat - teacher_x0.detach()) ** 2, batch.mask)
        per_sample = self.adversarial_weight * adversarial + self.distillation_weight * distillation
        self._pending = (objective, x0_hat.detach(), batch.latents, renoise, real_noise, level, cond)
        return LossOutput(per_sample.mean(), per_sample.detach(), t)

    def after_step(self) -> None:
        """One hinge step of the heads on the last micro-batch's real and student samples."""
        objective, fake, real, renoise, real_noise, level, cond = self._pending
        self.heads.requires_grad_(True)
        with torch.no_grad():
            fake_features, _ = self._teacher_features(objective, fake, renoise, level, cond)
            real_features, _ = self._teacher_features(objective, real, real_noise, level, cond)
        loss = hinge_discriminator_loss(self.heads(real_features, level), self.heads(fake_features, level))
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if dist.is_initialized() and dist.get_world_size() > 1:
            for param in self.heads.parameters():
                dist.all_reduce(param.grad)
                param.grad /= dist.get_world_size()
        self.optimizer.step()

    def state_dict(self) -> dict:
        """Heads and their optimizer."""
        return {"heads": self.heads.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore heads and optimizer."""
        self.heads.load_state_dict(state["heads"])
        self.optimizer.load_state_dict(state["optimizer"])
