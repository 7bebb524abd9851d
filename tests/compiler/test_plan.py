"""The planner: parameter counts, memory against DeepSpeed's own estimators, layouts that fit."""

import pytest

import specs
from compiler.plan import PlanError, plan
from compiler.scale import scaled
from compiler.plan.cost import workload
from compiler.plan.memory import ZeroChoice, model_state_bytes
from compiler.schema.cluster import PRESETS

PUBLIC_COUNTS = {  # architectures.md: computed from the released module structures
    "flux1-dev": 11.90e9, "qwen-image": 20.43e9, "wan2.1-t2v-14b": 14.29e9, "wan2.1-t2v-1.3b": 1.42e9,
}


@pytest.mark.parametrize("name,public", PUBLIC_COUNTS.items())
def test_parameters_from_dimensions_match_public_counts_within_3_percent(name, public):
    spec = specs.load(name)
    computed = workload(spec, spec.schedule.stages[0]).params.total
    assert computed == pytest.approx(public, rel=0.03)


@pytest.fixture(scope="module")
def diffusers_counts():
    torch = pytest.importorskip("torch")
    from diffusers import FluxTransformer2DModel, QwenImageTransformer2DModel, WanTransformer3DModel

    def meta(cls, **config):
        with torch.device("meta"):
            return sum(p.numel() for p in cls(**config).parameters())

    wan = dict(in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, qk_norm="rms_norm_across_heads",
               cross_attn_norm=True, attention_head_dim=128)
    return {
        "flux1-dev": meta(FluxTransformer2DModel, guidance_embeds=True),
        "qwen-image": meta(QwenImageTransformer2DModel),
        "wan2.1-t2v-14b": meta(WanTransformer3DModel, num_attention_heads=40, ffn_dim=13824, num_layers=40, **wan),
        "wan2.1-t2v-1.3b": meta(WanTransformer3DModel, num_attention_heads=12, ffn_dim=8960, num_layers=30, **wan),
    }


@pytest.mark.parametrize("name", PUBLIC_COUNTS)
def test_parameter_count_is_exactly_the_diffusers_modules(name, diffusers_counts):
    spec = specs.load(name)
    assert workload(spec, spec.schedule.stages[0]).params.total == diffusers_counts[name]


@pytest.mark.parametrize("gpus,nodes", [(8, 1), (8, 8), (8, 64)])
def test_model_states_agree_with_deepspeed_estimators(gpus, nodes):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    spec = specs.load("flux1-dev")
    params = workload(spec, spec.schedule.stages[0]).params
    ranks = gpus * nodes
    ours = lambda zero: model_state_bytes(params.total, params.largest_layer, ranks, zero)  # noqa: E731
    _, zero2 = estimate_zero2_model_states_mem_needs(params.total, gpus, nodes, cpu_offload=False)
    _, zero2_offload = estimate_zero2_model_states_mem_needs(params.total, gpus, nodes, cpu_offload=True)
    _, zero3, _ = estimate_zero3_model_states_mem_needs(params.total, params.largest_layer, gpus, nodes,
                                                        cpu_offload=False, cpu_offload_params=False)
    _, zero3_opt, _ = estimate_zero3_model_states_mem_needs(params.total, params.largest_layer, gpus, nodes,
                                                            cpu_offload=True, cpu_offload_params=False)
    _, zero3_all, _ = estimate_zero3_model_states_mem_needs(params.total, params.largest_layer, gpus, nodes,
                                                            cpu_offload=True, cpu_offload_params=True)
    assert ours(ZeroChoice(2)) == pytest.approx(zero2, rel=0.05)
    assert ours(ZeroChoice(2, "optimizer")) == pytest.approx(zero2_offload, rel=0.05)
    assert ours(ZeroChoice(3)) == pytest.approx(zero3, rel=0.05)
    assert ours(ZeroChoice(3, "optimizer")) == pytest.approx(zero3_opt, rel=0.05)
    assert ours(ZeroChoice(3, "optimizer_and_params")) == pytest.approx(zero3_all, rel=0.05)


def test_reference_example_flux_on_8_gpus():
    """deepspeed.md: 11.9B params on 8 GPUs: ZeRO-2 about 47 GiB per GPU, ZeRO-3 about 25 GiB."""
    gib = 1024**3
    assert model_state_bytes(11.9e9, 0, 8, ZeroChoice(2)) / gib == pytest.approx(47, abs=1.5)
    assert model_state_bytes(11.9e9, 1e8, 8, ZeroChoice(3)) / gib == pytest.approx(25, abs=1.5)


def test_mmdit_flops_are_not_six_n_per_token():
    """Modulation runs once per sample: forward FLOPs per token stay well under 2 x params."""
    spec = specs.load("flux1-dev")
    stage = spec.schedule.stages[-1]
    work = workload(spec, stage)
    tokens = work.image_tokens + work.text_tokens
    linear_only = work.forward_flops - 4 * work.attention_layers * tokens**2 * 3072
    assert linear_only / tokens < 2 * work.params.total * 0.8


