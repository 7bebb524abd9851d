"""Samplers: flow matching by Euler, Heun, DPM-Solver++(2M) and UniPC (shift, CFG, embedded guidance); EDM
Heun on the Karras schedule for score matching; DDPM, DDIM and Euler ancestral (CFG, dynamic thresholding);
cascaded sampling with noise conditioning augmentation.

A sampler calls `model(latents, timestep, cond, guidance)`; `denoiser_call` adapts a trainer-protocol module.
"""

from runtime.samplers.cascade import CascadeStage, cascade_sample
from runtime.samplers.ddpm import (
    ddim_sample,
    ddpm_sample,
    dynamic_threshold,
    respaced_steps,
    spaced_timesteps,
)
from runtime.samplers.edm import edm_heun, karras_sigmas
from runtime.samplers.euler_ancestral import ancestral_schedule, euler_ancestral_sample
from runtime.samplers.flow import flow_euler, flow_heun
from runtime.samplers.flow_multistep import flow_dpm_solver, flow_unipc
from runtime.samplers.guidance import denoiser_call, guided_output

__all__ = [
    "CascadeStage",
    "ancestral_schedule",
    "cascade_sample",
    "ddim_sample",
    "ddpm_sample",
    "denoiser_call",
    "dynamic_threshold",
    "edm_heun",
    "euler_ancestral_sample",
    "flow_dpm_solver",
    "flow_euler",
    "flow_heun",
    "flow_unipc",
    "guided_output",
    "karras_sigmas",
    "respaced_steps",
    "spaced_timesteps",
]
