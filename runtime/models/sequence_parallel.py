"""Ulysses sequence parallelism (Jacobs et al. 2023, arXiv:2309.14509) through DeepSpeed's DistributedAttention.

The ranks of one sequence-parallel (SP) group read the same sample. After patch embedding each rank keeps a
contiguous slice of the image/video tokens; blocks run per token on that slice, and self-attention goes through
`deepspeed.sequence.layer.DistributedAttention`, whose all-to-all turns the sequence-sharded q, k, v (every
head) into head-sharded ones (the whole sequence) around a local attention and back.

Text tokens are replicated, not sharded, across the group: every rank computes the whole text stream. In joint
(MMDiT) attention each rank takes its own heads of the text q, k, v (a slice, no communication), attends over
[text, all image tokens] for those heads, and all-gathers the text output over heads. Replicating keeps text
lengths free of any divisibility rule (prompt lengths vary, the image grid is what the planner sizes), keeps the
[text, image] key order so padding masks apply unchanged, and costs one text-sized all-gather per attention,
small next to the image all-to-alls. Cross-attention to text (Wan, Allegro) needs no communication at all:
each query token attends to the whole replicated text on its own rank.

Gradient accounting, which makes loss and gradients identical to one rank's: a replicated activation carries,
on each rank, only the gradient of that rank's own use of it (slices take no gradient elsewhere; the text
all-gather's backward sums over the group); the model's output is gathered after the final projection, so
every rank computes the same full loss, and the gather's backward keeps the rank's own slice of that one
gradient. The sum over the group of each rank's parameter gradients is then the single-rank gradient, which is
what DeepSpeed's reduction computes: it all-reduces over the sequence-data-parallel group and divides by the
data-parallel size only (deepspeed/runtime/engine.py _reduce_non_expert_gradients). Every rank of a group must
also draw the same noise and timesteps: seed the objective with `data_parallel_rank`.
"""

from dataclasses import dataclass
from typing import Any

import torch

from runtime.models.rope import RopeTables


def data_parallel_rank(global_rank: int, sequence_parallel_size: int) -> int:
    """The rank whose samples `global_rank` reads: all ranks of one SP group (consecutive global ranks) read the
    same samples, so the data loader shards over world_size // sp readers and draws with this rank."""
    if sequence_parallel_size < 1:
        raise ValueError(f"sequence_parallel_size is {sequence_parallel_size}; it must be 1 or more")
    return global_rank // sequence_parallel_size


def data_parallel_world_size(world_size: int, sequence_parallel_size: int) -> int:
    """Number of distinct sample readers: world_size // sp, after checking that sp divides the world."""
    if sequence_parallel_size < 1 or world_size % sequence_parallel_size:
        raise ValueError(
            f"sequence_parallel_size {sequence_parallel_size} does not divide world size {world_size}; "
            "data-parallel x sequence-parallel must equal the world size: pick a divisor"
        )
    return world_size // sequence_parallel_size


