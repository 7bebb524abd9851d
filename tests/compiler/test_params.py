"""The planner honours every architecture field that changes parameters or FLOPs.

Where the runtime builds a variant, the planner's count equals the runtime network's, built on the meta
device; where it does not (a DiT's per-block adaLN and in-context text, bias-free QKV, LayerNorm QK norms,
learned positions), the change is checked term by term against the module structure the docstring names.
Fields that change neither (names, VAE scaling, RoPE theta and axis split, norm eps, skip scale, documented
counts) are listed in docs/reference.md as not affecting the plan.
"""

import pytest

import specs
from compiler.plan import PlanError, plan
from compiler.scale import scaled
from compiler.plan.cost import count_network, workload
from compiler.plan.params import linear
from compiler.resolve import apply_overrides
from compiler.schema.cluster import PRESETS

torch = pytest.importorskip("torch")


def smoke(name: str):
    return scaled(specs.load(name), "smoke")


def runtime_count(spec, model: str = "main") -> int:
    from runtime.models.factory import build_network

    with torch.device("meta"):
        return sum(p.numel() for p in build_network(spec.architecture, model).parameters())


B = "architecture.backbone"
# (base spec, model, overrides): each changes one field (or a field and what it must agree with).
RUNTIME_VARIANTS = {
    "mmdit.guidance_embed": ("flux1-dev", "main", [f"{B}.guidance_embed=false"]),
    "mmdit.pooled_dim": ("flux1-dev", "main", [f"{B}.pooled_dim=48"]),
    "mmdit.double_blocks": ("flux1-dev", "main", [f"{B}.double_blocks=3"]),
    "mmdit.single_blocks": ("flux1-dev", "main", [f"{B}.single_blocks=5"]),
    "mmdit.mlp_ratio": ("flux1-dev", "main", [f"{B}.mlp_ratio=2.0"]),
    "mmdit.context_dim": ("flux1-dev", "main", [f"{B}.context_dim=40"]),
    "mmdit.out_channels": ("flux1-dev", "main", [f"{B}.out_channels=32"]),
    "mmdit.patch_size+in_channels": ("flux1-dev", "main", [f"{B}.patch_size=[1, 1, 1]", f"{B}.in_channels=16",
                                                          "architecture.backbone.positions.axes_dims=[2, 6, 8]"]),
    "mmdit.hidden_size+heads": ("flux1-dev", "main", [f"{B}.hidden_size=48", f"{B}.num_heads=3"]),
    "mmdit.block_style+text_input_norm": ("qwen-image", "main", [f"{B}.double_blocks=3"]),
    "text_encoders.glyph.dim": ("seedream-2.0", "main", ["architecture.text_encoders[glyph_byt5].dim=24"]),
    "dit.depth": ("wan2.1-t2v-1.3b", "main", [f"{B}.depth=3"]),
    "dit.ffn_dim": ("wan2.1-t2v-1.3b", "main", [f"{B}.ffn_dim=80"]),
    "dit.text_dim": ("wan2.1-t2v-1.3b", "main", [f"{B}.text_dim=24"]),
    "dit.freq_dim": ("wan2.1-t2v-1.3b", "main", [f"{B}.freq_dim=64"]),
    "dit.cross_attn_norm": ("wan2.1-t2v-1.3b", "main", [f"{B}.cross_attn_norm=false"]),
    "dit.qk_norm per_head": ("wan2.1-t2v-1.3b", "main", [f"{B}.qk_norm=rmsnorm_per_head"]),
    "dit.qk_norm none": ("wan2.1-t2v-1.3b", "main", [f"{B}.qk_norm=none"]),
    "dit.patch_size": ("wan2.1-t2v-1.3b", "main", [f"{B}.patch_size=[1, 1, 1]"]),
    # 12 channels have no published per-channel statistics: the 16 of Wan's VAE go
    "dit.in_out_channels+space": ("wan2.1-t2v-1.3b", "main", [f"{B}.in_channels=12", f"{B}.out_channels=12",
                                                             "architecture.space.channels=12",
                                                             "architecture.space.latents_mean=null",
                                                             "architecture.space.latents_std=null"]),
    "spacetime_dit.depth": ("sora", "main", [f"{B}.depth=3"]),
    "unet.channels": ("imagen-1", "sr256", [f"{B}.stages[sr256].channels=24"]),
    "unet.channel_mult": ("imagen-1", "sr256", [f"{B}.stages[sr256].channel_mult=[1, 3]"]),
    "unet.res_blocks": ("imagen-1", "sr256", [f"{B}.stages[sr256].res_blocks=[2, 1]"]),
    "unet.attention_resolutions": ("imagen-1", "sr256", [f"{B}.stages[sr256].attention_resolutions=[]"]),
    "unet.cross_attention": ("imagen-1", "sr256", [f"{B}.stages[sr256].cross_attention=false"]),
    "unet.head_dim": ("imagen-1", "sr256", [f"{B}.stages[sr256].head_dim=12"]),  # one 12-wide head of 16
    "unet.num_heads": ("imagen-1", "base64", [f"{B}.stages[base64].num_heads=3", f"{B}.stages[base64].head_dim=null"]),
    "unet.efficient": ("imagen-1", "sr256", [f"{B}.stages[sr256].efficient=false"]),
    "unet.input_resolution": ("imagen-1", "sr256", [f"{B}.stages[sr256].input_resolution=null",
                                                    f"{B}.stages[sr256].noise_conditioning_augmentation=false"]),
    "unet.noise_conditioning_augmentation": (
        "imagen-1", "sr256", [f"{B}.stages[sr256].noise_conditioning_augmentation=false"]),
    "pixel_space.channels": ("imagen-1", "sr256", ["architecture.space.channels=4"]),
}


