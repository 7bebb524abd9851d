"""FLUX.1 [dev], FLUX.1 [schnell] and FLUX.1 Kontext (Black Forest Labs): 12B rectified-flow MMDiTs.

FLUX.1 [dev] is the base: an MMDiT of 19 double-stream and 38 single-stream blocks over a 16-channel VAE,
conditioned on CLIP-L (pooled, into the modulation) and T5-XXL (tokens). It is pre-trained at 256x256,
fine-tuned at high resolution with QK-norm, trained further with resolution-dependent timestep shifting,
and guidance-distilled. [schnell] replaces guidance distillation with speed distillation. Kontext fine-tunes
the same base on (input, output, instruction) triplets, the context image appended after the target on
the sequence axis, then distils it with LADD.

Sources: the survey's §3 and its overview table (the model card: data pipeline and training recipe
flowcharts, key techniques, Kontext notes, variant table); black-forest-labs/flux (util.py configs,
sampling.py, cli.py, cli_kontext.py) and diffusers' FluxPipeline for dimensions and sampling defaults. BFL
has published neither its data scale nor anything of the schedule after pre-training: those values are
assumptions with reasons.
"""

from compiler.document import REMOVE, Insert, derive
from compiler.schema import (
    Aesthetic,
    AdamW,
    AdversarialDistillation,
    ArchitectureSpec,
    CfgDropout,
    DataSpec,
    Dataset,
    DatasetUse,
    FlowMatching,
    GuidanceDistillation,
    InferenceSpec,
    LatentSpace,
    LogitNormal,
    LrSchedule,
    MMDiT,
    MuLinearShift,
    NoShift,
    PerceptualDedup,
    Pipeline,
    PrecomputeEmbeddings,
    Recaption,
    ReleasedWeights,
    ResolutionShift,
    Rope,
    Safety,
    ScheduleSpec,
    Source,
    Spec,
    Stage,
    Subset,
    TextEncoder,
    TimestepDistillation,
    assumed,
    documented,
    undisclosed,
)
from compiler.schema.common import square
from specs.sources import DIFFUSERS_FLUX_PIPELINE, FLUX_SAMPLING, FLUX_UTIL, survey

OVERVIEW = survey("Overview Comparison, FLUX.1 row")
KONTEXT_OVERVIEW = survey("Overview Comparison, Flux Kontext row")
ARCHITECTURE = survey("§3 FLUX.1 & Flux Kontext, Architecture")
PIPELINE = survey("§3 FLUX.1 & Flux Kontext, Data Pipeline")
RECIPE = survey("§3 FLUX.1 & Flux Kontext, Training Recipe")
TECHNIQUES = survey("§3 FLUX.1 & Flux Kontext, Key Techniques")
KONTEXT = survey("§3 FLUX.1 & Flux Kontext, Flux Kontext (Image Editing)")
VARIANTS = survey("§3 FLUX.1 & Flux Kontext, variant and license table")
FLUX_CLI = "black-forest-labs/flux src/flux/cli.py"
FLUX_CLI_KONTEXT = "black-forest-labs/flux src/flux/cli_kontext.py"
# BFL's samplers shift with their own rule, not the survey's: a = e^mu, mu linear in image tokens from 0.5 at
# 256 to 1.15 at 4096 (3.16 at 1024^2). cli.py and cli_kontext.py call get_schedule with
# shift=(name != "flux-schnell").
BFL_SCHEDULE = f"{FLUX_SAMPLING} get_schedule / get_lin_function"


def bfl_sampling_shift(caller: str):
    """BFL's mu-linear sampling shift, documented by sampling.py and the CLI that applies it."""
    return documented(
        MuLinearShift(base_tokens=256, max_tokens=4096, base_shift=0.5, max_shift=1.15, applies="sampling"),
        f"{BFL_SCHEDULE}; {caller} shifts every model but flux-schnell",
    )


