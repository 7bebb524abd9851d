"""final/'s diffusers folders and self-description (runtime/train/export.py).

For every family diffusers has, a shipped spec (FLUX.1 dev, FLUX.1 Kontext, Qwen-Image, Wan 2.1) or an issue-17
test spec (HunyuanVideo, SD3, CogVideoX) is compiled at smoke scale for local-cpu; its network, built by the
default model factory with weights moved off their initialisation, is exported from a single-process DeepSpeed
engine with its EMA, as the trainer does at a stage's last step. The diffusers class's from_pretrained loads both
folders; the loaded model predicts what our network predicts (1e-5, float32) and holds the EMA's weights.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from compiler import __version__
from compiler.cli import app
from runtime.models import build_model
from runtime.models.diffusers_config import NoDiffusersClass, diffusers_model
from runtime.models.rope import flux_image_ids
from runtime.models.unet import UNetConfig
from runtime.models.wan import WanDiTConfig
from runtime.train import load_stage_file
from runtime.train.ema import EMA
from runtime.train.export import (
    DIFFUSERS, DIFFUSERS_EMA, INDEX_NAME, WEIGHTS_NAME, describe, export_final, shard_plan,
)
from runtime.train.launch import prepare_environment

ATOL = 1e-5
BATCH = 2
FAMILY_SPECS = Path(__file__).resolve().parents[1] / "family_specs.py"
# target, the stage whose stage.yaml the export describes, the diffusers class, whether to force sharding
CASES = {
    "flux1-dev": ("flux1-dev", "pretrain", "FluxTransformer2DModel", False),
    "flux-kontext": ("flux-kontext", "kontext_flow_matching", "FluxTransformer2DModel", True),
    "qwen-image": ("qwen-image", None, "QwenImageTransformer2DModel", False),
    "wan2.1-t2v-1.3b": ("wan2.1-t2v-1.3b", None, "WanTransformer3DModel", True),
    "hunyuan-video": (f"{FAMILY_SPECS}:HUNYUAN_VIDEO", None, "HunyuanVideoTransformer3DModel", False),
    "sd3": (f"{FAMILY_SPECS}:SD3_MEDIUM", None, "SD3Transformer2DModel", False),
    "cogvideox": (f"{FAMILY_SPECS}:COGVIDEOX_5B", None, "CogVideoXTransformer3DModel", False),
}
SHARD_BYTES = 64 * 1024  # small enough that every smoke model takes several shards


def compile_smoke(target: str, out: Path) -> Path:
    result = CliRunner().invoke(app, ["compile", target, "--cluster", "local-cpu", "--scale", "smoke", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def perturb(module: torch.nn.Module, scale: float) -> None:
    """Move every parameter off its initialisation: adaLN-Zero starts gates and output layers at zero, where every
    network predicts zero and any two would agree."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn_like(parameter))


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    """(case, stage path, our network, the EMA's weights, final/) after export_final on a ZeRO-0 fp32 engine."""
    prepare_environment()
    import deepspeed

    target, stage, _, shard = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    bundle = compile_smoke(target, root / "bundle")
    stage_path = next(iter(sorted((bundle / "train").glob("*/stage.yaml")))) if stage is None else (
        bundle / "train" / stage / "stage.yaml"
    )
    stage_file = load_stage_file(stage_path)
    torch.manual_seed(0)
    model = build_model(stage_file.architecture, stage_file.stage.model)
    perturb(model, 0.1)
    config = {"train_batch_size": 1, "train_micro_batch_size_per_gpu": 1, "steps_per_print": 1_000_000}
    engine, _, _, _ = deepspeed.initialize(model=model, config=config)
    ema = EMA(engine.module, 0.5)
    perturb(engine.module, 0.05)
    ema.update()  # the EMA is now halfway between two sets of weights: it differs from the model's
    architecture = stage_file.architecture.model_dump_json()
    done = {"stage": stage_file.stage.name, "steps": 1}
    max_shard = SHARD_BYTES if shard else 10 * 10**9
    export_final(engine, ema, root / "run", 0, architecture, done, describe(stage_path, stage_file), max_shard)
    network = engine.module.model.eval()
    ema_weights = {name.removeprefix("model."): t for name, t in ema.state_dict()["shadow"].items()}
    return request.param, stage_path, network, ema_weights, root / "run" / "final"


def load(folder: Path, class_name: str):
    import diffusers

    model = getattr(diffusers, class_name).from_pretrained(str(folder))
    assert type(model).__name__ == class_name and model.dtype == torch.float32
    return model.eval()


