"""Sample from a trained stage: its final checkpoint, the spec's inference defaults, a PNG grid and a sidecar.

    python -m runtime.samplers --stage train/<stage>/stage.yaml --run-root R --prompts "a red circle" "a blue square" \
        --out R/samples/<stage>.png [--steps N] [--cfg W] [--true-cfg W] [--seed S] [--sampler NAME] [--model-dir DIR]

Passes:
  1. read the stage file; find R/<output_dir>/final/ and its weights, ema.safetensors when present, else
     model.safetensors; rebuild the model from the architecture recorded there (final/architecture.json);
  2. build the conditioning (text encoders, VAE) at the stage file's scale; at smoke scale these are the random
     stand-ins seeded by model id, i.e. the ones the trainer used;
  3. sample at the stage's (first) training resolution with the spec's inference defaults:
       flow matching            -> "euler" (flow_euler), "heun" (flow_heun, 2nd order), "dpm_solver"
                                   (DPM-Solver++ 2M) or "unipc" (UniPC bh2, as diffusers runs Wan 2.1), along
                                   sampling_sigmas with the inference shift (else the objective's), true CFG
                                   (cfg_scale; --true-cfg also for a model that embeds a guidance scale, as
                                   diffusers' FluxPipeline true_cfg_scale) and/or embedded guidance
       score matching (EDM)     -> "heun" (edm_heun): Heun on the Karras schedule with the EDM paper's sigma_min
                                   0.002, sigma_max 80, rho 7 (the schema has no fields for them; said in the
                                   sidecar's notes), the preconditioning the trainer used, CFG
       noise / v prediction     -> ddim_sample ("ddim", eta 0) or ancestral ("ddpm", eta 1), or Euler ancestral
                                   ("euler", euler_ancestral_sample: diffusers' EulerAncestralDiscreteScheduler,
                                   as Allegro samples), CFG, with dynamic thresholding when the spec sets it, at
                                   the steps inference.timestep_spacing (and steps_offset) pick
       cascades                 -> the stage's own U-Net only; a super-resolution U-Net reads a fixed noise image
                                   as its low-res input, noised to inference.noise_augmentation_level when it was
                                   trained with noise conditioning augmentation (said on stderr and in the sidecar)
     A sampler the objective has no implementation for is refused, naming what is supported;
     --sampler overrides the spec's sampler;
  4. decode to pixels and write the grid: one tile per prompt (images, about square), or one row per prompt with
     its first, middle and last frame (video); beside it <out>.json with prompts, seed, steps, guidance and the
     checkpoint used.
Every random draw comes from generators seeded by --seed (one per prompt), so a seed gives identical bytes.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from ruamel.yaml import YAML

from compiler.schema.architecture import ArchitectureSpec, Cascade, UNetStage
from compiler.schema.bundle import StageFile
from compiler.schema.objective import (
    FlowMatching,
    NoisePrediction,
    ScoreMatching,
    VPrediction,
)
from runtime.samplers.edm import RHO, SIGMA_MAX, SIGMA_MIN

FLOW_SAMPLERS = ("euler", "heun", "dpm_solver", "unipc")
EDM_SAMPLERS = ("heun",)
DDPM_SAMPLERS = ("ddim", "ddpm", "euler")
SUPPORTED = (
    "euler, heun, dpm_solver and unipc (flow matching), heun (score matching), "
    "ddim, ddpm and euler (Euler ancestral; noise / v prediction)"
)
FINAL = "final"
ARCHITECTURE = "architecture.json"


@dataclass
class SampleOptions:
    """Command-line options of `python -m runtime.samplers` (runtime/samplers/__main__.py)."""

    stage: Path
    prompts: list[str]
    out: Path
    run_root: Path = Path(".")
    steps: int | None = None
    cfg: float | None = None
    true_cfg: float | None = None
    seed: int = 0
    sampler: str | None = None
    model_dir: Path | None = None
    model_factory: str = "runtime.models:build_model"


@dataclass
class Settings:
    """What a run samples with, as recorded in the sidecar."""

    sampler: str
    steps: int
    cfg_scale: float | None
    guidance: float | None
    threshold: float | None = None
    aug_level: float | None = None
    notes: list[str] = field(default_factory=list)


def load_stage_file(path: Path) -> StageFile:
    """train/<stage>/stage.yaml, validated."""
    with open(path) as stream:
        return StageFile.model_validate(YAML(typ="safe").load(stream))


def find_weights(stage_path: Path, stage_file: StageFile, run_root: Path) -> Path:
    """final/ema.safetensors when present, else final/model.safetensors; a clear error without either."""
    final = run_root / stage_file.output_dir / FINAL
    for name in ("ema.safetensors", "model.safetensors"):
        if (final / name).is_file():
            return final / name
    ds_config = stage_path.parent / "ds_config.json"
    raise FileNotFoundError(
        f"stage {stage_file.stage.name!r} has no final checkpoint yet: {final}/model.safetensors does not exist. "
        f"Train the stage to its last step first: python -m runtime.train --stage {stage_path} "
        f"--ds-config {ds_config} --run-root {run_root}"
    )


def saved_architecture(weights: Path, stage_file: StageFile) -> ArchitectureSpec:
    """The architecture recorded beside the weights, else the stage file's."""
    saved = weights.parent / ARCHITECTURE
    if saved.is_file():
        return ArchitectureSpec.model_validate_json(saved.read_text())
    return stage_file.architecture


