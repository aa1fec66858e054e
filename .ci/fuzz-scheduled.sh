#!/usr/bin/env bash
# Scheduled (nightly) fuzzing: every target for FUZZ_SECONDS each (default 240, the run that
# found issue 9's item 18), with 512 MB memory limits, growing fuzz/corpus. CI runs
# .ci/fuzz-smoke.sh (5 s per target) on every change; this is the long run.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_MEMORY_MB="${FUZZ_MEMORY_MB:-512}" exec bash fuzz/run.sh "${FUZZ_SECONDS:-240}"
