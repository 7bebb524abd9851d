"""Re-measure the activation coefficients of compiler/plan/memory.py: what each family's network saves for
backward (runtime/models/activation_memory.py), printed as the tables to paste there. About a minute on one core:

    PYTHONPATH=. python scripts/measure_activations.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

import specs
from compiler.scale import scaled
from compiler.schema.spec import Spec
from runtime.models.activation_memory import coefficients, unet_coefficients

ROOT = Path(__file__).resolve().parents[1]


def family_specs() -> dict[str, Spec]:
    """One smoke-scale spec per family the runtime builds: shipped specs, and the test specs of the families
    without one (tests/runtime/family_specs.py)."""
    location = ROOT / "tests" / "runtime" / "family_specs.py"
    module_spec = importlib.util.spec_from_file_location("family_specs", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    chosen = {
        "flux": specs.load("flux1-dev"), "qwen_image": specs.load("qwen-image"),
        "dit": specs.load("wan2.1-t2v-1.3b"), "hunyuan_video": module.HUNYUAN_VIDEO, "sd3": module.SD3_MEDIUM,
        "cogvideox": module.COGVIDEOX_5B,
    }
    return {family: scaled(spec, "smoke") for family, spec in chosen.items()}


def cascade_spec() -> Spec:
    """Imagen 1 at smoke scale: a base U-Net and two Efficient U-Nets."""
    return scaled(specs.load("imagen-1"), "smoke")


def main() -> None:
    """Print ACTIVATION_COEFFICIENTS, FROZEN_ACTIVATION_COEFFICIENTS and UNET_ACTIVATION_COEFFICIENTS for
    compiler/plan/memory.py, measured now."""
    for frozen, name in ((False, "ACTIVATION_COEFFICIENTS"), (True, "FROZEN_ACTIVATION_COEFFICIENTS")):
        print(f"{name}: dict[str, dict[str, dict[str, tuple]]] = {{")
        for dtype, label in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
            print(f'    "{label}": {{')
            for family, spec in family_specs().items():
                print(f'        "{family}": {{')
                for block, (image, text) in sorted(coefficients(spec, dtype, frozen).items()):
                    print(f'            "{block}": ({_row(image)}, {_row(text)}),')
                print("        },")
            print("    },")
        print("}")
    print("UNET_ACTIVATION_COEFFICIENTS: dict[str, dict[str, float]] = {")
    cascade = cascade_spec()
    for dtype, label in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        table = unet_coefficients(cascade, dtype)
        items = list(table.items())
        print(f'    "{label}": {{')
        for start in range(0, len(items), 3):
            print("        " + " ".join(f'"{kind}": {value:g},' for kind, value in items[start:start + 3]))
        print("    },")
    print("}")


def _row(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value + 0.0:g}" for value in values) + ")"


if __name__ == "__main__":
    main()
