"""runtime.models.released: tiny checkpoints written in each released layout load into our networks and give the
diffusers reference's outputs; files that do not fit are refused, naming the file, the key and the shapes.

The diffusers folders are written by diffusers itself (save_pretrained, one file and sharded). The original
single files are written here from the reference's state dict, following the layouts' published key names
(black-forest-labs/flux model.py and layers.py; Wan2.1 wan/modules/model.py); the Wan one is checked against
diffusers' own converter, the FLUX one cannot be (diffusers' converter hard-codes FLUX.1's 3072 width).
"""

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import save_file

from compiler.schema.schedule import ReleasedWeights
from runtime.models import MMDiT, MMDiTConfig, WanDiT, WanDiTConfig
from runtime.models.released import ReleasedWeightsError, load_released

ATOL = 1e-5
FLUX_ID = "black-forest-labs/FLUX.1-dev"
WAN_ID = "Wan-AI/Wan2.1-T2V-1.3B"


def bfl_state_dict(diffusers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FLUX state dict in BFL's layout: q, k, v fused per stream, single blocks' linear1 = q, k, v, MLP in,
    RMSNorm weights named scale, final modulation as (shift, scale)."""
    d = dict(diffusers)
    out = {}

    def take(bfl: str, name: str) -> None:
        for param in ("weight", "bias"):
            if f"{name}.{param}" in d:
                out[f"{bfl}.{param}"] = d.pop(f"{name}.{param}")

    def fuse(bfl: str, names: list[str]) -> None:
        for param in ("weight", "bias"):
            out[f"{bfl}.{param}"] = torch.cat([d.pop(f"{name}.{param}") for name in names])

    for bfl, ours in [("time_in", "timestep_embedder"), ("vector_in", "text_embedder"), ("guidance_in", "guidance_embedder")]:
        take(f"{bfl}.in_layer", f"time_text_embed.{ours}.linear_1")
        take(f"{bfl}.out_layer", f"time_text_embed.{ours}.linear_2")
    take("txt_in", "context_embedder")
    take("img_in", "x_embedder")
    take("final_layer.linear", "proj_out")
    for param in ("weight", "bias"):
        scale, shift = d.pop(f"norm_out.linear.{param}").chunk(2)
        out[f"final_layer.adaLN_modulation.1.{param}"] = torch.cat([shift, scale])
    blocks = sorted({int(k.split(".")[1]) for k in d if k.startswith("transformer_blocks.")})
    for i in blocks:
        ours, bfl = f"transformer_blocks.{i}", f"double_blocks.{i}"
        take(f"{bfl}.img_mod.lin", f"{ours}.norm1.linear")
        take(f"{bfl}.txt_mod.lin", f"{ours}.norm1_context.linear")
        fuse(f"{bfl}.img_attn.qkv", [f"{ours}.attn.to_{x}" for x in "qkv"])
        fuse(f"{bfl}.txt_attn.qkv", [f"{ours}.attn.add_{x}_proj" for x in "qkv"])
        take(f"{bfl}.img_attn.proj", f"{ours}.attn.to_out.0")
        take(f"{bfl}.txt_attn.proj", f"{ours}.attn.to_add_out")
        for stream, suffix in (("img", ""), ("txt", "_added")):
            out[f"{bfl}.{stream}_attn.norm.query_norm.scale"] = d.pop(f"{ours}.attn.norm{suffix}_q.weight")
            out[f"{bfl}.{stream}_attn.norm.key_norm.scale"] = d.pop(f"{ours}.attn.norm{suffix}_k.weight")
        for stream, ff in (("img", "ff"), ("txt", "ff_context")):
            take(f"{bfl}.{stream}_mlp.0", f"{ours}.{ff}.net.0.proj")
            take(f"{bfl}.{stream}_mlp.2", f"{ours}.{ff}.net.2")
    singles = sorted({int(k.split(".")[1]) for k in d if k.startswith("single_transformer_blocks.")})
    for i in singles:
        ours, bfl = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        take(f"{bfl}.modulation.lin", f"{ours}.norm.linear")
        fuse(f"{bfl}.linear1", [f"{ours}.attn.to_q", f"{ours}.attn.to_k", f"{ours}.attn.to_v", f"{ours}.proj_mlp"])
        take(f"{bfl}.linear2", f"{ours}.proj_out")
        out[f"{bfl}.norm.query_norm.scale"] = d.pop(f"{ours}.attn.norm_q.weight")
        out[f"{bfl}.norm.key_norm.scale"] = d.pop(f"{ours}.attn.norm_k.weight")
    assert not d, f"left unconverted: {sorted(d)}"
    return out


WAN_RENAMES = [  # diffusers -> Wan2.1, applied in order
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"),
    (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."),
    (".norm2.", ".norm3."),  # diffusers' norm2 is the cross-attention norm, Wan's norm3
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("proj_out", "head.head"),
]


def wan_state_dict(diffusers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Wan state dict in the Wan2.1 repository's layout."""
    out = {}
    for key, tensor in diffusers.items():
        if key == "scale_shift_table":
            out["head.modulation"] = tensor
            continue
        for old, new in WAN_RENAMES:
            key = key.replace(old, new)
        out[key.replace("scale_shift_table", "modulation")] = tensor
    return out


@pytest.fixture(scope="module")
def flux_reference(flux_kwargs, make_reference):
    return make_reference(MMDiTConfig(**flux_kwargs))


@pytest.fixture(scope="module")
def wan_reference(wan_kwargs, make_reference):
    return make_reference(WanDiTConfig(**wan_kwargs))


def fresh_flux(flux_kwargs):
    torch.manual_seed(123)  # other weights than the reference's
    return MMDiT(MMDiTConfig(**flux_kwargs)).eval()


def model_folder(root, model_id):
    """The folder of `model_id` in a model directory at `root`, in the org--name layout."""
    folder = root / model_id.replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@torch.no_grad()
@pytest.mark.parametrize("shard", [None, "20KB"], ids=["one-file", "sharded"])
def test_diffusers_folder_loads_with_the_reference_outputs(tmp_path, flux_kwargs, flux_inputs, flux_reference, shard):
    folder = model_folder(tmp_path, FLUX_ID) / "transformer"
    flux_reference.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file() == bool(shard)
    ours = fresh_flux(flux_kwargs)
    assert not torch.allclose(ours(**flux_inputs), flux_reference(**flux_inputs).sample, atol=ATOL)

    missing = load_released(ours, ReleasedWeights(released=FLUX_ID, subfolder="transformer"), tmp_path)

    assert missing == []
    torch.testing.assert_close(ours(**flux_inputs), flux_reference(**flux_inputs).sample, atol=ATOL, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."], ids=["bfl", "repacked"])
def test_bfl_single_file_loads_with_the_reference_outputs(tmp_path, flux_kwargs, flux_inputs, flux_reference, prefix):
    original = bfl_state_dict(flux_reference.state_dict())
    assert "double_blocks.0.img_attn.qkv.weight" in original and "single_blocks.1.linear1.bias" in original
    # ae.safetensors sits beside flux1-dev.safetensors in BFL's repository: `file` picks the transformer.
    file = model_folder(tmp_path, FLUX_ID) / "flux1-dev.safetensors"
    save_file({prefix + k: v.contiguous() for k, v in original.items()}, file)
    ours = fresh_flux(flux_kwargs)

    load_released(ours, ReleasedWeights(released=FLUX_ID, layout="bfl", file="flux1-dev.safetensors"), tmp_path)

    torch.testing.assert_close(ours(**flux_inputs), flux_reference(**flux_inputs).sample, atol=ATOL, rtol=0)


@torch.no_grad()
def test_wan_original_file_loads_with_the_reference_outputs(tmp_path, wan_kwargs, wan_inputs, wan_reference):
    diffusers = wan_reference.state_dict()
    original = wan_state_dict(diffusers)
    assert "blocks.0.self_attn.q.weight" in original and "blocks.1.cross_attn.norm_k.weight" in original
    # The file written here is what diffusers' own converter reads back into the reference's state dict.
    converted = convert_wan_transformer_to_diffusers(dict(original))
    assert converted.keys() == diffusers.keys() and len(diffusers) > 0
    assert all(torch.equal(converted[key], diffusers[key]) for key in diffusers)
    hub = tmp_path / "hub" / f"models--{WAN_ID.replace('/', '--')}"  # the Hugging Face cache layout
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text("abc123")
    (hub / "snapshots" / "abc123").mkdir(parents=True)
    file = hub / "snapshots" / "abc123" / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in original.items()}, file)
    torch.manual_seed(123)
    ours = WanDiT(WanDiTConfig(**wan_kwargs)).eval()

    load_released(ours, ReleasedWeights(released=WAN_ID, layout="wan"), tmp_path)

    torch.testing.assert_close(ours(**wan_inputs), wan_reference(**wan_inputs).sample, atol=ATOL, rtol=0)


