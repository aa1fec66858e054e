#!/usr/bin/env bash
# CI: every fuzz target for a few seconds (default 5) from the committed seeds; fails on any
# crash. Installs cargo-fuzz if missing. The long runs are fuzz/run.sh (scheduled).
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash fuzz/run.sh "${FUZZ_SECONDS:-5}"
