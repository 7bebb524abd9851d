"""runtime.models.factory: every shipped spec's models build and train a step at smoke scale on inputs of
their stages' sizes; full-size networks match the planner's parameter counts; the protocol denoiser packs
tokens, places positions and checks its inputs."""

import pytest
import torch

import specs
from compiler.scale import scaled
from compiler.plan.params import count_dit, count_mmdit
from compiler.schema.architecture import Cascade, LatentSpace
from compiler.schema.architecture import MMDiT as MMDiTSpec
from runtime.models import build_model, build_network, model_adapter
from runtime.train.protocol import check_denoiser, load_factory

BATCH = 2


def smoke(name: str):
    return scaled(specs.load(name), "smoke")


def random_denoiser(name: str):
    """The smoke-scale denoiser of a spec with PyTorch's default initialisation (outputs not all zero)."""
    torch.manual_seed(0)
    architecture = smoke(name).architecture
    return model_adapter(build_network(architecture), architecture).eval()


def model_names(spec) -> list[str]:
    backbone = spec.architecture.backbone
    return [stage.name for stage in backbone.stages] if isinstance(backbone, Cascade) else ["main"]


def input_sizes(spec, model_name: str) -> list[tuple[int, int, int | None]]:
    """Every distinct (height, width, frames) the spec's stages train `model_name` at."""
    sizes = {
        (size.height, size.width, stage.frames)
        for stage in spec.schedule.stages
        if stage.model == model_name
        for size in stage.resolutions
    }
    assert sizes, f"no stage of {spec.name} trains {model_name}"
    return sorted(sizes, key=str)