@torch.no_grad()
def test_diffusers_from_pretrained_predicts_what_our_network_predicts(exported):
    case, _, network, _, final = exported
    reference = load(final / DIFFUSERS, CASES[case][2])
    ours, theirs = FORWARD[case](network, reference, network.config)
    assert ours.abs().max() > 1e-3, "a zero prediction would match anything"
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


@torch.no_grad()
def test_the_ema_folder_holds_the_ema(exported):
    case, _, network, ema_weights, final = exported
    averaged = load(final / DIFFUSERS_EMA, CASES[case][2]).state_dict()
    current = network.state_dict()
    assert averaged.keys() == current.keys()
    for name, tensor in averaged.items():
        expected = ema_weights[name].view(tensor.shape) if name in ema_weights else current[name]  # buffers: the model's
        torch.testing.assert_close(tensor, expected, rtol=0, atol=0, msg=name)
    assert [name for name in ema_weights if torch.equal(averaged[name], current[name])] == []


def test_the_folders_are_laid_out_as_diffusers_writes_them(exported):
    case, _, network, _, final = exported
    for folder in (final / DIFFUSERS, final / DIFFUSERS_EMA):
        config = json.loads((folder / "config.json").read_text())
        assert config["_class_name"] == CASES[case][2]
        if CASES[case][3]:  # sharded: numbered shards and the index naming every tensor's shard
            index = json.loads((folder / INDEX_NAME).read_text())
            shards = sorted(path.name for path in folder.glob("diffusion_pytorch_model-*-of-*.safetensors"))
            assert len(shards) > 1 and not (folder / WEIGHTS_NAME).exists()
            assert set(index["weight_map"]) == set(network.state_dict()) and set(index["weight_map"].values()) == set(shards)
            assert index["metadata"]["total_size"] == 4 * sum(t.numel() for t in network.state_dict().values())
            held = {name: shard for shard in shards for name in load_file(str(folder / shard))}
            assert held == index["weight_map"]
        else:
            assert sorted(path.name for path in folder.iterdir()) == ["config.json", WEIGHTS_NAME]
    assert not list(final.glob("*.part"))