@pytest.mark.parametrize("field", list(RUNTIME_VARIANTS))
def test_the_planner_counts_what_the_runtime_builds(field):
    name, model, overrides = RUNTIME_VARIANTS[field]
    base = smoke(name)
    variant = apply_overrides(base, overrides)
    assert count_network(variant, model).total == runtime_count(variant, model)
    if overrides:
        assert count_network(variant, model).total != count_network(base, model).total, "the field changed nothing"


@pytest.mark.parametrize("name", list(specs.SHIPPED))
def test_every_shipped_full_size_network_is_counted_exactly(name):
    spec = specs.load(name)
    for model in dict.fromkeys(stage.model for stage in spec.schedule.stages):
        assert count_network(spec, model).total == runtime_count(spec, model), model


def test_flux_keeps_its_exact_count():
    assert count_network(specs.load("flux1-dev")).total == 11_901_408_320


# Variants the runtime does not build: the change, term by term.


def wan():
    return smoke("wan2.1-t2v-1.3b")


def test_per_block_adaln_is_a_modulation_linear_per_block():
    """DiT (Peebles & Xie 2023) models.py: adaLN_modulation Linear(d, 6d) per block, FinalLayer Linear(d, 2d);
    adaLN-single (Wan): one shared Linear(d, 6d), a (6, d) table per block and a (2, d) one at the end."""
    base = wan()
    d, depth = base.architecture.backbone.hidden_size, base.architecture.backbone.depth
    variant = apply_overrides(base, [f"{B}.modulation=adaln_per_block"])
    per_block = depth * linear(d, 6 * d) + linear(d, 2 * d)
    single = linear(d, 6 * d) + depth * 6 * d + 2 * d
    assert count_network(variant).total - count_network(base).total == per_block - single
    assert count_network(variant).sample - count_network(base).sample == per_block - linear(d, 6 * d)


def test_in_context_text_drops_cross_attention_and_runs_the_blocks_over_the_text():
    base = wan()
    arch = base.architecture.backbone
    d, depth = arch.hidden_size, arch.depth
    variant = apply_overrides(base, [f"{B}.text_conditioning=in_context"])
    cross = 4 * linear(d, d) + 2 * d + 2 * d  # q, k, v, out; the affine norm; q and k RMSNorm across heads
    assert count_network(base).total - count_network(variant).total == depth * cross
    stage = base.schedule.stages[0]
    cross_work, context_work = workload(base, stage), workload(variant, stage)
    block = 4 * linear(d, d) + linear(d, arch.ffn_dim) + linear(arch.ffn_dim, d)
    text, image = context_work.text_tokens, context_work.image_tokens
    assert count_network(variant).joint_token == depth * block
    attention = depth * 4 * (image + text) ** 2 * d
    linear_flops = 2 * (count_network(variant).image_token * image + count_network(variant).text_token * text
                        + depth * block * (image + text) + count_network(variant).sample)
    assert context_work.forward_flops == linear_flops + attention
    assert context_work.forward_flops != cross_work.forward_flops