BF16 = documented("bf16", TECHNIQUES)  # QK-norm is what makes bf16 training stable at high resolution
ADAMW = (
    "BFL has not published its optimizer; AdamW with 1000 warm-up steps is the SD3 paper's rectified-flow "
    "recipe, the closest published one"
)
SCHEDULE_UNPUBLISHED = "BFL publishes nothing of the schedule after pre-training; sized as a fine-tune"
STUDENT_ADAMW = assumed(AdamW(lr=1e-5, weight_decay=0.0), "a student initialised from its teacher moves slowly")
FINETUNE_WARMUP = assumed(LrSchedule(kind="constant", warmup_steps=500), "short warm-up for a fine-tune")

DATA = DataSpec(
    sources=[
        Source(
            name="image_text",
            modality=documented("image_text", PIPELINE),
            count=undisclosed("survey overview: FLUX.1 data scale 'Undisclosed' ('large-scale image-text data')"),
            unit=documented("pairs", PIPELINE),
        )
    ],
    pipelines=[
        Pipeline(
            name="flux",
            sources=documented(["image_text"], PIPELINE),
            ops=[
                documented(
                    Safety(
                        categories=["nsfw"],
                        scorer=assumed("nsfw-classifier", "BFL does not name its NSFW classifier"),
                        max_score=assumed(0.5, "curation-tool default; BFL's threshold is undisclosed"),
                    ),
                    PIPELINE,
                ),
                documented(
                    Aesthetic(
                        # The survey gives the threshold, not the scorer; 6.5 is the LAION-Aesthetics cut on 0-10.
                        scorer=assumed("laion-aesthetic-v2", "6.5 is read on the LAION predictor's 0-10 scale"),
                        min_score=6.5,
                        use="filter",
                    ),
                    PIPELINE,
                ),
                documented(
                    PerceptualDedup(
                        hash=assumed("phash", "the survey says 'perceptual'; pHash is the common perceptual hash"),
                        max_hamming=assumed(4, "near-duplicate cut-off of open curation tools (4 of 64 bits)"),
                        action="drop",
                        note="cluster-based (survey); how BFL clusters is undisclosed",
                    ),
                    PIPELINE,
                ),
                documented(
                    Recaption(
                        model=assumed("THUDM/cogvlm-chat-hf", "the survey names CogVLM; its public chat checkpoint"),
                        styles=assumed(["long"], "descriptive DALL-E 3-style recaptions; BFL's prompt is undisclosed"),
                        languages=assumed(["en"], "CLIP-L and T5-XXL are English encoders"),
                        captions_per_sample=assumed(1, "one synthetic caption beside the original"),
                        keep_original=True,
                        mix={"original": 0.5, "synthetic": 0.5},
                        note="synthetic recaptioning with CogVLM, 50/50 original:synthetic",
                    ),
                    PIPELINE,
                ),
                documented(
                    PrecomputeEmbeddings(
                        text_encoders=["clip_l", "t5_xxl"],
                        vae_latents=assumed(True, "the survey says 'frozen encoders'; the VAE encoder is frozen too"),
                    ),
                    PIPELINE,
                ),
            ],
            output=documented("flux_training_set", PIPELINE),
        )
    ],
    datasets=[
        Dataset(
            name="flux_training_set",
            count=undisclosed("survey overview: FLUX.1 data scale 'Undisclosed'"),
            unit=documented("pairs", PIPELINE),
        ),
        Dataset(
            name="flux_highres",
            subset_of=documented("flux_training_set", RECIPE),
            where=assumed(Subset(min_short_side_px=1024), "high-res fine-tuning needs images of 1024^2 or more"),
            unit=documented("pairs", PIPELINE),
        ),
    ],
)

