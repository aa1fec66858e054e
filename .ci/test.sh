#!/usr/bin/env bash
# The whole test suite, as README.md gives it: installs the real secret stores that the
# backend tests talk to (OpenBao and moto, from PyPI, into .ci/venv), then runs every test of
# the workspace. Works from a fresh clone with only the Rust toolchain and Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-test-deps.sh
export PATH="$PWD/.ci/venv/bin:$PATH"
cargo test --workspace --locked
