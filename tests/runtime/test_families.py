"""Issue 17's families from their test specs (tests/runtime/family_specs.py) at smoke scale: the spec's network,
built by the default model factory behind the trainer's protocol, takes AdamW steps on a flow-matching loss.
The full trainer (DeepSpeed, shards, sampling) runs them in `genspec demo`; see the report."""

import importlib.util
from pathlib import Path

import pytest
import torch

from compiler.scale import scaled
from runtime.models import build_model


def _load_family_specs():
    """By path: pytest runs with --import-mode=importlib, so tests/runtime is not on sys.path."""
    location = Path(__file__).with_name("family_specs.py")
    module_spec = importlib.util.spec_from_file_location("family_specs", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


FAMILY_SPECS = _load_family_specs().FAMILY_SPECS
BATCH, FRAMES, SIDE, TEXT_LEN = 2, 3, 8, 6
MODULES = {"mmdit/hunyuan_video": "runtime.models.hunyuan_video", "mmdit/sd3": "runtime.models.sd3",
           "dit/adaln_expert": "runtime.models.cogvideox"}


def inputs(spec, generator):
    architecture = spec.architecture
    backbone = architecture.backbone
    video = spec.modality == "video"
    shape = (BATCH, architecture.space.channels, *((FRAMES,) if video else ()), SIDE, SIDE)
    kwargs = {"text": torch.randn(BATCH, TEXT_LEN, architecture.text_width(), generator=generator)}
    mask = torch.ones(BATCH, TEXT_LEN, dtype=torch.long)
    mask[1, -2:] = 0
    kwargs["text_mask"] = mask
    if architecture.pooled_width():
        kwargs["pooled"] = torch.randn(BATCH, architecture.pooled_width(), generator=generator)
    if getattr(backbone, "guidance_embed", False):
        kwargs["guidance"] = torch.full((BATCH,), 6.0)
    return torch.randn(shape, generator=generator), kwargs


@pytest.mark.parametrize("family", list(FAMILY_SPECS))
def test_the_smoke_spec_trains_steps(family):
    spec = scaled(FAMILY_SPECS[family], "smoke")
    torch.manual_seed(0)
    model = build_model(spec.architecture)
    assert type(model.model).__module__ == MODULES[family]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    clean, conditioning = inputs(spec, generator)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = []
    for _ in range(3):
        t = torch.rand(BATCH, generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        shape = (BATCH,) + (1,) * (clean.ndim - 1)
        noisy = (1 - t.view(shape)) * clean + t.view(shape) * noise
        prediction = model(noisy, t * model.time_scale, **conditioning)
        assert prediction.shape == clean.shape
        loss = (prediction - (noise - clean)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    # adaLN-Zero starts every gate at zero, so deep weights get nonzero gradients only after a few steps; every
    # parameter must be in the graph, and the output layers (nonzero gradients from the first step) must move.
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {"model.proj_out.weight", "model.norm_out.linear.weight"} <= changed


FAMILY_ATTRS = {"mmdit/hunyuan_video": "HUNYUAN_VIDEO", "mmdit/sd3": "SD3_MEDIUM", "dit/adaln_expert": "COGVIDEOX_5B"}
SPEC_FILE = Path(__file__).with_name("family_specs.py")


@pytest.mark.parametrize("family", list(FAMILY_ATTRS))
@pytest.mark.parametrize("cluster,scale", [("h100-64", "full"), ("local-cpu", "smoke")])
def test_the_family_specs_validate_and_compile(family, cluster, scale, tmp_path):
    from typer.testing import CliRunner

    from compiler.cli import app

    runner = CliRunner()
    target = f"{SPEC_FILE}:{FAMILY_ATTRS[family]}"
    validated = runner.invoke(app, ["validate", target])
    assert validated.exit_code == 0, validated.output
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["compile", target, "--cluster", cluster, "--scale", scale, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert list(out.glob("train/*/stage.yaml")), "no training stage written"


def test_sd3_joins_its_three_encoders_as_its_diffusers_pipeline_does():
    """At smoke scale: each CLIP gives its penultimate hidden state and its projected pooled vector (diffusers
    StableDiffusion3Pipeline._get_clip_prompt_embeds); encode_prompt joins them as written below."""
    from transformers import CLIPTextModelWithProjection

    from runtime.encoders import build_encoders
    from runtime.objectives.conditioning import join_text

    architecture = scaled(FAMILY_SPECS["mmdit/sd3"], "smoke").architecture
    encoders = build_encoders(architecture, "smoke", None)
    prompts = ["a cat", "a red bicycle on a hill"]
    joined = join_text(architecture, encoders.encode_text(prompts))

    def clip(name):
        encoder = encoders.text_encoders[name]
        assert isinstance(encoder.model, CLIPTextModelWithProjection)
        batch = encoder.tokenizer(prompts, padding="max_length", max_length=encoder.max_tokens, truncation=True,
                                  return_tensors="pt")
        with torch.no_grad():
            out = encoder.model(**batch, output_hidden_states=True)
        return out.hidden_states[-2] * batch["attention_mask"].unsqueeze(-1), out.text_embeds

    (l_tokens, l_pooled), (g_tokens, g_pooled) = clip("clip_l"), clip("clip_g")
    t5 = encoders.encode_text(prompts)["t5"].tokens
    clip_tokens = torch.cat([l_tokens, g_tokens], dim=-1)
    # diffusers pads the CLIPs' 2048 to T5's 4096, the wider; at smoke scale the CLIPs (32 + 32) are the wider.
    width = max(clip_tokens.shape[-1], t5.shape[-1])
    clip_tokens = torch.nn.functional.pad(clip_tokens, (0, width - clip_tokens.shape[-1]))
    t5 = torch.nn.functional.pad(t5, (0, width - t5.shape[-1]))
    torch.testing.assert_close(joined["text"], torch.cat([clip_tokens, t5], dim=-2), rtol=0, atol=0)
    torch.testing.assert_close(joined["pooled"], torch.cat([l_pooled, g_pooled], dim=-1), rtol=0, atol=0)
    assert joined["text"].shape == (2, 16 + 16, 64) and joined["pooled"].shape == (2, 64)


def test_sd3_trains_steps_on_batches_its_three_encoders_encode(tmp_path):
    """The trainer's batch builder encodes images and captions with the three encoders; CFG dropout nulls
    each encoder's own region; the SD3 network takes AdamW steps on the joined inputs."""
    import io

    from PIL import Image

    from runtime.encoders import build_encoders
    from runtime.objectives.cfg import ConditioningDropout
    from runtime.train.batch import BatchBuilder

    spec = scaled(FAMILY_SPECS["mmdit/sd3"], "smoke")
    architecture = spec.architecture
    builder = BatchBuilder(architecture, mask_from=None, encoders=lambda: build_encoders(architecture, "smoke", None))
    samples = []
    for index, prompt in enumerate(["a cat", "a red bicycle"]):
        png = io.BytesIO()
        Image.new("RGB", (64, 64), (40 * index, 90, 200)).save(png, format="PNG")
        samples.append({"__key__": f"s{index}".encode(), "png": png.getvalue(), "txt": prompt.encode()})
    batch = builder(samples, (64, 64))
    assert batch.cond.text.shape == (2, 32, 64) and batch.cond.pooled.shape == (2, 64)
    dropout = ConditioningDropout(spec.objective.cfg_dropout, architecture)
    torch.manual_seed(0)
    model = build_model(architecture)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(3):
        cond = dropout(batch.cond, generator)
        t = torch.rand(2, generator=generator)
        noise = torch.randn(batch.latents.shape, generator=generator)
        noisy = (1 - t.view(-1, 1, 1, 1)) * batch.latents + t.view(-1, 1, 1, 1) * noise
        loss = (model(noisy, t * model.time_scale, **cond.kwargs()) - (noise - batch.latents)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert torch.isfinite(torch.tensor(losses)).all() and losses[-1] != losses[0]


def test_the_planner_counts_sd3s_joint_text_sequence_and_both_roles():
    """77 CLIP positions then 256 T5 tokens (diffusers' max_sequence_length) = 333 text tokens per sample, and
    precompute_embeddings stores 333 x 4096 joined tokens plus the 768 + 1280 pooled vector, in bf16."""
    from compiler.plan.conditioning import stored_bytes_per_sample
    from compiler.plan.cost import workload

    spec = FAMILY_SPECS["mmdit/sd3"]
    assert workload(spec, spec.schedule.stages[0]).text_tokens == 77 + 256
    dataset = spec.schedule.stages[0].datasets[0].dataset
    latents = 16 * (256 // 8) ** 2  # the first reader's 256 px at 8x
    assert stored_bytes_per_sample(spec, dataset) == 2 * (latents + (77 + 256) * 4096 + 768 + 1280)