def write_bfl(tmp_path, state):
    save_file({k: v.contiguous() for k, v in state.items()}, model_folder(tmp_path, FLUX_ID) / "flux1-dev.safetensors")
    return ReleasedWeights(released=FLUX_ID, layout="bfl", file="flux1-dev.safetensors")


def test_a_missing_key_is_refused_by_name_before_anything_is_copied(tmp_path, flux_kwargs, flux_reference):
    original = bfl_state_dict(flux_reference.state_dict())
    del original["double_blocks.1.txt_attn.qkv.bias"]
    ours = fresh_flux(flux_kwargs)
    before = {k: v.clone() for k, v in ours.state_dict().items()}

    with pytest.raises(ReleasedWeightsError) as error:
        load_released(ours, write_bfl(tmp_path, original), tmp_path)

    message = str(error.value)
    assert "flux1-dev.safetensors" in message and "missing 3" in message
    assert "transformer_blocks.1.attn.add_q_proj.bias (as double_blocks.1.txt_attn.qkv.bias)" in message
    assert "unexpected 0" in message
    assert before and before.keys() == ours.state_dict().keys()  # nothing was copied: every tensor as it was
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_an_unexpected_key_is_refused_by_name(tmp_path, flux_kwargs, flux_reference):
    original = bfl_state_dict(flux_reference.state_dict())
    # A third double block, which the two-block network lacks.
    original["double_blocks.2.img_mod.lin.weight"] = original["double_blocks.1.img_mod.lin.weight"].clone()

    with pytest.raises(ReleasedWeightsError, match=r"unexpected 1 \(in the file, not in the network\): "
                                                   r"double_blocks\.2\.img_mod\.lin\.weight"):
        load_released(fresh_flux(flux_kwargs), write_bfl(tmp_path, original), tmp_path)