def test_the_issue_example_a_per_block_adaln_in_context_dit_is_counted_as_built():
    """Issue 13: such a DiT planned as many parameters as the default cross-attention, adaLN-single one."""
    base = specs.load("wan2.1-t2v-1.3b")
    d, depth = base.architecture.backbone.hidden_size, base.architecture.backbone.depth
    variant = apply_overrides(base, [f"{B}.modulation=adaln_per_block", f"{B}.text_conditioning=in_context"])
    modulation = depth * linear(d, 6 * d) + linear(d, 2 * d) - (linear(d, 6 * d) + depth * 6 * d + 2 * d)
    cross_attention = depth * (4 * linear(d, d) + 2 * d + 2 * d)
    assert count_network(variant).total == count_network(base).total + modulation - cross_attention
    assert plan(variant, PRESETS["h100-64"]).stages[0].params == count_network(variant).total


@pytest.mark.parametrize("name,biases", [("wan2.1-t2v-1.3b", 6), ("flux1-dev", None)])
def test_qkv_without_bias_drops_the_bias_vectors(name, biases):
    base = smoke(name)
    arch = base.architecture.backbone
    inner = arch.num_heads * arch.head_dim
    variant = apply_overrides(base, [f"{B}.qkv_bias=false"])
    # DiT: q, k, v of self- and cross-attention per block; MMDiT: q, k, v of both streams per double block
    # and of each single block.
    per = biases * arch.depth if biases else 6 * arch.double_blocks + 3 * arch.single_blocks
    assert count_network(base).total - count_network(variant).total == per * inner


@pytest.mark.parametrize("qk_norm,per_attention", [
    ("rmsnorm_across_heads", lambda hd, inner: 2 * inner),
    ("layernorm_per_head", lambda hd, inner: 4 * hd),
    ("none", lambda hd, inner: 0),
])
def test_mmdit_qk_norms_count_their_weights(qk_norm, per_attention):
    base = smoke("flux1-dev")
    arch = base.architecture.backbone
    hd, inner = arch.head_dim, arch.num_heads * arch.head_dim
    attentions = 2 * arch.double_blocks + arch.single_blocks  # text and image q/k norms in double blocks
    variant = apply_overrides(base, [f"{B}.qk_norm={qk_norm}"])
    assert count_network(variant).total - count_network(base).total == attentions * (per_attention(hd, inner) - 2 * hd)


def test_learned_positions_are_a_table_over_the_largest_grid():
    base = wan()
    variant = apply_overrides(base, [f"{B}.positions={{kind: learned}}"])
    tokens = max(workload(base, stage).image_tokens for stage in base.schedule.stages)
    assert count_network(variant).total - count_network(base).total == tokens * base.architecture.backbone.hidden_size


def test_a_trained_text_encoder_is_trained_state_and_flops_not_frozen_memory():
    base = specs.load("wan2.1-t2v-1.3b")
    encoder = base.architecture.text_encoders[0]
    base = apply_overrides(base, [f"architecture.text_encoders[{encoder.name}].params=5.7e9"])
    encoder = base.architecture.text_encoders[0]
    variant = apply_overrides(base, [f"architecture.text_encoders[{encoder.name}].frozen=false"])
    stage = base.schedule.stages[0]
    assert count_network(variant).total - count_network(base).total == int(encoder.params)
    assert workload(base, stage).frozen_params - workload(variant, stage).frozen_params == encoder.params
    extra = workload(variant, stage).forward_flops - workload(base, stage).forward_flops
    assert extra == pytest.approx(2 * encoder.params * encoder.max_tokens)
    unsized = apply_overrides(variant, [f"architecture.text_encoders[{encoder.name}].params=null"])
    with pytest.raises(PlanError, match=rf"text_encoders\[0\] \({encoder.name}\) is trained.*set params"):
        count_network(unsized)


def test_glyph_tokens_follow_the_text_tokens():
    base = smoke("seedream-2.0")
    glyph = next(e for e in base.architecture.text_encoders if e.role == "glyph")
    more = apply_overrides(base, [f"architecture.text_encoders[{glyph.name}].max_tokens={2 * glyph.max_tokens}"])
    stage = base.schedule.stages[0]
    assert workload(more, stage).text_tokens - workload(base, stage).text_tokens == glyph.max_tokens
    assert workload(more, stage).forward_flops > workload(base, stage).forward_flops


