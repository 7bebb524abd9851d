"""Activation checkpointing of a model's repeated blocks."""

from types import MethodType

from torch import nn
from torch.utils.checkpoint import checkpoint


def _checkpointed_forward(block: nn.Module, *args, **kwargs):
    """The block's own forward under torch.utils.checkpoint. A named function, not a functools.partial, so
    dynamo starts tracing here when the block is compiled and traces the checkpoint as one region."""
    return checkpoint(type(block).forward, block, *args, use_reentrant=False, **kwargs)


class ActivationCheckpointing:
    """Mixin for the models in runtime.models, which name their block lists in `repeated_blocks`."""

    def enable_activation_checkpointing(self) -> None:
        """Keep only each repeated block's inputs in the forward pass and recompute its activations in the
        backward pass: activation memory falls from every block's intermediates to one block's, for about
        one extra forward.

        torch.utils.checkpoint with use_reentrant=False, the form that passes keyword arguments, nests in
        torch.compile and works when the block's inputs need no gradient. The checkpointed forward is set on
        each block instance, so state-dict keys do not change; call it before compile_blocks, which compiles
        the forward a block has then. Calling it twice changes nothing.
        """
        for name in self.repeated_blocks:
            for block in getattr(self, name):
                block.forward = MethodType(_checkpointed_forward, block)
