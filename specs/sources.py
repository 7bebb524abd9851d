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
DIFFUSERS_WAN_VAE = "huggingface/diffusers src/diffusers/models/autoencoders/autoencoder_kl_wan.py"
# AutoencoderKLWan's per-channel latent statistics (its config's latents_mean / latents_std, the values Wan2.1's
# own wan/modules/vae.py normalises with); AutoencoderKLQwenImage's defaults are the same 16 pairs.
WAN_LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN_LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                   3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]
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
