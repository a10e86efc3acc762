#!/bin/sh
# The long fuzz pass: every reader of outside bytes (tests/fuzz.rs) on CREMA_FUZZ_INPUTS inputs
# each (default 100000), release build. Failing inputs are saved under target/tmp/fuzz-failures/;
# replay one with CREMA_FUZZ_REPLAY=<file> cargo test --release --test fuzz.
# Usage: scripts/fuzz.sh [inputs per reader] [reader name filter]
set -eu
cd "$(dirname "$0")/.."
export CREMA_FUZZ_INPUTS="${1:-${CREMA_FUZZ_INPUTS:-100000}}"
exec cargo test --release --test fuzz -- --nocapture --test-threads="${FUZZ_THREADS:-2}" ${2:-}
