"""TARGET arguments: a shipped spec name, `file.py:attr` (a Spec object in the user's Python file), or a
.yaml/.yml/.json spec file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from compiler.schema.spec import Spec
from compiler.yamlio import SpecLoadError, load_file


class TargetError(SpecLoadError):
    """A TARGET that names nothing loadable."""


def load_target(target: str) -> Spec:
    """The Spec a TARGET names. Raises TargetError, SpecLoadError or SpecFieldError."""
    import specs

    if target in specs.SHIPPED:
        return specs.load(target)
    if target.endswith((".yaml", ".yml", ".json")):
        if not Path(target).is_file():
            raise TargetError(f"{target}: no such file")
        return load_file(target)
    if ":" in target:
        return _load_python(*target.rsplit(":", 1))
    raise TargetError(
        f"{target!r} is not a shipped spec, a .yaml/.json file or file.py:attr; "
        f"shipped: {', '.join(specs.SHIPPED)} (see `genspec list`)"
    )


def absolute_target(target: str) -> str:
    """TARGET with a file path made absolute against the current directory (a shipped name unchanged), so a
    command run elsewhere (the demo compiles from the project root) finds the same file."""
    import specs

    if target in specs.SHIPPED:
        return target
    if target.endswith((".yaml", ".yml", ".json")):
        return str(Path(target).resolve())
    if ":" in target:
        file, attr = target.rsplit(":", 1)
        return f"{Path(file).resolve()}:{attr}"
    return target


def _load_python(file: str, attr: str) -> Spec:
    value = _load_python_attr(file, attr)
    if not isinstance(value, Spec):
        raise TargetError(f"{file}:{attr} is a {type(value).__name__}, not a genspec Spec")
    return value


def _load_python_attr(file: str, attr: str) -> object:
    """An attribute of the user's Python file, imported under a private module name."""
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        raise TargetError(f"{file}: no such Python file (TARGET form: path/to/file.py:ATTRIBUTE)")
    module_name = f"genspec_user_{path.stem}_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)  # type: ignore[arg-type]
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as error:  # the user's own code: report, never crash
        raise TargetError(f"{file}: importing it failed: {type(error).__name__}: {error}") from error
    if not hasattr(module, attr):
        specs_here = [name for name, value in vars(module).items() if isinstance(value, Spec)]
        raise TargetError(f"{file} has no attribute {attr!r}; Spec objects in it: {', '.join(specs_here) or 'none'}")
    return getattr(module, attr)
