"""LADD's teacher under activation checkpointing (runtime/train/losses.py LaddLoss checkpoint_teacher): the same
loss and gradients as without, for less memory kept until the student's backward. FLUX.1 Kontext's
kontext_ladd stage at smoke width, fp32, in-process."""

from types import SimpleNamespace

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

import specs
from compiler.scale import scaled
from runtime.models.factory import build_model
from runtime.objectives import Conditioning
from runtime.objectives.build import build_objective
from runtime.train.batch import Batch
from runtime.train.device import frozen
from runtime.train.losses import Denoise, LaddLoss
from runtime.train.trainer import embeds_guidance, image_geometry

SPEC = scaled(specs.load("flux-kontext"), "smoke")
STAGE = next(s for s in SPEC.schedule.stages if s.loss is not None and s.loss.kind in ("ladd", "timestep_distillation"))
DTYPE = torch.float32
SIDE, TEXT = 8, 6  # latent cells a side, text tokens


def _batch() -> Batch:
    architecture = SPEC.architecture
    channels = architecture.space.channels
    pooled, tokens = (next(e for e in architecture.text_encoders if e.role == role) for role in ("pooled", "tokens"))
    g = torch.Generator().manual_seed(0)
    cond = Conditioning(
        text=torch.randn(2, TEXT, tokens.dim, generator=g), pooled=torch.randn(2, pooled.dim, generator=g),
        context_latents=torch.randn(2, channels, SIDE, SIDE, generator=g),
    )
    return Batch(torch.randn(2, channels, SIDE, SIDE, generator=g), cond)


def _ladd_step(checkpoint_teacher: bool):
    """One student micro-step and one discriminator step; returns the loss, the student's gradients, the heads
    after their step and the bytes autograd saved in the student's loss call outside checkpointed regions."""
    architecture, batch = SPEC.architecture, _batch()
    torch.manual_seed(0)
    student = build_model(architecture, STAGE.model)
    torch.manual_seed(1)
    teacher = Denoise(frozen(build_model(architecture, STAGE.model), torch.device("cpu"), DTYPE), DTYPE,
                      embeds_guidance(architecture))
    tokens, pixels = image_geometry(SimpleNamespace(architecture=architecture), batch.latents)
    objective = build_objective(SPEC.objective, STAGE, tokens, pixels=pixels, time_scale=float(student.time_scale))
    torch.manual_seed(2)  # the discriminator heads' initialisation
    loss = LaddLoss(None, teacher, STAGE.loss, objective, batch, lr=1e-2, checkpoint_teacher=checkpoint_teacher)
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with saved_tensors_hooks(pack, lambda tensor: tensor):
        out = loss(Denoise(student, DTYPE, embeds_guidance(architecture)), objective, batch,
                   torch.Generator().manual_seed(3))
    out.loss.backward()
    loss.after_step()
    grads = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads, loss.heads.state_dict(), sum(saved.values())


def test_a_checkpointed_teacher_gives_the_same_ladd_loss_gradients_and_heads_for_less_memory():
    plain_loss, plain_grads, plain_heads, plain_saved = _ladd_step(checkpoint_teacher=False)
    loss, grads, heads, saved = _ladd_step(checkpoint_teacher=True)
    torch.testing.assert_close(loss, plain_loss, rtol=0, atol=0)
    assert grads.keys() == plain_grads.keys() and len(grads) > 10  # the gradient reached the whole student
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=0, atol=0, msg=name)
    assert any(grad.abs().sum() > 0 for grad in grads.values())
    for name, value in heads.items():
        torch.testing.assert_close(value, plain_heads[name], rtol=0, atol=0, msg=name)
    # The teacher's blocks keep their inputs only: with 4 of them, the step saves well under the plain step.
    assert saved < 0.8 * plain_saved, (saved, plain_saved)


def test_a_teacher_without_checkpointing_support_is_refused_by_name():
    architecture, batch = SPEC.architecture, _batch()
    plain = torch.nn.Module()
    plain.transformer_blocks = torch.nn.ModuleList()
    teacher = Denoise(plain, DTYPE)
    tokens, pixels = image_geometry(SimpleNamespace(architecture=architecture), batch.latents)
    objective = build_objective(SPEC.objective, STAGE, tokens, pixels=pixels, time_scale=1.0)
    with pytest.raises(TypeError, match="layout.activation_checkpointing.*enable_activation_checkpointing"):
        LaddLoss(None, teacher, STAGE.loss, objective, batch, lr=1e-2, checkpoint_teacher=True)
