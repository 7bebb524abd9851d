"""The final export streams one parameter at a time: the extra memory it takes on the engine's device is at
most the largest parameter, also while it writes a sharded diffusers folder beside model.safetensors, and the
files hold the same weights as a gather of the whole model.

There is no CUDA allocator on a CPU, so the test counts on the engine's device what the export holds at once:
ZeRO-3 parameters gathered (DeepSpeed's own status, ds_status AVAILABLE) plus every storage an operation
allocated there during the export and that is still alive (a TorchDispatchMode sees each operation's outputs;
a weakref on the storage sees it freed). The test runs in fp32, where the host copy of a tensor on a CPU
engine is the tensor itself: any storage the export allocates is one it would allocate on an accelerator.
"""

import json
import weakref

import pytest
import tiny_model
import torch
from conftest import CHANNELS, POOLED_DIM, SIDE, TEXT_DIM, TEXT_LEN, architecture
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from compiler.schema.architecture import ArchitectureSpec
from runtime.models import build_model
from runtime.train.ema import EMA
from runtime.train.export import DIFFUSERS, DIFFUSERS_EMA, INDEX_NAME, export_final
from runtime.train.launch import prepare_environment


class HeldOnDevice(TorchDispatchMode):
    """Peak bytes held at once on `device` by gathered ZeRO-3 parameters and by storages allocated while the
    mode is on."""

    def __init__(self, device: torch.device, params: list[torch.nn.Parameter]):
        super().__init__()
        self.device, self.params = device, params
        self.allocated: dict[int, int] = {}  # data_ptr -> bytes of storages allocated under the mode, alive
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or tensor.device != self.device:
                continue
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if storage.nbytes() == 0 or pointer in inputs or pointer in self.allocated:
                continue  # a view of an input or of something counted already
            self.allocated[pointer] = storage.nbytes()
            weakref.finalize(storage, self.allocated.pop, pointer, None)
        self.sample()
        return out

    def sample(self) -> None:
        gathered = {p.data.untyped_storage().data_ptr(): p.ds_numel * p.element_size() for p in self.params
                    if p.data.numel() > 0}
        extra = sum(size for pointer, size in self.allocated.items() if pointer not in gathered)
        self.peak = max(self.peak, extra + sum(gathered.values()))


def zero3(model):
    """A ZeRO-3 fp32 engine of `model` after one optimizer step, with an EMA of it."""
    prepare_environment()
    import deepspeed

    deepspeed.init_distributed()
    config = {
        "train_batch_size": 2,
        "train_micro_batch_size_per_gpu": 2,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},  # every parameter partitioned
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1_000_000,
    }
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config=config)
    ema = EMA(engine.module, 0.5)
    latents = torch.randn(2, CHANNELS, SIDE, SIDE)
    text, pooled = torch.randn(2, TEXT_LEN, TEXT_DIM), torch.randn(2, POOLED_DIM)
    loss = engine(latents, torch.rand(2), text=text, pooled=pooled).sub(latents).pow(2).mean()
    engine.backward(loss)
    engine.step()
    ema.update()
    return engine, ema


@pytest.fixture(scope="module")
def zero3_engine():
    """The tiny denoiser (no diffusers class: final/ has no diffusers folder)."""
    torch.manual_seed(0)
    return zero3(tiny_model.TinyDenoiser(channels=CHANNELS, text_dim=TEXT_DIM, pooled_dim=POOLED_DIM, time_scale=1.0,
                                         guidance=False))


@pytest.fixture(scope="module")
def zero3_flux():
    """A FLUX-like runtime.models network, which final/ also writes as a diffusers folder."""
    torch.manual_seed(0)
    return zero3(build_model(ArchitectureSpec(**architecture())))


