"""runtime.models.kernels: the Triton kernel (run by triton's interpreter on CPU tensors) against the PyTorch
formula, the custom op's registrations and gradients, and the op on the compiled hot path: traced by the
blocks where the fused kernel runs (CUDA), the plain formula elsewhere."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch._dynamo
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from runtime.models import MMDiT, MMDiTConfig, WanDiT, WanDiTConfig, kernels
from runtime.models.kernels import layer_norm_modulate

REPO = Path(__file__).resolve().parents[3]

# TRITON_INTERPRET must be set before triton is imported, and this process may have imported it already
# (torch.compile does): the kernel runs in a fresh interpreter.
INTERPRETED = textwrap.dedent(
    """
    import json
    import torch
    from runtime.models.kernels import launch_layer_norm_modulate, layer_norm_modulate_reference

    generator = torch.Generator().manual_seed(0)
    errors = {}
    # (batch, tokens, dim, dtype, transposed): a power of two, a padded block, bf16, strided tokens.
    for batch, tokens, dim, dtype, transposed in [
        (2, 5, 64, torch.float32, False),
        (1, 7, 48, torch.float32, False),
        (2, 3, 100, torch.float32, True),
        (2, 4, 32, torch.bfloat16, False),
    ]:
        x = torch.randn(batch, tokens, dim, generator=generator).to(dtype)
        if transposed:
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
        shift = torch.randn(batch, dim, generator=generator)
        scale = torch.randn(batch, dim, generator=generator)
        out = launch_layer_norm_modulate(x, shift, scale, 1e-6)
        expected = layer_norm_modulate_reference(x, shift, scale, 1e-6)
        assert out.dtype == x.dtype and out.shape == x.shape
        case = f"{batch}x{tokens}x{dim} {dtype} transposed={transposed}"
        errors[case] = (out.float() - expected.float()).abs().max().item()
    print(json.dumps(errors))
    """
)


@pytest.fixture(scope="module")
def interpreted_errors():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", INTERPRETED], capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_triton_kernel_matches_pytorch_in_float32(interpreted_errors):
    errors = {case: error for case, error in interpreted_errors.items() if "float32" in case}
    assert len(errors) == 3 and max(errors.values()) <= 1e-5, errors


def test_triton_kernel_rounds_bfloat16_like_pytorch(interpreted_errors):
    """Both compute in float32 and round once; one bf16 ulp (2**-7 of values up to ~4) separates them."""
    (error,) = [error for case, error in interpreted_errors.items() if "bfloat16" in case]
    assert error <= 2**-5


def test_reference_is_layer_norm_then_modulation():
    x, shift, scale = torch.randn(2, 5, 16), torch.randn(2, 16), torch.randn(2, 16)
    normed = torch.nn.functional.layer_norm(x, (16,), eps=1e-6)
    expected = normed * (1 + scale[:, None]) + shift[:, None]
    torch.testing.assert_close(layer_norm_modulate(x, shift, scale), expected, atol=0, rtol=0)


def test_cuda_dispatches_to_the_triton_launch():
    """On CUDA the op runs launch_layer_norm_modulate (register_kernel("cuda")); elsewhere the reference."""
    assert torch._C._dispatch_has_kernel_for_dispatch_key("genspec::layer_norm_modulate", "CUDA")


def test_custom_op_registrations_pass_opcheck():
    """Schema, fake (meta) kernel, autograd registration and dispatch, as torch.library checks them."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 24, generator=generator, requires_grad=True)
    shift = torch.randn(2, 24, generator=generator, requires_grad=True)
    scale = torch.randn(2, 24, generator=generator, requires_grad=True)
    torch.library.opcheck(torch.ops.genspec.layer_norm_modulate.default, (x, shift, scale, 1e-6))


