#!/usr/bin/env bash
# Fetch, on a machine with network, the wheels scripts/gpu-check.sh installs on a GPU machine without one.
# Usage: scripts/fetch-gpu-wheels.sh [DIR]   (default .whl/, git-ignored; about 15 MB)
#
# The GPU machine (see /work/.library/device/KINDS.md) has Python 3.12, PyTorch 2.11, Triton, transformers,
# numpy, scipy, pillow, PyYAML, typer, rich, networkx, jinja2, einops, safetensors, tqdm, msgpack, ninja, psutil,
# py-cpuinfo, filelock, requests, regex and huggingface-hub, but none of what is listed below. The versions are
# the ones this repository is tested with. pip matches the manylinux tag exactly, so every tag is named.
# DeepSpeed publishes only a source archive: it is built here into a pure-Python wheel with DS_BUILD_OPS=0
# (no CUDA op is compiled ahead; DeepSpeed builds what it needs just in time on the GPU machine).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.whl}"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
mkdir -p "$dest"

# name==version, one wheel each (two versions of one package stop the --no-index install there).
binary=(
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
  ruamel.yaml==0.19.1 hjson==3.1.0 diffusers==0.42.1 importlib-metadata==10.2.0 zipp==4.1.2
  webdataset==1.0.2 braceexpand==0.1.7 imagehash==4.3.2 pywavelets==1.9.0
)
platforms=()
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
  manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$dest" "${binary[@]}"

# --no-build-isolation: DeepSpeed's setup.py imports torch, which this machine's environment has.
if ! ls "$dest"/deepspeed-0.19.8-*.whl >/dev/null 2>&1; then
  DS_BUILD_OPS=0 "$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$dest" \
    deepspeed==0.19.8
fi

count=$(find "$dest" -maxdepth 1 -name '*.whl' | wc -l)
expected=$(( ${#binary[@]} + 1 ))
if [ "$count" -ne "$expected" ]; then
  echo "fetch-gpu-wheels: $dest holds $count wheels, expected $expected (one per package): remove stale ones" >&2
  ls "$dest" >&2
  exit 1
fi
echo "fetch-gpu-wheels: $count wheels in $dest ($(du -sh "$dest" | cut -f1))"