def cascade_unet(architecture: ArchitectureSpec, model: str) -> UNetStage | None:
    """The cascade U-Net a stage trains, None for single-model specs."""
    backbone = architecture.backbone
    if not isinstance(backbone, Cascade):
        return None
    for unet in backbone.stages:
        if unet.name == model:
            return unet
    raise ValueError(f"stage.model is {model!r}; the cascade's models are {[u.name for u in backbone.stages]}")


def settings_for(stage_file: StageFile, architecture: ArchitectureSpec, options: SampleOptions) -> Settings:
    """Sampler, steps and guidance: the spec's inference defaults, overridden by the options."""
    inference, objective = stage_file.inference, stage_file.objective
    sampler = options.sampler or inference.sampler
    if isinstance(objective, FlowMatching):
        allowed, instead = FLOW_SAMPLERS, "euler"
    elif isinstance(objective, ScoreMatching):
        allowed, instead = EDM_SAMPLERS, "heun"
    elif isinstance(objective, (NoisePrediction, VPrediction)):
        allowed, instead = DDPM_SAMPLERS, "ddim (or ddpm, euler)"
    else:
        allowed, instead = (), None
    if instead is None:
        raise ValueError(f"objective {objective.kind!r} has no sampler here; supported: {SUPPORTED}")
    if sampler not in allowed:
        raise ValueError(
            f"sampler {sampler!r} is not supported for a {objective.kind} objective; supported: {SUPPORTED}. "
            f"Pass --sampler {instead} instead"
        )
    steps = options.steps or inference.steps
    if steps < 1:
        raise ValueError(f"--steps is {steps}; take at least one step")
    per_stage = inference.cfg_scale_per_stage.get(stage_file.stage.model)
    spec_cfg = per_stage if per_stage is not None else inference.cfg_scale
    if getattr(architecture.backbone, "guidance_embed", False):
        # A guidance-distilled model (FLUX.1 dev): --cfg sets the guidance scale fed to the model; --true-cfg
        # adds real classifier-free guidance, for a stage whose guidance input was never trained (before
        # guidance distillation).
        guidance = options.cfg if options.cfg is not None else (inference.guidance_embedded or 1.0)
        cfg_scale = options.true_cfg if options.true_cfg is not None else spec_cfg
    else:
        if options.cfg is not None and options.true_cfg is not None and options.cfg != options.true_cfg:
            raise ValueError(f"--cfg {options.cfg} and --true-cfg {options.true_cfg} both set the CFG weight of a "
                             "model without a guidance input; pass one")
        guidance = None
        given = options.true_cfg if options.true_cfg is not None else options.cfg
        cfg_scale = given if given is not None else spec_cfg
    threshold = inference.dynamic_thresholding.percentile if inference.dynamic_thresholding else None
    notes = []
    if isinstance(objective, (FlowMatching, ScoreMatching)):
        threshold = None
    if isinstance(objective, ScoreMatching):
        notes.append(
            f"edm: Karras sigmas from sigma_max {SIGMA_MAX} to sigma_min {SIGMA_MIN}, rho {RHO} (the EDM paper's "
            "defaults; the spec does not set them)"
        )
    return Settings(sampler, steps, cfg_scale, guidance, threshold, notes=notes)


def text_conditioning(encoders, architecture: ArchitectureSpec, prompts: list[str]):
    """The denoiser's text inputs of `prompts`, as the trainer builds them when encoding on the fly."""
    from runtime.objectives.conditioning import Conditioning, join_text

    return Conditioning(**join_text(architecture, encoders.encode_text(prompts)))


