"""Every check compile runs (semantic rules, stage-graph checks, runtime support): the tiny valid specs pass
all of them, and each broken variant trips exactly the rule meant to catch it, at the offending path, with
the offending value in the message. A problem two checks both saw would trip two rules: one rule per problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from compiler.document import REMOVE, Insert, derive, from_document, to_document
from compiler.schema.provenance import assumed
from compiler.schema import (
    AdversarialDistillation,
    CaptionPii,
    ConstantShift,
    Corruption,
    DatasetUse,
    DefectMask,
    DynamicThresholding,
    HumanReview,
    LatentSpace,
    LearnedPositions,
    MaskedLoss,
    Pipeline,
    PreferenceLoss,
    Probe,
    ReleasedWeights,
    SceneSplit,
    Scale,
    TaskShare,
    ScaledRope,
    ScoreConditioning,
    Size,
    Spec,
    Stage,
    Trim,
    Dataset,
    square,
)
from compiler.validate import RULES, check_rules, validate

Change = dict[str, Any] | Callable[[Spec], Spec]


@dataclass(frozen=True)
class Case:
    """A broken variant of a valid spec, and the one rule that must catch it."""

    rule: str
    base: str  # fixture name
    change: Change = field(repr=False)
    path: str
    shown: str  # a value the message must state
    label: str = ""
    also: frozenset[str] = frozenset()  # other problems the variant has on purpose (e.g. runtime support)


def edit_document(edit: Callable[[dict[str, Any]], None]) -> Callable[[Spec], Spec]:
    """A change made on the plain document, for edits `derive` refuses (duplicate names, loops)."""

    def apply(spec: Spec) -> Spec:
        data, _ = to_document(spec)
        edit(data)
        return from_document(data)

    return apply


def _append_copy(listing: str, index: int, **updates: Any) -> Callable[[Spec], Spec]:
    """Append a copy of item `index` of a list given as a dotted path of plain keys."""

    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for key in listing.split("."):
            node = node[int(key)] if key.isdigit() else node[key]
        node.append({**node[index], **updates})

    return edit_document(edit)


FLUX_OPS = "data.pipelines[main].ops"
WAN_VIDEO_OPS = "data.pipelines[video].ops"
STAGES = "schedule.stages"
CASCADE = "architecture.backbone.stages"
ROPE = "architecture.backbone.positions"

CASES = [
    # architecture -----------------------------------------------------------------------------------
    Case("architecture.heads-divide-hidden", "flux_spec", {"architecture.backbone.hidden_size": 300},
         "architecture.backbone.hidden_size", "300"),
    Case("architecture.rope-dims-sum-to-head-dim", "flux_spec", {f"{ROPE}.axes_dims": [8, 28, 30]},
         f"{ROPE}.axes_dims", "66"),
    Case("architecture.rope-axes-match-dims", "flux_spec", {f"{ROPE}.axes": ["h", "w"]},
         f"{ROPE}.axes_dims", "3 axes_dims"),
    Case("architecture.rope-axes-match-dims", "wan_spec",
         {f"{ROPE}": ScaledRope(axes=["t", "h", "w"], axes_dims=[24, 20, 20], reference_grid=[21, 30])},
         f"{ROPE}.reference_grid", "2 reference_grid", "reference-grid", frozenset({"runtime.supported"})),
    Case("architecture.rope-dims-even", "flux_spec", {f"{ROPE}.axes_dims": [9, 27, 28]},
         f"{ROPE}.axes_dims", "index: 9"),
    Case("architecture.rope-axes-cover-inputs", "flux_spec", {f"{ROPE}.axes": ["index", "h", "h"]},
         f"{ROPE}.axes", "no w axis"),
    Case("architecture.rope-axes-cover-inputs", "wan_spec", {f"{ROPE}.axes": ["h", "w", "w"]},
         f"{ROPE}.axes", "video", "video-without-time"),
    Case("architecture.rope-axes-cover-inputs", "flux_spec",
         {f"{ROPE}.axes": ["w", "h", "w"], "architecture.backbone.context_images": "sequence"},
         f"{ROPE}.axes", "context_images='sequence'", "kontext-without-index"),
    Case("architecture.channels-match-latent", "flux_spec", {"architecture.backbone.out_channels": 32},
         "architecture.backbone.out_channels", "out_channels 32"),
    Case("architecture.channels-match-latent", "flux_spec", {"architecture.backbone.in_channels": 48},
         "architecture.backbone.in_channels", "in_channels 48", "in-channels-warning"),
    Case("architecture.context-dim-matches-encoder", "flux_spec", {"architecture.backbone.context_dim": 128},
         "architecture.backbone.context_dim", "128"),
    Case("architecture.context-dim-matches-encoder", "wan_spec", {"architecture.backbone.text_dim": 32},
         "architecture.backbone.text_dim", "text_dim 32", "dit-text-dim"),
    Case("architecture.pooled-dim-matches-encoder", "flux_spec", {"architecture.backbone.pooled_dim": 48},
         "architecture.backbone.pooled_dim", "48"),
    Case("architecture.pooled-dim-matches-encoder", "flux_spec", {"architecture.backbone.pooled_dim": None},
         "architecture.backbone.pooled_dim", "['clip']", "pooled-encoder-unused"),
    Case("architecture.pooled-dim-matches-encoder", "flux_spec",
         {"architecture.text_encoders[clip]": REMOVE, f"{FLUX_OPS}[precompute_embeddings].text_encoders": ["t5"]},
         "architecture.backbone.pooled_dim", "pooled_dim 32", "no-pooled-encoder"),
    Case("architecture.joint-tokens-cover-encoders", "flux_spec", _append_copy("architecture.text_encoders", 1,
         name="t5b"), "architecture.joint_tokens", "['t5', 't5b']", "several-without-joint"),
    Case("architecture.joint-tokens-cover-encoders", "flux_spec", {"architecture.joint_tokens": [["t5", "clip"]]},
         "architecture.joint_tokens", "['clip']", "not-a-token-encoder"),
    Case("architecture.unique-names", "flux_spec", _append_copy("architecture.text_encoders", 1),
         "architecture.text_encoders", "'t5'"),
    Case("architecture.cascade-pixel-space", "cascade_spec",
         {"architecture.space": LatentSpace(vae="sd-vae", channels=4, spatial_compression=8),
          "inference.dynamic_thresholding": None},
         "architecture.space", "'sd-vae'"),
    Case("architecture.cascade-chain", "cascade_spec", {f"{CASCADE}[sr256].input_resolution": 128},
         f"{CASCADE}[sr256].input_resolution", "128"),
    Case("architecture.cascade-chain", "cascade_spec", {f"{CASCADE}[base].input_resolution": 32},
         f"{CASCADE}[base].input_resolution", "32", "base-with-input"),
    Case("architecture.cascade-chain", "cascade_spec",
         {f"{CASCADE}[sr1024].resolution": 256, f"{CASCADE}[sr1024].train_crop": None, "inference.upsample_factors": [],
          "inference.resolution": 256},
         f"{CASCADE}[sr1024].resolution", "outputs 256", "no-upsampling"),
    Case("architecture.unet-levels-match", "cascade_spec", {f"{CASCADE}[base].res_blocks": [1, 1, 1]},
         f"{CASCADE}[base].res_blocks", "[1, 1, 1]"),
    Case("architecture.unet-attention-resolutions", "cascade_spec",
         {f"{CASCADE}[base].attention_resolutions": [2, 4, 8]},
         f"{CASCADE}[base].attention_resolutions", "[2, 4]"),
    # data -------------------------------------------------------------------------------------------
    Case("data.unique-names", "flux_spec", _append_copy("data.pipelines.0.ops", 4), FLUX_OPS, "'aesthetic'"),
    Case("data.unique-names", "wan_spec", _append_copy("data.sources", 1), "data.sources", "'images'", "sources"),
    Case("data.pipeline-sources-known", "flux_spec", {"data.pipelines[main].sources": ["web", "laion"]},
         "data.pipelines[main].sources", "'laion'"),
    Case("data.pipeline-output-declared", "flux_spec",
         {"data.pipelines[side]": Insert(Pipeline(name="side", sources=["web"], ops=[Probe()], output="side"))},
         "data.pipelines[side].output", "'side'"),
    Case("data.dataset-produced", "flux_spec", {"data.datasets[hires].subset_of": None},
         "data.datasets[hires]", "'hires'"),
    Case("data.subset-parent-known", "flux_spec", {"data.datasets[hires].subset_of": "raw"},
         "data.datasets[hires].subset_of", "'raw'"),
    Case("graph.cycle", "flux_spec",
         edit_document(lambda data: data["data"]["datasets"].extend(
             [{"name": "a", "subset_of": "b"}, {"name": "b", "subset_of": "a"}])),
         "data.datasets[a].subset_of", "dataset:a -> dataset:b -> dataset:a", "subset-loop"),
    Case("data.dataset-unused", "flux_spec", {"data.datasets[spare]": Insert(Dataset(name="spare", subset_of="curated"))},
         "data.datasets[spare]", "'spare'"),
    Case("data.scorer-scale-known", "flux_spec", {f"{FLUX_OPS}[aesthetic].scorer": "siglip-aesthetic"},
         f"{FLUX_OPS}[aesthetic].scorer", "'siglip-aesthetic'"),
    Case("data.threshold-within-scale", "flux_spec", {f"{FLUX_OPS}[aesthetic].min_score": 65},
         f"{FLUX_OPS}[aesthetic].min_score", "65"),
    Case("data.threshold-within-scale", "wan_spec", {f"{WAN_VIDEO_OPS}[ocr_text_area].max_area_ratio": 20},
         f"{WAN_VIDEO_OPS}[ocr_text_area].max_area_ratio", "max_area_ratio 20", "percent-not-fraction"),
    Case("data.threshold-within-scale", "flux_spec", {"data.datasets[hires].where.min_score": {"aesthetic": 70}},
         "data.datasets[hires].where.min_score", "70", "subset"),
    Case("data.threshold-within-scale", "flux_spec",
         {f"{FLUX_OPS}[review]": Insert(HumanReview(name="review", score_of="aesthetic", band=(5, 12)))},
         f"{FLUX_OPS}[review].band", "[5.0, 12.0]", "review-band"),
    Case("data.range-ordered", "flux_spec", {f"{FLUX_OPS}[aspect_ratio].min_ratio": 3.5},
         f"{FLUX_OPS}[aspect_ratio].min_ratio", "min_ratio 3.5"),
    Case("data.range-ordered", "wan_spec", {f"{WAN_VIDEO_OPS}[duration].min_seconds": 20},
         f"{WAN_VIDEO_OPS}[duration].min_seconds", "min_seconds 20 > max_seconds 15", "duration"),
    Case("data.range-ordered", "wan_spec", {f"{WAN_VIDEO_OPS}[frame_consistency].min_score": 0.5},
         f"{WAN_VIDEO_OPS}[frame_consistency].min_score", "min_score 0.5 > max_score 0.3", "frame-consistency"),
    Case("data.range-ordered", "wan_spec", {f"{WAN_VIDEO_OPS}[motion_tiers].static_below": 5.0},
         f"{WAN_VIDEO_OPS}[motion_tiers].static_below", "static_below 5 > medium_below 4", "motion-tiers"),
    Case("data.range-ordered", "flux_spec",
         {"data.datasets[hires].where.min_seconds": 10, "data.datasets[hires].where.max_seconds": 5},
         "data.datasets[hires].where.min_seconds", "min_seconds 10 > max_seconds 5", "subset-seconds"),
    Case("data.range-ordered", "flux_spec",
         {f"{FLUX_OPS}[review]": Insert(HumanReview(name="review", score_of="aesthetic", band=(7, 5)))},
         f"{FLUX_OPS}[review].band", "band (7, 5) runs backwards", "review-band"),
    Case("data.safety-reduce-max", "wan_spec", {f"{WAN_VIDEO_OPS}[safety].reduce": "mean"},
         f"{WAN_VIDEO_OPS}[safety].reduce", "'mean'"),
    Case("data.video-op-on-images", "flux_spec", {f"{FLUX_OPS}[trim]": Insert(Trim(head=10, tail=10), after="probe")},
         f"{FLUX_OPS}[trim]", "trim"),
    Case("data.video-op-on-images", "wan_spec", {"data.pipelines[image].ops[scene_split]": Insert(SceneSplit())},
         "data.pipelines[image].ops[scene_split]", "scene_split", "scene-split"),
    Case("graph.barrier-placement", "flux_spec", {f"{FLUX_OPS}[corruption]": Insert(Corruption())},
         f"{FLUX_OPS}[perceptual_dedup]", "'corruption'"),
    Case("data.precompute-after-captions", "flux_spec", {f"{FLUX_OPS}[caption_pii]": Insert(CaptionPii())},
         f"{FLUX_OPS}[precompute_embeddings]", "'caption_pii'"),
    Case("graph.no-producer", "flux_spec",
         {f"{FLUX_OPS}[review]": Insert(HumanReview(name="review", score_of="watermark", band=(0.4, 0.6)))},
         f"{FLUX_OPS}[review].score_of", "'watermark'", "human-review"),
    Case("graph.no-producer", "flux_spec",
         {f"{FLUX_OPS}[review]": Insert(HumanReview(name="review", score_of="aesthetic", band=(5, 6)), after="probe")},
         f"{FLUX_OPS}[review].score_of", "'aesthetic'", "human-review-scored-later"),
    Case("graph.no-producer", "flux_spec",
         {f"{FLUX_OPS}[score_conditioning]": Insert(ScoreConditioning(scores=["aesthetic", "clip_score"]))},
         f"{FLUX_OPS}[score_conditioning].scores", "'clip_score'", "score-conditioning"),
    Case("data.conditioning-score-wired", "flux_spec", {f"{FLUX_OPS}[aesthetic].use": "filter_and_condition"},
         f"{FLUX_OPS}[aesthetic].use", "'filter_and_condition'"),
    Case("data.aesthetic-use-threshold", "flux_spec", {f"{FLUX_OPS}[aesthetic].min_score": None},
         f"{FLUX_OPS}[aesthetic].min_score", "min_score None"),
    Case("data.aesthetic-use-threshold", "wan_spec", {"data.pipelines[image].ops[aesthetic].use": "score_only"},
         "data.pipelines[image].ops[aesthetic].min_score", "min_score 4.5", "score-only-with-threshold"),
    Case("data.precompute-encoders-known", "flux_spec",
         {f"{FLUX_OPS}[precompute_embeddings].text_encoders": ["clip", "t5", "byt5"]},
         f"{FLUX_OPS}[precompute_embeddings].text_encoders", "'byt5'"),
    Case("data.subset-score-ops", "flux_spec", {"data.datasets[hires].where.min_score": {"clip_similarity": 0.3}},
         "data.datasets[hires].where.min_score", "'clip_similarity'"),
    Case("data.recaption-mix-sums-to-one", "flux_spec",
         {f"{FLUX_OPS}[recaption].mix": {"original": 0.5, "synthetic": 0.6}},
         f"{FLUX_OPS}[recaption].mix", "1.1"),
    Case("data.recaption-mix-original-kept", "flux_spec", {f"{FLUX_OPS}[recaption].keep_original": False},
         f"{FLUX_OPS}[recaption].keep_original", "0.5"),
    Case("data.dedup-hamming-within-bits", "flux_spec", {f"{FLUX_OPS}[perceptual_dedup].max_hamming": 32},
         f"{FLUX_OPS}[perceptual_dedup].max_hamming", "max_hamming 32 of 64"),
    Case("data.dedup-downweight-value", "flux_spec", {f"{FLUX_OPS}[perceptual_dedup].action": "downweight"},
         f"{FLUX_OPS}[perceptual_dedup].downweight", "downweight None"),
    Case("data.dedup-downweight-value", "flux_spec", {f"{FLUX_OPS}[perceptual_dedup].downweight": 0.5},
         f"{FLUX_OPS}[perceptual_dedup].downweight", "0.5", "ignored-weight"),
    Case("data.source-fractions-at-most-one", "flux_spec", {"data.sources[web].languages": {"en": 70, "zh": 30}},
         "data.sources[web].languages", "100"),
    # objective --------------------------------------------------------------------------------------
    Case("objective.shift-needs-continuous-time", "cascade_spec",
         {"objective.shift": ConstantShift(shift=3.0)},
         "objective.shift", "constant"),
    Case("objective.shift-token-range", "flux_spec", {"objective.shift.base_tokens": 4096},
         "objective.shift.base_tokens", "base_tokens 4096 >= max_tokens 4096"),
    Case("objective.loss-weighting-fits-objective", "flux_spec", {"objective.loss_weighting": "min_snr"},
         "objective.loss_weighting", "'min_snr'"),
    Case("objective.loss-weighting-fits-objective", "cascade_spec", {"objective.loss_weighting": "cosmap"},
         "objective.loss_weighting", "noise_prediction", "cosmap-on-ddpm"),
    Case("objective.cfg-dropout-encoders-known", "flux_spec",
         {"objective.cfg_dropout.per_encoder": {"clip": 0.3, "t5": 0.3, "clip_g": 0.5}},
         "objective.cfg_dropout.per_encoder", "'clip_g'"),
    Case("objective.cfg-dropout-joint-rate", "flux_spec", {"objective.cfg_dropout.per_encoder": {"clip": 0.1, "t5": 0.1}},
         "objective.cfg_dropout.joint_rate", "0.01"),
    Case("objective.masked-loss-source", "flux_spec", {"objective.masked_loss": MaskedLoss(mask_from="defects")},
         "objective.masked_loss.mask_from", "mask:defects"),
    Case("objective.masked-loss-source", "flux_spec",
         {f"{FLUX_OPS}[defect_mask]": Insert(DefectMask(emit_mask=False)),
          "objective.masked_loss": MaskedLoss(mask_from="defect_mask")},
         "objective.masked_loss.mask_from", "emit_mask=False", "mask-not-emitted"),
    # schedule ---------------------------------------------------------------------------------------
    Case("schedule.unique-names", "flux_spec",
         edit_document(lambda data: data["schedule"]["stages"][2].update(name="hires")), STAGES, "'hires'"),
    Case("schedule.unique-names", "wan_spec",
         {f"{STAGES}[joint].datasets": [DatasetUse(dataset="clips", weight=0.4), DatasetUse(dataset="stills", weight=0.3),
                                        DatasetUse(dataset="clips", weight=0.3)]},
         f"{STAGES}[joint].datasets", "'clips' 2 times", "dataset-listed-twice"),
    Case("schedule.dataset-declared", "flux_spec", {f"{STAGES}[pretrain].datasets[0].dataset": "laion"},
         f"{STAGES}[pretrain].datasets[0].dataset", "'laion'"),
    Case("schedule.references-earlier-stage", "flux_spec", {f"{STAGES}[hires].init_from": "guidance"},
         f"{STAGES}[hires].init_from", "'guidance'"),
    Case("schedule.references-earlier-stage", "flux_spec", {f"{STAGES}[guidance].teacher": "flux-pro"},
         f"{STAGES}[guidance].teacher", "'flux-pro'", "unknown-teacher"),
    Case("schedule.references-earlier-stage", "wan_spec", {f"{STAGES}[joint].init_from": "joint"},
         f"{STAGES}[joint].init_from", "'joint'", "itself"),
    Case("schedule.init-from-same-model", "cascade_spec", {f"{STAGES}[train_sr256].init_from": "train_base"},
         f"{STAGES}[train_sr256].init_from", "'base'"),
    Case("schedule.released-layout-fits", "wan_spec",
         {f"{STAGES}[joint].init_from": ReleasedWeights(released="black-forest-labs/FLUX.1-dev", layout="bfl")},
         f"{STAGES}[joint].init_from.layout", "layout 'bfl'"),
    Case("schedule.released-layout-fits", "cascade_spec",
         {f"{STAGES}[train_base].init_from": ReleasedWeights(released="lab/unet")},
         f"{STAGES}[train_base].init_from.layout", "backbone is cascade", "cascade"),
    Case("schedule.distillation-teacher", "flux_spec", {f"{STAGES}[guidance].teacher": None},
         f"{STAGES}[guidance].teacher", "'guidance'"),
    Case("schedule.distillation-loss", "flux_spec", {f"{STAGES}[guidance].loss": None},
         f"{STAGES}[guidance].loss", "guidance_distillation stage"),
    Case("schedule.stage-loss-fits-kind", "flux_spec",
         {f"{STAGES}[pretrain].loss": PreferenceLoss(reward_model="vlm-reward")},
         f"{STAGES}[pretrain].loss", "'diffusion_dpo'"),
    Case("schedule.stage-loss-fits-kind", "flux_spec", {f"{STAGES}[guidance].loss": AdversarialDistillation()},
         f"{STAGES}[guidance].loss", "'ladd'", "ladd-for-guidance"),
    Case("schedule.mixing-weights-sum-to-one", "wan_spec", {f"{STAGES}[joint].datasets[1].weight": 0.4},
         f"{STAGES}[joint].datasets", "1.1"),
    Case("schedule.task-mix", "flux_spec", {f"{STAGES}[pretrain].tasks": [TaskShare(task="generation", weight=0.6)]},
         f"{STAGES}[pretrain].tasks[0].weight", "weight 0.6", "weight-differs"),
    Case("schedule.task-mix", "flux_spec", {f"{STAGES}[pretrain].tasks": [
        TaskShare(task="generation", weight=1.0), TaskShare(task="edit", weight=0.5)]},
         f"{STAGES}[pretrain].tasks", "context_images is 'none'", "edit-without-references",
         also=frozenset()),
    Case("schedule.resolution-divisible", "flux_spec", {f"{STAGES}[pretrain].resolutions": [Size(height=256, width=250)]},
         f"{STAGES}[pretrain].resolutions[0]", "width 250"),
    Case("schedule.resolution-divisible", "flux_spec", {"inference.resolution": 1000},
         "inference.resolution", "1000", "inference"),
    Case("schedule.resolution-divisible", "flux_spec", {"inference.max_resolution": 1048},
         "inference.max_resolution", "1048", "inference-max"),
    Case("schedule.resolution-divisible", "cascade_spec", {"inference.resolution": 1000},
         "inference.resolution", "not divisible by 16", "cascade-inference"),
    Case("schedule.frames-fit-temporal-compression", "wan_spec", {f"{STAGES}[joint].frames": 16},
         f"{STAGES}[joint].frames", "16 frames"),
    Case("schedule.frames-fit-temporal-compression", "wan_spec", {"inference.frames": 80},
         "inference.frames", "80 frames", "inference"),
    Case("schedule.frames-fit-temporal-compression", "wan_spec", {"architecture.space.causal": False},
         f"{STAGES}[joint].frames", "17 frames are not a multiple", "non-causal"),
    Case("schedule.frames-fit-temporal-compression", "wan_spec", {"architecture.backbone.patch_size": [2, 2, 2]},
         f"{STAGES}[joint].frames", "5 latent frames", "temporal-patch"),
    Case("schedule.video-stage-frames", "wan_spec", {f"{STAGES}[joint].frames": None},
         f"{STAGES}[joint].frames", "'clips'"),
    Case("schedule.video-stage-frames", "wan_spec", {f"{STAGES}[joint].fps": None},
         f"{STAGES}[joint].fps", "fps is None", "fps"),
    Case("schedule.image-stage-frames", "wan_spec", {f"{STAGES}[images].frames": 17},
         f"{STAGES}[images].frames", "frames 17"),
    Case("schedule.stage-resolution-above-data", "flux_spec", {f"{STAGES}[pretrain].resolutions": [square(512)]},
         f"{STAGES}[pretrain].resolutions", "short side 512"),
    Case("schedule.stage-model-exists", "cascade_spec",
         {f"{STAGES}[extra]": Insert(Stage(name="extra", kind="sft", model="sr4096", datasets=[DatasetUse(dataset="pairs")],
                                           resolutions=[square(256)]))},
         f"{STAGES}[extra].model", "'sr4096'"),
    Case("schedule.cascade-stage-trained", "cascade_spec", {f"{STAGES}[train_sr1024]": REMOVE},
         f"{CASCADE}[sr1024]", "'sr1024'"),
    Case("schedule.cascade-stage-resolution", "cascade_spec", {f"{STAGES}[train_sr256].resolutions": [square(128)]},
         f"{STAGES}[train_sr256].resolutions[0]", "128x128"),
    Case("schedule.lr-warmup-within-steps", "flux_spec", {f"{STAGES}[pretrain].lr_schedule.warmup_steps": 2000},
         f"{STAGES}[pretrain].lr_schedule.warmup_steps", "warmup_steps 2000 > steps 1000"),
    Case("schedule.ema-horizon", "flux_spec", {f"{STAGES}[pretrain].ema_decay": 0.9999},
         f"{STAGES}[pretrain].ema_decay", "0.9999"),
    # inference --------------------------------------------------------------------------------------
    Case("inference.guidance-embedding", "flux_spec", {"inference.guidance_embedded": None},
         "inference.guidance_embedded", "guidance_embed True"),
    Case("inference.guidance-embedding", "wan_spec", {"inference.guidance_embedded": 3.5},
         "inference.guidance_embedded", "3.5", "no-embedding"),
    Case("runtime.supported", "flux_spec", {"inference.sampler": "ddim"},
         "inference.sampler", "'ddim'", "sampler"),
    # runtime support (compiler/schema/support.py): what the runtime cannot build or run -------------
    Case("runtime.supported", "wan_spec", {"architecture.backbone.modulation": "adaln_per_block"},
         "architecture.backbone.modulation", "'adaln_per_block'", "modulation"),
    Case("runtime.supported", "wan_spec", {"architecture.backbone.text_conditioning": "in_context"},
         "architecture.backbone.text_conditioning", "'in_context'", "text-conditioning"),
    Case("runtime.supported", "flux_spec", {"architecture.backbone.qk_norm": "layernorm_per_head"},
         "architecture.backbone.qk_norm", "'layernorm_per_head'", "qk-norm"),
    Case("runtime.supported", "wan_spec", {"architecture.backbone.positions": LearnedPositions()},
         "architecture.backbone.positions.kind", "'learned'", "positions"),
    Case("runtime.supported", "flux_spec", {"architecture.backbone.block_style": "qwen_image"},
         "architecture.backbone.single_blocks", "qwen_image", "family"),
    Case("runtime.supported", "wan_spec",
         {f"{WAN_VIDEO_OPS}[frame_consistency].scorer": "ssim",
          f"{WAN_VIDEO_OPS}[frame_consistency].scale": Scale(low=0, high=1, unit="SSIM distance")},
         f"{WAN_VIDEO_OPS}[frame_consistency].scorer", "'ssim'", "op-scorer"),
    Case("runtime.supported", "flux_spec", {"objective.adaptive": True},
         "objective.adaptive", "noise_aware_compute", "adaptive-flow"),
    # provenance -------------------------------------------------------------------------------------
    Case("provenance.recorded", "flux_spec",
         lambda spec: derive(spec, {"architecture.backbone.hidden_size": assumed(256, "as before"),
                                    "architecture.backbone.num_heads": 4}),
         "architecture.backbone.num_heads", "no provenance"),
    Case("inference.dynamic-thresholding-pixel-space", "flux_spec",
         {"inference.dynamic_thresholding": DynamicThresholding()},
         "inference.dynamic_thresholding", "'flux-vae'"),
    Case("inference.cfg-per-stage-known", "cascade_spec",
         {"inference.cfg_scale_per_stage": {"base": 1.35, "sr256": 8.0, "sr512": 8.0}},
         "inference.cfg_scale_per_stage", "'sr512'"),
    Case("inference.cfg-per-stage-known", "flux_spec", {"inference.cfg_scale_per_stage": {"main": 3.5}},
         "inference.cfg_scale_per_stage", "'main'", "not-a-cascade"),
    Case("inference.noise-augmentation", "cascade_spec", {"inference.noise_augmentation_level": None},
         "inference.noise_augmentation_level", "['sr256', 'sr1024']"),
    Case("inference.noise-augmentation", "cascade_spec",
         {f"{CASCADE}[sr256].noise_conditioning_augmentation": False,
          f"{CASCADE}[sr1024].noise_conditioning_augmentation": False},
         "inference.noise_augmentation_level", "0.1", "level-without-augmentation"),
    Case("inference.cascade-upsample-factors", "cascade_spec", {"inference.upsample_factors": [4, 2]},
         "inference.upsample_factors", "[4, 2]"),
]


def _break(case: Case, request: pytest.FixtureRequest) -> Spec:
    base = request.getfixturevalue(case.base)
    return derive(base, case.change) if isinstance(case.change, dict) else case.change(base)


@pytest.mark.parametrize("fixture", ["flux_spec", "wan_spec", "cascade_spec"])
def test_tiny_specs_pass_every_rule(fixture, request):
    assert [str(d) for d in validate(request.getfixturevalue(fixture))] == []


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}-{c.label}" if c.label else c.rule for c in CASES])
def test_broken_variant_trips_exactly_its_rule(case, request):
    found = validate(_break(case, request))
    assert not [d for d in found if d.message.startswith("rule crashed")], [str(d) for d in found]
    assert {d.rule for d in found} == {case.rule} | case.also, [str(d) for d in found]
    at_path = [d for d in found if d.path == case.path]
    assert at_path, f"no diagnostic at {case.path}: {[str(d) for d in found]}"
    assert any(case.shown in d.message for d in at_path), [d.message for d in at_path]
    assert all(d.fix for d in found)


def test_every_rule_has_a_firing_case():
    assert sorted(set(RULES) - {case.rule for case in CASES}) == []


def test_every_rule_has_a_summary():
    assert [name for name, registered in RULES.items() if not registered.summary] == []


ODD_SPECS = {
    "no-data": ("flux_spec", edit_document(lambda data: data["data"].update(sources=[], pipelines=[], datasets=[]))),
    "no-ops-no-encoders": ("flux_spec", {"data.pipelines[main].ops": [], "architecture.text_encoders": []}),
    "learned-positions": ("wan_spec", {"architecture.backbone.positions": LearnedPositions()}),
    "empty-unet": ("cascade_spec", {f"{CASCADE}[base].channel_mult": [], f"{CASCADE}[base].res_blocks": [],
                                    f"{CASCADE}[base].attention_resolutions": []}),
    "pixel-transformer": ("wan_spec", {"architecture.space": {"kind": "pixel", "channels": 3}}),
    "bare-inference": ("cascade_spec", {"inference.cfg_scale_per_stage": {}, "inference.upsample_factors": [],
                                        "inference.noise_augmentation_level": None, "inference.resolution": None}),
    "subset-of-itself": ("flux_spec", {"data.datasets[hires].subset_of": "hires"}),
}


@pytest.mark.parametrize("name", ODD_SPECS)
def test_odd_but_valid_specs_crash_no_rule(name, request):
    fixture, change = ODD_SPECS[name]
    base = request.getfixturevalue(fixture)
    spec = derive(base, change) if isinstance(change, dict) else change(base)
    crashed = [str(d) for d in check_rules(spec) if d.message.startswith("rule crashed")]
    assert crashed == []


# The five problems compiler/rules and compiler/graph both reported, each under its one remaining rule.
FORMER_DUPLICATES = {
    "dataset unused": ("data.dataset-unused", ""),
    "masked-loss source": ("objective.masked-loss-source", ""),
    "human-review score op": ("graph.no-producer", "human-review"),
    "barrier placement": ("graph.barrier-placement", ""),
    "subset cycle": ("graph.cycle", "subset-loop"),
    "stage cycle": ("schedule.references-earlier-stage", "itself"),
}


@pytest.mark.parametrize("problem", FORMER_DUPLICATES)
def test_a_former_duplicate_is_reported_once(problem, request):
    rule, label = FORMER_DUPLICATES[problem]
    case = next(c for c in CASES if c.rule == rule and c.label == label)
    found = validate(_break(case, request))
    assert [(d.rule, d.path) for d in found] == [(rule, case.path)], [str(d) for d in found]