def test_a_wrong_shape_is_refused_naming_the_key_and_both_shapes(tmp_path, flux_kwargs, flux_reference):
    original = bfl_state_dict(flux_reference.state_dict())
    original["single_blocks.0.linear1.weight"] = original["single_blocks.0.linear1.weight"][:-8]  # a narrower MLP
    ours = fresh_flux(flux_kwargs)
    before = {k: v.clone() for k, v in ours.state_dict().items()}

    with pytest.raises(ReleasedWeightsError) as error:
        load_released(ours, write_bfl(tmp_path, original), tmp_path)

    message = str(error.value)
    assert "flux1-dev.safetensors" in message
    assert "single_blocks.0.linear1.weight: expected (224, 32), found (216, 32)" in message
    assert before and before.keys() == ours.state_dict().keys()  # nothing was copied: every tensor as it was
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_a_wrong_shape_in_a_diffusers_folder_is_refused(tmp_path, flux_kwargs, flux_reference):
    state = {k: v.contiguous() for k, v in flux_reference.state_dict().items()}
    state["x_embedder.weight"] = torch.zeros(32, 8)
    save_file(state, model_folder(tmp_path, FLUX_ID) / "diffusion_pytorch_model.safetensors")

    with pytest.raises(ReleasedWeightsError, match=r"x_embedder\.weight: expected \(32, 16\), found \(32, 8\)"):
        load_released(fresh_flux(flux_kwargs), ReleasedWeights(released=FLUX_ID), tmp_path)


def test_missing_weights_name_where_they_were_expected(tmp_path, flux_kwargs):
    with pytest.raises(ReleasedWeightsError, match="no model directory was given: pass --model-dir"):
        load_released(fresh_flux(flux_kwargs), ReleasedWeights(released=FLUX_ID), None)
    expected = f"put the model's folder at {tmp_path}/black-forest-labs--FLUX.1-dev"
    with pytest.raises(ReleasedWeightsError, match=expected):
        load_released(fresh_flux(flux_kwargs), ReleasedWeights(released=FLUX_ID), tmp_path)
    (model_folder(tmp_path, FLUX_ID) / "ae.safetensors").write_bytes(b"")
    with pytest.raises(ReleasedWeightsError, match=r"set init_from.file .*safetensors there: \['ae.safetensors'\]"):
        load_released(fresh_flux(flux_kwargs), ReleasedWeights(released=FLUX_ID, layout="bfl"), tmp_path)