@pytest.mark.parametrize("name", list(specs.SHIPPED))
def test_every_shipped_spec_plans_on_its_gpu_cluster_and_at_smoke_scale_locally(name):
    spec = specs.load(name)
    for stage in plan(spec, PRESETS[specs.NATURAL_CLUSTER[name]]).stages:
        assert stage.global_batch == stage.micro_batch * stage.grad_accumulation * stage.dp_size
        assert stage.memory_gib.total <= stage.memory_gib.capacity
    local = plan(scaled(spec, "smoke"), PRESETS["local-cpu"])
    assert all(s.dp_size == 1 and s.precision == "fp32" for s in local.stages)


def test_full_flux_does_not_fit_this_machine_and_says_what_would():
    with pytest.raises(PlanError) as error:
        plan(specs.load("flux1-dev"), PRESETS["local-cpu"])
    message = str(error.value)
    assert "GiB" in message and "local-cpu" in message and "--scale smoke" in message


def test_a_batch_that_does_not_split_is_refused_with_a_fix():
    from compiler.resolve import apply_overrides

    spec = specs.load("flux1-dev")
    stage = spec.schedule.stages[0].name
    odd = apply_overrides(spec, [f"schedule.stages[{stage}].batch_size=100"])
    with pytest.raises(PlanError, match="does not split over 64"):
        plan(odd, PRESETS["h100-64"])


def test_smoke_scale_records_every_shrink_as_an_assumption():
    from compiler.document import provenance_table

    small = scaled(specs.load("wan2.1-t2v-14b"), "smoke")
    table = provenance_table(small)
    assert table["architecture.backbone.hidden_size"].reason.startswith("smoke scale")
    assert small.architecture.backbone.hidden_size == 32
    assert all((s.frames - 1) % 4 == 0 for s in small.schedule.stages if s.frames)


def test_smoke_scale_drops_score_tiers_and_shrinks_resolution_tiers():
    full = specs.load("seedream-2.0")
    small = scaled(full, "smoke")
    tiers = {d.name: d.where for d in full.data.datasets if d.where is not None}
    assert tiers["seedream_sft"].min_score  # the full spec has a score tier...
    shrunk = {d.name: d.where for d in small.data.datasets if d.where is not None}
    assert shrunk["seedream_sft"].min_score == {}  # ...which smoke curation's stand-in scores cannot serve
    assert shrunk["seedream_highres"].min_short_side_px < tiers["seedream_highres"].min_short_side_px


def test_sequence_parallel_degree_is_legal_and_only_where_needed():
    """Ulysses degrees divide the devices, the heads and the image/video tokens; the planner takes sp > 1 only
    for stages whose sample would run past SAMPLE_SECONDS on one GPU (or not fit), and dp x sp = devices."""
    from compiler.plan.planner import SAMPLE_SECONDS, _sample_seconds, sequence_parallel_degrees

    spec, cluster = specs.load("wan2.1-t2v-14b"), PRESETS["h100-64"]
    heads = spec.architecture.backbone.num_heads
    planned = plan(spec, cluster).stages
    assert any(s.sp_size > 1 for s in planned) and any(s.sp_size == 1 for s in planned)
    for stage, planned_stage in zip(spec.schedule.stages, planned):
        work = workload(spec, stage)
        degrees = sequence_parallel_degrees(spec, work, cluster.world_size, stage.batch_size)
        assert degrees[0] == 1
        for sp in degrees:
            assert cluster.world_size % sp == 0 and heads % sp == 0 and work.image_tokens % sp == 0
        sp = planned_stage.sp_size
        assert sp in degrees
        assert planned_stage.dp_size * sp == cluster.world_size
        seconds = _sample_seconds(work, cluster)
        if sp == 1:
            assert seconds <= SAMPLE_SECONDS or degrees == [1]
        else:
            assert seconds > SAMPLE_SECONDS  # needed, and the smallest legal degree that meets the target
            assert seconds / sp <= SAMPLE_SECONDS or sp == degrees[-1]
            assert all(seconds / smaller > SAMPLE_SECONDS for smaller in degrees if smaller < sp)
    # 40 heads: 16 is no legal degree on 64 GPUs, 8 is.
    assert 16 not in sequence_parallel_degrees(spec, workload(spec, spec.schedule.stages[-1]), 64, 512)


def test_u_net_cascades_never_get_sequence_parallelism():
    spec = specs.load("imagen-1")
    for stage in plan(spec, PRESETS[specs.NATURAL_CLUSTER["imagen-1"]]).stages:
        assert stage.sp_size == 1
