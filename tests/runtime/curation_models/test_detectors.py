"""LPIPS frame consistency, CRAFT text area and the defect-aware loss mask, from tiny saved models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from compiler.schema.data import DefectMask, FrameConsistency, OcrTextArea
from runtime.curation.registry import build


def test_lpips_is_zero_for_a_still_clip_and_positive_for_changing_frames(kit, full):
    still = [kit.texture(1)] * 16
    moving = [kit.texture(seed) for seed in range(16)]
    op = FrameConsistency(min_score=1e-4, max_score=None)
    run = kit.run_op(op, [kit.video_record("still", still), kit.video_record("moving", moving), kit.image_record("img", 2)], full)
    assert run.dropped == {"still": "static: frames nearly identical"}
    assert {r.key for r in run.kept} == {"moving", "img"}  # images pass through untouched
    moving_score = next(r for r in run.kept if r.key == "moving").scores["frame_consistency"]
    assert moving_score["value"] > 0 and moving_score["pairs"] >= 2


def test_lpips_loads_the_released_layout(model_dir):
    """The folder holds torchvision AlexNet keys (features.*) and lpips v0.1 keys (lin<k>.model.1.weight)."""
    from safetensors.torch import load_file

    trunk = load_file(str(model_dir / "lpips" / "alexnet.safetensors"))
    lins = load_file(str(model_dir / "lpips" / "alex.safetensors"))
    assert {"features.0.weight", "features.10.bias"} <= set(trunk)
    assert sorted(lins) == [f"lin{k}.model.1.weight" for k in range(5)]
    assert lins["lin2.model.1.weight"].shape == (1, 384, 1, 1)


def test_craft_boxes_cover_the_text_region():
    from runtime.curation.modelzoo.craft import text_mask

    region = np.zeros((100, 200), np.float32)
    affinity = np.zeros_like(region)
    region[40:60, 20:100] = 0.9  # one word: 20 x 80 cells of confident character score
    region[5:7, 5:7] = 0.9  # 4 cells: below CRAFT's minimum component size
    mask = text_mask(region, affinity)
    assert mask[50, 60] == 1 and mask[6, 6] == 0
    # CRAFT dilates a component by int(sqrt(size x min(w, h) / (w x h)) x 2) = 8: a 9x9 kernel, 4 cells a side.
    assert mask.sum() == (20 + 8) * (80 + 8)


def test_ocr_text_area_drops_frames_covered_in_text(kit, full):
    import torch

    impl = build(OcrTextArea(max_area_ratio=0.2, frames=1), full)
    with torch.no_grad():  # the last conv decides the maps: region score 1 everywhere = all text
        impl.model.conv_cls[-1].weight.zero_()
        impl.model.conv_cls[-1].bias.copy_(torch.tensor([1.0, 0.0]))
    run = kit.run_op(None, [kit.image_record("page", 1)], full, impl=impl)
    assert run.ended[0].scores["ocr_text_area"]["value"] > 0.9
    assert run.dropped == {"page": "too much text"}
    with torch.no_grad():
        impl.model.conv_cls[-1].bias.zero_()
    fresh = build(OcrTextArea(max_area_ratio=0.2, frames=1), full)
    fresh.__dict__["model"] = impl.model
    assert kit.run_op(None, [kit.image_record("photo", 2)], full, impl=fresh).dropped == {}


def test_defect_mask_is_emitted_with_its_area_ratio(kit, full):
    op = DefectMask(max_area_ratio=0.6, applies_to="all")
    impl = build(op, full)
    real_probability = impl.model.defect_probability

    def left_half_defect(images):  # the real network runs; its map is replaced by a known defect region
        real_probability(images)
        maps = []
        for image in images:
            defect = np.zeros(image.shape[:2], np.float32)
            defect[:, : image.shape[1] // 2] = 1.0
            maps.append(defect)
        return maps

    impl.model.defect_probability = left_half_defect
    run = kit.run_op(None, [kit.image_record("wm", 1)], full, impl=impl)
    (record,) = run.kept
    assert record.scores["defect_mask"]["value"] == pytest.approx(0.5)
    mask = np.asarray(Image.open(io.BytesIO(record.masks["defect_mask"])))
    assert mask.shape == (96, 128)  # the image's own size
    assert mask[:, :64].max() == 0 and mask[:, 64:].min() == 255  # 0 on the defect: excluded from the loss

    strict = build(op.model_copy(update={"max_area_ratio": 0.4}), full)
    strict.__dict__["model"] = impl.model
    assert kit.run_op(None, [kit.image_record("wm", 1)], full, impl=strict).dropped == {"wm": "defect area too large"}


def test_defect_mask_reclaims_only_previously_excluded_records(kit, full):
    op = DefectMask(max_area_ratio=1.0)  # applies_to previously_excluded (Seedream 3.0)
    records = [kit.image_record("clean", 1), kit.image_record("reclaimed", 2, excluded_by="watermark")]
    run = kit.run_op(op, records, full)
    assert run.scored == ["reclaimed"]
    assert [list(r.masks) for r in run.kept] == [[], ["defect_mask"]]