class SequenceParallelGroups:
    """The `mpu` DeepSpeed reads its sequence-parallel state from (deepspeed.utils.groups: _get_sequence_parallel_
    group and friends consult `groups.mpu`): SP groups of consecutive ranks, data-parallel groups of the ranks
    with the same SP rank, and the sequence-data-parallel group (everyone) over which ZeRO partitions and
    gradients are reduced. Pass it as `deepspeed.initialize(mpu=...)`; `register()` sets it without an engine.

    Collective: every rank must construct it, in the same order (torch.distributed.new_group).
    """

    def __init__(self, sequence_parallel_size: int):
        import torch.distributed as dist

        world, rank = dist.get_world_size(), dist.get_rank()
        self.sp_size = sequence_parallel_size
        self.dp_size = data_parallel_world_size(world, sequence_parallel_size)
        self._sp_group = self._dp_group = None
        self._sp_ranks = self._dp_ranks = []
        for first in range(0, world, sequence_parallel_size):  # new_group is collective: every rank makes all
            ranks = list(range(first, first + sequence_parallel_size))
            group = dist.new_group(ranks)
            if rank in ranks:
                self._sp_group, self._sp_ranks = group, ranks
        for sp_rank in range(sequence_parallel_size):
            ranks = list(range(sp_rank, world, sequence_parallel_size))
            group = dist.new_group(ranks)
            if rank in ranks:
                self._dp_group, self._dp_ranks = group, ranks
        self._world_group = dist.group.WORLD
        self._mp_group = None  # no tensor/model parallelism: each rank is its own group of one
        for other in range(world):
            group = dist.new_group([other])
            if other == rank:
                self._mp_group = group

    def register(self) -> None:
        """Make DeepSpeed's groups module answer from these groups (deepspeed.initialize(mpu=...) does the same)."""
        from deepspeed.utils import groups

        groups.mpu = self

    def get_sequence_parallel_group(self):
        return self._sp_group

    def get_sequence_parallel_world_size(self) -> int:
        return self.sp_size

    def get_sequence_parallel_rank(self) -> int:
        import torch.distributed as dist

        return self._sp_ranks.index(dist.get_rank())

    def get_sequence_data_parallel_group(self):
        return self._world_group

    def get_sequence_data_parallel_world_size(self) -> int:
        return self.sp_size * self.dp_size

    def get_sequence_data_parallel_rank(self) -> int:
        import torch.distributed as dist

        return dist.get_rank()

    def get_data_parallel_group(self):
        return self._dp_group

    def get_data_parallel_group_ranks(self) -> list[int]:
        return list(self._dp_ranks)

    def get_data_parallel_world_size(self) -> int:
        return self.dp_size

    def get_data_parallel_rank(self) -> int:
        import torch.distributed as dist

        return self._dp_ranks.index(dist.get_rank())

    # No tensor/model parallelism: a group of one.
    def get_model_parallel_group(self):
        return self._mp_group

    def get_model_parallel_world_size(self) -> int:
        return 1

    def get_model_parallel_rank(self) -> int:
        return 0


