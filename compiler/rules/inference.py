"""Rules on sampling defaults: guidance that fits the trained model, cascade settings. (Which samplers fit
which objective is what the runtime implements: compiler/schema/support.py.)"""

from __future__ import annotations

from collections.abc import Iterator

from compiler.diagnostic import Diagnostic
from compiler.rules.lookups import unets
from compiler.schema.spec import Spec
from compiler.validate import rule


@rule("inference.guidance-embedding", "an embedded guidance value is given exactly when the model embeds guidance")
def guidance_embedding(spec: Spec) -> Iterator[Diagnostic]:
    embeds = bool(getattr(spec.architecture.backbone, "guidance_embed", False))
    value = spec.inference.guidance_embedded
    if value is not None and not embeds:
        yield Diagnostic(
            "inference.guidance_embedded",
            "inference.guidance-embedding",
            f"guidance_embedded {value:g} is set, but the backbone has no guidance embedding (guidance_embed False)",
            "use cfg_scale for classifier-free guidance, or set guidance_embed=True on a guidance-distilled MMDiT",
        )
    elif value is None and embeds:
        yield Diagnostic(
            "inference.guidance_embedded",
            "inference.guidance-embedding",
            "the backbone embeds a guidance scale (guidance_embed True) but guidance_embedded is None",
            "set guidance_embedded to the value fed at sampling (FLUX.1 dev: 3.5)",
        )


@rule("inference.dynamic-thresholding-pixel-space", "dynamic thresholding clips pixel values, so it needs pixel space")
def dynamic_thresholding_pixel_space(spec: Spec) -> Iterator[Diagnostic]:
    space = spec.architecture.space
    if spec.inference.dynamic_thresholding is not None and space.kind != "pixel":
        yield Diagnostic(
            "inference.dynamic_thresholding",
            "inference.dynamic-thresholding-pixel-space",
            f"dynamic thresholding clips x0 to [-s, s] with s >= 1, but this model denoises {space.kind} values "
            f"(vae {getattr(space, 'vae', None)!r}), which are not bounded by 1",
            "remove dynamic_thresholding (it is Imagen's fix for pixel saturation)",
        )


@rule("inference.cfg-per-stage-known", "per-stage CFG weights name cascade U-Nets")
def cfg_per_stage_known(spec: Spec) -> Iterator[Diagnostic]:
    names = list(unets(spec))
    known = f"U-Nets: {names}" if names else f"the {spec.architecture.backbone.kind} backbone is no cascade"
    for stage in spec.inference.cfg_scale_per_stage:
        if stage not in names:
            yield Diagnostic(
                "inference.cfg_scale_per_stage",
                "inference.cfg-per-stage-known",
                f"cfg_scale_per_stage names {stage!r}, which is no cascade U-Net ({known})",
                "key cfg_scale_per_stage by U-Net names, or use cfg_scale for a single model",
            )


@rule("inference.noise-augmentation", "a noise-augmentation level is given exactly when an SR U-Net is trained with it")
def noise_augmentation(spec: Spec) -> Iterator[Diagnostic]:
    augmented = [unet.name for unet in unets(spec).values() if unet.noise_conditioning_augmentation]
    level = spec.inference.noise_augmentation_level
    if level is not None and not augmented:
        yield Diagnostic(
            "inference.noise_augmentation_level",
            "inference.noise-augmentation",
            f"noise_augmentation_level {level:g} is set, but no cascade U-Net has noise_conditioning_augmentation",
            "remove the level, or enable noise_conditioning_augmentation on the super-resolution U-Nets",
        )
    elif level is None and augmented:
        yield Diagnostic(
            "inference.noise_augmentation_level",
            "inference.noise-augmentation",
            f"U-Nets {augmented} are trained with noise conditioning augmentation but no sampling level is set",
            "set noise_augmentation_level (Imagen uses a fixed level of about 0.1 to 0.3)",
            "warning",
        )


@rule("inference.cascade-upsample-factors", "a cascade's upsample factors are the ratios of its U-Nets' resolutions")
def cascade_upsample_factors(spec: Spec) -> Iterator[Diagnostic]:
    sides = [unet.resolution for unet in unets(spec).values()]
    factors = spec.inference.upsample_factors
    if len(sides) < 2 or not factors:
        return
    expected = [high / low for low, high in zip(sides, sides[1:])]
    if [float(factor) for factor in factors] != expected:
        shown = [int(ratio) if ratio.is_integer() else ratio for ratio in expected]
        yield Diagnostic(
            "inference.upsample_factors",
            "inference.cascade-upsample-factors",
            f"upsample_factors {factors} do not match the cascade's resolutions {' -> '.join(map(str, sides))} "
            f"(factors {shown})",
            f"set upsample_factors to {shown}",
        )
