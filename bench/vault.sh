#!/usr/bin/env bash
# Benchmark: 1,000 handles spread over 100 Vault secrets (10 keys each), against a local
# OpenBao dev server, in one run:
#   keyturn-backend   one process: 1 mount listing + 100 reads, 8 in flight
#   100 sequential    the same 100 secrets, one GET after another on one keep-alive
#                     connection (curl with 100 URLs): the floor for "one request per secret"
#   1000 sequential   one GET per handle, as Datadog's connector does (its mount lookups
#                     not counted), same connection reuse
# Prints the median of ROUNDS runs of each and the ratios. Needs: bao (see
# .ci/install-test-deps.sh), curl, python3, awk, cargo.
#
# Usage: bench/vault.sh [ROUNDS]   (default 15)
set -euo pipefail

rounds="${1:-15}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.ci/venv/bin:$PATH"
command -v bao >/dev/null || { echo "bao not found: run .ci/install-test-deps.sh" >&2; exit 1; }

cargo build --quiet --release -p keyturn-backend --manifest-path "$root/Cargo.toml"
backend="$root/target/release/keyturn-backend"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A free port whose successor (OpenBao's cluster port) is free too.
port="$(python3 - <<'PY'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
PY
)"
token=bench-root-token
addr="http://127.0.0.1:$port"
HOME="$work" bao server -dev -dev-no-store-token -dev-root-token-id="$token" \
    -dev-listen-address="127.0.0.1:$port" >"$work/bao.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
    curl -sf "$addr/v1/sys/health" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -sf "$addr/v1/sys/health" >/dev/null || { echo "bao did not start" >&2; exit 1; }

# 100 secrets of 10 keys.
for s in $(seq -w 0 99); do
    data="$(python3 -c "import json; print(json.dumps({'data': {f'k{k}': f'value-$s-{k}' for k in range(10)}}))")"
    curl -sf -H "X-Vault-Token: $token" -X POST -d "$data" "$addr/v1/secret/data/bench/s$s" >/dev/null
done

python3 - "$addr" "$token" >"$work/request.json" <<'PY'
import json, sys
handles = [f"secret/bench/s{s:02d};k{k}" for s in range(100) for k in range(10)]
print(json.dumps({"version": "1.1", "secrets": handles, "secret_backend_timeout": 30,
                  "type": "hashicorp.vault",
                  "config": {"vault_address": sys.argv[1], "vault_token": sys.argv[2]}}))
PY
urls100=()
for s in $(seq -w 0 99); do urls100+=("$addr/v1/secret/data/bench/s$s"); done
urls1000=()
for s in $(seq -w 0 99); do for k in $(seq 0 9); do urls1000+=("$addr/v1/secret/data/bench/s$s"); done; done

# Sanity: every handle resolves.
resolved="$("$backend" <"$work/request.json" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(sum(1 for e in r.values() if e.get("value")))')"
[ "$resolved" = 1000 ] || { echo "only $resolved of 1000 handles resolved" >&2; exit 1; }

now_us() { echo $(( $(date +%s%N) / 1000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # name command...
    local name="$1"; shift
    : >"$work/$name.times"
    for _ in $(seq 1 "$rounds"); do
        local start end
        start="$(now_us)"; "$@" >/dev/null; end="$(now_us)"
        echo $((end - start)) >>"$work/$name.times"
    done
    median <"$work/$name.times"
}
run_backend() { "$backend" <"$work/request.json"; }
run_100() { curl -sf -H "X-Vault-Token: $token" "${urls100[@]}"; }
run_1000() { curl -sf -H "X-Vault-Token: $token" "${urls1000[@]}"; }

run_backend >/dev/null; run_100 >/dev/null  # warm up
t_backend="$(measure backend run_backend)"
t_100="$(measure seq100 run_100)"
t_1000="$(measure seq1000 run_1000)"

awk -v r="$rounds" -v b="$t_backend" -v s="$t_100" -v t="$t_1000" 'BEGIN {
    printf "%-54s %8s\n", "1,000 handles over 100 secrets, median of " r " runs", "ms"
    printf "%-54s %8.1f\n", "keyturn-backend (1 listing + 100 reads, 8 in flight)", b / 1000
    printf "%-54s %8.1f\n", "100 sequential GETs, one keep-alive connection", s / 1000
    printf "%-54s %8.1f\n", "1,000 sequential GETs (one per handle)", t / 1000
    printf "100 sequential / keyturn-backend:   %.2fx\n", s / b
    printf "1,000 sequential / keyturn-backend: %.2fx\n", t / b
}'
