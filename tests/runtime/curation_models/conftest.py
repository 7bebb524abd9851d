"""Tiny randomly initialised models saved in the formats the model ops load, and synthetic media.

`model_dir` is built once per session: each folder is written the way a released model is (transformers
save_pretrained, safetensors state dicts) and read back by the ops through their real loading code.
`kit.run_op` runs one op over records through the runner's BoundOp with a real score cache and counts the
records its `score()` was called on.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from runtime.curation.api import OpContext
from runtime.curation.records import Record
from runtime.curation.registry import build
from runtime.curation.runner import BoundOp, plan_color, plan_side
from runtime.curation.scorecache import ScoreCache

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def texture(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def mp4(frames: list[np.ndarray], fps: int = 8) -> bytes:
    handle, path = tempfile.mkstemp(suffix=".mp4")
    os.close(handle)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    data = Path(path).read_bytes()
    os.remove(path)
    return data


def image_record(key: str, seed: int, caption: str | None = None, **metadata) -> Record:
    record = Record(key, png(texture(seed)), "png", shard="test", metadata=dict(metadata))
    record.captions["original"] = caption
    return record


def video_record(key: str, frames: list[np.ndarray]) -> Record:
    return Record(key, mp4(frames), "mp4", shard="test")


@dataclass
class Run:
    kept: list[Record]
    ended: list[Record]
    scored: list[str] = field(default_factory=list)  # keys passed to score(), in calls

    @property
    def dropped(self) -> dict[str, str]:
        return {r.key: r.fate.reason for r in self.ended if r.fate.kind == "dropped"}


def run_op(op, records: list[Record], ctx: OpContext, cache: ScoreCache | None = None, impl=None) -> Run:
    """One op (built from `op` unless `impl` is given) over `records`, scores counted."""
    impl = impl or build(op, ctx)
    run = Run([], [])
    original = impl.score

    def counted(batch):
        run.scored.extend(r.key for r in batch)
        return original(batch)

    impl.score = counted
    side, color = plan_side([impl]), plan_color([impl])  # as the runner plans a stage of this one op
    for record in records:
        record.attach_decoder(side, color=color)
    run.kept = BoundOp(impl, side, color).process(records, cache, run.ended)
    impl.score = original
    return run


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (--import-mode=importlib: they cannot import this conftest)."""
    return SimpleNamespace(texture=texture, png=png, mp4=mp4, image_record=image_record, video_record=video_record,
                           run_op=run_op)


@pytest.fixture
def cache(tmp_path) -> ScoreCache:
    store = ScoreCache(tmp_path / "cache")
    yield store
    store.close()


# Tiny models in their released formats ---------------------------------------------------------------


def save_classifier(folder: Path, labels: list[str], bias: list[float] | None = None) -> None:
    """A tiny ViT classifier; with `bias`, the head's weights are zeroed so every image gets softmax(bias)."""
    import torch

    from runtime.curation.modelzoo.classifier import tiny_classifier

    model, processor = tiny_classifier(labels, seed=len(folder.name))
    if bias is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def save_clip(folder: Path, seed: int) -> None:
    from runtime.curation.modelzoo.clip import tiny_clip

    model, processor = tiny_clip(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def save_head(path: Path, input_dim: int, bias: float | None = None) -> None:
    """A LAION-format head; with `bias`, the last layer outputs exactly `bias` for every embedding."""
    from safetensors.torch import save_file

    from runtime.curation.modelzoo.heads import laion_head_state

    state = laion_head_state(input_dim, seed=1)
    if bias is not None:
        state["layers.7.weight"].zero_()
        state["layers.7.bias"].fill_(bias)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from runtime.curation.modelzoo.captioner import tiny_vlm
    from runtime.curation.modelzoo.craft import CraftConfig, build_craft, save_craft
    from runtime.curation.modelzoo.lpips import random_lpips, save_lpips
    from runtime.curation.modelzoo.segmenter import tiny_segmenter
    from runtime.curation.modelzoo.tokenizer import byte_tokenizer

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_clip(root / "laion-aesthetic-v2" / "clip", seed=1)
    save_head(root / "laion-aesthetic-v2" / "head.safetensors", input_dim=16)
    save_clip(root / "clip-technical-regressor" / "clip", seed=2)
    save_head(root / "clip-technical-regressor" / "head.safetensors", input_dim=16, bias=0.25)
    save_clip(root / "clip-vit-b32", seed=3)
    save_classifier(root / "nsfw-classifier", ["normal", "nsfw", "violence"])
    save_classifier(root / "watermark-classifier", ["clear", "watermark"], bias=[0.0, 2.0])  # p = 0.881
    save_classifier(root / "ai-generated-detector", ["real", "ai_generated"], bias=[2.0, 0.0])  # p = 0.119
    save_classifier(root / "expert-quality-model", ["bad", "good"], bias=[0.0, 1.0])  # p = 0.731
    save_classifier(root / "difficulty-classifier", ["easy", "hard"])
    save_classifier(root / "labels-without-nsfw", ["cat", "dog"])
    save_lpips(random_lpips(seed=7), root / "lpips")
    save_craft(build_craft(CraftConfig(widths=0.125)), CraftConfig(widths=0.125), root / "craft")
    segmenter, seg_processor = tiny_segmenter(seed=4)
    segmenter.save_pretrained(root / "defect-detector")
    seg_processor.save_pretrained(root / "defect-detector")
    vlm, vlm_processor = tiny_vlm(seed=5)
    vlm.save_pretrained(root / "tiny-vlm")
    vlm_processor.save_pretrained(root / "tiny-vlm")
    tokenizer = byte_tokenizer()
    clip_text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, pad_token_id=0, bos_token_id=0, eos_token_id=tokenizer.eos_token_id))
    clip_text.save_pretrained(root / "clip_l")
    tokenizer.model_max_length = 16
    tokenizer.save_pretrained(root / "clip_l")
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=20, d_kv=10, d_ff=40, num_layers=1, num_heads=2,
                                 relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1))
    t5.save_pretrained(root / "t5_xxl")
    tokenizer.model_max_length = 24
    tokenizer.save_pretrained(root / "t5_xxl")
    return root


@pytest.fixture
def full(model_dir) -> OpContext:
    return OpContext(model_dir, "full")


@pytest.fixture
def smoke(tmp_path) -> OpContext:
    return OpContext(tmp_path / "empty-model-dir", "smoke")
