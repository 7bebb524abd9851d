"""The semantic rules, one module per spec section. Importing this package registers them."""

from compiler.rules import architecture, data, inference, objective, provenance, schedule  # noqa: F401
