"""Frozen conditioning for precompute_embeddings: text-encoder outputs and VAE latent moments.

Text encoders (MODEL_DIR/<encoder name>, a transformers folder) load with the class the reference
pipelines use, picked from config.json's model_type: T5 / mT5 / UMT5 -> the encoder-only model (diffusers
FluxPipeline: T5EncoderModel), CLIP -> CLIPTextModel (its pooler_output is FLUX's pooled vector), anything
else -> AutoModel's last hidden state. Prompts are padded and truncated to the tokenizer's
model_max_length (T5: 512, CLIP: 77), as the pipelines do.

The VAE (MODEL_DIR/vae) is a diffusers AutoencoderKL folder; an image is centre-cropped to a multiple of
the VAE's compression, mapped to [-1, 1] and encoded to its posterior's moments (mean, log-variance), so
training samples the latent and applies the latent space's scale and shift itself.
"""

from __future__ import annotations

import io
import json

import numpy as np

from runtime.curation.modelzoo.weights import Located, device, quiet_transformers

TEXT_ENCODER_FOLDER = "a transformers text-encoder folder (config.json, weights, tokenizer files)"
VAE_ID = "vae"
VAE_FOLDER = "a diffusers AutoencoderKL folder (config.json, diffusion_pytorch_model.safetensors)"
VAE_REQUIRED = (("config.json",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"))
ENCODER_ONLY = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
MAX_TOKENS_FALLBACK = 512  # when neither the tokenizer nor the config bounds the length
STAND_IN_TOKENS = 32


class FrozenTextEncoder:
    """Captions -> tokens [N, L, D] (zero on padding), mask [N, L] and pooled [N, D] (CLIP) or None."""

    def __init__(self, model, tokenizer, max_tokens: int, pooled: bool) -> None:
        self.device = device()
        self.model, self.tokenizer, self.max_tokens, self.pooled = model.to(self.device).eval(), tokenizer, max_tokens, pooled

    @classmethod
    def load(cls, located: Located) -> FrozenTextEncoder:
        import transformers

        if located.stand_in:
            return tiny_text_encoder(located)
        quiet_transformers()
        model_type = json.loads((located.path / "config.json").read_text()).get("model_type", "")
        if model_type in ENCODER_ONLY:
            model_class = getattr(transformers, ENCODER_ONLY[model_type])
        elif model_type.startswith("clip"):
            model_class = transformers.CLIPTextModel
        else:
            model_class = transformers.AutoModel
        model = model_class.from_pretrained(located.path, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(located.path, local_files_only=True)
        limit = tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else None
        positions = getattr(model.config, "max_position_embeddings", None)
        return cls(model, tokenizer, limit or positions or MAX_TOKENS_FALLBACK, model_type.startswith("clip"))

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        import torch

        batch = self.tokenizer(texts, padding="max_length", max_length=self.max_tokens, truncation=True,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            mask = batch["attention_mask"].bool()
            arrays = {"tokens": (out.last_hidden_state * mask.unsqueeze(-1)).half().cpu().numpy(), "mask": mask.cpu().numpy()}
            if self.pooled:
                arrays["pooled"] = out.pooler_output.half().cpu().numpy()
        return arrays


def tiny_text_encoder(located: Located) -> FrozenTextEncoder:
    """A 2-layer random CLIP text model (names containing "clip": it has a pooled output) or T5 encoder."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from runtime.curation.modelzoo.tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    clip = "clip" in located.model_id.lower()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(located.seed)
        if clip:
            model = CLIPTextModel(CLIPTextConfig(
                vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=STAND_IN_TOKENS, pad_token_id=0, bos_token_id=0, eos_token_id=tokenizer.eos_token_id))
        else:
            model = T5EncoderModel(T5Config(
                vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1))
    return FrozenTextEncoder(model, tokenizer, STAND_IN_TOKENS, pooled=clip)


class LatentEncoder:
    """A diffusers AutoencoderKL's encoder: RGB uint8 image -> posterior moments."""

    def __init__(self, vae) -> None:
        self.device = device()
        self.vae = vae.to(self.device).eval()
        self.compression = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def load(cls, located: Located) -> LatentEncoder:
        from diffusers import AutoencoderKL

        if located.stand_in:
            return cls(tiny_vae(located.seed))
        return cls(AutoencoderKL.from_pretrained(located.path, local_files_only=True))

    def encode(self, image: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        height, width = image.shape[:2]
        h, w = height - height % self.compression, width - width % self.compression
        if h == 0 or w == 0:
            raise ValueError(f"image {width}x{height} is smaller than the VAE's compression {self.compression}")
        top, left = (height - h) // 2, (width - w) // 2
        crop = image[top : top + h, left : left + w]
        pixels = torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
        with torch.inference_mode():
            posterior = self.vae.encode(pixels.to(self.device)).latent_dist
        return {
            "mean": posterior.mean[0].half().cpu().numpy(),
            "logvar": posterior.logvar[0].half().cpu().numpy(),
            "crop": np.array([top, left, h, w], dtype=np.int32),  # of the decoded image, in pixels
        }


def tiny_vae(seed: int):
    """A randomly initialised 2-level AutoencoderKL (compression 2, 4 latent channels)."""
    import torch
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(
            block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32, layers_per_block=1,
        )


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as an .npz member (np.load(io.BytesIO(data)) reads it back)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
