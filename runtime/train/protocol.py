"""The model-call protocol: what the trainer and the samplers expect of a denoiser, and how they get one.

A denoiser is an `nn.Module` with

    time_scale: float        the network embeds t * time_scale for flow matching's t in [0, 1]
                             (FLUX, Qwen-Image: 1.0; Wan: 1000.0); DDPM networks get the integer step,
                             EDM networks c_noise, whatever this says
    forward(latents, timestep, *, text=None, pooled=None, text_mask=None, glyph=None,
            context_latents=None, guidance=None, lowres=None, aug_level=None) -> Tensor shaped like latents

    latents   (B, C, H, W) image or (B, C, F, H, W) video latents (pixels for pixel-space models), unpacked:
              patchifying / packing is the denoiser's business
    timestep  (B,) in the network's units (see time_scale), in the training dtype
    text      (B, T, D) token embeddings of the token / cross-attention text encoder
    pooled    (B, P) pooled text vector (FLUX: CLIP)
    text_mask (B, T) nonzero for real tokens
    glyph     (B, G, E) glyph-encoder tokens (Seedream)
    context_latents     (B, C, H', W') a reference image's latents (FLUX Kontext)
    guidance  (B,) guidance scale of a model that embeds it (FLUX.1 dev); the trainer passes 1 outside
              guidance distillation (w = 1: the conditional prediction)
    lowres, aug_level   cascade super-resolution: the (noised) low-resolution image at its own size and,
              with noise conditioning augmentation, its noise level in [0, 1]

Keywords are passed only when the batch has them, so a denoiser declares just the ones it reads and a
mismatch between data and model fails loudly. Optional methods: `init_weights()` (called when a stage trains
from scratch), `enable_activation_checkpointing()` (called when the plan's layout asks for it), and a
`repeated_blocks` attribute, on the denoiser or a submodule, naming its block lists (LADD taps teacher
features there; compile_blocks compiles them).

A model factory is a callable `factory(architecture: ArchitectureSpec, model_name: str) -> denoiser`, with
model_name the stage's `model` ("main", or a cascade stage's name); the default is
`runtime.models.build_model`, whose ModelAdapter follows this protocol.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

import torch

from compiler.schema.architecture import ArchitectureSpec

DEFAULT_FACTORY = "runtime.models:build_model"


class Denoiser(Protocol):
    """What runtime.train and runtime.samplers call; see the module docstring."""

    time_scale: float

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor, **conditioning: torch.Tensor) -> torch.Tensor:
        """Predict the objective's target for `latents` at `timestep`."""


ModelFactory = Callable[[ArchitectureSpec, str], Denoiser]


def load_factory(factory: str | ModelFactory = DEFAULT_FACTORY) -> ModelFactory:
    """The factory named 'package.module:function' (a callable is returned as is)."""
    if callable(factory):
        return factory
    module_name, sep, attribute = factory.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"model factory {factory!r} is not 'package.module:function', e.g. {DEFAULT_FACTORY!r}")
    module = importlib.import_module(module_name)
    built = getattr(module, attribute, None)
    if built is None:
        raise ValueError(
            f"model factory {factory!r}: module {module_name} has no {attribute!r}; "
            "pass --model-factory with a module:function that builds a denoiser from the architecture"
        )
    return built


def check_denoiser(model: object, factory: str) -> None:
    """Fail early, naming the factory, if `model` does not follow the protocol."""
    if not isinstance(model, torch.nn.Module) or not isinstance(getattr(model, "time_scale", None), (int, float)):
        raise TypeError(
            f"model factory {factory} returned {type(model).__name__}; the trainer needs an nn.Module with a "
            "float `time_scale` and forward(latents, timestep, **conditioning) (runtime/train/protocol.py)"
        )
