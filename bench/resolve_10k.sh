#!/usr/bin/env bash
# Per-handle cost of `keyturn resolve` at 10,000 handles (issue 13), whole process, against its
# floor measured in the same rounds.
#
# Builds a release `keyturn` and a small static helper (`bench/resolve_10k/tool.rs`, std only,
# built with plain rustc: it is the backend, so its start must not be the measurement), writes
# a flat YAML mapping of N handles (~230 KB at 10,000) and the same document with no handle,
# then runs ROUNDS rounds, each running these three in a rotating order:
#   (a) `keyturn resolve` of the handle document, the helper as its backend;
#   (b) `keyturn resolve` of the no-handle document (same settings: parsing and start-up);
#   (c) the helper as a bare backend, fed the payload keyturn sends for (a).
# and prints the medians of CPU time (user + sys, the process and its waited-for children,
# so (a) includes its backend run) and peak RSS, and the medians of the per-round ratios:
#   CPU a / (b + c)  (target <= 1.5),   peak RSS a / b  (target <= 1.5).
#
# CPU time comes from wait4's resource usage in microseconds (`tool measure`). GNU time's
# `-f '%U %S'` prints 10 ms steps, too coarse for runs of 2-20 ms; TIMER=time uses it anyway
# (`/usr/bin/time`, Debian package `time`: `apt-get install -y time`). hyperfine measures the
# same commands' wall time, e.g.
#   hyperfine -N --input FILE 'target/release/keyturn resolve --config S handles.yaml'
#
# Usage: bench/resolve_10k.sh [ROUNDS]   (default 31; HANDLES=N for another size, KEYTURN=PATH
# for a given executable)
set -euo pipefail
rounds=${1:-31}
handles=${HANDLES:-10000}
timer=${TIMER:-wait4}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "$timer" = time ] && [ ! -x /usr/bin/time ]; then
  echo "TIMER=time needs GNU time: apt-get install -y time" >&2
  exit 2
fi

# KEYTURN=PATH measures another build (e.g. a copy of an earlier one) instead of building.
if [ -n "${KEYTURN:-}" ]; then
  keyturn=$KEYTURN
else
  cargo build --release --quiet -p keyturn-cli
  keyturn="$root/target/release/keyturn"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"
rustc -O -C target-feature=+crt-static -C strip=symbols --edition 2024 \
  "$root/bench/resolve_10k/tool.rs" -o "$work/tool"
chmod 700 "$work/tool"
tool="$work/tool"

"$tool" document "$handles" ENC > "$work/handles.yaml"
"$tool" document "$handles" VAL > "$work/plain.yaml"
"$tool" payload "$handles" > "$work/payload.json"
cat > "$work/settings.yaml" <<YAML
secret_backend_command: $tool
secret_backend_arguments: [backend]
YAML
: > "$work/empty"

# One run: prints "cpu_us maxrss_kib".
run() {
  local input=$1 output=$2
  shift 2
  if [ "$timer" = time ]; then
    /usr/bin/time -f '%U %S %M' -o "$work/time" "$@" < "$input" > "$output"
    awk '{ printf "%d %d\n", ($1 + $2) * 1e6, $3 }' "$work/time"
  else
    "$tool" measure "$input" "$output" "$@" | awk '{ print $1 + $2, $3 }'
  fi
}
run_a() { run "$work/empty" "$work/out.yaml" "$keyturn" resolve --config "$work/settings.yaml" "$work/handles.yaml"; }
run_b() { run "$work/empty" "$work/plain.out" "$keyturn" resolve --config "$work/settings.yaml" "$work/plain.yaml"; }
run_c() { run "$work/payload.json" "$work/answer.json" "$tool" backend; }

# The runs do what they claim: every handle resolved, the plain document unchanged.
run_a > /dev/null
run_b > /dev/null
run_c > /dev/null
last=$(printf 'db%05d' $((handles - 1)))
grep -q "^key${last#db}: \"0123456789abcdef" "$work/out.yaml" || { echo "(a) did not resolve" >&2; exit 1; }
cmp -s "$work/plain.yaml" "$work/plain.out" || { echo "(b) changed the document" >&2; exit 1; }
grep -q "\"$last\":{\"value\"" "$work/answer.json" || { echo "(c) did not answer" >&2; exit 1; }

for _ in 1 2 3; do run_a > /dev/null; run_b > /dev/null; run_c > /dev/null; done
: > "$work/rounds"
for round in $(seq 1 "$rounds"); do
  case $((round % 3)) in
    0) a=$(run_a); b=$(run_b); c=$(run_c) ;;
    1) b=$(run_b); c=$(run_c); a=$(run_a) ;;
    2) c=$(run_c); a=$(run_a); b=$(run_b) ;;
  esac
  echo "$a $b $c" >> "$work/rounds"
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
col() { awk -v f="$1" '{ print $f }' "$work/rounds" | median; }
cpu_a=$(col 1) rss_a=$(col 2) cpu_b=$(col 3) rss_b=$(col 4) cpu_c=$(col 5) rss_c=$(col 6)
cpu_ratio=$(awk '{ print $1 / ($3 + $5) }' "$work/rounds" | median)
rss_ratio=$(awk '{ print $2 / $4 }' "$work/rounds" | median)
printf 'handles: %d, document %d KB, %d rounds (medians; CPU = user + sys, timer %s)\n' \
  "$handles" $(( $(stat -c %s "$work/handles.yaml") / 1000 )) "$rounds" "$timer"
awk -v ca="$cpu_a" -v ra="$rss_a" -v cb="$cpu_b" -v rb="$rss_b" -v cc="$cpu_c" -v rc="$rss_c" \
  -v n="$handles" 'BEGIN {
    printf "(a) keyturn resolve, %d handles:  %6.2f ms CPU, %5.1f MB peak RSS\n", n, ca / 1000, ra / 1024
    printf "(b) keyturn resolve, no handle:   %6.2f ms CPU, %5.1f MB peak RSS\n", cb / 1000, rb / 1024
    printf "(c) bare backend, same payload:   %6.2f ms CPU, %5.1f MB peak RSS\n", cc / 1000, rc / 1024
    printf "per handle beyond the floor: %.2f us CPU, %.0f bytes of peak RSS\n", (ca - cb - cc) / n, (ra - rb) * 1024 / n
  }'
printf 'CPU a / (b + c): %.2f (per-round median; target <= 1.5)\n' "$cpu_ratio"
printf 'peak RSS a / b:  %.2f (per-round median; target <= 1.5)\n' "$rss_ratio"
