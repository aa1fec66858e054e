//! `keyturn check` without the CLI: everything `keyturn serve` would load, validated without
//! fetching a secret and without side effects (no run directory, token file or destination is
//! created or written).
//!
//! The settings and the daemon's own sections are validated by [`DaemonConfig::load`] before
//! this runs; [`check`] covers what a start reads or touches after that: templates (read and
//! parsed, handles included), destinations (distinct, their directories present and writable),
//! the run directory, the audit file and the API token file when they exist (private to the
//! user, as a start requires), and the backend executable (the report of every run's check).

use std::fmt;
use std::path::Path;

use nix::unistd::{AccessFlags, access};

use super::config::{DaemonConfig, check_distinct_on_disk};
use super::template::Template;
use crate::printable::Printable;
use crate::resolver::Resolver;
use crate::resolver::status::{ExecutableReport, executable_report};
use crate::settings::BackendSelection;
use crate::token::AuthToken;

/// What [`check`] found: the backend's report (when a backend is configured) and every
/// problem, each naming its file, key or handle.
#[derive(Debug)]
#[non_exhaustive]
pub struct CheckReport {
    /// The backend executable's report, as `keyturn check` prints it; `None` without a backend.
    pub executable: Option<ExecutableReport>,
    /// Every problem a start would hit, one sentence each.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether a start would load everything.
    pub fn passes(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Checks what a start of the daemon configured by `config` would load. Reads files, runs no
/// backend and creates nothing.
pub fn check(config: &DaemonConfig) -> CheckReport {
    let mut problems = Vec::new();
    if config.settings.backend().is_none() {
        problems.push(
            "no backend is configured: set secret_backend_command, secret_backend_type or \
             multi_secret_backends"
                .to_owned(),
        );
    }
    if let Err(error) = check_distinct_on_disk(&config.templates) {
        problems.push(error.to_string());
    }
    check_run_path(config, &mut problems);
    if let Err(error) = AuthToken::check(&config.api.auth_token_file) {
        problems.push(error.to_string());
    }
    let multi = match config.settings.backend() {
        Some(BackendSelection::Multi { backends, .. }) => Some(backends),
        _ => None,
    };
    for template in &config.templates {
        match Template::load(template.clone()) {
            Ok(loaded) => {
                if let Some(backends) = multi {
                    for handle in loaded.document().handles() {
                        let known = handle
                            .split_once(';')
                            .is_some_and(|(name, _)| backends.contains_key(&name.to_lowercase()));
                        if !known {
                            problems.push(format!(
                                "template {}: handle \"{}\" names no backend of multi_secret_backends",
                                template.source.display(),
                                Printable(handle)
                            ));
                        }
                    }
                }
            }
            Err(error) => problems.push(error.to_string()),
        }
        check_destination_dir(&template.destination, &mut problems);
    }
    let resolver = Resolver::new(config.settings.clone());
    let executable = executable_report(&resolver);
    if let Some(report) = &executable {
        if let Some(problem) = &report.interpreter_problem {
            problems.push(format!("{}: {problem}", report.path));
        } else if !report.passes() {
            problems.push(format!(
                "{}: the backend executable fails the permission check",
                report.path
            ));
        }
    }
    CheckReport {
        executable,
        problems,
    }
}

/// The run directory and the audit file in it, when they exist, as a start checks them (a
/// missing run directory is created by a start, and is no problem).
fn check_run_path(config: &DaemonConfig, problems: &mut Vec<String>) {
    if !config.run_path.exists() {
        return;
    }
    if let Err(error) = crate::trusted_path::check_private_dir("run directory", &config.run_path) {
        problems.push(error.to_string());
        return;
    }
    let audit_file = crate::audit::audit_path(&config.run_path);
    if let Err(error) = crate::trusted_path::check_private_file("audit file", &audit_file) {
        problems.push(error.to_string());
    }
}

/// A destination is written by a temporary file and a rename in its directory: the directory
/// must exist and be writable.
fn check_destination_dir(destination: &Path, problems: &mut Vec<String>) {
    let dir = match destination.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        problems.push(format!(
            "destination {}: directory {} does not exist",
            destination.display(),
            dir.display()
        ));
    } else if let Err(errno) = access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        problems.push(format!(
            "destination {}: directory {} is not writable: {errno}",
            destination.display(),
            dir.display()
        ));
    }
}