def test_flux_single_blocks_run_over_the_text_tokens_too():
    spec = specs.load("flux1-dev")
    stage = spec.schedule.stages[0]
    work, count = workload(spec, stage), count_network(spec)
    more_text = apply_overrides(spec, ["architecture.text_encoders[t5_xxl].max_tokens=1024"])
    extra_tokens = workload(more_text, stage).text_tokens - work.text_tokens
    extra = workload(more_text, stage).forward_flops - work.forward_flops
    linear_part = 2 * (count.text_token + count.joint_token) * extra_tokens
    assert extra > linear_part  # plus attention over the longer joint sequence
    assert count.joint_token > 0


def test_context_images_double_the_image_tokens_of_edit_samples_only():
    base = smoke("flux1-dev")
    variant = apply_overrides(base, [f"{B}.context_images=sequence"])
    stage = base.schedule.stages[0]
    assert workload(variant, stage, edit=True).image_tokens == 2 * workload(base, stage).image_tokens
    # the stage reads no triplets: its samples are generation samples, without reference tokens
    assert workload(variant, stage).image_tokens == workload(base, stage).image_tokens


def test_a_joint_stage_costs_its_edit_share_of_reference_tokens():
    from compiler.plan.cost import mean_forward_flops
    from compiler.schema.schedule import edit_share

    spec = specs.load("seedream-4.0")
    stage = next(s for s in spec.schedule.stages if s.name == "sft")
    share = edit_share(stage, spec.data.datasets)
    assert share == pytest.approx(0.3)
    single = stage.model_copy(update={"resolutions": stage.resolutions[:1]})
    edit, generation = (workload(spec, single, edit=e).forward_flops for e in (True, False))
    assert edit > generation
    assert mean_forward_flops(spec, single) == pytest.approx(share * edit + (1 - share) * generation)
    assert workload(spec, single).image_tokens == workload(spec, single, edit=True).image_tokens  # memory: edits


