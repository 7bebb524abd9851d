"""CLIP and SigLIP image and text embeddings through transformers (`CLIPModel` / `SiglipModel` + processor),
L2-normalised; config.json's `model_type` picks the family.

CLIP embeddings are OpenAI CLIP's `encode_image` / `encode_text`: the pooled output of each tower through
its projection (transformers `visual_projection` / `text_projection`), so heads trained on OpenAI CLIP
features (the LAION aesthetic predictor) read the same vectors. SigLIP (Zhai et al. 2023) has no
projection: the vision tower's attention-pooling head and the text tower's head output are the embeddings
(transformers modeling_siglip.py `get_image_features` / `get_text_features`), and text is padded to the
tokenizer's max length, as SigLIP was trained (its model card: `padding="max_length"`).

Loading is strict: a folder whose weights miss or add keys against its config is an error, not a model
with randomly initialised layers.
"""

from __future__ import annotations

import numpy as np

from runtime.curation.modelzoo.weights import Located, device, from_pretrained_strict, inference_dtype, quiet_transformers

CLIP_FOLDER = (
    "a transformers CLIPModel or SiglipModel folder (config.json, model.safetensors, tokenizer and preprocessor files)"
)
FAMILIES = ("clip", "siglip")  # config.json model_type values this module loads
CLIP_REQUIRED = (("config.json",),)
STAND_IN_WIDTH = 32  # hidden size of both towers of the stand-in
STAND_IN_SIDE = 32  # input size of the stand-in's vision tower (patch 8: 16 patches)


class ClipEmbedder:
    """A CLIP model and its processor; embeddings come back as float32 numpy rows of unit length."""

    def __init__(self, model, processor) -> None:
        self.device = device()
        self.dtype = inference_dtype(self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.processor = processor

    @classmethod
    def load(cls, located: Located, subfolder: str = "") -> ClipEmbedder:
        """From the weights folder (optionally a subfolder of it), or the tiny stand-in."""
        import json

        from transformers import AutoProcessor, CLIPModel, SiglipModel

        if located.stand_in:
            return cls(*tiny_clip(located.seed))
        quiet_transformers()
        path = located.path / subfolder if subfolder else located.path
        family = json.loads((path / "config.json").read_text()).get("model_type")
        if family not in FAMILIES:
            raise ValueError(
                f"{path}/config.json: model_type {family!r} is not an image-text embedder this op loads "
                f"({' or '.join(FAMILIES)}); point the op at a CLIP or SigLIP folder"
            )
        model_class = CLIPModel if family == "clip" else SiglipModel
        return cls(from_pretrained_strict(model_class, path), AutoProcessor.from_pretrained(path, local_files_only=True))

    @property
    def siglip(self) -> bool:
        return self.model.config.model_type == "siglip"

    @property
    def dim(self) -> int:
        if self.siglip:
            return self.model.config.vision_config.hidden_size
        return self.model.config.projection_dim

    def image_embeddings(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        pixels = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            pooled = self.model.vision_model(pixel_values=pixels.to(self.dtype)).pooler_output
            return _unit(pooled if self.siglip else self.model.visual_projection(pooled))

    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.processor.tokenizer(
            texts, padding="max_length" if self.siglip else True, truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings, return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            if self.siglip:  # trained without an attention mask: padding is part of the sequence it reads
                return _unit(self.model.text_model(input_ids=tokens["input_ids"]).pooler_output)
            pooled = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
            return _unit(self.model.text_projection(pooled))


def _unit(features) -> np.ndarray:
    array = features.float().cpu().numpy()
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.where(norms == 0, 1, norms)


def tiny_clip(seed: int):
    """A randomly initialised 2-layer CLIPModel with a byte tokenizer and a 32 px image processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from runtime.curation.modelzoo.tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    tower = {"hidden_size": STAND_IN_WIDTH, "intermediate_size": 2 * STAND_IN_WIDTH, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(tokenizer), max_position_embeddings=77, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(tower, image_size=STAND_IN_SIDE, patch_size=8),
        projection_dim=16,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": STAND_IN_SIDE}, crop_size={"height": STAND_IN_SIDE, "width": STAND_IN_SIDE}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