def test_the_checkpoint_describes_itself(exported):
    case, stage_path, _, _, final = exported
    bundle = stage_path.parents[2]
    assert (final / "stage.yaml").read_bytes() == stage_path.read_bytes()
    assert (final / "spec.resolved.yaml").read_bytes() == (bundle / "spec.resolved.yaml").read_bytes()
    stage = load_stage_file(stage_path).stage
    row = json.loads((final / "plan.json").read_text())
    planned = json.loads((bundle / "plan.json").read_text())["stages"]
    assert row in planned and row["stage"] == stage.name
    provenance = json.loads((final / "provenance.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert provenance["genspec_version"] == __version__ and provenance["stage"] == stage.name
    assert provenance["compiled"]["spec_sha256"] == manifest["spec_sha256"] and provenance["not_found"] == []
    assert provenance["diffusers"] == {"class": CASES[case][2], "folders": [DIFFUSERS, DIFFUSERS_EMA]}
    assert (final / "model.safetensors").is_file() and (final / "done.json").is_file()


def test_shards_keep_the_order_and_a_tensor_past_the_size_stands_alone():
    tensors = [("a", (2,)), ("b", (2,)), ("c", (10,)), ("d", (1,)), ("e", (1,))]
    assert shard_plan(tensors, 16) == [[("a", (2,)), ("b", (2,))], [("c", (10,))], [("d", (1,)), ("e", (1,))]]
    assert shard_plan(tensors, 10**9) == [tensors]


def test_a_config_diffusers_cannot_build_is_refused_by_field():
    with pytest.raises(NoDiffusersClass, match=r"rope_axes_dims is \(4, 6, 6\).*\(8, 4, 4\)"):
        diffusers_model(WanDiTConfig((1, 2, 2), 2, 16, 4, 4, 8, 32, 64, 1, rope_axes_dims=(4, 6, 6)))
    with pytest.raises(NoDiffusersClass, match="UNetConfig has no diffusers class"):
        diffusers_model(UNetConfig(resolution=16, channels=16, channel_mult=(1, 2), res_blocks=(1, 1),
                                   attention_resolutions=(8,), text_dim=12))


# --- each family's forward, ours and diffusers', on the same inputs -----------------------------------------------

def _flux_inputs(config, height=4, width=4, text=5):
    generator = torch.Generator().manual_seed(1)
    inputs = dict(
        hidden_states=torch.randn(BATCH, height * width, config.in_channels, generator=generator),
        encoder_hidden_states=torch.randn(BATCH, text, config.joint_attention_dim, generator=generator),
        pooled_projections=torch.randn(BATCH, config.pooled_projection_dim, generator=generator),
        timestep=torch.rand(BATCH, generator=generator),
        img_ids=flux_image_ids(height, width),
        txt_ids=torch.zeros(text, 3),
    )
    if config.guidance_embeds:
        inputs["guidance"] = torch.tensor([3.5, 5.0])
    return inputs


def flux(network, reference, config):
    inputs = _flux_inputs(config)
    return network(**inputs), reference(**inputs).sample


def flux_kontext(network, reference, config):
    """The context image's tokens follow the target's at index 1 (diffusers pipeline_flux_kontext.py)."""
    inputs = _flux_inputs(config)
    target = inputs["hidden_states"]
    context = torch.randn(BATCH, 9, config.in_channels, generator=torch.Generator().manual_seed(2))
    context_ids = flux_image_ids(3, 3, index=1)
    joint = dict(inputs, hidden_states=torch.cat([target, context], 1), img_ids=torch.cat([inputs["img_ids"], context_ids]))
    ours = network(**inputs, context_latents=context, context_ids=context_ids)
    return ours, reference(**joint).sample[:, : target.shape[1]]


def qwen_image(network, reference, config):
    generator = torch.Generator().manual_seed(3)
    mask = torch.ones(BATCH, 6, dtype=torch.long)
    mask[1, -2:] = 0
    inputs = dict(
        hidden_states=torch.randn(BATCH, 5 * 4, config.in_channels, generator=generator),
        encoder_hidden_states=torch.randn(BATCH, 6, config.joint_attention_dim, generator=generator),
        timestep=torch.rand(BATCH, generator=generator),
        encoder_hidden_states_mask=mask,
    )
    ours = network(**inputs, img_shapes=[(1, 5, 4)])
    return ours, reference(**inputs, img_shapes=[[(1, 5, 4)]] * BATCH).sample  # one list per sample in diffusers


def wan(network, reference, config):
    generator = torch.Generator().manual_seed(4)
    inputs = dict(
        hidden_states=torch.randn(BATCH, config.in_channels, 3, 4, 6, generator=generator),
        timestep=torch.rand(BATCH, generator=generator) * 1000,
        encoder_hidden_states=torch.randn(BATCH, 7, config.text_dim, generator=generator),
    )
    return network(**inputs), reference(**inputs).sample


def hunyuan_video(network, reference, config):
    generator = torch.Generator().manual_seed(5)
    mask = torch.ones(BATCH, 5, dtype=torch.long)
    mask[1, -2:] = 0
    inputs = dict(
        hidden_states=torch.randn(BATCH, config.in_channels, 3, 4, 6, generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
        encoder_hidden_states=torch.randn(BATCH, 5, config.text_embed_dim, generator=generator),
        encoder_attention_mask=mask,
        pooled_projections=torch.randn(BATCH, config.pooled_projection_dim, generator=generator),
        guidance=torch.tensor([3500.0, 6000.0]),
    )
    return network(**inputs), reference(**inputs).sample


def sd3(network, reference, config):
    generator = torch.Generator().manual_seed(6)
    inputs = dict(
        hidden_states=torch.randn(BATCH, config.in_channels, 8, 6, generator=generator),
        encoder_hidden_states=torch.randn(BATCH, 7, config.joint_attention_dim, generator=generator),
        pooled_projections=torch.randn(BATCH, config.pooled_projection_dim, generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
    )
    return network(**inputs), reference(**inputs).sample


def cogvideox(network, reference, config):
    """diffusers' CogVideoX takes the RoPE tables its pipeline builds (pipeline_cogvideox.py)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    frames, height, width = 3, 8, 12
    generator = torch.Generator().manual_seed(7)
    inputs = dict(
        hidden_states=torch.randn(BATCH, frames, config.in_channels, height, width, generator=generator),
        encoder_hidden_states=torch.randn(BATCH, 5, config.text_embed_dim, generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
    )
    grid = (height // config.patch_size, width // config.patch_size)
    crops = get_resize_crop_region_for_grid(
        grid, config.sample_width // config.patch_size, config.sample_height // config.patch_size
    )
    rope = get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim, crops_coords=crops, grid_size=grid, temporal_size=frames
    )
    return network(**inputs), reference(**inputs, image_rotary_emb=rope).sample


FORWARD = {
    "flux1-dev": flux, "flux-kontext": flux_kontext, "qwen-image": qwen_image, "wan2.1-t2v-1.3b": wan,
    "hunyuan-video": hunyuan_video, "sd3": sd3, "cogvideox": cogvideox,
}
