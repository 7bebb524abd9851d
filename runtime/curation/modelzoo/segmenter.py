"""Defect segmentation through transformers (`AutoModelForSemanticSegmentation`, e.g. SegFormer).

Seedream 3.0's defect detector is unpublished; any semantic-segmentation folder whose labels include a
defect class (defect, watermark, logo, subtitle, text, mosaic) works. The defect probability per pixel is
the sum of the defect classes' softmax probabilities (or the sigmoid of a single logit), upsampled
bilinearly from the model's output grid to the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.curation.modelzoo.weights import Located, device, quiet_transformers

SEGMENTER_FOLDER = (
    "a transformers semantic-segmentation folder (config.json whose id2label has a defect class, "
    "model.safetensors, preprocessor_config.json)"
)
SEGMENTER_REQUIRED = (("config.json",), ("preprocessor_config.json", "processor_config.json"))
DEFECT_LABELS = ("defect", "watermark", "logo", "subtitle", "text", "mosaic")
STAND_IN_SIDE = 64


class DefectSegmenter:
    """Per-pixel defect probability maps at each image's size."""

    def __init__(self, model, processor, columns: Sequence[int]) -> None:
        self.device = device()
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.columns = list(columns)
        self.single_logit = model.config.num_labels == 1

    @classmethod
    def load(cls, located: Located, columns: Sequence[int]) -> DefectSegmenter:
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        if located.stand_in:
            return cls(*tiny_segmenter(located.seed), columns)
        quiet_transformers()
        return cls(
            AutoModelForSemanticSegmentation.from_pretrained(located.path, local_files_only=True),
            AutoImageProcessor.from_pretrained(located.path, local_files_only=True),
            columns,
        )

    def defect_probability(self, images: list[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels).logits.float()
            probs = torch.sigmoid(logits) if self.single_logit else torch.softmax(logits, dim=1)
            defect = probs[:, self.columns].sum(dim=1, keepdim=True).clamp(max=1.0)
            return [
                F.interpolate(defect[i : i + 1], size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
                for i, image in enumerate(images)
            ]


def tiny_segmenter(seed: int):
    """A randomly initialised two-stage SegFormer (background, defect) with a 64 px image processor."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    labels = ["background", "defect"]
    config = SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
        num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=32, num_labels=2,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SegformerForSemanticSegmentation(config)
    return model, SegformerImageProcessor(size={"height": STAND_IN_SIDE, "width": STAND_IN_SIDE})
