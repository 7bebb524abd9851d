"""Smoke-scale pooled text encoders fitted to the synthetic captions, so that a smoke demo's prompts reach the
backbone as something it can learn from in minutes.

    fit_smoke_text_encoders(architecture, "demo-run/models", steps=150)  # -> [demo-run/models/<encoder folder>]

The smoke stand-in text encoders (runtime/encoders/text.py `_tiny`) are randomly initialised over a byte-level
tokenizer. Their outputs do carry the caption (a linear probe reads the background colour from the mean of a
random T5's tokens 90% of the time, from a random CLIP's pooled vector 71%), but as a small part of vectors
that are nearly the same for every caption (pooled cosine 0.93-0.98), and a 64-wide FLUX backbone trained on
them for 400 steps barely uses them (velocity loss at t = 0.95: 0.57 with its own captions, 0.63 with shuffled
ones). Released CLIP and T5 know what "blue background" means; this gives the stand-in a little of that: each
encoder with a pooled output (CLIP's role 'pooled') is fitted, whole, with linear heads on its pooled vector
that name the caption's background colour, first shape colour and first shape kind (runtime.synthetic_data's
vocabulary), and written as a transformers folder (config.json, model.safetensors, the ByT5 tokenizer's
files) under a model directory, where runtime/encoders loads it like released weights (GENSPEC_MODEL_DIR).
Encoders without a pooled output (T5 tokens) stay random: fitting every token the same way converged far
slower (25% background accuracy after 150 steps) and the pooled vector alone lets the backbone learn the
colours (loss at t = 0.95 after 250 steps: 0.26 with its own captions, 1.08 with shuffled ones).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from compiler.schema.architecture import ArchitectureSpec

CAPTIONS, HELD_OUT = 2048, 256  # synthetic captions drawn for the fit; the last HELD_OUT measure it
BATCH, LR = 64, 3e-3


def captions_and_labels(count: int, seed: int):
    """COUNT synthetic captions and their (background, first shape colour, first shape kind) indices."""
    import torch

    from runtime.synthetic_data import BACKGROUNDS, COLOURS, SHAPES, random_scene

    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, shapes=1 + int(rng.random() < 0.3)) for _ in range(count)]
    colours = list(COLOURS)
    labels = [[BACKGROUNDS.index(s.background), colours.index(s.shapes[0].colour), SHAPES.index(s.shapes[0].kind)]
              for s in scenes]
    return [s.caption() for s in scenes], torch.tensor(labels), (len(BACKGROUNDS), len(colours), len(SHAPES))


def fit_smoke_text_encoders(architecture: ArchitectureSpec, model_dir: str | Path, steps: int = 150, seed: int = 0,
                            log=print) -> list[Path]:
    """Fit ARCHITECTURE's smoke text encoders that have a pooled output and write each to MODEL_DIR/<folder of
    its model id>; returns the folders. A folder holding a fit of the same encoder (its fit.json) is reused."""
    import torch
    import torch.nn.functional as F

    from runtime.encoders.model_directory import ModelDirectory, folder_name
    from runtime.encoders.text import FAMILIES, build_text_encoder, family_of

    folders = []
    for spec in architecture.text_encoders:
        field = f"architecture.text_encoders[{spec.name}]"
        if FAMILIES[family_of(spec.model, f"{field}.model")].pooling is None:
            continue
        folder = Path(model_dir) / folder_name(spec.model)
        stamp = {"model": spec.model, "dim": spec.dim, "max_tokens": spec.max_tokens, "steps": steps, "seed": seed}
        if (folder / "fit.json").is_file() and json.loads((folder / "fit.json").read_text()).get("stamp") == stamp:
            log(f"smoke text encoder {spec.name}: reusing the fit in {folder}")
            folders.append(folder)
            continue
        started = time.perf_counter()
        # The stand-in the trainer would build (seeded by model id), made trainable for the fit.
        encoder, _ = build_text_encoder(spec.model_copy(update={"frozen": False}), "smoke", ModelDirectory(None))
        captions, labels, sizes = captions_and_labels(CAPTIONS, seed)
        train = CAPTIONS - HELD_OUT
        torch.manual_seed(seed)
        heads = torch.nn.ModuleList([torch.nn.Linear(encoder.dim, size) for size in sizes])
        optimizer = torch.optim.Adam([*encoder.parameters(), *heads.parameters()], lr=LR)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            batch = torch.randint(train, (BATCH,), generator=generator)
            pooled = encoder([captions[i] for i in batch]).pooled
            loss = sum(F.cross_entropy(head(pooled), labels[batch, k]) for k, head in enumerate(heads))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        encoder.eval().requires_grad_(False)
        with torch.no_grad():
            pooled = encoder(captions[train:]).pooled
            accuracy = [(head(pooled).argmax(-1) == labels[train:, k]).float().mean().item()
                        for k, head in enumerate(heads)]
        folder.mkdir(parents=True, exist_ok=True)
        encoder.model.save_pretrained(folder)
        encoder.tokenizer.save_pretrained(folder)
        seconds = time.perf_counter() - started
        named = dict(zip(("background", "shape_colour", "shape_kind"), accuracy))
        result = {"stamp": stamp, "held_out_accuracy": named, "last_loss": loss.item(), "seconds": seconds}
        (folder / "fit.json").write_text(json.dumps(result, indent=2) + "\n")
        log(f"smoke text encoder {spec.name} ({spec.model}): fitted {steps} steps in {seconds:.0f} s; held-out "
            f"accuracy from its pooled vector: background {accuracy[0]:.0%}, shape colour {accuracy[1]:.0%}, "
            f"shape kind {accuracy[2]:.0%}; written to {folder}")
        folders.append(folder)
    return folders