class _GatherLoss(torch.autograd.Function):
    """All-gather along `dim`; backward keeps this rank's slice. Right only where every rank then computes the
    same function of the gathered tensor (the replicated loss), so each rank's gradient is the same tensor."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, group: Any) -> torch.Tensor:
        import torch.distributed as dist

        ctx.dim, ctx.rank, ctx.size = dim, dist.get_rank(group), dist.get_world_size(group)
        parts = [torch.empty_like(x) for _ in range(ctx.size)]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        return grad.chunk(ctx.size, dim=ctx.dim)[ctx.rank].contiguous(), None, None


class _GatherSum(torch.autograd.Function):
    """All-gather along `dim`; backward sums every rank's gradient and keeps this rank's slice (a
    reduce-scatter, written as all-reduce + slice because gloo has no reduce-scatter): each rank's copy of
    the gathered tensor carries only the gradient of its own use."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, group: Any) -> torch.Tensor:
        import torch.distributed as dist

        ctx.dim, ctx.rank, ctx.size, ctx.group = dim, dist.get_rank(group), dist.get_world_size(group), group
        parts = [torch.empty_like(x) for _ in range(ctx.size)]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad.chunk(ctx.size, dim=ctx.dim)[ctx.rank].contiguous(), None, None


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, S, H, D) -> (B, S, H, D); the local attention the all-to-alls wrap."""
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2)


def _joint_local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    text: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    mask: torch.Tensor | None,
    text_out: list,
) -> torch.Tensor:
    """Local attention for DistributedAttention: q, k, v are this rank's heads over all image tokens; `text`
    holds the same heads of the replicated text q, k, v, attended first as in [text, image]. Returns the image
    output (all-to-all'd back by DistributedAttention); the text output goes to `text_out` (a side channel,
    since DistributedAttention moves exactly one tensor back)."""
    if text is None:
        return _sdpa(q, k, v, mask)
    text_len = text[0].shape[1]
    q, k, v = (torch.cat([t, x], dim=1) for t, x in zip(text, (q, k, v)))
    out = _sdpa(q, k, v, mask)
    text_out.append(out[:, :text_len])
    return out[:, text_len:]


@dataclass
class SequenceParallel:
    """One model's view of its SP group: slicing, gathering and the distributed attention.

    Attach with `enable_sequence_parallel(model, group)`; the models and attention modules consult their
    `sequence_parallel` attribute (None: one rank holds the whole sequence)."""

    group: Any
    size: int
    rank: int
    _attention: Any = None

    @classmethod
    def from_group(cls, group: Any) -> "SequenceParallel":
        import torch.distributed as dist
        from deepspeed.sequence.layer import DistributedAttention

        sp = cls(group=group, size=dist.get_world_size(group), rank=dist.get_rank(group))
        # (B, S, H, D): scatter heads (dim 2), gather the sequence (dim 1); batch_dim_idx=0 at call time.
        sp._attention = DistributedAttention(_joint_local_attention, group, scatter_idx=2, gather_idx=1)
        return sp

    def check_shardable(self, tokens: int, heads: int, what: str) -> None:
        """Ulysses needs the sharded tokens and the heads divisible by the SP degree."""
        if tokens % self.size or heads % self.size:
            raise ValueError(
                f"sequence parallelism {self.size} needs {what} tokens ({tokens}) and attention heads ({heads}) "
                f"divisible by {self.size}; change the resolution/frame count or the stage's sequence_parallel_size"
            )

    def bounds(self, tokens: int) -> tuple[int, int]:
        """This rank's [start, end) of a sequence of `tokens` sharded tokens."""
        local = tokens // self.size
        return self.rank * local, (self.rank + 1) * local

    def shard(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's contiguous slice of the replicated x along `dim`."""
        start, end = self.bounds(x.shape[dim])
        return x.narrow(dim, start, end - start)

    def shard_rope(self, rope: RopeTables, replicated: int) -> RopeTables:
        """Tables over [replicated tokens, sharded tokens] -> [replicated, this rank's sharded slice]."""
        start, end = self.bounds(rope[0].shape[0] - replicated)
        return tuple(torch.cat([t[:replicated], t[replicated + start : replicated + end]]) for t in rope)

    def gather_output(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The whole sequence from every rank's slice, for the replicated loss (see the module docstring)."""
        return _GatherLoss.apply(x, dim, self.group)

    def attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None = None,
        replicated: int = 0,
    ) -> torch.Tensor:
        """Self/joint attention of (B, S_local, H, D) tensors whose first `replicated` tokens (text) are the
        same on every rank and the rest this rank's slice; returns (B, S_local, H * D).

        `mask` broadcasts to (B, H, S_q, S_k) over the whole [text, image] sequence; only a key mask
        (B, 1, 1, S_k) or none is supported, since query rows are distributed."""
        if mask is not None and mask.shape[-2] != 1:
            raise ValueError(f"sequence-parallel attention takes a key mask (B, 1, 1, S_k); got {tuple(mask.shape)}")
        heads = q.shape[2]
        self.check_shardable((q.shape[1] - replicated) * self.size, heads, "image/video")
        text, text_out = None, []
        if replicated:
            local_heads = slice(self.rank * heads // self.size, (self.rank + 1) * heads // self.size)
            text = tuple(t[:, :replicated, local_heads] for t in (q, k, v))
            q, k, v = (t[:, replicated:] for t in (q, k, v))
        out = self._attention(q, k, v, 0, None, text=text, mask=mask, text_out=text_out)
        if replicated:
            text_heads = _GatherSum.apply(text_out[0], 2, self.group)
            out = torch.cat([text_heads, out], dim=1)
        return out.flatten(2)


def enable_sequence_parallel(model: torch.nn.Module, group: Any = None) -> SequenceParallel | None:
    """Run `model` sequence-parallel over `group` (default: DeepSpeed's, deepspeed.utils.groups, set by
    SequenceParallelGroups or deepspeed.initialize(mpu=...)). A group of one leaves the model as it is.

    Sets `sequence_parallel` on the model and on every attention module; the model must support it (MMDiT,
    QwenImageMMDiT, WanDiT and the families built from them)."""
    if group is None:
        from deepspeed.utils import groups

        group = groups._get_sequence_parallel_group()
    sp = SequenceParallel.from_group(group)
    if sp.size == 1:
        return None
    network = model
    # The default factory's ModelAdapter (runtime/models/factory.py) holds the family network as `.model`; the
    # network is what splits the tokens, so it is the one that must support SP (attention modules alone do not).
    while not hasattr(network, "sequence_parallel") and isinstance(getattr(network, "model", None), torch.nn.Module):
        network = network.model
    if not hasattr(network, "sequence_parallel"):
        raise ValueError(
            f"{type(network).__name__} does not support sequence parallelism; plan this stage with "
            "sequence_parallel_size 1"
        )
    for module in model.modules():
        if hasattr(module, "sequence_parallel"):
            module.sequence_parallel = sp
    return sp
