#!/usr/bin/env bash
# Installs what crema needs, if any of it is missing: Debian packages (apt-get update once, then
# install) and the Python virtual environment `.venv` (the Python module's build and tests, and
# onnxruntime for the ONNX checks). Nothing else is fetched at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libopenblas-dev libssl-dev pkg-config dataset-fashion-mnist graphviz fonts-dejavu-core
  bible-kjv bible-kjv-text openmpi-bin libopenmpi-dev libclang-dev python3-venv libhdf5-dev
  chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi

python_packages=(maturin numpy pytest onnxruntime)
if ! .venv/bin/python -c "import numpy, pytest, onnxruntime" >/dev/null 2>&1 ||
  [ ! -x .venv/bin/maturin ]; then
  echo "setting up .venv: ${python_packages[*]}" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${python_packages[@]}"
fi
