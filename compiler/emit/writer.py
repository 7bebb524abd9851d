"""Writing a bundle atomically: all files go to a temporary directory beside the target, which is renamed
into place only when complete. An error leaves no half-written bundle; an existing directory is replaced
only with `force`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from compiler.emit.bundle import Bundle


class OutputExistsError(FileExistsError):
    """The output directory exists and --force was not given."""


def write_bundle(bundle: Bundle, out: Path, force: bool = False) -> Path:
    """Write `bundle` to `out` (created, or replaced with `force`)."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists; pass --force to replace it (its files are replaced as a whole)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for relative, text in sorted(bundle.files.items()):
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if relative in bundle.executable else 0o644)
        if out.exists():
            retired = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
