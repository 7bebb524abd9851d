"""Image classifiers through transformers (`AutoModelForImageClassification` + `AutoImageProcessor`).

Safety, watermark, AI-generated, visual-quality and active-learning scorers are classifiers whose labels
name what they detect (config.json `id2label`). Probabilities are a softmax over the labels, or a sigmoid
per label when config.json says `problem_type: multi_label_classification` (or there is one logit). A
category's probability is the sum over the labels that name it (e.g. GantMan-style NSFW classifiers split
NSFW into porn, hentai and sexy), capped at 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from runtime.curation.modelzoo.weights import Located, device, from_pretrained_strict, inference_dtype, quiet_transformers

CLASSIFIER_FOLDER = (
    "a transformers image-classification folder (config.json with id2label, model.safetensors, "
    "preprocessor_config.json)"
)
CLASSIFIER_REQUIRED = (("config.json",), ("preprocessor_config.json", "processor_config.json"))
STAND_IN_SIDE = 32


def folder_labels(path: Path) -> list[str]:
    """The label names of a classifier folder, read from config.json without loading the model."""
    config = json.loads((path / "config.json").read_text())
    id2label = config.get("id2label") or {}
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label))]


def label_columns(labels: Sequence[str], names: Sequence[str]) -> list[int]:
    """Indices of the labels equal (case-insensitively, '-' and ' ' read as '_') to one of `names`."""
    wanted = {_norm(n) for n in names}
    return [i for i, label in enumerate(labels) if _norm(label) in wanted]


def _norm(label: str) -> str:
    return label.strip().lower().replace("-", "_").replace(" ", "_")


class ImageClassifier:
    """A classifier and its image processor; `probabilities` returns [N, labels] float32."""

    def __init__(self, model, processor) -> None:
        self.device = device()
        self.dtype = inference_dtype(self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.processor = processor
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.multi_label = config.problem_type == "multi_label_classification" or config.num_labels == 1

    @classmethod
    def load(cls, located: Located, stand_in_labels: Sequence[str]) -> ImageClassifier:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        if located.stand_in:
            return cls(*tiny_classifier(stand_in_labels, located.seed))
        quiet_transformers()
        return cls(
            from_pretrained_strict(AutoModelForImageClassification, located.path),
            AutoImageProcessor.from_pretrained(located.path, local_files_only=True),
        )

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels).logits.float()
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu().numpy()

    def category_probabilities(self, images: list[np.ndarray], columns: Mapping[str, list[int]]) -> dict[str, np.ndarray]:
        """Category -> [N] probability: the sum of its labels' probabilities, capped at 1."""
        probs = self.probabilities(images)
        return {name: np.minimum(1.0, probs[:, cols].sum(axis=1)) for name, cols in columns.items()}


def tiny_classifier(labels: Sequence[str], seed: int):
    """A randomly initialised 2-layer ViT classifier over `labels` with a 32 px image processor."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=STAND_IN_SIDE,
        patch_size=8, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTForImageClassification(config)
    return model, ViTImageProcessor(size={"height": STAND_IN_SIDE, "width": STAND_IN_SIDE})