def test_export_holds_at_most_the_largest_parameter_on_the_device(zero3_engine, tmp_path):
    engine, ema = zero3_engine
    params = list(engine.module.parameters())
    assert all(hasattr(p, "ds_id") and p.data.numel() == 0 for p in params)  # partitioned before the export
    largest = max(p.ds_numel * p.element_size() for p in params)
    total = sum(p.ds_numel * p.element_size() for p in params)
    assert largest < total / 2  # else the bound below would not tell streaming from gathering all
    held = HeldOnDevice(engine.device, params)
    with held:
        export_final(engine, ema, tmp_path, 0, "{}", {"stage": "s"})
    assert 0 < held.peak <= largest, (held.peak, largest, total)


def test_export_writes_the_whole_weights_and_the_ema(zero3_engine, tmp_path):
    import deepspeed

    engine, ema = zero3_engine
    export_final(engine, ema, tmp_path, 0, '{"architecture": 1}', {"stage": "s", "steps": 1})
    final = tmp_path / "final"
    module = engine.module
    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        whole = {name: p.detach().float().clone() for name, p in module.state_dict(keep_vars=True).items()}
    written = load_file(str(final / "model.safetensors"))
    assert list(written) == list(whole) and len(whole) > 3
    for name, tensor in whole.items():
        torch.testing.assert_close(written[name], tensor, rtol=0, atol=0, msg=name)
    shadows = load_file(str(final / "ema.safetensors"))
    expected = ema.state_dict()["shadow"]
    assert sorted(shadows) == sorted(expected)
    for name, shadow in expected.items():
        torch.testing.assert_close(shadows[name], shadow.view(whole[name].shape), rtol=0, atol=0, msg=name)
    assert not torch.equal(shadows["out.weight"], written["out.weight"])  # the EMA file holds the EMA
    assert json.loads((final / "done.json").read_text()) == {"stage": "s", "steps": 1}
    assert (final / "architecture.json").read_text() == '{"architecture": 1}'
    assert not list(final.glob("*.part"))


def test_the_diffusers_folders_stream_too(zero3_flux, tmp_path):
    """model.safetensors and the diffusers shards are written from one gather of each parameter: the bound holds
    with the folder sharded, and every shard holds the gathered weights under the network's own keys."""
    import deepspeed

    engine, ema = zero3_flux
    params = list(engine.module.parameters())
    largest = max(p.ds_numel * p.element_size() for p in params)
    held = HeldOnDevice(engine.device, params)
    with held:
        export_final(engine, ema, tmp_path, 0, "{}", {"stage": "s"}, max_shard_bytes=largest)
    assert 0 < held.peak <= largest, (held.peak, largest)
    final = tmp_path / "final"
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        whole = {name.removeprefix("model."): p.detach().float().clone()
                 for name, p in engine.module.state_dict(keep_vars=True).items()}
    for folder, expected in [(DIFFUSERS, whole), (DIFFUSERS_EMA, None)]:
        weight_map = json.loads((final / folder / INDEX_NAME).read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
        assert len(shards) > 2 and sorted(weight_map) == sorted(whole)
        written = {name: tensor for shard in shards for name, tensor in load_file(str(final / folder / shard)).items()}
        if expected is not None:
            for name, tensor in expected.items():
                torch.testing.assert_close(written[name], tensor, rtol=0, atol=0, msg=name)
        else:
            shadows = load_file(str(final / "ema.safetensors"))
            for name, tensor in shadows.items():
                torch.testing.assert_close(written[name.removeprefix("model.")], tensor, rtol=0, atol=0, msg=name)
    provenance = json.loads((final / "provenance.json").read_text())
    assert provenance["diffusers"] == {"class": "FluxTransformer2DModel", "folders": [DIFFUSERS, DIFFUSERS_EMA]}


def test_a_model_without_a_diffusers_class_says_why(zero3_engine, tmp_path):
    engine, ema = zero3_engine
    export_final(engine, ema, tmp_path, 0, "{}", {"stage": "s"})
    final = tmp_path / "final"
    assert not (final / DIFFUSERS).exists() and not (final / DIFFUSERS_EMA).exists()
    reason = json.loads((final / "provenance.json").read_text())["diffusers"]["none"]
    assert "TinyDenoiser" in reason and "custom model factory" in reason
