//! Integration tests of the `keyturn` binary: one test binary, one module per command.
//!
//! Tests run the built binary (`CARGO_BIN_EXE_keyturn`) in a private temp directory with small
//! `/bin/sh` fixture backends.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]
// Tests may start the binaries under test; only the library's spawner is restricted.
#![allow(clippy::disallowed_methods)]

mod abuse;
mod check;
mod command_line;
mod compat;
mod daemon;
mod exec;
mod faults;
mod leaks;
mod memory;
mod resolve;
mod serve;
mod systemd;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A private temp directory with helpers to write files and run `keyturn` in it.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// Writes an executable script with `mode`.
    pub fn script(&self, name: &str, body: &str, mode: u32) -> PathBuf {
        let path = self.write(name, body);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Runs `keyturn ARGS` in the sandbox.
    pub fn keyturn(&self, args: &[&str]) -> Run {
        self.keyturn_with_log(args, "")
    }

    /// Runs `keyturn ARGS` with `KEYTURN_LOG` set to `filter` (empty: unset).
    pub fn keyturn_with_log(&self, args: &[&str], filter: &str) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyturn"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("KEYTURN_LOG")
            .env_remove("KEYTURN_CONFIG");
        if !filter.is_empty() {
            command.env("KEYTURN_LOG", filter);
        }
        Run(command.output().unwrap())
    }
}

/// What a run printed and how it exited.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Fails the test unless `prlimit` (util-linux, in every Debian install) can run: the tests
/// that need it prove limits (memory, file size), so they must never pass by skipping.
pub fn require_prlimit() {
    let works = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        works,
        "this test needs prlimit (Debian: apt-get install util-linux)"
    );
}

/// The repository root (for the bundled example).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

/// A fixture backend that answers from a fixed table: `handle=value` lines; a value written
/// `!error text` is a per-handle error. Handles not in the table are left out of the answer.
pub fn table_backend(sandbox: &Sandbox, table: &[(&str, &str)]) -> PathBuf {
    let mut body = String::from(
        "#!/bin/sh\ninput=$(cat)\nlist=$(printf '%s' \"$input\" | sed -e 's/.*\"secrets\":\\[\\([^]]*\\)\\].*/\\1/' | tr ',' '\\n' | tr -d '\"')\nprintf '{'\nsep=''\nfor h in $list; do\n  case \"$h\" in\n",
    );
    for (handle, value) in table {
        let entry = match value.strip_prefix('!') {
            Some(error) => format!("{{\"value\":null,\"error\":\"{error}\"}}"),
            None => format!("{{\"value\":\"{value}\"}}"),
        };
        body.push_str(&format!(
            "    {handle}) printf '%s\"%s\":{entry}' \"$sep\" \"$h\"; sep=',';;\n"
        ));
    }
    body.push_str("  esac\ndone\nprintf '}'\n");
    sandbox.script("backend.sh", &body, 0o700)
}
