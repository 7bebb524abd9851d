"""Compile a model's repeated blocks one by one, in a way DeepSpeed ZeRO-3 trains too."""

import torch
from torch import nn


def compile_blocks(model: nn.Module, **compile_options) -> nn.Module:
    """Compile the forward of every block in `model.repeated_blocks` in place with torch.compile(fullgraph=True),
    and mark each block a ZeRO-3 leaf module. Returns `model`.

    Compiling blocks rather than the whole model keeps compile time to one block per block class: blocks of
    one class share a code object, and dynamo treats their parameters as graph inputs, so one graph serves
    them all. fullgraph=True turns a graph break into an error instead of a silent slowdown. The compiled
    forward is set on each block instance, so state-dict keys stay and checkpoints load either way.

    Why the forward and not the module call (nn.Module.compile): ZeRO-3 gathers parameters in forward hooks
    it registers on every module and marks torch.compiler.disable; a compiled module call traces its hooks,
    so fullgraph=True fails on the first one and without it every sub-module's hook breaks the graph (as
    does DeepSpeed's own engine.compile(), which compiles the whole model that way). Marking the block a ZeRO-3
    leaf (deepspeed.utils.set_z3_leaf_module sets this flag) makes DeepSpeed hook the block alone, not its
    sub-modules: the block's hooks gather all its parameters at once outside the graph, and the compiled
    forward inside them has no hooks left to trace. Outside ZeRO-3 the flag is never read. The cost under
    ZeRO-3: a whole block's parameters are gathered at once rather than one layer's.

    The forward compiled is the one the block has now: enable_activation_checkpointing must run first (it
    sets its own forward, which would replace the compiled one). `compile_options` go to torch.compile
    (mode, dynamic, backend, ...).
    """
    names = getattr(model, "repeated_blocks", None)
    if names is None:
        raise TypeError(
            f"{type(model).__name__} has no `repeated_blocks` attribute naming its block lists; "
            "compile_blocks takes the models in runtime.models"
        )
    for name in names:
        for block in getattr(model, name):
            block._z3_leaf = True
            block.forward = torch.compile(block.forward, fullgraph=True, **compile_options)
    return model
