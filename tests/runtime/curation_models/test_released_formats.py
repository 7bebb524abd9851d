"""Each model-backed op reads its weights in the format the public checkpoint ships in.

Every test writes a tiny (or narrow) model under the released file names with the released key layout, as
the original code saves it (torch pickles with the same module names), and loads it through the op's
loader, which loads strictly: a missing or extra key fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.curation.modelzoo.weights import Located


def test_craft_loads_craft_mlt_25k_as_released(tmp_path):
    """craft_mlt_25k.pth is a DataParallel save of CRAFT-pytorch's craft.py: `module.` prefix, double_conv
    layers under `.conv`, VGG16-BN slices under basenet.slice<k>.<features index>."""
    from runtime.curation.modelzoo.craft import CraftConfig, build_craft, load_craft

    config = CraftConfig(widths=0.125)
    original = build_craft(config).eval()
    state = {f"module.{k}": v for k, v in original.state_dict().items()}
    for key in ("module.upconv1.conv.0.weight", "module.upconv4.conv.4.running_var", "module.basenet.slice1.0.weight",
                "module.basenet.slice4.38.bias", "module.basenet.slice5.1.weight", "module.conv_cls.8.weight"):
        assert key in state, key
    torch.save(state, tmp_path / "craft_mlt_25k.pth")
    (tmp_path / "config.json").write_text(json.dumps({"widths": 0.125}))

    loaded = load_craft(Located("craft", tmp_path))
    image = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(image), original(image))


def test_craft_refuses_a_checkpoint_without_the_conv_wrapper(tmp_path):
    from runtime.curation.modelzoo.craft import CraftConfig, build_craft, load_craft

    state = {k.replace(".conv.", "."): v for k, v in build_craft(CraftConfig(widths=0.125)).state_dict().items()}
    torch.save(state, tmp_path / "craft_mlt_25k.pth")
    (tmp_path / "config.json").write_text(json.dumps({"widths": 0.125}))
    with pytest.raises(RuntimeError, match="upconv1.conv.0.weight"):
        load_craft(Located("craft", tmp_path))


def _torchvision_checkpoint(model) -> dict:
    """The trunk as torchvision ships it: features.<i>.* plus a classifier head LPIPS does not use."""
    state = {f"features.{k.split('.', 2)[2]}": v for k, v in model.state_dict().items() if k.startswith("net.")}
    state["classifier.1.weight"] = torch.zeros(4, 4)
    return state


@pytest.mark.parametrize(("net", "trunk_file", "tap"), [
    ("alex", "alexnet-owt-7be5be79.pth", "net.slice2.3.weight"),
    ("vgg", "vgg16-397923af.pth", "net.slice5.28.weight"),
])
def test_lpips_loads_the_lpips_package_lin_file_and_torchvision_trunk(tmp_path, net, trunk_file, tap):
    from runtime.curation.modelzoo.lpips import load_lpips, random_lpips

    original = random_lpips(seed=3, net=net)
    assert tap in original.state_dict()  # the lpips package's pretrained_networks names
    torch.save(_torchvision_checkpoint(original), tmp_path / trunk_file)
    torch.save({k: v for k, v in original.state_dict().items() if k.startswith("lin")}, tmp_path / f"{net}.pth")

    loaded = load_lpips(Located("lpips", tmp_path))
    assert loaded.net_name == net
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(loaded(a, b), original(a, b))
        assert float(loaded(a, a).abs().max()) == 0.0


def test_lpips_loads_a_whole_lpips_state_dict_strictly(tmp_path):
    from runtime.curation.modelzoo.lpips import load_lpips, random_lpips

    original = random_lpips(seed=4, net="vgg")
    state = original.state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "vgg.pth")
    torch.save(state, tmp_path / "lpips.pth")
    load_lpips(Located("lpips", tmp_path))
    state.pop("net.slice3.14.bias")
    torch.save(state, tmp_path / "lpips.pth")
    with pytest.raises(RuntimeError, match="net.slice3.14.bias"):
        load_lpips(Located("lpips", tmp_path))


def test_lpips_folder_with_two_lin_files_is_ambiguous(tmp_path):
    from runtime.curation.modelzoo.lpips import load_lpips

    (tmp_path / "alex.pth").write_bytes(b"")
    (tmp_path / "vgg.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="exactly one trunk"):
        load_lpips(Located("lpips", tmp_path))


def test_frame_consistency_scores_with_a_vgg_folder(kit, tmp_path):
    from compiler.schema.data import FrameConsistency
    from runtime.curation.api import OpContext
    from runtime.curation.modelzoo.lpips import random_lpips, save_lpips

    save_lpips(random_lpips(seed=5, net="vgg"), tmp_path / "lpips")
    moving = [kit.texture(seed) for seed in range(16)]
    op = FrameConsistency(min_score=None, max_score=None)
    run = kit.run_op(op, [kit.video_record("moving", moving)], OpContext(tmp_path, "full"))
    score = run.kept[0].scores["frame_consistency"]
    assert score["value"] > 0 and "stand_in" not in score


def _tiny_siglip(folder):
    """A 2-layer SiglipModel saved as google/siglip-* folders are (save_pretrained), with a byte tokenizer."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    from runtime.curation.modelzoo.tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = SiglipConfig(text_config=dict(tower, vocab_size=len(tokenizer), max_position_embeddings=16),
                          vision_config=dict(tower, image_size=32, patch_size=8))
    torch.manual_seed(11)
    model = SiglipModel(config).eval()
    model.save_pretrained(folder)
    SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}),
                    tokenizer=tokenizer).save_pretrained(folder)
    return model


