"""Curation runtime: records flow through the ops of a spec's pipeline, from webdataset shards to shards.

- `run(spec_or_ops, input, output, pipeline=None, executor="local", workers=2, scale="full",
  model_dir=None, architecture=None, encode_size=None) -> Report`: what `genspec curate` calls
  (runtime/curation/curate.py); a spec supplies its own architecture and encode size (precompute_embeddings)
- the op API for implementers: runtime/curation/api.py; `register` in runtime/curation/registry.py
- `missing_kinds(kinds)`, `missing_implementations(ops)`: what the registry lacks. The compiler does not ask
  it (compile imports no runtime): it reads the declaration in compiler/schema/support.py, which
  tests/runtime/test_support.py keeps equal to this registry
"""

from runtime.curation.api import CurationError, OpConfigError
from runtime.curation.curate import run
from runtime.curation.registry import (
    missing_implementations,
    missing_kinds,
    register,
    registered,
)
from runtime.curation.report import Report

__all__ = [
    "CurationError",
    "OpConfigError",
    "Report",
    "missing_implementations",
    "missing_kinds",
    "register",
    "registered",
    "run",
]
