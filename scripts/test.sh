#!/usr/bin/env bash
# The whole test suite: what is missing gets installed (scripts/setup.sh), then every unit and
# integration test of the crema crate (MPI, ONNX-against-onnxruntime included), then the Python
# module is built into .venv and its pytest suite runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --all-targets 2>&1
PYO3_PYTHON="$PWD/.venv/bin/python" VIRTUAL_ENV="$PWD/.venv" \
  .venv/bin/maturin develop --quiet -m python/Cargo.toml 2>&1
.venv/bin/pytest -q python/tests 2>&1
