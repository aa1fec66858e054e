//! What the resolver knows, for people: the executable report, the handles and where they are
//! used, the refresh schedule, and what failed (the Datadog Agent's status JSON keys and text).
//!
//! Nothing here carries a value: only handles, origins, paths, file metadata and messages.

use crate::printable::Printable;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use keyturn_protocol::PayloadVersion;
use serde::Serialize;

use super::Resolver;
use crate::backend::{self, PermissionCheck, Verdict};
use crate::settings::Routing;

/// Text shown when no backend is configured.
pub const DISABLED_MESSAGE: &str = "No secret_backend_command set: secrets feature is not enabled";

/// The executable part of the status: which backend runs and whether it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutableReport {
    /// The executable as configured (or the built-in backend's path).
    pub path: String,
    /// `secret_backend_type`, or the multi backend names joined with `, `.
    pub backend_type: Option<String>,
    /// Names of `multi_secret_backends`, sorted.
    pub multi_backend_names: Vec<String>,
    /// Whether keyturn's own built-in backend runs (checked as an installed program: no write
    /// for group or others, on the file or its path).
    pub embedded: bool,
    /// The permission check's error, if it failed.
    pub permission_error: Option<String>,
    /// For a `#!` script whose interpreter is missing or not executable, the text a run's
    /// error gives (`the interpreter '<path>' named on the first line (#!) of the script is
    /// missing`). Not part of the Agent's text; `keyturn check` shows it.
    pub interpreter_problem: Option<String>,
    /// File mode (octal of `st_mode`), owner and group; or why they could not be read.
    pub details: Result<backend::FileDetails, String>,
    /// The backend's `--version` answer, when it was asked and answered.
    pub version: Option<String>,
    /// The payload version sent to the executable (`secret_backend_protocol_version`).
    pub protocol_version: PayloadVersion,
}

impl ExecutableReport {
    /// Whether the executable passes the checks.
    pub fn passes(&self) -> bool {
        self.permission_error.is_none()
    }

    /// The verdict line of the Agent (`executablePermissions`).
    pub fn verdict(&self) -> &'static str {
        if !self.passes() {
            "error: the executable does not have the correct permissions"
        } else if self.embedded {
            "OK, native secret generic connector used"
        } else {
            "OK, the executable has the correct permissions"
        }
    }

    /// The report as text (`keyturn check`): the Agent's executable section, the payload
    /// version sent, then the permission check's error when it failed and the interpreter's
    /// problem when a `#!` script cannot start.
    pub fn to_text(&self) -> String {
        let mut text = self.agent_text();
        text.push('\n');
        let _ = writeln!(text, "Payload version: {}", self.protocol_version);
        // The Agent's section has no verdict line for its embedded backend; keyturn checks
        // that one too, so a refusal is said here.
        if self.embedded && self.permission_error.is_some() {
            let _ = writeln!(text, "Executable permissions: {}", self.verdict());
        }
        if let Some(error) = &self.permission_error {
            let _ = writeln!(text, "Permissions error: {error}");
        }
        if let Some(problem) = &self.interpreter_problem {
            let _ = writeln!(text, "Interpreter error: {problem}");
        }
        text
    }

    /// The executable section of the Agent's status template, byte for byte (it ends without a
    /// newline). The Agent indents the owner and group lines with two tabs.
    fn agent_text(&self) -> String {
        let mut text = String::from("=== Checking executable permissions ===");
        if !self.multi_backend_names.is_empty() {
            let _ = write!(text, "\nBackends: {}", self.multi_backend_names.join(", "));
        } else if let Some(backend_type) = self.backend_type.as_ref().filter(|t| !t.is_empty()) {
            let _ = write!(text, "\nSecret backend type: {backend_type}");
        }
        if self.embedded {
            let _ = write!(text, "\nUsing embedded executable: {}", self.path);
        } else {
            let _ = write!(
                text,
                "\nExecutable path: {}\nExecutable permissions: {}",
                self.path,
                self.verdict()
            );
        }
        if let Some(version) = &self.version {
            let _ = write!(text, "\nExecutable version: {version}");
        }
        if !self.embedded {
            text.push_str("\nPermissions Detail:\n");
            match &self.details {
                Ok(details) => {
                    let _ = write!(
                        text,
                        "File mode: {}\n\t\tOwner: {}\n\t\tGroup: {}",
                        details.file_mode, details.owner, details.group
                    );
                }
                Err(error) => text.push_str(error),
            }
        }
        text
    }
}