def test_op_backward_matches_finite_differences():
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
        for shape in [(2, 3, 8), (2, 8), (2, 8)]
    ]
    op = torch.ops.genspec.layer_norm_modulate.default
    assert torch.autograd.gradcheck(lambda x, shift, scale: op(x, shift, scale, 1e-6), inputs)


def dispatched_ops(device: str) -> list[str]:
    """The ops layer_norm_modulate dispatches for fake tensors on `device` (no GPU needed for fake CUDA ones)."""

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with FakeTensorMode():
        x, shift = torch.empty(2, 3, 8, device=device), torch.empty(2, 8, device=device)
        with Recorder() as recorder:
            layer_norm_modulate(x, shift, shift)
    return [op for op in recorder.ops if not op.startswith("prim.")]


@pytest.mark.skipif(kernels.triton is None, reason="triton is a Linux-only dependency; the op needs it on CUDA")
def test_cuda_tensors_go_through_the_op():
    assert dispatched_ops("cuda") == ["genspec.layer_norm_modulate.default"]


def test_cpu_tensors_run_the_formula_inductor_can_fuse():
    """The op would be an opaque kernel to inductor on CPU: the formula is dispatched op by op instead."""
    ops = dispatched_ops("cpu")
    assert "genspec.layer_norm_modulate.default" not in ops
    assert "aten.native_layer_norm.default" in ops


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"shift and scale \(B, D\); got x \(2, 5, 16\), shift \(2, 1, 16\)"):
        layer_norm_modulate(torch.randn(2, 5, 16), torch.randn(2, 1, 16), torch.randn(2, 1, 16))


def graph_code(block, *args, **kwargs) -> tuple[int, str]:
    """(graph breaks, the code of every graph) when dynamo traces block(*args, **kwargs)."""
    with torch.no_grad():
        explanation = torch._dynamo.explain(block)(*args, **kwargs)
    return explanation.graph_break_count, "\n".join(graph.code for graph in explanation.graphs)


@pytest.fixture
def fused_kernel_path(monkeypatch):
    """Blocks take the CUDA path (the custom op) on CPU tensors, so their traces can be checked here."""
    monkeypatch.setattr(kernels, "uses_fused_kernel", lambda x: True)


def flux_double_block_graph(flux_kwargs) -> tuple[int, str]:
    """graph_code of a FLUX double-stream block over 6 image and 3 text tokens."""
    torch.manual_seed(0)
    block = MMDiT(MMDiTConfig(**flux_kwargs)).transformer_blocks[0]
    dim = flux_kwargs["num_attention_heads"] * flux_kwargs["attention_head_dim"]
    rope = (torch.ones(9, 16), torch.zeros(9, 16))
    return graph_code(block, torch.randn(2, 6, dim), torch.randn(2, 3, dim), torch.randn(2, dim), rope)


def test_flux_double_block_traces_the_op_without_graph_breaks(flux_kwargs, fused_kernel_path):
    breaks, code = flux_double_block_graph(flux_kwargs)
    assert breaks == 0
    # Two per stream: the attention input and the MLP input.
    assert code.count("genspec.layer_norm_modulate") == 4


def test_wan_block_traces_the_op_without_graph_breaks(wan_kwargs, fused_kernel_path):
    torch.manual_seed(0)
    block = WanDiT(WanDiTConfig(**wan_kwargs)).blocks[0]
    dim = wan_kwargs["num_attention_heads"] * wan_kwargs["attention_head_dim"]
    rope = (torch.ones(6, 32), torch.zeros(6, 32))
    breaks, code = graph_code(block, torch.randn(2, 6, dim), torch.randn(2, 4, dim), torch.randn(2, 6, dim), rope)
    assert breaks == 0
    assert code.count("genspec.layer_norm_modulate") == 2


def test_on_cpu_the_block_graph_has_the_formula_not_the_op(flux_kwargs):
    breaks, code = flux_double_block_graph(flux_kwargs)
    assert breaks == 0
    assert "genspec.layer_norm_modulate" not in code
    assert code.count("layer_norm(") == 4