def test_siglip_embedder_loads_a_siglip_folder_and_matches_get_features(tmp_path):
    from runtime.curation.modelzoo.clip import ClipEmbedder
    from runtime.curation.modelzoo.embedders import is_image_embedder

    model = _tiny_siglip(tmp_path / "siglip")
    located = Located("google/siglip-base-patch16-224", tmp_path / "siglip")
    assert is_image_embedder(located)
    embedder = ClipEmbedder.load(located)
    assert embedder.siglip and embedder.dim == 32
    images = [np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)]
    vectors = embedder.image_embeddings(images)
    pixels = embedder.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(model.vision_model(pixel_values=pixels).pooler_output, dim=-1)
    np.testing.assert_allclose(vectors, expected.numpy(), atol=1e-5)
    text = embedder.text_embeddings(["a cat", "a much longer caption"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_an_embedder_folder_missing_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from runtime.curation.modelzoo.clip import ClipEmbedder

    _tiny_siglip(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    dropped = next(k for k in state if "vision_model.head" in k)
    save_file({k: v for k, v in state.items() if k != dropped}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing_keys"):
        ClipEmbedder.load(Located("siglip", tmp_path))


RAFT_LAYOUT = json.loads((Path(__file__).parent / "data" / "raft_state_dict_layout.json").read_text())


@pytest.mark.parametrize(("variant", "file"), [("raft_small", "raft_small_C_T_V2-01064c6d.pth"),
                                               ("raft_large", "raft_large_C_T_SKHT_V2-ff5fadd5.pth")])
def test_raft_has_torchvisions_state_dict_layout_and_loads_its_checkpoint_strictly(tmp_path, variant, file):
    """The layout file lists torchvision 0.28's raft_small()/raft_large() state dict (keys and shapes)."""
    from runtime.curation.modelzoo.raft import RAFT_VARIANTS, build_raft, load_raft

    torch.manual_seed(0)
    original = build_raft(RAFT_VARIANTS[variant]).eval()
    assert [[k, list(v.shape)] for k, v in original.state_dict().items()] == RAFT_LAYOUT[variant]
    torch.save(original.state_dict(), tmp_path / file)
    loaded = load_raft(Located("raft", tmp_path))
    a, b = torch.rand(1, 3, 128, 128) * 2 - 1, torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(loaded(a, b, num_flow_updates=2), original(a, b, num_flow_updates=2))


def test_motion_score_with_raft_runs_at_full_scale_from_the_released_weights(kit, tmp_path):
    from compiler.schema.data import MotionScore
    from runtime.curation.api import OpContext
    from runtime.curation.modelzoo.raft import RAFT_VARIANTS, build_raft

    (tmp_path / "raft").mkdir()
    torch.manual_seed(1)
    torch.save(build_raft(RAFT_VARIANTS["raft_small"]).state_dict(), tmp_path / "raft" / "raft_small_C_T_V2-01064c6d.pth")
    frames = [np.roll(kit.texture(3, 128, 128), 4 * i, axis=1) for i in range(8)]
    op = MotionScore(scorer="raft", fps=4, analysis_short_side_px=128, min_score=None)
    run = kit.run_op(op, [kit.video_record("pan", frames)], OpContext(tmp_path, "full"))
    score = run.kept[0].scores["motion_score"]
    assert score["steps"] >= 2 and score["value"] >= 0 and "stand_in" not in score


WATERMARK_LAYOUT = json.loads((Path(__file__).parent / "data" / "laion_watermark_state_dict_layout.json").read_text())


def test_laion_watermark_model_has_the_released_layout_and_scores_at_full_scale(kit, tmp_path):
    """watermark_model_v1.pt: timm efficientnet_b3a with LAION's MLP classifier (layout from timm 1.0.31)."""
    from compiler.schema.data import Watermark
    from runtime.curation.api import OpContext
    from runtime.curation.modelzoo.laion_watermark import build_watermark_model

    torch.manual_seed(2)
    model = build_watermark_model().eval()
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == WATERMARK_LAYOUT["watermark_model_v1"]
    with torch.no_grad():  # logits (3, 0): every image is 95% "watermark" (index 0, as in example_use.py)
        model.classifier[5].weight.zero_()
        model.classifier[5].bias.copy_(torch.tensor([3.0, 0.0]))
    (tmp_path / "laion-watermark").mkdir()
    torch.save(model.state_dict(), tmp_path / "laion-watermark" / "watermark_model_v1.pt")

    op = Watermark(scorer="laion-watermark", max_score=0.9)
    run = kit.run_op(op, [kit.image_record("x", 1)], OpContext(tmp_path, "full"))
    assert run.ended[0].scores["watermark"]["value"] == pytest.approx(0.9526, abs=1e-3)
    assert run.dropped == {"x": "watermark"}


def test_a_watermark_checkpoint_with_timms_default_head_is_refused(tmp_path):
    from runtime.curation.modelzoo.laion_watermark import build_watermark_model, load_watermark_model

    state = build_watermark_model().state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    state["classifier.weight"], state["classifier.bias"] = torch.zeros(2, 1536), torch.zeros(2)
    torch.save(state, tmp_path / "watermark_model_v1.pt")
    with pytest.raises(RuntimeError, match="classifier.0.weight"):
        load_watermark_model(Located("laion-watermark", tmp_path))
