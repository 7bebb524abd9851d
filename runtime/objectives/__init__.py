"""Training objectives: what the network predicts, at which noise levels, with which weights.

- `build_objective(objective, stage, image_tokens, pixels=, time_scale=)` -> a `DiffusionObjective`
  (flow matching, DDPM noise / v prediction, EDM score matching) with sample_timesteps, add_noise,
  model_input, model_timestep, target, loss, predict_x0, validation_timesteps, observe
- timesteps: samplers (logit-normal, mode, uniform) and shifts (constant, resolution, FLUX mu, Qwen terminal)
- conditioning.py: `Conditioning` (a denoiser's inputs besides x_t and t), `augment_lowres` (cascade SR)
- cfg.py: `ConditioningDropout` (CFG dropout per encoder), `guided` (the CFG combination)
- stage losses: guidance distillation, LADD (adversarial), Diffusion-DPO (preference)
"""

from runtime.objectives.base import DiffusionObjective
from runtime.objectives.build import build_objective
from runtime.objectives.cfg import ConditioningDropout, guided
from runtime.objectives.conditioning import Conditioning, augment_lowres
from runtime.objectives.masked import cell_mask, masked_mean
from runtime.objectives.timesteps import sampling_sigmas, shift_factor, shift_timesteps

__all__ = [
    "Conditioning",
    "ConditioningDropout",
    "DiffusionObjective",
    "augment_lowres",
    "build_objective",
    "cell_mask",
    "guided",
    "masked_mean",
    "sampling_sigmas",
    "shift_factor",
    "shift_timesteps",
]
