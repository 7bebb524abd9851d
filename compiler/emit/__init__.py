"""The emit pass: a spec compiled for a cluster into a bundle directory."""

from compiler.emit.bundle import Bundle, render
from compiler.emit.writer import OutputExistsError, write_bundle
from compiler.pipeline import CompileError

__all__ = ["Bundle", "CompileError", "OutputExistsError", "render", "write_bundle"]
