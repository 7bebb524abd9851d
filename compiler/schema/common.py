"""Value types shared by several spec sections: sizes, score scales, units."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compiler.schema.provenance import Node

Modality = Literal["image", "video", "image_text", "video_text", "image_edit_triplet"]
FrameUnit = Literal["frames", "seconds"]
Reduce = Literal["min", "mean", "max"]


class Size(Node):
    """A height x width in pixels."""

    height: int = Field(gt=0, description="pixels")
    width: int = Field(gt=0, description="pixels")

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


def square(side: int) -> Size:
    """A square size, the way model cards state resolutions (256x256, 1024x1024)."""
    return Size(height=side, width=side)


class Scale(Node):
    """The range and meaning of a score, so a threshold can be checked against it."""

    low: float | None = Field(None, description="None: unbounded below")
    high: float | None = Field(None, description="None: unbounded above")
    unit: str = Field(description="what the number measures, e.g. 'LAION aesthetic score (0-10)'")

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"scale low {self.low} must be below high {self.high}")
        return self

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}] {self.unit}"


class Range(Node):
    """A closed interval a source states, e.g. "24-30 fps"."""

    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"range low {self.low:g} must not be above high {self.high:g}")
        return self

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g}"


# The scales of scorers that public curation tools use. A scorer not listed here must state its scale.
KNOWN_SCALES: dict[str, Scale] = {
    "laion-aesthetic-v2": Scale(low=0, high=10, unit="LAION aesthetic predictor score, ViT-L/14 + MLP (0-10)"),
    "clip-vit-b32": Scale(low=-1, high=1, unit="CLIP image-text cosine similarity"),
    "clip-vit-l14": Scale(low=-1, high=1, unit="CLIP image-text cosine similarity"),
    "dover": Scale(unit="DOVER technical quality score (unbounded; 0 separates good from bad)"),
    "lpips": Scale(low=0, high=1, unit="LPIPS perceptual distance between sampled frames"),
    "dssim": Scale(low=0, high=1, unit="structural dissimilarity (1 - SSIM) / 2 between sampled frames"),
    "farneback": Scale(low=0, unit="mean optical-flow magnitude, pixels per frame at the analysis size"),
    "unimatch": Scale(low=0, unit="mean optical-flow magnitude, pixels per frame at the analysis size"),
    "raft": Scale(low=0, unit="mean optical-flow magnitude, pixels per frame at the analysis size"),
}

PROBABILITY = Scale(low=0, high=1, unit="classifier probability")
AREA_FRACTION = Scale(low=0, high=1, unit="fraction of the image area")