def test_latent_compression_sets_the_tokens():
    base = specs.load("wan2.1-t2v-1.3b")
    stage = next(s for s in base.schedule.stages if s.frames)
    coarser = apply_overrides(base, ["architecture.space.spatial_compression=16"])
    assert workload(coarser, stage).image_tokens * 4 == workload(base, stage).image_tokens
    non_causal = apply_overrides(base, ["architecture.space.causal=false"])
    assert workload(non_causal, stage).latent_frames == -(-stage.frames // 4)
    assert workload(base, stage).latent_frames == 1 + (stage.frames - 1) // 4


def test_a_unet_trained_on_crops_costs_the_crop():
    spec = specs.load("imagen-1")
    stage = next(s for s in spec.schedule.stages if s.model == "sr1024")
    unet = next(u for u in spec.architecture.backbone.stages if u.name == "sr1024")
    assert unet.train_crop is not None
    full = apply_overrides(spec, [f"{B}.stages[sr1024].train_crop=null"])
    assert workload(full, stage).forward_flops > 4 * workload(spec, stage).forward_flops


# The families of issue 17 at their released configurations: the planner's count equals diffusers' class built
# on the meta device (and ours, runtime/models), and the number is pinned. Values from the public config.json
# files (transformer/config.json of each Hugging Face repository named), the same values diffusers' docs list.
HUNYUAN_VIDEO = dict(  # hunyuanvideo-community/HunyuanVideo transformer/config.json
    in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128, num_layers=20,
    num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1, qk_norm="rms_norm",
    guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0,
    rope_axes_dim=(16, 56, 56),
)
SD3_MEDIUM = dict(  # stabilityai/stable-diffusion-3-medium-diffusers transformer/config.json
    sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
    num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
    pos_embed_max_size=192,
)
SD35_LARGE = dict(  # stabilityai/stable-diffusion-3.5-large transformer/config.json
    SD3_MEDIUM, num_layers=38, num_attention_heads=38, caption_projection_dim=2432, qk_norm="rms_norm"
)
COGVIDEOX_5B = dict(  # THUDM/CogVideoX-5b transformer/config.json
    num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=512,
    text_embed_dim=4096, num_layers=42, patch_size=2, sample_height=60, sample_width=90, norm_eps=1e-5,
    use_rotary_positional_embeddings=True,
)


def hunyuan_backbone(c: dict):
    from compiler.schema.architecture import MMDiT, Rope

    d = c["num_attention_heads"] * c["attention_head_dim"]
    return MMDiT(
        block_style="hunyuan_video", hidden_size=d, num_heads=c["num_attention_heads"],
        head_dim=c["attention_head_dim"], patch_size=(c["patch_size_t"], c["patch_size"], c["patch_size"]),
        in_channels=c["in_channels"], out_channels=c["out_channels"], double_blocks=c["num_layers"],
        single_blocks=c["num_single_layers"], token_refiner_blocks=c["num_refiner_layers"],
        context_dim=c["text_embed_dim"], pooled_dim=c["pooled_projection_dim"], guidance_embed=c["guidance_embeds"],
        positions=Rope(axes=["t", "h", "w"], axes_dims=list(c["rope_axes_dim"]), theta=c["rope_theta"], text="none"),
    )


def sd3_backbone(c: dict):
    from compiler.schema.architecture import LearnedPositions, MMDiT

    return MMDiT(
        block_style="sd3", hidden_size=c["caption_projection_dim"], num_heads=c["num_attention_heads"],
        head_dim=c["attention_head_dim"], patch_size=(1, c["patch_size"], c["patch_size"]),
        in_channels=c["in_channels"], out_channels=c["out_channels"], double_blocks=c["num_layers"], single_blocks=0,
        context_dim=c["joint_attention_dim"], pooled_dim=c["pooled_projection_dim"],
        qk_norm="rmsnorm_per_head" if c.get("qk_norm") else "none",
        positions=LearnedPositions(max_size=c["pos_embed_max_size"], trained=False),
    )


def cogvideox_backbone(c: dict):
    from compiler.schema.architecture import DiT, Rope

    d = c["num_attention_heads"] * c["attention_head_dim"]
    return DiT(
        hidden_size=d, num_heads=c["num_attention_heads"], head_dim=c["attention_head_dim"],
        patch_size=(1, c["patch_size"], c["patch_size"]), in_channels=c["in_channels"],
        out_channels=c["out_channels"], depth=c["num_layers"], text_dim=c["text_embed_dim"], freq_dim=d,
        modulation="adaln_expert", cond_dim=c["time_embed_dim"], text_conditioning="in_context",
        qk_norm="layernorm_per_head", norm_eps=c["norm_eps"],
        positions=Rope(axes=["t", "h", "w"], axes_dims=[16, 24, 24], text="none"),
    )


def diffusers_count(cls_name: str, config: dict) -> int:
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        return sum(p.numel() for p in getattr(diffusers, cls_name)(**config).parameters())


def test_hunyuan_video_is_counted_exactly_at_its_released_configuration():
    from compiler.plan.params import count_video_mmdit

    count = count_video_mmdit(hunyuan_backbone(HUNYUAN_VIDEO), pooled=True).total
    assert count == 12_821_012_544
    assert count == diffusers_count("HunyuanVideoTransformer3DModel", HUNYUAN_VIDEO)


@pytest.mark.parametrize(
    "config, expected", [(SD3_MEDIUM, 2_028_328_000), (SD35_LARGE, 8_056_627_520)], ids=["sd3-medium", "sd3.5-large"]
)
def test_sd3_is_counted_exactly_at_its_released_configurations(config, expected):
    from compiler.plan.params import count_sd3

    count = count_sd3(sd3_backbone(config), pooled=True).total
    assert count == expected
    assert count == diffusers_count("SD3Transformer2DModel", config)


def test_cogvideox_5b_is_counted_exactly_at_its_released_configuration():
    from compiler.plan.params import count_expert_dit

    count = count_expert_dit(cogvideox_backbone(COGVIDEOX_5B)).total
    assert count == 5_570_283_072
    assert count == diffusers_count("CogVideoXTransformer3DModel", COGVIDEOX_5B)


def test_the_token_refiner_is_counted_block_by_block():
    from compiler.plan.params import count_video_mmdit

    backbone = hunyuan_backbone(HUNYUAN_VIDEO)
    d = backbone.hidden_size
    block = 4 * linear(d, d) + linear(d, 4 * d) + linear(4 * d, d) + linear(d, 2 * d) + 4 * d
    fewer = backbone.model_copy(update={"token_refiner_blocks": 1})
    assert count_video_mmdit(backbone, True).total - count_video_mmdit(fewer, True).total == block


def test_a_trained_cropped_table_is_max_size_squared_vectors():
    from compiler.plan.cost import position_table
    from compiler.schema.architecture import LearnedPositions

    backbone = sd3_backbone(SD3_MEDIUM)
    fixed = position_table(None, backbone)
    trained = backbone.model_copy(update={"positions": LearnedPositions(max_size=192)})
    assert fixed == 0
    assert position_table(None, trained) == 192 * 192 * 1536
