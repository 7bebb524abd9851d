"""`make regen`: compile every shipped spec for its natural cluster (and flux1-dev at smoke scale for
local-cpu) into generated/. A test compiles them again and fails on any difference."""

from __future__ import annotations

import sys
from pathlib import Path

GENERATED = Path(__file__).resolve().parent.parent / "generated"
EXTRA = [("flux1-dev", "local-cpu", "smoke")]


def targets() -> list[tuple[str, str, str]]:
    """(spec, cluster, scale) of every committed bundle."""
    import specs

    return [(name, cluster, "full") for name, cluster in specs.NATURAL_CLUSTER.items()] + EXTRA


def bundle_dir(name: str, cluster: str, scale: str) -> Path:
    return GENERATED / name / (cluster + ("-smoke" if scale == "smoke" else ""))


def main() -> int:
    import specs
    from compiler.emit import render, write_bundle
    from compiler.schema.cluster import PRESETS

    for name, cluster, scale in targets():
        out = bundle_dir(name, cluster, scale)
        write_bundle(render(specs.load(name), PRESETS[cluster], scale), out, force=True)
        print(f"wrote {out.relative_to(GENERATED.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
