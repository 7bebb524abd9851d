"""Samplers: flow Euler (shift, CFG, embedded guidance), DDPM and DDIM (CFG, dynamic thresholding), and
cascaded sampling with noise conditioning augmentation.

A sampler calls `model(latents, timestep, cond, guidance)`; `denoiser_call` adapts a trainer-protocol module.
"""

from runtime.samplers.cascade import CascadeStage, cascade_sample
from runtime.samplers.ddpm import ddim_sample, ddpm_sample, dynamic_threshold, respaced_steps
from runtime.samplers.flow import flow_euler
from runtime.samplers.guidance import denoiser_call, guided_output

__all__ = [
    "CascadeStage",
    "cascade_sample",
    "ddim_sample",
    "ddpm_sample",
    "denoiser_call",
    "dynamic_threshold",
    "flow_euler",
    "guided_output",
    "respaced_steps",
]