def latent_shape(stage_file: StageFile, architecture: ArchitectureSpec) -> tuple[tuple[int, ...], int]:
    """(per-sample latent shape, pixels per frame) at the stage's first training resolution."""
    size = stage_file.stage.resolutions[0]
    space = architecture.space
    compression = space.spatial_compression if space.kind == "latent" else 1
    height, width = size.height // compression, size.width // compression
    frames = stage_file.stage.frames
    if frames and frames > 1:
        temporal = getattr(space, "temporal_compression", 1)
        latent_frames = 1 + (frames - 1) // temporal if getattr(space, "causal", False) else max(frames // temporal, 1)
        return (space.channels, latent_frames, height, width), size.height * size.width
    return (space.channels, height, width), size.height * size.width


def image_tokens(architecture: ArchitectureSpec, shape: tuple[int, ...]) -> int:
    """Backbone tokens of one sample (FLUX's mu-linear shift reads them)."""
    grid = shape[1:]
    patch = getattr(architecture.backbone, "patch_size", (1, 1, 1))[-len(grid) :]
    return math.prod(side // step for side, step in zip(grid, patch))


def sample_one(
    model,
    objective,
    stage_file,
    architecture,
    settings,
    noise,
    cond,
    generator,
    shape,
    pixels,
):
    """One prompt's sample from `noise` with the stage's sampler."""
    from runtime.objectives import sampling_sigmas, shift_factor
    from runtime.objectives.timesteps import applies_at
    from runtime.samplers import (
        ddim_sample,
        denoiser_call,
        edm_heun,
        euler_ancestral_sample,
        flow_dpm_solver,
        flow_euler,
        flow_heun,
        flow_unipc,
        karras_sigmas,
    )

    call = denoiser_call(model)
    shift = stage_file.inference.shift or stage_file.objective.shift
    tokens = image_tokens(architecture, shape)
    if isinstance(stage_file.objective, FlowMatching):
        flow_samplers = {"euler": flow_euler, "heun": flow_heun, "dpm_solver": flow_dpm_solver, "unipc": flow_unipc}
        return flow_samplers[settings.sampler](
            call,
            noise,
            cond,
            sampling_sigmas(shift, settings.steps, tokens, pixels).float(),
            cfg_scale=settings.cfg_scale,
            guidance=settings.guidance,
            time_scale=float(model.time_scale),
        )
    if isinstance(stage_file.objective, ScoreMatching):
        # A shift a multiplies sigma (runtime/objectives/edm.py), so it scales the whole Karras schedule.
        factor = shift_factor(shift, tokens, pixels) if applies_at(shift, "sampling") else 1.0
        sigmas = karras_sigmas(settings.steps, SIGMA_MIN, SIGMA_MAX, RHO) * factor
        return edm_heun(call, objective, noise, cond, sigmas, cfg_scale=settings.cfg_scale, guidance=settings.guidance)
    if settings.steps > objective.steps:
        raise ValueError(f"--steps is {settings.steps}; the model was trained with {objective.steps} steps")
    guided = call
    if settings.guidance is not None:

        def guided(latents, timestep, c, guidance):
            return call(
                latents,
                timestep,
                c,
                torch.full((latents.shape[0],), float(settings.guidance)),
            )

    spacing = stage_file.inference.timestep_spacing or "linspace"
    if settings.sampler == "euler":
        return euler_ancestral_sample(
            guided,
            objective,
            noise,
            cond,
            settings.steps,
            generator=generator,
            cfg_scale=settings.cfg_scale,
            threshold=settings.threshold,
            spacing=spacing,
            offset=stage_file.inference.steps_offset,
        )
    return ddim_sample(
        guided,
        objective,
        noise,
        cond,
        settings.steps,
        eta=1.0 if settings.sampler == "ddpm" else 0.0,
        spacing=spacing,
        offset=stage_file.inference.steps_offset,
        cfg_scale=settings.cfg_scale,
        threshold=settings.threshold,
        generator=generator,
    )


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(3, H, W) pixels in [-1, 1] -> (H, W, 3) uint8."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(1, 2, 0).numpy()


def grid(tiles: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of equally sized (H, W, 3) tiles -> one image."""
    return np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)


def tiles_of(decoded: list[torch.Tensor]) -> list[list[np.ndarray]]:
    """Images: an about-square grid, one tile per prompt; videos: a row per prompt of first, middle, last frame."""
    if decoded[0].ndim == 4:  # (3, F, H, W)
        rows = []
        for video in decoded:
            frames = video.shape[1]
            rows.append([to_uint8(video[:, index]) for index in (0, frames // 2, frames - 1)])
        return rows
    images = [to_uint8(image) for image in decoded]
    columns = math.ceil(math.sqrt(len(images)))
    blank = np.zeros_like(images[0])
    padded = images + [blank] * (-len(images) % columns)
    return [padded[i : i + columns] for i in range(0, len(padded), columns)]


def sample(options: SampleOptions) -> Path:
    """Sample the options' prompts from the stage's final checkpoint; returns the PNG written."""
    from PIL import Image

    from runtime.encoders import build_encoders
    from runtime.objectives import build_objective
    from runtime.objectives.conditioning import augment_lowres
    from runtime.train.checkpoint import load_weights
    from runtime.train.launch import derived_seed
    from runtime.train.protocol import check_denoiser, load_factory

    if not options.prompts:
        raise ValueError("pass at least one prompt (--prompts)")
    stage_path, run_root = Path(options.stage), Path(options.run_root)
    stage_file = load_stage_file(stage_path)
    weights = find_weights(stage_path, stage_file, run_root)
    architecture = saved_architecture(weights, stage_file)
    settings = settings_for(stage_file, architecture, options)

    torch.manual_seed(derived_seed(options.seed))
    factory = load_factory(options.model_factory)
    model = factory(architecture, stage_file.stage.model)
    check_denoiser(model, str(options.model_factory))
    load_weights(model, weights, "checkpoint")
    model = model.float().eval().requires_grad_(False)

    encoders = build_encoders(architecture, stage_file.scale, options.model_dir)
    shape, pixels = latent_shape(stage_file, architecture)
    objective = build_objective(
        stage_file.objective,
        stage_file.stage,
        image_tokens(architecture, shape),
        pixels=pixels,
        time_scale=float(model.time_scale),
    )
    unet = cascade_unet(architecture, stage_file.stage.model)
    if unet is not None and unet.input_resolution:
        level = stage_file.inference.noise_augmentation_level
        settings.aug_level = (level or 0.0) if unet.noise_conditioning_augmentation else None
        settings.notes.append(
            f"cascade: sampled only the stage's own U-Net {unet.name!r}; its {unet.input_resolution}px low-res "
            "input is a fixed noise image (seeded by --seed), "
            + (
                f"noised to augmentation level {settings.aug_level}"
                if settings.aug_level is not None
                else "unaugmented (trained without noise conditioning augmentation)"
            )
            + ", not the previous stage's output"
        )
    elif unet is not None:
        settings.notes.append(f"cascade: sampled only the base U-Net {unet.name!r}, no super-resolution stages")
    for note in settings.notes:
        print(note, file=sys.stderr)

    decoded = []
    with torch.no_grad():
        for index, prompt in enumerate(options.prompts):
            generator = torch.Generator().manual_seed(derived_seed(options.seed, index))
            noise = torch.randn((1, *shape), generator=generator)
            cond = text_conditioning(encoders, architecture, [prompt])
            if unet is not None and unet.input_resolution:
                side = unet.input_resolution
                lowres = torch.randn((1, architecture.space.channels, side, side), generator=generator).clamp(-1, 1)
                if settings.aug_level is not None:
                    level = torch.full((1,), settings.aug_level)
                    lowres = augment_lowres(lowres, level, torch.randn(lowres.shape, generator=generator))
                    cond = replace(cond, lowres=lowres, aug_level=level)
                else:
                    cond = replace(cond, lowres=lowres)
            latents = sample_one(
                model,
                objective,
                stage_file,
                architecture,
                settings,
                noise,
                cond,
                generator,
                shape,
                pixels,
            )
            if not bool(torch.isfinite(latents).all()):
                raise ValueError(
                    f"sampler {settings.sampler!r} produced non-finite latents for prompt {index} ({prompt!r}) in "
                    f"{settings.steps} steps; try more --steps or another --sampler ({SUPPORTED})"
                )
            decoded.append(encoders.decode(latents.float())[0].float())

    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(tiles_of(decoded))).save(out, format="PNG")
    sidecar = {
        "spec": stage_file.spec,
        "stage": stage_file.stage.name,
        "model": stage_file.stage.model,
        "prompts": list(options.prompts),
        "seed": options.seed,
        "sampler": settings.sampler,
        "steps": settings.steps,
        "cfg_scale": settings.cfg_scale,
        "guidance_embedded": settings.guidance,
        "dynamic_thresholding": settings.threshold,
        "noise_augmentation_level": settings.aug_level,
        "resolution": {
            "height": stage_file.stage.resolutions[0].height,
            "width": stage_file.stage.resolutions[0].width,
        },
        "latent_shape": list(shape),
        "checkpoint": str(weights),
        "weights": "ema" if weights.name.startswith("ema") else "model",
        "scale": stage_file.scale,
        "conditioning": list(encoders.report),
        "notes": settings.notes,
        "image": out.name,
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return out
