"""Specs for the families of issue 17, for tests only: the library gains a spec only with sourced facts.

Each takes a shipped spec's data, objective and schedule (Wan 2.1 1.3B for the video families, FLUX.1 dev for
SD3) and replaces the architecture with the released configuration of a public model, from its diffusers
config.json. Everything but the architecture is the base spec's and says nothing about these models.
"""

from __future__ import annotations

import specs
from compiler.document import REMOVE, derive
from compiler.resolve import apply_overrides
from compiler.schema import ArchitectureSpec, DiT, LatentSpace, MMDiT, Rope, TextEncoder, documented
from compiler.schema.architecture import LearnedPositions, ScaledRope

HUNYUAN_CONFIG = "hunyuanvideo-community/HunyuanVideo transformer/config.json (diffusers)"
HUNYUAN_PAPER = "Kong et al. 2024, HunyuanVideo: A Systematic Framework For Large Video Generative Models, " \
    "arXiv:2412.03603"
SD3_CONFIG = "stabilityai/stable-diffusion-3-medium-diffusers transformer/config.json (diffusers)"
SD3_PAPER = "Esser et al. 2024, Scaling Rectified Flow Transformers (SD3), arXiv:2403.03206"
SD3_PIPELINE = "diffusers pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py (_get_clip_prompt_embeds, " \
    "encode_prompt; __init__: CLIPTextModelWithProjection x 2, T5EncoderModel; max_sequence_length 256)"
COGVIDEOX_CONFIG = "THUDM/CogVideoX-5b transformer/config.json (diffusers)"
COGVIDEOX_PAPER = "Yang et al. 2024, CogVideoX: Text-to-Video Diffusion Models with An Expert Transformer, " \
    "arXiv:2408.06072"

HUNYUAN_VIDEO_ARCHITECTURE = ArchitectureSpec(
    backbone=documented(
        MMDiT(
            block_style="hunyuan_video", hidden_size=3072, num_heads=24, head_dim=128, patch_size=(1, 2, 2),
            in_channels=16, out_channels=16, double_blocks=20, single_blocks=40, token_refiner_blocks=2,
            context_dim=4096, pooled_dim=768, guidance_embed=True,
            positions=Rope(axes=["t", "h", "w"], axes_dims=[16, 56, 56], theta=256.0, text="none"),
        ),
        HUNYUAN_CONFIG,
    ),
    text_encoders=documented([
        TextEncoder(name="llava_llama3", model="xtuner/llava-llama-3-8b-v1_1-transformers", role="tokens",
                    dim=4096, max_tokens=256),
        TextEncoder(name="clip_l", model="openai/clip-vit-large-patch14", role="pooled", dim=768, max_tokens=77),
    ], HUNYUAN_PAPER),
    space=documented(
        LatentSpace(vae="HunyuanVideo-VAE", channels=16, spatial_compression=8, temporal_compression=4, causal=True),
        HUNYUAN_PAPER,
    ),
)

SD3_MEDIUM_ARCHITECTURE = ArchitectureSpec(
    backbone=documented(
        MMDiT(
            block_style="sd3", hidden_size=1536, num_heads=24, head_dim=64, patch_size=(1, 2, 2),
            in_channels=16, out_channels=16, double_blocks=24, single_blocks=0, context_dim=4096,
            pooled_dim=2048, qk_norm="none", positions=LearnedPositions(max_size=192, trained=False),
        ),
        SD3_CONFIG,
    ),
    # Each CLIP serves both roles: tokens from its penultimate layer, and its projected pooled vector; CLIP-L's and
    # CLIP-G's tokens are joined on the feature axis (768 + 1280 = 2048), padded to T5's 4096, and come before T5's
    # tokens on the sequence axis; the pooled vectors are concatenated (768 + 1280 = 2048).
    text_encoders=documented([
        TextEncoder(name="clip_l", model="openai/clip-vit-large-patch14", role="tokens", pooled=True,
                    hidden_layer=-2, pooled_projection=True, dim=768, max_tokens=77),
        TextEncoder(name="clip_g", model="laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", role="tokens", pooled=True,
                    hidden_layer=-2, pooled_projection=True, dim=1280, max_tokens=77),
        TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=4096, max_tokens=256),
    ], SD3_PIPELINE),
    joint_tokens=documented([["clip_l", "clip_g"], ["t5"]], SD3_PIPELINE),
    space=documented(LatentSpace(vae="sd3-vae", channels=16, spatial_compression=8), SD3_PAPER),
)

