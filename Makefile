# genspec: `make demo` and `make test` work on a fresh clone; both create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every pip call goes through constraints.txt so torch stays the 2.13.0 CPU build.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export OMP_WAIT_POLICY := PASSIVE
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/inductor
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions

.PHONY: setup test bench demo regen clean gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	command -v shellcheck >/dev/null && command -v dot >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck graphviz; }
	# CJK font for synthetic_text's Chinese samples (runtime/curation/ops/synthetic.py).
	test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[runtime,ray,test]'
	# DeepSpeed builds its shared-memory op (C++, a minute here) the first time a process initialises it: build
	# it once now, so that no stage pays for it, and no process killed mid-build (a Slurm time limit, a test's
	# timeout) leaves the others a half-built op in TORCH_EXTENSIONS_DIR.
	$(BIN)/python -c 'from deepspeed.accelerator import get_accelerator; get_accelerator().create_op_builder("ShareMemCommBuilder").load()'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=30

# Recompile every committed bundle in generated/ (a test fails when they drift from the compiler).
regen: $(STAMP)
	$(BIN)/python -m compiler.regen
	$(BIN)/python -m compiler.reference

# Every benchmark suite in one run; BENCHMARKS.md gets each figure as a ratio to its same-run baseline.
bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest tests/bench -q --benchmark-enable --benchmark-only -p no:cacheprovider \
		--benchmark-json=.benchmarks/latest.json
	$(BIN)/python scripts/benchmarks_md.py .benchmarks/latest.json BENCHMARKS.md

# The main job on the embedded default: flux1-dev at smoke scale on this machine, end to end (about
# 2 minutes; a rerun resumes). The report is demo-run/report.md.
demo: $(STAMP)
	$(BIN)/genspec demo --spec flux1-dev --workdir demo-run

# The GPU check on one H100 or H200 without network (scripts/gpu-check.sh; fetch its wheels first with
# scripts/fetch-gpu-wheels.sh on a machine with network). No setup: that machine has no .venv. CPU=1 runs the
# same steps at reduced width on a CPU.
gpu-check:
	scripts/gpu-check.sh $(if $(CPU),--cpu)

clean:
	rm -rf $(VENV) .cache .pytest_cache .benchmarks
