"""genspec's compiler: the spec language and the passes that turn a spec into a bundle.

Nothing here imports torch, deepspeed, transformers, diffusers or ray: `genspec list` must stay fast.
"""

__version__ = "0.1.0"
