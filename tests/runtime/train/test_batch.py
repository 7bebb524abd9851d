"""Raw samples to batches: precomputed members, padding, masks, errors; on-the-fly encoding."""

import io

import numpy as np
import pytest
from conftest import POOLED_DIM, TEXT_DIM, architecture
from PIL import Image

from compiler.schema.architecture import ArchitectureSpec
from runtime.train.batch import BatchBuilder


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    return buffer.getvalue()


def sample(key, text_len=3, **members):
    base = {
        "__key__": key.encode(),
        "latents.npy": npy(np.ones((4, 2, 2))),
        "text.npy": npy(np.ones((text_len, TEXT_DIM))),
        "pooled.npy": npy(np.ones(POOLED_DIM)),
    }
    base.update({f"{k}.npy": npy(v) for k, v in members.items()})
    return base


BUILDER = BatchBuilder(ArchitectureSpec(**architecture()), mask_from=None)
SIZE = (16, 16)  # pixels: the 2 x 2 latents of `sample` at 8x spatial compression


def test_precomputed_batch_pads_text_and_masks_it():
    batch = BUILDER([sample("a", 3), sample("b", 5)], SIZE)
    assert batch.latents.shape == (2, 4, 2, 2) and batch.cond.pooled.shape == (2, POOLED_DIM)
    assert batch.cond.text.shape == (2, 5, TEXT_DIM)
    assert batch.cond.text_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch.cond.text[0, 3:].abs().sum() == 0
    assert batch.keys == ("a", "b") and batch.mask is None and batch.rejected is None


def test_equal_text_lengths_need_no_mask():
    assert BUILDER([sample("a"), sample("b")], SIZE).cond.text_mask is None


def test_pixel_mask_becomes_a_latent_cell_mask():
    keep = np.ones((16, 16))
    keep[0, 0] = 0
    batch = BUILDER([sample("a", mask=keep), sample("b", mask=np.ones((16, 16)))], SIZE)
    assert batch.mask.shape == (2, 1, 2, 2)
    assert batch.mask[0, 0].tolist() == [[0.0, 1.0], [1.0, 1.0]] and batch.mask[1].min() == 1


def test_members_must_be_all_or_none():
    with pytest.raises(ValueError, match="sample b: rejected.npy is missing.*no rejected image or clip"):
        BUILDER([sample("a", rejected=np.ones((4, 2, 2))), sample("b")], SIZE)


def test_latents_that_do_not_fit_the_stage_and_no_media_are_explained():
    odd = sample("b")
    odd["latents.npy"] = npy(np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match=r"sample b: latents.npy is \(4, 4, 4\), the stage needs \(4, 2, 2\)"):
        BUILDER([sample("a"), odd], SIZE)


def test_missing_latents_without_encoders_is_explained():
    with pytest.raises(ValueError, match="latents.npy is missing.*no encoders"):
        BUILDER([{"__key__": b"a", "jpg": b""}], SIZE)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_on_the_fly_encoding_with_smoke_encoders():
    from runtime.encoders import build_encoders

    arch = ArchitectureSpec(**architecture())
    builder = BatchBuilder(arch, mask_from="defect", encoders=lambda: build_encoders(arch, "smoke", None))
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    defect = np.zeros((48, 80), dtype=np.uint8)
    defect[:4, 30:34] = 255
    samples = [
        {"__key__": b"a", "jpg": png(image), "txt": b"a red square", "defect.mask.png": png(defect)},
        {"__key__": b"b", "png": png(image), "captions.json": b'{"original": null, "synthetic": [{"text": "x"}]}'},
    ]
    batch = builder(samples, size=(32, 32))
    assert batch.latents.shape == (2, 4, 4, 4)
    assert batch.cond.text.shape[:2] == batch.cond.text_mask.shape and batch.cond.pooled.shape == (2, 8)
    assert batch.mask.shape == (2, 1, 4, 4)
    assert batch.mask[0].min() == 0 and batch.mask[1].min() == 1
