"""A smoke-scale VAE fitted to the synthetic data, so that a smoke demo's samples decode to pictures.

    fit_smoke_vae(space, "demo-run/models", steps=400)  # -> demo-run/models/<vae id folder>/

The smoke stand-in VAE (runtime/encoders/latent.py `_tiny_vae`) is randomly initialised: its latents carry
the image, but its decoder turns any latent into noise, so no amount of backbone training shows on a sample.
This fits that same tiny network (the spec's channels and compression, 8-16 channels wide) as a plain
autoencoder on shapes drawn by runtime.synthetic_data at the largest smoke training size, and writes it as a
diffusers-format folder (config.json + diffusion_pytorch_model.safetensors) under a model directory, where
runtime/encoders loads it like released weights (pointed at by GENSPEC_MODEL_DIR). Only 2D KL spaces
(image specs) are fitted; video VAEs stay random.

The loss is the reconstruction error plus a small pull of the normalised latents ((z - shift) * scale, the
spec's factors, as the backbone sees them) toward zero mean and unit variance, the scale a flow's noise has.
The posterior mean is fitted (deterministic autoencoder); the log-variance output is left as initialised.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from compiler.schema.architecture import LatentSpace

SIDE = 64  # the largest smoke training size (compiler/scale.py LONG_SIDE)
# Fitted on random CROP-pixel crops of SIDE-pixel pictures: the convolutions see shapes at the scale they
# have in training, at a quarter of the cost of whole pictures (aligned to the latent grid).
CROP = 32
# Adam at 1e-2 stalls (held-out MSE 0.19: 19 of 64 pictures keep their background colour); 3e-3 reaches
# 0.10-0.13 (43-49 of 64) in the same 400 steps.
BATCH, LR = 16, 3e-3
LATENT_WEIGHT = 0.01  # of the pull toward N(0, 1): weak, so reconstruction dominates


def fittable(space) -> bool:
    """Whether SPACE is a 2D KL latent space, the kind fitted here."""
    return space.kind != "pixel" and not space.causal and space.temporal_compression == 1


def scenes(count: int, side: int, seed: int) -> "torch.Tensor":  # noqa: F821
    """COUNT synthetic shape images, [count, 3, side, side] in [-1, 1]."""
    import torch

    from runtime.synthetic_data import random_scene, render

    rng = np.random.default_rng(seed)
    images = [np.asarray(render(random_scene(rng, shapes=1 + int(rng.random() < 0.3)), side, side))
              for _ in range(count)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def fit_smoke_vae(space: LatentSpace, model_dir: str | Path, steps: int = 400, seed: int = 0,
                  log=print) -> Path:
    """Fit the smoke VAE of SPACE and write it to MODEL_DIR/<folder of space.vae>; returns the folder.
    Reused when the folder already holds a fit of the same space (its fit.json)."""
    import torch
    from safetensors.torch import save_file

    from runtime.encoders.latent import LatentCodec, _normalisation, _tiny_vae
    from runtime.encoders.model_directory import folder_name

    if not fittable(space):
        raise ValueError(f"architecture.space: only 2D KL latent spaces are fitted here, not {space!r}")
    folder = Path(model_dir) / folder_name(space.vae)
    stamp = {"vae": space.vae, "channels": space.channels, "spatial_compression": space.spatial_compression,
             "scaling_factor": space.scaling_factor, "shift_factor": space.shift_factor, "steps": steps, "seed": seed}
    if (folder / "fit.json").is_file() and json.loads((folder / "fit.json").read_text()).get("stamp") == stamp:
        log(f"smoke VAE {space.vae}: reusing the fit in {folder}")
        return folder
    started = time.perf_counter()
    vae = _tiny_vae(space)
    shift, scale, _ = _normalisation(space, {}, None)
    codec = LatentCodec(vae, shift, scale)
    vae.train().requires_grad_(True)  # LatentCodec freezes its VAE: this one is being fitted
    data = scenes(256, SIDE, seed)
    generator = torch.Generator().manual_seed(seed)
    cells = (SIDE - CROP) // space.spatial_compression + 1
    optimizer = torch.optim.Adam(vae.parameters(), lr=LR)
    first = last = None
    for step in range(steps):
        top, left = (int(i) * space.spatial_compression for i in torch.randint(cells, (2,), generator=generator))
        batch = data[torch.randint(len(data), (BATCH,), generator=generator), :, top:top + CROP, left:left + CROP]
        latents = codec.encode(batch)
        reconstruction = codec.decode(latents)
        error = torch.nn.functional.mse_loss(reconstruction, batch)
        pull = latents.mean() ** 2 + (latents.std() - 1.0) ** 2
        loss = error + LATENT_WEIGHT * pull
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        first = error.item() if first is None else first
        last = error.item()
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        held_out = scenes(32, SIDE, seed + 1000)
        latents = codec.encode(held_out)
        held_error = torch.nn.functional.mse_loss(codec.decode(latents), held_out).item()
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "AutoencoderKL", **asdict(vae.config),
              "down_block_types": ["DownEncoderBlock2D"] * len(vae.config.block_out_channels),
              "up_block_types": ["UpDecoderBlock2D"] * len(vae.config.block_out_channels)}
    config["block_out_channels"] = list(config["block_out_channels"])
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(folder / "diffusion_pytorch_model.safetensors"))
    seconds = time.perf_counter() - started
    result = {"stamp": stamp, "train_mse_first": first, "train_mse_last": last, "held_out_mse": held_error,
              "latent_mean": latents.mean().item(), "latent_std": latents.std().item(), "seconds": seconds}
    (folder / "fit.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"smoke VAE {space.vae}: fitted {steps} steps in {seconds:.0f} s, reconstruction MSE {first:.3f} -> "
        f"{last:.3f} (held out {held_error:.3f}, pixels in [-1, 1]); normalised latents mean "
        f"{result['latent_mean']:.2f} std {result['latent_std']:.2f}; written to {folder}")
    return folder
