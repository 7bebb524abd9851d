#!/usr/bin/env bash
# The GPU check: on one NVIDIA H100 or H200 without network, in one run (under 8 minutes):
#   1. installs what the machine lacks from the wheels in .whl/ (scripts/fetch-gpu-wheels.sh fetches them);
#   2. runs the CUDA-only tests (tests/runtime/models/test_kernels.py: the op dispatch on CUDA tensors and
#      the Triton kernel against the formula);
#   3. times the Triton op against the PyTorch formula at FLUX width and prints their difference;
#   4. trains a few-block, full-width FLUX stage (compiled and eager) and Wan stage (compiled) through each
#      bundle's own launch.sh on one GPU in bf16, and prints peak memory against the plan for that very
#      layout, step time, MFU and the compiled/eager step ratio (scripts/gpu_check.py).
# Usage: scripts/gpu-check.sh [--cpu] [WORKDIR]
#   --cpu: the same steps on a CPU at reduced width (smoke scale on local-cpu, the kernel in Triton's
#   interpreter), using .venv when there is one; CI runs this mode (tests/test_gpu_check.py).
# Figures go to stdout and WORKDIR/{kernel,train}.json (WORKDIR defaults to a fresh temporary directory).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cpu=0
if [ "${1:-}" = "--cpu" ]; then cpu=1; shift; fi
workdir="${1:-}"
[ -n "$workdir" ] || workdir="$(mktemp -d -t gpu-check.XXXXXX)"
mkdir -p "$workdir"
workdir="$(cd "$workdir" && pwd)"
cd "$root"
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$root/.cache/inductor}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$root/.cache/torch_extensions}"
started=$SECONDS

if [ "$cpu" = 1 ]; then
  python="${PYTHON:-$root/.venv/bin/python}"
  [ -x "$python" ] || python=python3
  export DS_ACCELERATOR=cpu OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  bin="$(dirname "$python")"
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PATH="$bin:$PATH"  # launch.sh runs deepspeed
else
  python="${PYTHON:-python3}"
  command -v nvidia-smi >/dev/null || { echo "gpu-check: no nvidia-smi here; use --cpu on a machine without a GPU" >&2; exit 2; }
  ls "$root"/.whl/*.whl >/dev/null 2>&1 || {
    echo "gpu-check: no wheels in $root/.whl; run scripts/fetch-gpu-wheels.sh on a machine with network first" >&2
    exit 2
  }
  # --target keeps the machine's own torch, triton and transformers; the wheels come first on PYTHONPATH.
  site="$workdir/site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$root"/.whl/*.whl
  export PYTHONPATH="$root:$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$python" -c 'import torch, deepspeed, diffusers, pydantic, webdataset; print(f"torch {torch.__version__}, deepspeed {deepspeed.__version__}, cuda {torch.cuda.is_available()}")'

echo "== CUDA-only tests"
if [ "$cpu" = 1 ]; then
  "$python" -m pytest -q -p no:cacheprovider tests/runtime/models/test_kernels.py
else
  "$python" -m pytest -q -p no:cacheprovider tests/runtime/models/test_kernels.py -k "cuda or triton or bfloat16"
fi

echo "== Triton op against the PyTorch formula"
if [ "$cpu" = 1 ]; then
  TRITON_INTERPRET=1 "$python" scripts/gpu_check.py kernel "$workdir" --cpu
else
  "$python" scripts/gpu_check.py kernel "$workdir"
fi

echo "== few-block FLUX and Wan stages through launch.sh"
if [ "$cpu" = 1 ]; then
  "$python" scripts/gpu_check.py train "$workdir" --cpu
else
  "$python" scripts/gpu_check.py train "$workdir"
fi

echo "gpu-check: passed in $(( SECONDS - started )) s; figures in $workdir"