/// The resolver's state as the Agent's status JSON (its keys).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DebugInfo {
    /// Whether a backend is configured.
    pub backend_command_set: bool,
    /// Set when no backend is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The executable path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// `secret_backend_type` or "".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<String>,
    /// The backend's version, when asked and known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable_version: Option<String>,
    /// Whether keyturn's built-in backend runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_secret_backend: Option<bool>,
    /// The payload version sent to the executable (`1.0` or `1.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_version: Option<&'static str>,
    /// Multi backend names, sorted, joined with `, ` (multi mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_backend_names: Option<String>,
    /// Permission verdict text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable_permissions: Option<String>,
    /// Whether the permission check passed.
    #[serde(
        rename = "executablePermissionsOK",
        skip_serializing_if = "Option::is_none"
    )]
    pub executable_permissions_ok: Option<bool>,
    /// The permission check's error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable_permissions_error: Option<String>,
    /// File mode, owner, group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable_permissions_details: Option<PermissionDetails>,
    /// Why the details could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable_permissions_details_error: Option<String>,
    /// Resolved handle -> `[origin, path]` pairs (handles whose last lookup failed are in
    /// `unresolved_secrets` instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handles: Option<BTreeMap<String, Vec<[String; 2]>>>,
    /// Whether periodic refresh is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_interval_enabled: Option<bool>,
    /// The interval, e.g. `15s`, `1h0m0s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// The first refresh's delay, e.g. `6.48s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scatter_duration: Option<String>,
    /// One message per failed handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved_secrets: Option<Vec<String>>,
}

/// File details in the Agent's JSON spelling.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PermissionDetails {
    /// Octal `st_mode`.
    pub file_mode: String,
    /// Owner name.
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Always false here.
    pub is_windows: bool,
}

/// Checks the executable the resolver would run, now. `None` when no backend is configured.
pub fn executable_report(resolver: &Resolver) -> Option<ExecutableReport> {
    let spec = resolver.inner.routing.first_spec()?;
    let multi_backend_names = match &resolver.inner.routing {
        Routing::Multi(specs) => specs.keys().cloned().collect(),
        Routing::None | Routing::Single(_) => Vec::new(),
    };
    let checked = backend::executable_report(spec.command(), spec.check());
    Some(ExecutableReport {
        path: checked.path.display().to_string(),
        backend_type: if multi_backend_names.is_empty() {
            spec.backend_type().map(str::to_owned)
        } else {
            None
        },
        multi_backend_names,
        embedded: spec.check() == PermissionCheck::Builtin,
        permission_error: match checked.verdict {
            Verdict::Denied(error) => Some(error.to_string()),
            Verdict::Ok | Verdict::NotChecked => None,
        },
        details: checked.details,
        interpreter_problem: checked.interpreter_problem,
        version: None,
        protocol_version: spec.protocol(),
    })
}

/// [`executable_report`] plus the backend's version (`--version`), asked only of built-in
/// backend types.
pub async fn executable_report_with_version(resolver: &Resolver) -> Option<ExecutableReport> {
    let mut report = executable_report(resolver)?;
    if let Some(spec) = resolver.inner.routing.first_spec() {
        match backend::version(spec, &resolver.inner.options).await {
            Ok(version) => report.version = Some(version),
            Err(error) => tracing::debug!(%error, "no backend version"),
        }
    }
    Some(report)
}

impl DebugInfo {
    /// Collects the resolver's state (without asking the backend for its version).
    pub fn collect(resolver: &Resolver) -> DebugInfo {
        DebugInfo::from_report(resolver, executable_report(resolver))
    }

    /// Collects the resolver's state with `report` (see [`executable_report_with_version`]).
    pub fn from_report(resolver: &Resolver, report: Option<ExecutableReport>) -> DebugInfo {
        let Some(report) = report else {
            return DebugInfo::disabled();
        };
        let handles = resolver
            .resolved_handles()
            .into_iter()
            .map(|(handle, places)| (handle, places.into_iter().map(|(o, p)| [o, p]).collect()))
            .collect();
        let failures = resolver.failures();
        let settings = resolver.settings();
        let (details, details_error) = match (&report.details, report.embedded) {
            (_, true) => (None, None),
            (Ok(d), false) => (
                Some(PermissionDetails {
                    file_mode: d.file_mode.clone(),
                    owner: d.owner.clone(),
                    group: d.group.clone(),
                    is_windows: false,
                }),
                None,
            ),
            (Err(e), false) => (None, Some(e.clone())),
        };
        DebugInfo {
            backend_command_set: true,
            message: None,
            executable: Some(report.path.clone()),
            backend_type: Some(report.backend_type.clone().unwrap_or_default()),
            executable_version: report.version.clone(),
            embedded_secret_backend: Some(report.embedded),
            payload_version: Some(report.protocol_version.as_str()),
            multi_backend_names: (!report.multi_backend_names.is_empty())
                .then(|| report.multi_backend_names.join(", ")),
            executable_permissions: Some(report.verdict().to_owned()),
            executable_permissions_ok: Some(report.passes()),
            executable_permissions_error: report.permission_error.clone(),
            executable_permissions_details: details,
            executable_permissions_details_error: details_error,
            handles: Some(handles),
            refresh_interval_enabled: Some(settings.refresh_interval().is_some()),
            refresh_interval: settings.refresh_interval().map(go_duration),
            scatter_duration: settings.refresh_interval().map(|_| {
                format!(
                    "{:.2}s",
                    resolver
                        .first_refresh_delay()
                        .unwrap_or_default()
                        .as_secs_f64()
                )
            }),
            unresolved_secrets: (!failures.is_empty())
                .then(|| failures.iter().map(unresolved_message).collect()),
        }
    }