ARCH = ArchitectureSpec(
    backbone=documented(
        MMDiT(
            hidden_size=3072,
            num_heads=24,
            head_dim=128,
            patch_size=(1, 2, 2),  # latents packed 2x2 (sampling.py), so 16 channels enter as 64
            in_channels=64,
            out_channels=64,
            mlp_ratio=4.0,
            qkv_bias=True,
            qk_norm=documented("rmsnorm_per_head", TECHNIQUES),
            norm_eps=1e-6,
            positions=Rope(axes=["index", "h", "w"], axes_dims=[16, 56, 56], theta=10_000.0, text="zeros"),
            double_blocks=documented(19, ARCHITECTURE),
            single_blocks=documented(38, ARCHITECTURE),
            context_dim=4096,
            pooled_dim=768,
            guidance_embed=True,
            context_images="none",
            text_input_norm=False,
            block_style="flux",
        ),
        FLUX_UTIL,
    ),
    text_encoders=[
        documented(
            TextEncoder(
                name="clip_l",
                model="openai/clip-vit-large-patch14",
                role=documented("pooled", ARCHITECTURE),
                dim=768,
                max_tokens=77,
                frozen=documented(True, PIPELINE),
            ),
            FLUX_UTIL,
        ),
        documented(
            TextEncoder(
                name="t5_xxl",
                model="google/t5-v1_1-xxl",
                role=documented("tokens", ARCHITECTURE),
                dim=4096,
                max_tokens=512,
                frozen=documented(True, PIPELINE),
            ),
            FLUX_UTIL,
        ),
    ],
    space=documented(
        LatentSpace(
            vae="black-forest-labs/FLUX.1-dev ae.safetensors",
            channels=documented(16, ARCHITECTURE),
            spatial_compression=8,
            temporal_compression=1,
            causal=False,
            scaling_factor=0.3611,
            shift_factor=0.1159,
        ),
        FLUX_UTIL,
    ),
    params_documented=documented(12e9, OVERVIEW),
    extras=documented(["16-channel VAE, custom, trained adversarially"], ARCHITECTURE),
)

OBJECTIVE = FlowMatching(
    kind=documented("flow_matching", TECHNIQUES),
    prediction=documented("velocity", TECHNIQUES),
    timesteps=documented(LogitNormal(mean=0.0, std=1.0), TECHNIQUES),
    # The survey's rule a = sqrt(m / n), n = the 256^2 pre-training size: a = 1 in stage 1, so the
    # shift only acts once the resolution grows, as the recipe's shifting stage says. It is a training rule:
    # BFL's sampler shifts with its own mu-linear schedule, stated as inference.shift.
    shift=ResolutionShift(
        kind=documented("resolution", TECHNIQUES),
        base_pixels=documented(256 * 256, RECIPE),
        applies=documented("training", f"{RECIPE}, stage 'Resolution-dependent timestep shifting'"),
    ),
    loss_weighting=assumed("none", "SD3's best rectified-flow variant weights only through logit-normal sampling"),
    cfg_dropout=assumed(
        CfgDropout(joint_rate=0.1),
        "undisclosed; Imagen's 10%. The guidance-distillation teacher needs an unconditional branch",
    ),
)