COGVIDEOX_5B_ARCHITECTURE = ArchitectureSpec(
    backbone=documented(
        DiT(
            hidden_size=3072, num_heads=48, head_dim=64, patch_size=(1, 2, 2), in_channels=16, out_channels=16,
            depth=42, text_dim=4096, freq_dim=3072, modulation="adaln_expert", cond_dim=512,
            text_conditioning="in_context", qk_norm="layernorm_per_head", norm_eps=1e-5,
            # 480 x 720 training latents of 60 x 90 are 30 x 45 patches, 13 latent frames.
            positions=ScaledRope(axes=["t", "h", "w"], axes_dims=[16, 24, 24], reference_grid=[13, 30, 45]),
        ),
        COGVIDEOX_CONFIG,
    ),
    text_encoders=documented([
        TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=4096, max_tokens=226),
    ], COGVIDEOX_PAPER),
    space=documented(
        LatentSpace(vae="CogVideoX-VAE", channels=16, spatial_compression=8, temporal_compression=4, causal=True),
        COGVIDEOX_PAPER,
    ),
)


def _with_architecture(base: str, name: str, architecture: ArchitectureSpec, overrides: list[str] = ()):
    spec = specs.load(base)
    spec = spec.model_copy(update={"name": name, "family": name, "architecture": architecture})
    return apply_overrides(spec, list(overrides)) if overrides else spec


HUNYUAN_VIDEO = _with_architecture(
    "wan2.1-t2v-1.3b", "hunyuan-video-test", HUNYUAN_VIDEO_ARCHITECTURE,
    ["inference.guidance_embedded=6.0"],  # diffusers pipeline_hunyuan_video.py's default guidance_scale
)
SD3_MEDIUM = _with_architecture(
    "flux1-dev", "sd3-medium-test", SD3_MEDIUM_ARCHITECTURE,
    ["data.pipelines[flux].ops[precompute_embeddings].text_encoders=[clip_l, clip_g, t5]",
     "inference.guidance_embedded=null",
     "inference.cfg_scale=7.0"],  # SD3 samples with classifier-free guidance 7.0 (diffusers' docs example)
)
# FLUX.1 dev's last stage distils guidance into a guidance embedding, which SD3 has not: SD3 keeps the others.
SD3_MEDIUM = SD3_MEDIUM.model_copy(update={"schedule": SD3_MEDIUM.schedule.model_copy(
    update={"stages": [stage for stage in SD3_MEDIUM.schedule.stages if stage.kind != "guidance_distillation"]})})
COGVIDEOX_5B = _with_architecture("wan2.1-t2v-1.3b", "cogvideox-5b-test", COGVIDEOX_5B_ARCHITECTURE)
FAMILY_SPECS = {"mmdit/hunyuan_video": HUNYUAN_VIDEO, "mmdit/sd3": SD3_MEDIUM, "dit/adaln_expert": COGVIDEOX_5B}
# The runtime encodes text with the encoder families of runtime/encoders/text.py, which have no LLaVA-Llama: the
# demo's copy names a multimodal LLM it does encode with (Qwen2.5-VL, the qwen family), a stand-in, not a fact.
# The demo trains the first of the base's two stages only, and curates without the model-backed scorers and
# the captioner (the Wan 2.1 demo runs those): one DeepSpeed run and cheap curation keep `genspec demo` of this
# spec cheap enough for the suite (tests/runtime/test_families.py).
SCORERS = ("s1_ocr", "s1_aesthetic", "s2_visual_quality")
DEMO_CUT = {"wan_videos": (*SCORERS, "s3_motion_score", "s3_motion_tiers", "dense_captions"),
            "wan_images": (*SCORERS, "dense_captions")}
HUNYUAN_VIDEO_DEMO = derive(
    apply_overrides(HUNYUAN_VIDEO, ["architecture.text_encoders[llava_llama3].model=Qwen/Qwen2.5-VL-7B-Instruct"]),
    {"schedule.stages[joint_480p]": REMOVE, "data.datasets[wan_videos_480p]": REMOVE,
     "data.datasets[wan_images_480p]": REMOVE,
     **{f"data.pipelines[{pipeline}].ops[{op}]": REMOVE for pipeline, ops in DEMO_CUT.items() for op in ops}},
    name="hunyuan-video-demo",
)
