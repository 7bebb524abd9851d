"""Compile a model's repeated blocks one by one."""

from torch import nn


def compile_blocks(model: nn.Module, **compile_options) -> nn.Module:
    """Compile every block in `model.repeated_blocks` in place with torch.compile(fullgraph=True).

    Compiling blocks rather than the whole model keeps compile time to one block per block class: blocks of
    one class share a code object, and dynamo treats their parameters as graph inputs, so one graph serves
    them all. fullgraph=True turns a graph break into an error instead of a silent slowdown. Compiling in
    place (nn.Module.compile) keeps state-dict keys unchanged, so checkpoints load either way.
    `compile_options` go to torch.compile (mode, dynamic, backend, ...). Returns `model`.
    """
    names = getattr(model, "repeated_blocks", None)
    if names is None:
        raise TypeError(
            f"{type(model).__name__} has no `repeated_blocks` attribute naming its block lists; "
            "compile_blocks takes the models in runtime.models"
        )
    for name in names:
        for block in getattr(model, name):
            block.compile(fullgraph=True, **compile_options)
    return model