STAGES = [
    Stage(
        name="pretrain",
        kind=documented("pretrain", RECIPE),
        datasets=documented([DatasetUse(dataset="flux_training_set")], RECIPE),
        resolutions=documented([square(256)], RECIPE),
        batch_size=documented(4096, RECIPE),
        steps=documented(500_000, RECIPE),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        precision=BF16,
        goal=documented("Pre-train at 256x256, batch 4096, 500k steps", RECIPE),
    ),
    Stage(
        name="highres_finetune",
        kind=documented("progressive_resolution", RECIPE),
        datasets=documented([DatasetUse(dataset="flux_highres")], RECIPE),
        resolutions=assumed([square(512), square(1024)], "the survey gives no sizes; 1024^2 is FLUX's native scale"),
        batch_size=assumed(1024, SCHEDULE_UNPUBLISHED),
        steps=assumed(50_000, SCHEDULE_UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        precision=BF16,
        init_from=documented("pretrain", RECIPE),
        goal=documented("High-res fine-tune (QK-Norm for stability)", RECIPE),
    ),
    Stage(
        name="timestep_shifting",
        kind=documented("progressive_resolution", RECIPE),
        datasets=documented([DatasetUse(dataset="flux_highres")], RECIPE),
        resolutions=assumed([square(1024)], "1024^2-area buckets: FLUX samples many aspect ratios at about 1 MP"),
        aspect_ratio_buckets=assumed(True, "the public sampler accepts any 16-divisible size"),
        batch_size=assumed(1024, SCHEDULE_UNPUBLISHED),
        steps=assumed(50_000, SCHEDULE_UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        precision=BF16,
        init_from=documented("highres_finetune", RECIPE),
        goal=documented("Resolution-dependent timestep shifting", RECIPE),
    ),
    Stage(
        name="guidance_distillation",
        kind=documented("guidance_distillation", RECIPE),
        datasets=documented([DatasetUse(dataset="flux_highres")], RECIPE),
        resolutions=assumed([square(1024)], "distilled at the resolution of the teacher's last stage"),
        aspect_ratio_buckets=assumed(True, "as the teacher's last stage"),
        batch_size=assumed(512, SCHEDULE_UNPUBLISHED),
        steps=assumed(20_000, SCHEDULE_UNPUBLISHED),
        optimizer=STUDENT_ADAMW,
        lr_schedule=FINETUNE_WARMUP,
        precision=BF16,
        init_from=documented("timestep_shifting", RECIPE),
        teacher=documented("timestep_shifting", RECIPE),
        loss=GuidanceDistillation(
            kind=documented("guidance_distillation", RECIPE),
            guidance_range=assumed((1.0, 5.0), "brackets the public samplers' defaults (diffusers 3.5, Kontext 2.5)"),
        ),
        goal=documented("Guidance distillation (teacher -> student) -> FLUX.1 dev", RECIPE),
    ),
]

FLUX1_DEV = Spec(
    name="flux1-dev",
    family=documented("flux", VARIANTS),
    modality=documented("image", OVERVIEW),
    organisation=documented("Black Forest Labs", survey("§3 FLUX.1 & Flux Kontext (Black Forest Labs)")),
    license=documented("Non-commercial", VARIANTS),
    open_weights=documented("partial", OVERVIEW),
    data=DATA,
    architecture=ARCH,
    objective=OBJECTIVE,
    schedule=ScheduleSpec(stages=STAGES),
    inference=InferenceSpec(
        sampler=documented("euler", FLUX_SAMPLING),
        steps=documented(50, FLUX_CLI),
        # Guidance-distilled: one forward pass, no CFG. diffusers' FluxPipeline defaults to 3.5; BFL's cli.py
        # default is not cited, as it changed across releases.
        guidance_embedded=documented(3.5, f"{DIFFUSERS_FLUX_PIPELINE} (FluxPipeline.__call__ guidance_scale)"),
        shift=bfl_sampling_shift(FLUX_CLI),
    ),
    notes=documented(
        [
            "Variants: FLUX.1 [pro] proprietary (API), the full model, best quality; [dev] non-commercial, "
            "guidance-distilled, 12B; [schnell] Apache 2.0, speed-optimized, <2s generation; Kontext [pro/dev/max] "
            "mixed licenses, image editing. [pro] has no public weights or config and is not shipped as a spec.",
            "Rectified flow: velocity prediction, not noise prediction; logit-normal timestep sampling (m=0, s=1) "
            "outperforms uniform.",
            "QK-Normalization: RMSNorm on Q/K prevents attention-logit explosion at high resolutions, enabling "
            "bf16 training.",
            "Timestep shifting: t_m = (sqrt(m/n) t_n) / (1 + (sqrt(m/n) - 1) t_n): more pixels need "
            "proportionally more noise. The recipe names it as a stage; the schema keeps one shift per objective "
            "(schema gap: no per-stage shift), so it is stated once, as a training rule, and is the identity at "
            "the 256^2 stage.",
            "Sampling uses BFL's own schedule (black-forest-labs/flux sampling.py get_schedule): a = exp(mu), mu "
            "linear in image tokens from (256, 0.5) to (4096, 1.15), a = 3.16 at 1024^2; it is the spec's "
            "inference.shift.",
            "RoPE generalises to unseen sequence lengths, unlike learned absolute encodings; ids are (index, row, "
            "col), the index axis 0 for the target image.",
            "Perceptual deduplication is cluster-based; the schema's perceptual_dedup has no clustering field "
            "(schema gap), so it is stated in the op's note.",
            "Counted from the public config (black-forest-labs/flux util.py): 11.90B parameters, 3.25B of them "
            "per-sample modulation.",
        ],
        survey("§3 FLUX.1 & Flux Kontext, and the sources named in each note"),
    ),
)

# [schnell]: the same base, speed-distilled instead of guidance-distilled (recipe: S3 -> S5).
FLUX1_SCHNELL = derive(
    FLUX1_DEV,
    {
        "license": documented("Apache 2.0", VARIANTS),
        "open_weights": documented("yes", VARIANTS),
        "architecture.backbone.guidance_embed": documented(False, FLUX_UTIL),
        "architecture.text_encoders[t5_xxl].max_tokens": documented(256, FLUX_CLI),
        "schedule.stages[guidance_distillation]": REMOVE,
        "schedule.stages[speed_distillation]": Insert(
            Stage(
                name="speed_distillation",
                kind=documented("speed_distillation", RECIPE),
                datasets=documented([DatasetUse(dataset="flux_highres")], RECIPE),
                resolutions=assumed([square(1024)], "distilled at the resolution of the teacher's last stage"),
                aspect_ratio_buckets=assumed(True, "as the teacher's last stage"),
                batch_size=assumed(512, SCHEDULE_UNPUBLISHED),
                steps=assumed(20_000, SCHEDULE_UNPUBLISHED),
                optimizer=STUDENT_ADAMW,
                lr_schedule=FINETUNE_WARMUP,
                precision=BF16,
                init_from=documented("timestep_shifting", RECIPE),
                teacher=documented("timestep_shifting", RECIPE),
                loss=TimestepDistillation(
                    kind=assumed("timestep_distillation", "BFL does not say how schnell was distilled"),
                    student_steps=documented(4, FLUX_CLI),
                ),
                goal=documented("Speed Distillation -> FLUX.1 schnell", RECIPE),
            ),
            after="timestep_shifting",
        ),
        "inference": InferenceSpec(
            sampler=documented("euler", FLUX_SAMPLING),
            steps=documented(4, FLUX_CLI),
            cfg_scale=assumed(1.0, "schnell is sampled without guidance: w = 1 is the conditional prediction alone"),
            latency_seconds=documented(2.0, VARIANTS),  # "<2s generation": an upper bound
            # cli.py samples schnell unshifted: get_schedule(..., shift=(name != "flux-schnell")).
            shift=documented(NoShift(), f"{FLUX_CLI} get_schedule(..., shift=(name != 'flux-schnell'))"),
        ),
        "notes": documented(
            [
                *FLUX1_DEV.notes,
                "[schnell] is timestep-distilled to 1-4 steps; the public CLI samples 4 steps with T5 truncated "
                "to 256 tokens and no timestep shift (black-forest-labs/flux cli.py). The distillation method is "
                "undisclosed.",
            ],
            survey("§3 FLUX.1 & Flux Kontext, and the sources named in each note"),
        ),
    },
    name="flux1-schnell",
)

# Kontext: the FLUX.1 base fine-tuned for editing, then LADD; its own triplets join the data.
MILLIONS = "the survey says 'millions of pairs' (overview, Flux Kontext row), no number: 1e6 is its lower bound"
KONTEXT_EDITING = {
    "modality": documented("image_edit", KONTEXT_OVERVIEW),
    "license": documented("Mixed", VARIANTS),
    "data.sources[edit_triplets]": Insert(
        Source(
            name="edit_triplets",
            modality=documented("image_edit_triplet", KONTEXT),
            count=assumed(1e6, MILLIONS),
            unit=documented("triplets", KONTEXT),
        )
    ),
    "data.pipelines[kontext]": Insert(
        Pipeline(
            name="kontext",
            sources=documented(["edit_triplets"], KONTEXT),
            ops=[
                assumed(
                    PrecomputeEmbeddings(text_encoders=["clip_l", "t5_xxl"], vae_latents=True),
                    "Kontext's curation is undisclosed; the frozen encoders are precomputed as for FLUX.1",
                )
            ],
            output=documented("kontext_triplets", KONTEXT),
        )
    ),
    "data.datasets[kontext_triplets]": Insert(
        Dataset(name="kontext_triplets", count=assumed(1e6, MILLIONS), unit=documented("triplets", KONTEXT))
    ),
    # Context latents go after the target on the sequence axis with RoPE index 1 (sampling.py
    # prepare_kontext); channel-wise concatenation performed worse.
    "architecture.backbone.context_images": documented("sequence", KONTEXT),
    "schedule.stages[guidance_distillation]": REMOVE,
    "inference": InferenceSpec(
        sampler=documented("euler", FLUX_SAMPLING),
        steps=documented(30, FLUX_CLI_KONTEXT),
        guidance_embedded=documented(2.5, FLUX_CLI_KONTEXT),
        shift=bfl_sampling_shift(FLUX_CLI_KONTEXT),
    ),
}
KONTEXT_NOTES = [
    *FLUX1_DEV.notes,
    "Kontext: context and target tokens are concatenated on the sequence axis, not channel-wise "
    "(channel-wise performed worse). 3D RoPE over factorised (t, h, w): the first axis is the image "
    "index i, 0 for the target and 1.. for context images, which supports several references. The "
    "schema has no field for the context index offset (schema gap).",
    "Kontext [dev] embeds guidance like [dev] (black-forest-labs/flux util.py 'flux-dev-kontext' config) "
    "and its CLI samples 30 steps at guidance 2.5; the survey's recipe names only flow matching then "
    "LADD, so where the guidance embedding is trained is not stated.",
    "Kontext training data: 'millions' of relational (input, output, instruction) pairs; the count of "
    "1e6 is a lower bound. Its curation is undisclosed.",
]


def kontext_stages(init_from, after: str | None) -> dict:
    """Kontext's two stages: the editing fine-tune starting from `init_from`, then LADD from it."""
    return {
        "schedule.stages[kontext_flow_matching]": Insert(
            Stage(
                name="kontext_flow_matching",
                kind=documented("sft", KONTEXT),
                datasets=documented([DatasetUse(dataset="kontext_triplets")], KONTEXT),
                resolutions=assumed([square(1024)], "FLUX's native scale; Kontext's training sizes are undisclosed"),
                aspect_ratio_buckets=assumed(True, "edits keep the input's aspect ratio"),
                batch_size=assumed(512, "undisclosed; a fine-tune on millions of triplets"),
                steps=assumed(30_000, "undisclosed; a few epochs of a few million triplets at batch 512"),
                optimizer=assumed(AdamW(lr=1e-5, weight_decay=0.0), "fine-tuning a converged 12B base"),
                lr_schedule=FINETUNE_WARMUP,
                precision=BF16,
                init_from=init_from,
                goal=documented("Fine-tuned from FLUX.1 on (input, output, instruction) pairs, flow matching", KONTEXT),
            ),
            after=after,
        ),
        "schedule.stages[kontext_ladd]": Insert(
            Stage(
                name="kontext_ladd",
                kind=documented("adversarial_distillation", KONTEXT),
                datasets=documented([DatasetUse(dataset="kontext_triplets")], KONTEXT),
                resolutions=assumed([square(1024)], "as the teacher"),
                aspect_ratio_buckets=assumed(True, "as the teacher"),
                batch_size=assumed(512, "undisclosed; as the teacher"),
                steps=assumed(10_000, "undisclosed; distillation is shorter than the fine-tune"),
                optimizer=STUDENT_ADAMW,
                lr_schedule=FINETUNE_WARMUP,
                precision=BF16,
                init_from=documented("kontext_flow_matching", KONTEXT),
                teacher=documented("kontext_flow_matching", KONTEXT),
                loss=AdversarialDistillation(
                    kind=documented("ladd", KONTEXT),
                    student_steps=assumed(4, "LADD's few-step regime; Kontext's step target is undisclosed"),
                    adversarial_weight=assumed(1.0, "undisclosed; equal weights"),
                    distillation_weight=assumed(1.0, "undisclosed; equal weights"),
                ),
                goal=documented("Adversarial distillation (LADD) for fewer sampling steps", KONTEXT),
            ),
            after="kontext_flow_matching",
        ),
    }


# As shipped, Kontext starts where the survey says, from a FLUX.1 checkpoint: the released FLUX.1 [dev], in BFL's own
# file. FLUX.1's stages and data are not replayed. [dev] is the released FLUX.1 checkpoint a flow-matching fine-tune
# can start from, and Kontext [dev] embeds guidance as [dev] does while its recipe has no guidance distillation.
FLUX1_DEV_REPOSITORY = "huggingface.co/black-forest-labs/FLUX.1-dev (flux1-dev.safetensors, BFL's single file)"
RELEASED_FLUX1_DEV = ReleasedWeights(
    released=assumed("black-forest-labs/FLUX.1-dev", "'FLUX.1 checkpoint' (survey) read as the released [dev]"),
    layout=documented("bfl", FLUX1_DEV_REPOSITORY),
    file=documented("flux1-dev.safetensors", FLUX1_DEV_REPOSITORY),
)
FLUX_KONTEXT = derive(
    FLUX1_DEV,
    {
        **KONTEXT_EDITING,
        **{f"schedule.stages[{name}]": REMOVE for name in ("pretrain", "highres_finetune", "timestep_shifting")},
        "data.sources[image_text]": REMOVE,
        "data.pipelines[flux]": REMOVE,
        "data.datasets[flux_highres]": REMOVE,
        "data.datasets[flux_training_set]": REMOVE,
        **kontext_stages(RELEASED_FLUX1_DEV, after=None),
        "notes": documented(
            [
                *KONTEXT_NOTES,
                "Kontext starts from the released FLUX.1 [dev] weights (the survey: 'fine-tuned from FLUX.1 "
                "checkpoint'); FLUX_KONTEXT_REPLAYING_PRETRAINING in specs/flux.py trains FLUX.1's own stages "
                "first instead (genspec compile specs/flux.py:FLUX_KONTEXT_REPLAYING_PRETRAINING).",
            ],
            survey("§3 FLUX.1 & Flux Kontext, and the sources named in each note"),
        ),
    },
    name="flux-kontext",
)

# The option: FLUX.1's pre-training, high-res and shifting stages replayed, Kontext starting from the last of them
# (the undistilled base a flow-matching fine-tune can start from).
FLUX_KONTEXT_REPLAYING_PRETRAINING = derive(
    FLUX1_DEV,
    {
        **KONTEXT_EDITING,
        **kontext_stages(
            assumed("timestep_shifting", "'FLUX.1 checkpoint' (survey) read as the undistilled base, retrained here"),
            after="timestep_shifting",
        ),
        "notes": documented(KONTEXT_NOTES, survey("§3 FLUX.1 & Flux Kontext, and the sources named in each note")),
    },
    name="flux-kontext-replaying-pretraining",
)
