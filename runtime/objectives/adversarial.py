"""Latent Adversarial Diffusion Distillation, compact (Sauer et al. 2024, "Fast High-Resolution Image
Synthesis with Latent Adversarial Diffusion Distillation", arXiv:2403.12015; FLUX.1 Kontext, schnell).

One training step, as genspec runs it:
  1. the student denoises x_ts at one of `student_steps` levels ts in {1, (n-1)/n, ..., 1/n} in one step,
     giving x0_hat (LADD section 3: the student trains at its few sampling steps);
  2. x0_hat and a real x0 are re-noised to t' ~ logit-normal(1, 1), shifted towards noise as in LADD
     section 3.2, and run through the frozen teacher; forward hooks take the outputs of a few of the
     teacher's repeated blocks as features (LADD: "generative features" of the teacher);
  3. small discriminator heads, one per tapped block, score the features; each head is a per-token linear
     layer plus a projection of t', LeakyReLU, a mean over tokens and a linear output;
  4. hinge losses (LADD section 3.1): heads minimise relu(1 - D(real)) + relu(1 + D(fake)), the student
     minimises adversarial_weight * -D(fake) + distillation_weight * ||x0_hat - sg(teacher x0 at t')||^2,
     the second term the distillation loss of ADD (Sauer et al. 2023, eq. 4), read off the same teacher call.
Compared with the paper: no pooled-text conditioning of the heads, 2D token features averaged rather than
convolved, and real samples are data latents rather than teacher generations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DISCRIMINATOR_T_MEAN = 1.0  # LADD section 3.2: logit-normal m = 1, s = 1 puts the discriminator at high noise
DISCRIMINATOR_T_STD = 1.0
TAPPED_BLOCKS = 4  # feature taps spread evenly over the teacher's blocks
HEAD_WIDTH = 128  # hidden width of each discriminator head
LEAKY_SLOPE = 0.2  # LeakyReLU slope, as in the StyleGAN-T heads LADD builds on


def student_timesteps(steps: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """n levels drawn uniformly from the student's sampling grid {1, (steps-1)/steps, ..., 1/steps}."""
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]
    return grid[torch.randint(0, steps, (n,), generator=generator)]


def discriminator_timesteps(n: int, generator: torch.Generator) -> torch.Tensor:
    """n re-noising levels t' = sigmoid(N(1, 1))."""
    normal = torch.randn(n, generator=generator, dtype=torch.float64)
    return torch.sigmoid(DISCRIMINATOR_T_MEAN + DISCRIMINATOR_T_STD * normal)


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks listed by the first `repeated_blocks` attribute found in `model` or its submodules."""
    for module in model.modules():
        names = getattr(module, "repeated_blocks", None)
        if names:
            return [block for name in names for block in getattr(module, name)]
    raise ValueError(
        f"{type(model).__name__} has no `repeated_blocks` attribute naming its block lists; LADD taps teacher "
        "features at those blocks, so the teacher model must declare them (runtime.models do)"
    )


def as_tokens(output) -> torch.Tensor:
    """A block's output as (B, L, D) float tokens: the first element of a tuple (the image stream);
    channels-first maps (B, C, ...) flattened to (B, L, C)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.ndim == 3:
        return output.float()
    return output.flatten(2).transpose(1, 2).float()


class FeatureTap:
    """Forward hooks on evenly spaced repeated blocks of a model; `take()` returns the last call's features."""

    def __init__(self, model: nn.Module, count: int = TAPPED_BLOCKS):
        blocks = repeated_blocks(model)
        picks = sorted({round(i * (len(blocks) - 1) / max(count - 1, 1)) for i in range(min(count, len(blocks)))})
        self.features: list[torch.Tensor] = []
        self.handles = [blocks[i].register_forward_hook(self._hook) for i in picks]

    def _hook(self, module, args, output):
        self.features.append(as_tokens(output))

    def take(self) -> list[torch.Tensor]:
        """Features of the blocks run since the last take, in call order."""
        features, self.features = self.features, []
        return features


class DiscriminatorHeads(nn.Module):
    """One small head per tapped feature map; the logit is the mean over heads."""

    def __init__(self, feature_dims: list[int], width: int = HEAD_WIDTH):
        super().__init__()
        self.tokens = nn.ModuleList(nn.Linear(dim, width) for dim in feature_dims)
        self.level = nn.ModuleList(nn.Linear(1, width) for _ in feature_dims)
        self.out = nn.ModuleList(nn.Linear(width, 1) for _ in feature_dims)

    def forward(self, features: list[torch.Tensor], level: torch.Tensor) -> torch.Tensor:
        """Features [(B, L_i, D_i)] at re-noising level (B,) -> logits (B,)."""
        if len(features) != len(self.tokens):
            raise ValueError(f"got {len(features)} feature maps for {len(self.tokens)} discriminator heads")
        level = level.float()[:, None]
        logits = []
        for tokens, level_proj, out, feature in zip(self.tokens, self.level, self.out, features):
            hidden = F.leaky_relu(tokens(feature) + level_proj(level)[:, None], LEAKY_SLOPE)
            logits.append(out(hidden.mean(dim=1)).squeeze(-1))
        return torch.stack(logits).mean(dim=0)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample -D(fake) (B,)."""
    return -fake_logits
