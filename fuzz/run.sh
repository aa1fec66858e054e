#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after the other, from the committed
# seeds plus the corpus grown by earlier runs (fuzz/corpus, not committed). For scheduled runs,
# not for CI (CI runs .ci/fuzz-smoke.sh, which calls this with a few seconds).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Prints one summary line per target and exits non-zero if any target found a crash, a hang
# (one input over 10 s) or went over the memory limits (FUZZ_MEMORY_MB, default 512 MB of RSS
# and per allocation); the input is saved in fuzz/artifacts/TARGET/ and
# the log in fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
# Memory limits of every run (RSS and any single allocation), in MB: an input that makes keyturn
# allocate more than this is a failure (issue 9: memory must stay bounded by the input).
memory_mb="${FUZZ_MEMORY_MB:-512}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# No sanitizer: works on the stable toolchain; Rust code is memory-safe and the workspace forbids
# `unsafe`, so the targets look for panics, failed assertions, hangs and stack overflows.
cargo fuzz build -s none
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi

mkdir -p logs
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    if cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -rss_limit_mb="$memory_mb" -malloc_limit_mb="$memory_mb" \
        -artifact_prefix="artifacts/$target/" >"logs/$target.log" 2>&1; then
        outcome=ok
    else
        outcome=FAILED
        failed+=("$target")
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$target.log" | tail -n 1)
    corpus=$(find "corpus/$target" -type f | wc -l)
    echo "$target: $outcome, ${runs:-?} executions in ${seconds} s, corpus $corpus files"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (see fuzz/logs/ and fuzz/artifacts/)" >&2
    for target in "${failed[@]}"; do tail -n 30 "logs/$target.log" >&2; done
    exit 1
fi