    fn disabled() -> DebugInfo {
        DebugInfo {
            backend_command_set: false,
            message: Some(DISABLED_MESSAGE.to_owned()),
            executable: None,
            backend_type: None,
            executable_version: None,
            embedded_secret_backend: None,
            payload_version: None,
            multi_backend_names: None,
            executable_permissions: None,
            executable_permissions_ok: None,
            executable_permissions_error: None,
            executable_permissions_details: None,
            executable_permissions_details_error: None,
            handles: None,
            refresh_interval_enabled: None,
            refresh_interval: None,
            scatter_duration: None,
            unresolved_secrets: None,
        }
    }
}

/// The Agent's full status text, without asking the backend for its version.
pub fn status_text(resolver: &Resolver) -> String {
    render_status(resolver, executable_report(resolver))
}

/// The Agent's full status text with `report`: what the Agent's status template
/// (`info.tmpl`) writes, byte for byte, including the newline it starts with and no newline
/// where it ends without one (after `'secret_refresh_interval' is disabled`). Resolved and
/// unresolved handles are apart: `Number of secrets resolved` counts and lists the handles
/// whose last lookup succeeded; every handle whose last lookup failed is under
/// `Secrets not resolved`.
pub fn render_status(resolver: &Resolver, report: Option<ExecutableReport>) -> String {
    let Some(report) = report else {
        return format!("\n{DISABLED_MESSAGE}");
    };
    let mut text = format!("\n{}", report.agent_text());
    let handles = resolver.resolved_handles();
    let _ = write!(
        text,
        "\n\n=== Secrets stats ===\nNumber of secrets resolved: {}\nSecrets handle resolved:\n",
        handles.len()
    );
    for (handle, places) in &handles {
        let _ = write!(text, "\n- '{}':", Printable(handle));
        for (origin, path) in places {
            let _ = write!(
                text,
                "\n  - used in '{}' configuration in entry '{}'",
                Printable(origin),
                Printable(path)
            );
        }
    }
    text.push('\n');
    let settings = resolver.settings();
    match settings.refresh_interval() {
        Some(interval) => {
            let _ = writeln!(
                text,
                "\n'secret_refresh_interval' is enabled: the first refresh will happen {:.2}s after startup and then every {}",
                resolver
                    .first_refresh_delay()
                    .unwrap_or_default()
                    .as_secs_f64(),
                go_duration(interval)
            );
        }
        None => text.push_str("\n'secret_refresh_interval' is disabled"),
    }
    let mut unresolved: Vec<String> = resolver.failures().iter().map(unresolved_message).collect();
    if !unresolved.is_empty() {
        // The Agent keeps them in a set and lists them sorted.
        unresolved.sort();
        text.push_str("\n\nSecrets not resolved:");
        for message in unresolved {
            let _ = write!(text, "\n  - {message}");
        }
        text.push_str("\n\n");
    }
    text
}

/// One line of `Secrets not resolved`: the handle, why, and where it is used.
fn unresolved_message(failure: &super::Failure) -> String {
    format!(
        "'{}' ({}) at {}: {}",
        Printable(&failure.handle),
        failure.kind.as_str(),
        failure.paths_text(),
        failure.message
    )
}

/// Formats a duration as Go does (`15s`, `1m30s`, `1h0m0s`), for whole seconds.
pub fn go_duration(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn disabled_status() {
        let resolver = Resolver::new(crate::Settings::default());
        assert_eq!(status_text(&resolver), format!("\n{DISABLED_MESSAGE}"));
        let json = serde_json::to_value(DebugInfo::collect(&resolver)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"backendCommandSet": false, "message": DISABLED_MESSAGE})
        );
    }
}