def latent_shape(space, height: int, width: int, frames: int | None) -> tuple[int, ...]:
    """The VAE's latent shape for a sample; a causal video VAE keeps the first frame apart (1 + 4k -> 1 + k)."""
    if not isinstance(space, LatentSpace):
        return (BATCH, space.channels, height, width)
    spatial = (height // space.spatial_compression, width // space.spatial_compression)
    if frames is None:
        return (BATCH, space.channels, *spatial)
    stride = space.temporal_compression
    latent_frames = 1 + (frames - 1) // stride if space.causal else frames // stride
    return (BATCH, space.channels, latent_frames, *spatial)


def conditioning(spec, model_name: str, shape: tuple[int, ...], generator) -> dict[str, torch.Tensor]:
    """The keyword inputs the spec's encoders and stage provide, at the widths the backbone reads."""
    arch, backbone = spec.architecture, spec.architecture.backbone
    tokens = [e for e in arch.text_encoders if e.role in ("tokens", "cross_attention")]
    width = getattr(backbone, "context_dim", None) or getattr(backbone, "text_dim", None) or tokens[0].dim
    length = tokens[0].max_tokens
    mask = torch.ones(BATCH, length, dtype=torch.long)
    mask[1, length // 2 :] = 0
    inputs = {"text": torch.randn(BATCH, length, width, generator=generator), "text_mask": mask}
    for encoder in arch.text_encoders:
        if encoder.role == "pooled":
            inputs["pooled"] = torch.randn(BATCH, encoder.dim, generator=generator)
        if encoder.role == "glyph":
            inputs["glyph"] = torch.randn(BATCH, encoder.max_tokens, encoder.dim, generator=generator)
    if isinstance(backbone, MMDiTSpec) and backbone.guidance_embed:
        inputs["guidance"] = torch.full((BATCH,), 3.5)
    if isinstance(backbone, MMDiTSpec) and backbone.context_images == "sequence":
        inputs["context_latents"] = torch.randn(shape, generator=generator)
    if isinstance(backbone, Cascade):
        stage = next(stage for stage in backbone.stages if stage.name == model_name)
        if stage.input_resolution:
            side = stage.input_resolution
            inputs["lowres"] = torch.randn(BATCH, shape[1], side, side, generator=generator)
        if stage.noise_conditioning_augmentation:
            inputs["aug_level"] = torch.rand(BATCH, generator=generator)
    return inputs


def unused_by_the_output(denoiser) -> set[str]:
    """Parameters no prediction depends on: Qwen-Image's last block computes a text-stream output nothing
    reads (as diffusers' does), so its text queries, text output projection and text MLP get no gradient."""
    if denoiser.family != "qwen_image":
        return set()
    last = f"model.transformer_blocks.{len(denoiser.model.transformer_blocks) - 1}."
    parts = ("attn.to_add_out", "attn.add_q_proj", "attn.norm_added_q", "txt_mlp")
    return {name for name, _ in denoiser.named_parameters() if name.startswith(last) and any(p in name for p in parts)}


@pytest.mark.parametrize("name", list(specs.SHIPPED))
def test_every_model_of_a_shipped_spec_trains_a_step_at_smoke_scale(name):
    """Forward and backward at every size the spec's stages train at. PyTorch's default initialisation
    (build_network) so gradients reach every block; build_model's zero-initialised denoiser is checked too."""
    spec = smoke(name)  # a spec that does not load fails here, not silently
    generator = torch.Generator().manual_seed(0)
    for model_name in model_names(spec):
        torch.manual_seed(0)
        denoiser = model_adapter(build_network(spec.architecture, model_name), spec.architecture, model_name)
        check_denoiser(denoiser, "runtime.models:model_adapter")
        unused = unused_by_the_output(denoiser)
        for height, width, frames in input_sizes(spec, model_name):
            case = (model_name, height, width, frames)
            shape = latent_shape(spec.architecture.space, height, width, frames)
            latents = torch.randn(shape, generator=generator)
            timestep = torch.rand(BATCH, generator=generator) * denoiser.time_scale
            cond = conditioning(spec, model_name, shape, generator)
            denoiser.zero_grad(set_to_none=True)
            prediction = denoiser(latents, timestep, **cond)
            assert prediction.shape == latents.shape, case
            (prediction - latents).square().mean().backward()
            for parameter_name, parameter in denoiser.named_parameters():
                if parameter_name not in unused:
                    assert parameter.grad is not None and parameter.grad.abs().max() > 0, (*case, parameter_name)
                    assert torch.isfinite(parameter.grad).all(), (*case, parameter_name)
        fresh = build_model(spec.architecture, model_name)
        check_denoiser(fresh, "runtime.models:build_model")
        with torch.no_grad():
            assert fresh(latents, timestep, **cond).abs().max() == 0, model_name  # initialised from scratch


def glyph_projection(spec) -> int:
    """Parameters of the glyph encoder's projection MLP (glyph dim -> text width -> text width), which the
    planner (compiler/plan/params.py count_mmdit) does not count yet."""
    backbone = spec.architecture.backbone
    glyph = [e.dim for e in spec.architecture.text_encoders if e.role == "glyph"]
    if not glyph:
        return 0
    width = backbone.context_dim
    return glyph[0] * width + width + width * width + width


@pytest.mark.parametrize("name", list(specs.SHIPPED))
def test_full_size_networks_build_and_match_the_planner(name):
    """Built on the meta device (no memory). Transformers match compiler/plan/params.py exactly; the
    planner's U-Net count is an estimate, so cascades are checked in test_unet.py instead."""
    spec = specs.load(name)
    arch, backbone = spec.architecture, spec.architecture.backbone
    with torch.device("meta"):
        networks = [build_network(arch, model_name) for model_name in model_names(spec)]
    if isinstance(backbone, Cascade):
        return
    ours = sum(p.numel() for p in networks[0].parameters())
    if isinstance(backbone, MMDiTSpec):
        planned = count_mmdit(backbone, pooled=any(e.role == "pooled" for e in arch.text_encoders)).total
    else:
        planned = count_dit(backbone).total
    assert ours == planned + glyph_projection(spec)


def test_build_model_is_the_trainers_default_factory():
    denoiser = load_factory()(smoke("wan2.1-t2v-1.3b").architecture, "main")
    check_denoiser(denoiser, "default")


@pytest.mark.parametrize(
    "name, time_scale", [("flux1-dev", 1.0), ("qwen-image", 1.0), ("wan2.1-t2v-1.3b", 1000.0), ("allegro", 1000.0)]
)
def test_time_scale_is_what_the_network_multiplies_t_by(name, time_scale):
    assert build_model(smoke(name).architecture).time_scale == time_scale


def test_cascade_stages_embed_the_ddpm_step():
    spec = smoke("imagen-1")
    assert {build_model(spec.architecture, stage).time_scale for stage in model_names(spec)} == {1000.0}


def captured_network_kwargs(denoiser, *args, **kwargs) -> dict:
    """The keyword arguments the denoiser passes to its network."""
    captured = {}
    hook = denoiser.model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.update(kwargs), with_kwargs=True
    )
    with torch.no_grad():
        denoiser(*args, **kwargs)
    hook.remove()
    return captured


def test_kontext_context_image_sits_at_index_one_and_output_is_the_target():
    denoiser = random_denoiser("flux-kontext")
    latents, context = torch.randn(BATCH, 16, 4, 6), torch.randn(BATCH, 16, 6, 4)
    cond = dict(text=torch.randn(BATCH, 16, 32), pooled=torch.randn(BATCH, 32), guidance=torch.full((BATCH,), 3.5))
    kwargs = captured_network_kwargs(denoiser, latents, torch.rand(BATCH), context_latents=context, **cond)
    assert kwargs["context_latents"].shape == (BATCH, 6, 64)  # 3 x 2 packed tokens of 16 x 2 x 2
    assert kwargs["context_ids"][:, 0].eq(1).all() and kwargs["img_ids"][:, 0].eq(0).all()
    with torch.no_grad():
        with_context = denoiser(latents, torch.tensor([0.3, 0.6]), context_latents=context, **cond)
        without = denoiser(latents, torch.tensor([0.3, 0.6]), **cond)
    assert with_context.shape == latents.shape
    assert (with_context - without).abs().max() > 0


def test_seedream_text_positions_continue_after_the_image_columns():
    """Cross-modality RoPE over (h, w): text (and glyph) token j at row 0, column grid width + j."""
    spec = smoke("seedream-3.0")
    denoiser = build_model(spec.architecture)
    latents = torch.randn(BATCH, 16, 4, 6)  # a 2 x 3 token grid
    text, glyph = torch.randn(BATCH, 5, 32), torch.randn(BATCH, 2, spec.architecture.text_encoders[1].dim)
    kwargs = captured_network_kwargs(denoiser, latents, torch.rand(BATCH), text=text, glyph=glyph)
    expected = torch.stack([torch.zeros(7), torch.arange(7.0) + 3], dim=1)
    torch.testing.assert_close(kwargs["txt_ids"], expected)
    assert kwargs["img_ids"].shape == (6, 2)


def test_dit_takes_images_as_one_frame_videos():
    denoiser = random_denoiser("sora")
    image, text, timestep = torch.randn(BATCH, 16, 4, 6), torch.randn(BATCH, 16, 32), torch.tensor([50.0, 600.0])
    with torch.no_grad():
        as_image = denoiser(image, timestep, text=text)
        as_video = denoiser(image[:, :, None], timestep, text=text)
    assert as_image.shape == image.shape and as_video.shape == (BATCH, 16, 1, 4, 6)
    torch.testing.assert_close(as_image, as_video[:, :, 0], atol=0, rtol=0)


def test_dit_zeroes_padded_text_as_wans_pipeline_does():
    denoiser = random_denoiser("wan2.1-t2v-1.3b")
    latents, timestep = torch.randn(BATCH, 16, 3, 4, 4), torch.tensor([100.0, 800.0])
    text, mask = torch.randn(BATCH, 16, 32), torch.ones(BATCH, 16)
    mask[:, 10:] = 0
    noisy = text.clone()
    noisy[:, 10:] = 5.0
    with torch.no_grad():
        expected = denoiser(latents, timestep, text=text, text_mask=mask)
        torch.testing.assert_close(denoiser(latents, timestep, text=noisy, text_mask=mask), expected)


def test_inputs_a_family_does_not_read_are_errors():
    wan = build_model(smoke("wan2.1-t2v-1.3b").architecture)
    latents, text = torch.randn(BATCH, 16, 3, 4, 4), torch.randn(BATCH, 16, 32)
    with pytest.raises(ValueError, match="guidance, pooled passed to a dit model, which reads none of them"):
        wan(latents, torch.rand(BATCH), text=text, pooled=torch.randn(BATCH, 32), guidance=torch.ones(BATCH))
    flux = build_model(smoke("flux1-dev").architecture)
    with pytest.raises(ValueError, match=r"latents have shape \(2, 16, 3, 4, 4\); a flux model takes \(B, C, H, W\)"):
        flux(latents, torch.rand(BATCH), text=text)
    with pytest.raises(ValueError, match="text is None"):
        flux(latents[:, :, 0], torch.rand(BATCH))


def test_model_names_are_checked():
    with pytest.raises(ValueError, match="model_name is 'main'; this cascade's models are base64, sr256, sr1024"):
        build_model(smoke("imagen-1").architecture)
    with pytest.raises(ValueError, match="model_name is 'base64' but a mmdit spec has one model: use 'main'"):
        build_model(smoke("flux1-dev").architecture, "base64")


def test_unimplemented_fields_raise_instead_of_building_another_network():
    arch = smoke("imagen-3").architecture
    backbone = arch.backbone.model_copy(update={"qk_norm": "layernorm_per_head"})
    with pytest.raises(NotImplementedError, match="architecture.backbone.qk_norm is 'layernorm_per_head'"):
        build_network(arch.model_copy(update={"backbone": backbone}))
    backbone = arch.backbone.model_copy(update={"text_conditioning": "in_context"})
    with pytest.raises(NotImplementedError, match="architecture.backbone.text_conditioning is 'in_context'"):
        build_network(arch.model_copy(update={"backbone": backbone}))


def test_adapter_wraps_an_existing_network():
    arch = smoke("qwen-image").architecture
    network = build_network(arch)
    denoiser = model_adapter(network, arch)
    assert denoiser.model is network
    assert list(denoiser.state_dict()) == [f"model.{key}" for key in network.state_dict()]
