#!/usr/bin/env bash
# CI: the README's install command (install.sh) into a temporary root, then the bundled example
# resolved by what it installed -- keyturn finding keyturn-backend beside itself. `--debug` and
# the workspace's target directory let it reuse the test build instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$CARGO_TARGET_DIR"
root="$(mktemp -d "$CARGO_TARGET_DIR/install-check.XXXXXX")"
trap 'rm -rf "$root"' EXIT
./install.sh --debug --root "$root"
test -x "$root/bin/keyturn" && test -x "$root/bin/keyturn-backend"
out="$(env -u KEYTURN_BUILTIN_BACKEND "$root/bin/keyturn" resolve --config examples/keyturn.yaml examples/app.yaml)"
# The example's handles are all resolved (none is left in the output).
if grep -q 'ENC\[' <<<"$out"; then
    echo "install check: the installed keyturn left handles unresolved" >&2
    exit 1
fi
echo "install check: ok ($(ls "$root/bin" | tr '\n' ' '))"
