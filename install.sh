#!/bin/sh
# Installs both executables from this source tree: `keyturn` and `keyturn-backend`, into the
# same directory (cargo's bin directory, `~/.cargo/bin` unless `--root` or `CARGO_INSTALL_ROOT`
# says otherwise), where `keyturn` finds `keyturn-backend` beside itself.
#
# `cargo install --path` takes one package at a time, hence two runs. Any argument is passed to
# both, e.g. `./install.sh --root /usr/local`.
set -eu
cd "$(dirname "$0")"
cargo install --locked --path crates/backend "$@"
cargo install --locked --path crates/cli "$@"
