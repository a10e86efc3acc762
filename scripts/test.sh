#!/usr/bin/env bash
# The whole test suite: system packages if missing, then every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --all-targets 2>&1
