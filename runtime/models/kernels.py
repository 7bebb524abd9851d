"""Fused kernels on the transformer hot path, each a torch custom op: Triton on CUDA, PyTorch elsewhere.

- `layer_norm_modulate(x, shift, scale, eps)`: LayerNorm without affine, then adaLN modulation
  x_hat * (1 + scale) + shift (DiT, Peebles & Xie 2023, arXiv:2212.09748). Every FLUX, Qwen-Image and Wan
  block runs it twice per stream. Unfused, eager PyTorch reads x, writes the normalised copy, reads it
  back and writes the result; the kernel reads x once and writes once, one program per token.

Why a custom op: dynamo traces it through its fake implementation, so blocks that call it on CUDA still
compile with fullgraph=True and keep the Triton kernel. The backward is PyTorch on every device: aten's
fused LayerNorm backward plus two reductions.

Where the op is used: `layer_norm_modulate` calls it for CUDA tensors when triton is installed, and the
PyTorch formula directly everywhere else. On CPU the op would only cost: inductor cannot see into a custom
op, so a compiled block would call it as an opaque kernel instead of fusing the formula with its
neighbours, and in eager mode its Python autograd wrapper adds a fixed cost per call (measured on the
benchmark's FLUX-like step, tests/bench/test_train_speed.py: going through the op made the eager step about
2% and the compiled step about 3% slower). The formula is the one the diffusers parity tests check.
"""

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # triton ships for Linux only (pyproject.toml); the PyTorch path needs none of it
    triton = None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for bf16/fp16 inputs (norms of low-precision activations are computed in float32, as
    Wan does and F.layer_norm does internally), float64 stays float64 so gradcheck can run."""
    return torch.promote_types(x.dtype, torch.float32)


def layer_norm_modulate_reference(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float
) -> torch.Tensor:
    """PyTorch formula of the op: F.layer_norm(x) * (1 + scale) + shift in float32, cast back to x.dtype.

    The operation order of the unfused diffusers blocks (normalization.py AdaLayerNormZero), so the CPU
    path matches them to the last bit in float32.
    """
    dtype = _compute_dtype(x)
    # Contiguous like the Triton path's output (elementwise ops would keep the strides of a transposed x).
    normed = F.layer_norm(x.to(dtype).contiguous(), (x.shape[-1],), eps=eps)
    return (normed * (1 + scale.to(dtype)[:, None]) + shift.to(dtype)[:, None]).to(x.dtype)


if triton is not None:

    @triton.jit
    def _layer_norm_modulate_kernel(x_ptr, shift_ptr, scale_ptr, out_ptr, seq_len, dim, eps, BLOCK: tl.constexpr):
        """One token per program: the row of x, and its sample's shift and scale rows, all in registers."""
        # int64: a 720p Wan batch of 6 (75,600 tokens x 5120 each) already passes 2**31 elements.
        row = tl.program_id(0).to(tl.int64)
        sample = row // seq_len
        cols = tl.arange(0, BLOCK)
        inside = cols < dim
        x = tl.load(x_ptr + row * dim + cols, mask=inside, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=0) / dim
        centred = tl.where(inside, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / dim + eps)
        shift = tl.load(shift_ptr + sample * dim + cols, mask=inside, other=0.0).to(tl.float32)
        scale = tl.load(scale_ptr + sample * dim + cols, mask=inside, other=0.0).to(tl.float32)
        out = centred * rstd * (1.0 + scale) + shift
        tl.store(out_ptr + row * dim + cols, out.to(out_ptr.dtype.element_ty), mask=inside)


