#!/usr/bin/env bash
# Peak RSS of `keyturn serve` keeping a template with 10,000 handles resolved (issue 3, target:
# under 50 MB).
#
# Generates a template with N handles (default 10000) and a fast fixture backend (sh + awk),
# starts a release `keyturn serve`, waits for the destination to be written, runs one full
# refresh that changes every value (so every handle is re-fetched and the template
# re-rendered), then reads VmHWM (peak RSS) and VmRSS from /proc/PID/status.
#
# Usage: bench/serve_rss.sh [HANDLES]
set -euo pipefail
handles=${1:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --quiet -p keyturn-cli
keyturn="$root/target/release/keyturn"

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The backend answers every requested handle with "value-<handle>-<generation>".
cat > "$work/backend.sh" <<'SH'
#!/bin/sh
gen=$(cat "$(dirname "$0")/generation")
tr -d '\n' | sed -e 's/.*"secrets":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | tr -d '"' |
  awk -v gen="$gen" 'BEGIN { printf "{" }
    { if (NR > 1) printf ","; printf "\"%s\":{\"value\":\"value-%s-%s\",\"error\":null}", $0, $0, gen }
    END { printf "}" }'
SH
chmod 700 "$work/backend.sh"
echo 1 > "$work/generation"

awk -v n="$handles" 'BEGIN {
  print "# generated: one handle per service"
  for (i = 0; i < n; i++) printf "service_%05d:\n  host: db%05d.internal\n  password: ENC[h%05d]\n", i, i, i
}' > "$work/template.yaml"

# A random high port; if it is taken, serve fails to bind and the log says so.
port=$((20000 + RANDOM % 30000))
cat > "$work/keyturn.yaml" <<YAML
secret_backend_command: $work/backend.sh
secret_refresh_interval: 0
api:
  listen: 127.0.0.1:$port
templates:
  - source: template.yaml
    destination: out.yaml
YAML

start=$(date +%s.%N)
"$keyturn" serve --config "$work/keyturn.yaml" 2>"$work/serve.log" &
pid=$!
for _ in $(seq 1 600); do
  [ -s "$work/out.yaml" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.05
done
[ -s "$work/out.yaml" ] || { echo "the destination was never written"; cat "$work/serve.log"; exit 1; }
rendered=$(date +%s.%N)
hwm_start=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
grep -q "value-h$(printf %05d $((handles - 1)))-1" "$work/out.yaml"

echo 2 > "$work/generation"
refresh_start=$(date +%s.%N)
"$keyturn" refresh --config "$work/keyturn.yaml" > "$work/report.txt"
refresh_end=$(date +%s.%N)
grep -q "Number of secrets reloaded: $handles" "$work/report.txt"
grep -q "value-h00000-2" "$work/out.yaml"

hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
printf 'handles: %d, template %d KiB, destination %d KiB\n' "$handles" \
  $(( $(stat -c %s "$work/template.yaml") / 1024 )) $(( $(stat -c %s "$work/out.yaml") / 1024 ))
awk -v a="$start" -v b="$rendered" -v c="$refresh_start" -v d="$refresh_end" \
  'BEGIN { printf "start-up to first render: %.2f s; full refresh + re-render: %.2f s\n", b - a, d - c }'
awk -v start="$hwm_start" -v hwm="$hwm" -v rss="$rss" \
  'BEGIN { printf "peak RSS (VmHWM): %.1f MB after the first render, %.1f MB after the refresh; current RSS: %.1f MB (target: peak under 50 MB)\n", start / 1024, hwm / 1024, rss / 1024 }'
kill -TERM "$pid"; wait "$pid"; pid=
