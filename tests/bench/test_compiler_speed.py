"""Compiler passes, measured side by side in one run: validating the library is the baseline that the
diff and the full compile of all 15 shipped specs are read against (`make bench`)."""

import specs
from compiler.diff import diff
from compiler.emit import render
from compiler.schema.cluster import PRESETS
from compiler.validate import validate

NAMES = list(specs.SHIPPED)


def validate_library():
    return [validate(specs.load(name)) for name in NAMES]


def compile_library():
    return [render(specs.load(name), PRESETS[specs.NATURAL_CLUSTER[name]], "full") for name in NAMES]


def test_validate_all_baseline(benchmark):
    benchmark.group = "compiler passes"
    benchmark.extra_info["baseline"] = "validate_all_baseline"
    assert len(benchmark(validate_library)) == 15


def test_diff_two_versions(benchmark):
    benchmark.group = "compiler passes"
    a, b = specs.load("seedream-2.0"), specs.load("seedream-3.0")
    assert benchmark(diff, a, b).changes


def test_compile_all_fifteen(benchmark):
    benchmark.group = "compiler passes"
    bundles = benchmark.pedantic(compile_library, rounds=3, iterations=1)
    assert len(bundles) == 15
