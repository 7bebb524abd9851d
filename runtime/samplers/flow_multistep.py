"""Multistep exponential-integrator solvers for flow matching: DPM-Solver++(2M) and UniPC (bh2), both in data
prediction, i.e. on the model's clean estimate x0 = x - sigma v.

A flow level sigma is the Gaussian path alpha = 1 - sigma, sigma; its half log-SNR is lambda = ln(alpha / sigma),
increasing as noise falls. A step from level s to t has h = lambda_t - lambda_s and the first-order update
(DDIM in data prediction)
    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) m_s,    m = x0 estimate.
The multistep solvers add a correction from the previous step's m (one model call per step):

DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2; diffusers DPMSolverMultistepScheduler,
algorithm_type "dpmsolver++", solver_type "midpoint"), with r = h_prev / h:
    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) (m_s + (m_s - m_prev) / (2 r))

UniPC-2 with B(h) = e^-h - 1 ("bh2"; Zhao et al. 2023, arXiv:2302.04867; diffusers UniPCMultistepScheduler
multistep_uni_p_bh_update / multistep_uni_c_bh_update, as diffusers' Wan 2.1 pipeline configures it): the same
predictor (coefficient 1/2 on D1 = (m_prev - m_s) / r_prev), then, once the model has been called at the new
level, a corrector that redoes the step from x_s with the new estimate:
    x_t <- (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) m_s - alpha_t B(h) (rho_1 D1 + rho_t (m_t - m_s))
with (rho_1, rho_t) solving [[1, 1], [r, 1]] rho = (g_1, 2 g_2) / B(h), g_1 = phi / (-h) - 1,
g_2 = g_1 / (-h) - 1/2, phi = e^-h - 1 (rho_t = 1/2 and no D1 at first order).

Both warm up with a first-order step and, like diffusers (lower_order_final), end with one: into sigma = 0
(lambda = +inf) the first-order update is exactly x_t = m_s. The corrector is skipped after the last step,
which would need a model call at sigma = 0.
"""

from __future__ import annotations

import math

import torch

from runtime.objectives.conditioning import Conditioning
from runtime.samplers.flow import check_sigmas, flow_velocity
from runtime.samplers.guidance import ModelCall

# lambda is -inf at sigma = 1; diffusers UniPCMultistepScheduler.set_timesteps starts at 1 - 1e-6 instead.
SIGMA_ONE_OFFSET = 1e-6


def log_snr_levels(sigmas: torch.Tensor) -> list[float]:
    """The grid with a first level of 1 moved to 1 - 1e-6 (finite lambda); levels must lie in [0, 1]."""
    levels = check_sigmas(sigmas)
    if not all(0 <= level <= 1 for level in levels):
        raise ValueError(f"flow sigmas run from {levels[0]} to {levels[-1]}; flow levels lie in [0, 1]")
    if levels[0] == 1:
        levels[0] = 1 - SIGMA_ONE_OFFSET
    return levels


def half_log_snr(sigma: float) -> float:
    """lambda = ln((1 - sigma) / sigma), +inf at sigma = 0."""
    return math.inf if sigma == 0 else math.log(1 - sigma) - math.log(sigma)


def first_order(x: torch.Tensor, m: torch.Tensor, sigma_s: float, sigma_t: float) -> torch.Tensor:
    """The data-prediction step from level s to t with clean estimate m (exact x_t = m into sigma_t = 0)."""
    if sigma_t == 0:
        return m
    h = half_log_snr(sigma_t) - half_log_snr(sigma_s)
    return (sigma_t / sigma_s) * x - (1 - sigma_t) * math.expm1(-h) * m


