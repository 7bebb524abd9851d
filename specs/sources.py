"""Citations used by the shipped specs, so each fact names where it is stated.

SURVEY is the source document the library covers: "Image & Video Generation Models: Training Data
Compilation, Filtering Pipelines & Training Recipes" (docs/sources.md). Section names follow its headings. The other
constants name public implementations that fill the survey's gaps.
"""

# The full title is in docs/sources.md; provenance lines stay short enough to read in a diff.
SURVEY = "survey"


def survey(section: str) -> str:
    """A citation of one part of the survey, e.g. survey('§3 FLUX.1, Key Techniques')."""
    return f"{SURVEY}, {section}"


# Public implementations and reports (facts only; see docs/sources.md for what each one gave).
FLUX_UTIL = "black-forest-labs/flux src/flux/util.py"
FLUX_SAMPLING = "black-forest-labs/flux src/flux/sampling.py"
DIFFUSERS_FLUX = "huggingface/diffusers src/diffusers/models/transformers/transformer_flux.py"
DIFFUSERS_QWEN = "huggingface/diffusers src/diffusers/models/transformers/transformer_qwenimage.py"
DIFFUSERS_FLUX_PIPELINE = "huggingface/diffusers src/diffusers/pipelines/flux/pipeline_flux.py"
DIFFUSERS_ALLEGRO = "huggingface/diffusers src/diffusers/models/transformers/transformer_allegro.py"
DIFFUSERS_ALLEGRO_VAE = "huggingface/diffusers src/diffusers/models/autoencoders/autoencoder_kl_allegro.py"
DIFFUSERS_QWEN_VAE = "huggingface/diffusers src/diffusers/models/autoencoders/autoencoder_kl_qwenimage.py"
QWEN_PIPELINE = "huggingface/diffusers src/diffusers/pipelines/qwenimage/pipeline_qwenimage.py"
WAN_CONFIG_1_3B = "Wan-Video/Wan2.1 wan/configs/wan_t2v_1_3B.py"
WAN_CONFIG_14B = "Wan-Video/Wan2.1 wan/configs/wan_t2v_14B.py"
WAN_SHARED_CONFIG = "Wan-Video/Wan2.1 wan/configs/shared_config.py"
WAN_VAE = "Wan-Video/Wan2.1 wan/modules/vae.py"
WAN_GENERATE = "Wan-Video/Wan2.1 generate.py"
WAN_SIZES = "Wan-Video/Wan2.1 wan/configs/__init__.py"
ALLEGRO_README = "rhymes-ai/Allegro README.md"
IMAGEN_NEMO_BASE = "NVIDIA/NeMo examples/multimodal/text_to_image/imagen/conf/base64-2b.yaml"
IMAGEN_NEMO_SR256 = "NVIDIA/NeMo examples/multimodal/text_to_image/imagen/conf/sr256-600m.yaml"
IMAGEN_NEMO_SR1024 = "NVIDIA/NeMo examples/multimodal/text_to_image/imagen/conf/sr1024-600m.yaml"
IMAGEN_PAPER = "Saharia et al. 2022, Photorealistic Text-to-Image Diffusion Models (Imagen), arXiv:2205.11487"
SD3_PAPER = "Esser et al. 2024, Scaling Rectified Flow Transformers (SD3), arXiv:2403.03206"
EDM_PAPER = "Karras et al. 2022, Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364"
LAION_AESTHETIC = "LAION-AI/aesthetic-predictor (ViT-L/14 + MLP, scores 0-10)"
CURATION_TOOLS = "defaults of open curation tools (Data-Juicer, NeMo Curator, Open-Sora tools, video2dataset)"