def launch_layer_norm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Run the Triton kernel on x (B, S, D) with shift and scale (B, D); returns a tensor like x.

    Launches on whatever device the tensors live on: CUDA normally, CPU tensors under TRITON_INTERPRET=1
    (set before triton is imported), which is how the tests check it on machines without a GPU.
    """
    if triton is None:
        raise RuntimeError("launch_layer_norm_modulate needs triton, which is not installed; use the PyTorch path")
    batch, seq_len, dim = x.shape
    x, shift, scale = x.contiguous(), shift.contiguous(), scale.contiguous()
    out = torch.empty_like(x)
    block = triton.next_power_of_2(dim)
    # A warp per 256 channels keeps each thread at a few elements; more than 16 warps stops paying off.
    num_warps = min(max(block // 256, 1), 16)
    _layer_norm_modulate_kernel[(batch * seq_len,)](
        x, shift, scale, out, seq_len, dim, eps, BLOCK=block, num_warps=num_warps
    )
    return out


@torch.library.custom_op("genspec::layer_norm_modulate", mutates_args=())
def _layer_norm_modulate_op(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    return layer_norm_modulate_reference(x, shift, scale, eps)


@_layer_norm_modulate_op.register_kernel("cuda")
def _layer_norm_modulate_cuda(x, shift, scale, eps):
    return launch_layer_norm_modulate(x, shift, scale, eps)


@_layer_norm_modulate_op.register_fake
def _layer_norm_modulate_fake(x, shift, scale, eps):
    # Contiguous whatever the strides of x, as both implementations return (Wan's tokens arrive transposed).
    return x.new_empty(x.shape)


def _setup_backward(ctx, inputs, output):
    x, shift, scale, eps = inputs
    ctx.save_for_backward(x, scale)
    ctx.eps = eps
    ctx.shift_dtype = shift.dtype


def _layer_norm_modulate_backward(ctx, grad_out):
    """Gradients of y = x_hat (1 + scale) + shift, x_hat the LayerNorm of x without affine:
    d shift = sum_S g, d scale = sum_S g x_hat, and d x is LayerNorm's own backward of g' = g (1 + scale).

    Written with aten's fused LayerNorm forward and backward (mean and rstd are recomputed in one pass, not
    saved): eager CPU training runs two kernels here instead of a dozen elementwise ops and reductions, and
    inductor decomposes both into the same fused code it would generate for the formula written out.
    """
    x, scale = ctx.saved_tensors
    dtype = _compute_dtype(x)
    x32, grad = x.to(dtype).contiguous(), grad_out.to(dtype)
    normalized_shape = (x.shape[-1],)
    x_hat, mean, rstd = torch.ops.aten.native_layer_norm(x32, normalized_shape, None, None, ctx.eps)
    grad_shift = grad.sum(1)
    grad_scale = (grad * x_hat).sum(1)
    grad_norm = grad * (1 + scale.to(dtype)[:, None])
    grad_x, _, _ = torch.ops.aten.native_layer_norm_backward(
        grad_norm, x32, normalized_shape, mean, rstd, None, None, [True, False, False]
    )
    return grad_x.to(x.dtype), grad_shift.to(ctx.shift_dtype), grad_scale.to(scale.dtype), None


_layer_norm_modulate_op.register_autograd(_layer_norm_modulate_backward, setup_context=_setup_backward)


def uses_fused_kernel(x: torch.Tensor) -> bool:
    """Whether layer_norm_modulate runs the custom op (the Triton kernel) for x: CUDA tensors, triton installed."""
    return x.is_cuda and triton is not None


def layer_norm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm(x) * (1 + scale) + shift for x (B, S, D) and per-sample shift, scale (B, D).

    Computed in float32 (float64 stays float64) and returned in x.dtype: the op genspec::layer_norm_modulate
    (the Triton kernel) where uses_fused_kernel(x), else the same formula in PyTorch (see the module docstring).
    """
    if x.ndim != 3 or shift.shape != (x.shape[0], x.shape[2]) or scale.shape != shift.shape:
        raise ValueError(
            f"layer_norm_modulate takes x (B, S, D) with shift and scale (B, D); got x {tuple(x.shape)}, "
            f"shift {tuple(shift.shape)}, scale {tuple(scale.shape)}"
        )
    if uses_fused_kernel(x):
        return _layer_norm_modulate_op(x, shift, scale, eps)
    return layer_norm_modulate_reference(x, shift, scale, eps)