@torch.no_grad()
def flow_dpm_solver(
    model: ModelCall,
    noise: torch.Tensor,
    cond: Conditioning,
    sigmas: torch.Tensor,
    *,
    cfg_scale: float | None = None,
    guidance: float | None = None,
    time_scale: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2M) along `sigmas` (decreasing to 0, e.g. objectives.sampling_sigmas); arguments as
    samplers.flow_euler. One model call per step."""
    levels = log_snr_levels(sigmas)
    velocity = flow_velocity(model, cond, cfg_scale, guidance, time_scale)
    x, m_prev, steps = noise, None, len(levels) - 1
    for i in range(steps):
        sigma_s, sigma_t = levels[i], levels[i + 1]
        m = x - sigma_s * velocity(x, sigma_s)
        if m_prev is None or i == steps - 1:
            x = first_order(x, m, sigma_s, sigma_t)
        else:
            lambda_s = half_log_snr(sigma_s)
            r = (lambda_s - half_log_snr(levels[i - 1])) / (half_log_snr(sigma_t) - lambda_s)
            x = first_order(x, m + (m - m_prev) / (2 * r), sigma_s, sigma_t)
        m_prev = m
    return x


def unipc_coefficients(h: float, r: float | None) -> tuple[float, float]:
    """UniC's (rho_1, rho_t) for a step of log-SNR size h; r = h_prev / h, None at first order (rho_1 unused)."""
    if r is None:
        return 0.0, 0.5
    phi = math.expm1(-h)
    g1 = phi / -h - 1
    g2 = g1 / -h - 0.5
    b1, b2 = g1 / phi, 2 * g2 / phi
    rho_1 = (b1 - b2) / (1 - r)
    return rho_1, b1 - rho_1


@torch.no_grad()
def flow_unipc(
    model: ModelCall,
    noise: torch.Tensor,
    cond: Conditioning,
    sigmas: torch.Tensor,
    *,
    cfg_scale: float | None = None,
    guidance: float | None = None,
    time_scale: float = 1.0,
) -> torch.Tensor:
    """UniPC bh2, order 2 (predictor UniP-2, corrector UniC) along `sigmas`; arguments as samplers.flow_euler.
    One model call per step: the corrector reuses the next step's call."""
    levels = log_snr_levels(sigmas)
    lambdas = [half_log_snr(level) for level in levels]
    velocity = flow_velocity(model, cond, cfg_scale, guidance, time_scale)
    steps = len(levels) - 1
    x, estimates, start, order = noise, [], None, 1
    for i in range(steps):
        m = x - levels[i] * velocity(x, levels[i])
        if start is not None:
            x = unipc_corrector(start, estimates, m, levels, lambdas, i, order)
        estimates = [*estimates[-1:], m]
        order = 1 if i == 0 or i == steps - 1 else 2
        start = x
        x = unipc_predictor(x, estimates, levels, lambdas, i, order)
    return x


def unipc_predictor(x, estimates, levels, lambdas, i, order):
    """UniP from level i to i + 1 with estimates [m_{i-1}, m_i] (order 2) or [..., m_i] (order 1)."""
    m = estimates[-1]
    if order == 1:
        return first_order(x, m, levels[i], levels[i + 1])
    h = lambdas[i + 1] - lambdas[i]
    d1 = (estimates[-2] - m) / ((lambdas[i - 1] - lambdas[i]) / h)
    sigma_t = levels[i + 1]
    return first_order(x, m, levels[i], sigma_t) - (1 - sigma_t) * math.expm1(-h) * 0.5 * d1


def unipc_corrector(start, estimates, m_t, levels, lambdas, i, order):
    """UniC: redo the step from level i - 1 (sample `start`) to i with the new estimate m_t; `estimates` ends
    with m_{i-1} (and m_{i-2} before it at order 2)."""
    m_s = estimates[-1]
    h = lambdas[i] - lambdas[i - 1]
    r = None if order == 1 else (lambdas[i - 2] - lambdas[i - 1]) / h
    rho_1, rho_t = unipc_coefficients(h, r)
    correction = rho_t * (m_t - m_s)
    if r is not None:
        correction = correction + rho_1 * (estimates[-2] - m_s) / r
    sigma_t = levels[i]
    return first_order(start, m_s, levels[i - 1], sigma_t) - (1 - sigma_t) * math.expm1(-h) * correction
