//! Settings: the `secret_*` keys of a YAML (or JSON) settings file, parsed once into validated
//! types.
//!
//! Key names and defaults are the Datadog Agent's, so a `datadog.yaml` works as a keyturn
//! settings file: unknown keys are ignored (they are the rest of the Agent's configuration), a
//! value of 0 for a numeric key means its default, and a value of the wrong type is an error
//! naming the key. Errors never quote a value: a settings file may hold credentials in
//! `secret_backend_config`.
//!
//! Parse, don't validate: [`Settings::from_yaml_str`] turns raw text into a tree, [`Settings::
//! from_tree`] reads every key once, and the rest of keyturn only sees [`Settings`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use keyturn_protocol::PayloadVersion;
use serde_json::{Map, Value};

use crate::backend::{BackendSpec, PermissionCheck};

/// Default of `secret_backend_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest duration any setting holds (one year): larger values (up to
/// 18446744073709551615 seconds) are read as this, so no deadline or schedule overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `secs` seconds, at most [`MAX_DURATION`].
pub fn clamped_secs(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_DURATION)
}
/// Default of `secret_backend_output_max_size`, in bytes.
pub const DEFAULT_OUTPUT_MAX_SIZE: usize = 1024 * 1024;
/// Default of `secret_audit_file_max_size`, in bytes.
pub const DEFAULT_AUDIT_FILE_MAX_SIZE: u64 = 1024 * 1024;

/// Validated settings of one resolver: read from a settings file with
/// [`Settings::from_yaml_str`], or built with [`Settings::default`] and the `with_*` setters,
/// which keep the same bounds as the file (durations at most [`MAX_DURATION`], 0 meaning the
/// default for sizes).
///
/// ```
/// use std::time::Duration;
/// use keyturn::{BackendSelection, Settings};
///
/// let settings = Settings::default()
///     .with_backend(BackendSelection::command("/usr/local/bin/fetch-secrets"))
///     .with_timeout(Duration::from_secs(10))
///     .with_refresh_interval(Some(Duration::from_secs(3600)));
/// assert_eq!(settings.timeout(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    backend: Option<BackendSelection>,
    arguments: Vec<String>,
    timeout: Duration,
    output_max_size: usize,
    allow_group_exec: bool,
    remove_trailing_line_break: bool,
    refresh_interval: Option<Duration>,
    refresh_scatter: bool,
    refresh_trigger_interval: Option<Duration>,
    audit_file_max_size: u64,
    run_path: Option<PathBuf>,
    protocol_version: PayloadVersion,
    memory_lock: bool,
    working_dir: Option<PathBuf>,
    warnings: Vec<String>,
}

impl Default for Settings {
    /// No backend, and every other setting at the Datadog Agent's default.
    fn default() -> Settings {
        Settings {
            backend: None,
            arguments: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            output_max_size: DEFAULT_OUTPUT_MAX_SIZE,
            allow_group_exec: false,
            remove_trailing_line_break: false,
            refresh_interval: None,
            refresh_scatter: true,
            refresh_trigger_interval: None,
            audit_file_max_size: DEFAULT_AUDIT_FILE_MAX_SIZE,
            run_path: None,
            protocol_version: PayloadVersion::V1_1,
            memory_lock: false,
            working_dir: None,
            warnings: Vec::new(),
        }
    }
}

/// The active backend, after the precedence rule command > type > multi.
///
/// Built from a settings file, or with [`BackendSelection::command`],
/// [`BackendSelection::builtin`] and [`BackendSelection::multi`], which check what the file
/// checks (the last two cannot be built otherwise outside this crate).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BackendSelection {
    /// `secret_backend_command`: an executable the operator provides.
    Command {
        /// Path (or bare name looked up on `PATH`).
        command: PathBuf,
        /// `secret_backend_type` and `secret_backend_config` when they are set too: they do
        /// not choose the executable, but are still sent as the payload's `type` and
        /// `config`, as the Agent does (Datadog's connector run as a command needs them).
        payload: Option<BuiltinBackend>,
    },
    /// `secret_backend_type`: keyturn's built-in backend with this type and config.
    #[non_exhaustive]
    Type {
        /// A type `keyturn-backend` serves, and its config.
        backend: BuiltinBackend,
    },
    /// `multi_secret_backends`: named built-in backends, selected by the handle prefix
    /// `ENC[name;key]`.
    #[non_exhaustive]
    Multi {
        /// By name: names are lower-case, non-empty and without `;`; every type is one
        /// `keyturn-backend` serves.
        backends: BTreeMap<String, BuiltinBackend>,
    },
}

impl BackendSelection {
    /// `secret_backend_command`: runs `command` (a bare name is looked up on `PATH`) and sends
    /// it no payload `type` or `config`.
    pub fn command(command: impl Into<PathBuf>) -> BackendSelection {
        BackendSelection::Command {
            command: command.into(),
            payload: None,
        }
    }

    /// `secret_backend_type`: keyturn's built-in backend. Refuses a type `keyturn-backend`
    /// does not serve.
    pub fn builtin(backend: BuiltinBackend) -> Result<BackendSelection, SettingsError> {
        known_type("secret_backend_type", &backend.backend_type)?;
        Ok(BackendSelection::Type { backend })
    }

    /// `multi_secret_backends`: built-in backends by name (case-insensitive: stored
    /// lower-case). Refuses no backend at all, an empty name or one with `;`, a name given
    /// twice, and a type `keyturn-backend` does not serve; errors name the key as the settings
    /// file would.
    pub fn multi<N: Into<String>>(
        backends: impl IntoIterator<Item = (N, BuiltinBackend)>,
    ) -> Result<BackendSelection, SettingsError> {
        let mut checked = BTreeMap::new();
        for (name, backend) in backends {
            add_multi(&mut checked, name.into(), backend)?;
        }
        if checked.is_empty() {
            return Err(SettingsError::Invalid {
                key: "multi_secret_backends".to_owned(),
                problem: "at least one backend is required".to_owned(),
            });
        }
        Ok(BackendSelection::Multi { backends: checked })
    }
}

/// A built-in backend type and its configuration, as sent in the payload. `Debug` shows the
/// config's keys, not its values (they may be credentials).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct BuiltinBackend {
    backend_type: String,
    config: Map<String, Value>,
}

impl BuiltinBackend {
    /// The payload `type` (e.g. `file.json`) and `config` (sent when not empty).
    pub fn new(backend_type: impl Into<String>, config: Map<String, Value>) -> BuiltinBackend {
        BuiltinBackend {
            backend_type: backend_type.into(),
            config,
        }
    }

    /// Payload `type`, e.g. `file.json`.
    pub fn backend_type(&self) -> &str {
        &self.backend_type
    }

    /// Payload `config`.
    pub fn config(&self) -> &Map<String, Value> {
        &self.config
    }
}

impl std::fmt::Debug for BuiltinBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinBackend")
            .field("backend_type", &self.backend_type)
            .field("config", &keyturn_protocol::RedactedConfig(&self.config))
            .finish()
    }
}

/// Why settings could not be read. Never quotes a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The text is not valid YAML/JSON.
    #[error("invalid settings syntax at line {line}, column {column}: {message}")]
    Syntax {
        /// What the parser reported (no source text).
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The top level is not a mapping.
    #[error("settings must be a mapping of keys to values")]
    NotAMapping,
    /// A key holds a value it cannot hold.
    #[error("invalid setting '{key}': {problem}")]
    Invalid {
        /// The key path, dotted for nested keys.
        key: String,
        /// What is wrong, without the value.
        problem: String,
    },
}

impl Settings {
    /// Reads settings from YAML (JSON is accepted too: it is YAML).
    pub fn from_yaml_str(text: &str) -> Result<Settings, SettingsError> {
        Settings::from_tree(&yaml_to_tree(text)?)
    }

    /// Reads settings from an already parsed tree.
    pub fn from_tree(tree: &Value) -> Result<Settings, SettingsError> {
        let Some(map) = tree.as_object() else {
            // An empty file is no settings at all.
            return if tree.is_null() {
                Ok(Settings::default())
            } else {
                Err(SettingsError::NotAMapping)
            };
        };
        let keys = Keys { map, prefix: "" };
        let mut settings = Settings::default();

        let command = keys
            .string("secret_backend_command")?
            .filter(|c| !c.is_empty());
        let backend_type = keys
            .string("secret_backend_type")?
            .filter(|t| !t.is_empty());
        let backend_config = keys.map("secret_backend_config")?.unwrap_or_default();
        let multi = match keys.map("multi_secret_backends")? {
            Some(map) => read_multi(&map)?,
            None => BTreeMap::new(),
        };
        settings.arguments = keys
            .string_list("secret_backend_arguments")?
            .unwrap_or_default();

        settings.protocol_version = keys.protocol_version("secret_backend_protocol_version")?;
        let old_protocol = settings.protocol_version == PayloadVersion::V1_0;

        let mut ignored = Vec::new();
        if command.is_some() && !multi.is_empty() {
            ignored.push("multi_secret_backends");
        }
        if let (Some(command), Some(_)) = (&command, &backend_type) {
            settings.warnings.push(format!(
                "secret_backend_command takes precedence over secret_backend_type for choosing the executable: '{command}' runs, {}. Remove secret_backend_command from your settings to run the built-in backend instead. Docs: {}",
                if old_protocol {
                    "and secret_backend_type and secret_backend_config are not sent to it (secret_backend_protocol_version 1.0 sends only version and secrets)"
                } else {
                    "and secret_backend_type and secret_backend_config are still sent to it as the payload's type and config"
                },
                crate::DOCS_URL
            ));
        } else if command.is_none() && backend_type.is_some() && !multi.is_empty() {
            ignored.push("multi_secret_backends");
        }
        if !ignored.is_empty() {
            let active = if command.is_some() {
                "secret_backend_command"
            } else {
                "secret_backend_type"
            };
            settings.warnings.push(format!(
                "{active} takes precedence over multi_secret_backends, which is ignored. Remove {active} from your settings to switch. Docs: {}",
                crate::DOCS_URL
            ));
        }
        if old_protocol && command.is_none() && (backend_type.is_some() || !multi.is_empty()) {
            settings.warnings.push(
                "secret_backend_protocol_version 1.0 applies to secret_backend_command only: keyturn's built-in backend is always sent version 1.1 with its type and config".to_owned(),
            );
        }
        settings.backend = if let Some(command) = command {
            Some(BackendSelection::Command {
                command: PathBuf::from(command),
                payload: backend_type.map(|backend_type| BuiltinBackend {
                    backend_type,
                    config: backend_config,
                }),
            })
        } else if let Some(backend_type) = backend_type {
            Some(BackendSelection::builtin(BuiltinBackend {
                backend_type,
                config: backend_config,
            })?)
        } else if !multi.is_empty() {
            Some(BackendSelection::Multi { backends: multi })
        } else {
            None
        };

        if let Some(secs) = keys
            .non_negative("secret_backend_timeout")?
            .filter(|&s| s > 0)
        {
            settings.timeout = clamped_secs(secs);
        }
        if let Some(size) = keys
            .non_negative("secret_backend_output_max_size")?
            .filter(|&s| s > 0)
        {
            settings.output_max_size = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if let Some(v) = keys.boolean("secret_backend_command_allow_group_exec_perm")? {
            settings.allow_group_exec = v;
        }
        if let Some(v) = keys.boolean("secret_backend_remove_trailing_line_break")? {
            settings.remove_trailing_line_break = v;
        }
        settings.refresh_interval = keys
            .non_negative("secret_refresh_interval")?
            .filter(|&s| s > 0)
            .map(clamped_secs);
        if let Some(v) = keys.boolean("secret_refresh_scatter")? {
            settings.refresh_scatter = v;
        }
        settings.refresh_trigger_interval = keys
            .non_negative("secret_refresh_on_api_key_failure_interval")?
            .filter(|&m| m > 0)
            .map(|m| clamped_secs(m.saturating_mul(60)));
        if let Some(size) = keys
            .non_negative("secret_audit_file_max_size")?
            .filter(|&s| s > 0)
        {
            settings.audit_file_max_size = size;
        }
        settings.run_path = keys
            .string("run_path")?
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(v) = keys.boolean("secret_memory_lock")? {
            settings.memory_lock = v;
        }
        Ok(settings)
    }

    /// Takes the settings' relative paths from `dir` (the settings file's directory, made
    /// absolute): a `secret_backend_command` written with a `/` (a bare name is still looked up
    /// on `PATH`) and `run_path`; and runs backends in `dir`, so that relative paths in
    /// `secret_backend_config` (`file_path`, `secrets_path`) mean the same.
    pub fn relative_to(mut self, dir: &Path) -> Settings {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if let Some(BackendSelection::Command { command, .. }) = &mut self.backend
            && command.is_relative()
            && command.components().count() > 1
        {
            *command = dir.join(&*command);
        }
        if let Some(run_path) = &mut self.run_path
            && run_path.is_relative()
        {
            *run_path = dir.join(&*run_path);
        }
        self.working_dir = Some(dir);
        self
    }

    /// Whether any backend is configured.
    pub fn is_enabled(&self) -> bool {
        self.backend.is_some()
    }

    /// Which backend resolves handles; `None` when no backend is configured.
    pub fn backend(&self) -> Option<&BackendSelection> {
        self.backend.as_ref()
    }

    /// `secret_backend_arguments`: passed to the command (and to the built-in backend).
    pub fn arguments(&self) -> &[String] {
        &self.arguments
    }

    /// `secret_backend_timeout`: the deadline of one backend run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `secret_backend_output_max_size`: cap on each of stdout and stderr, in bytes.
    pub fn output_max_size(&self) -> usize {
        self.output_max_size
    }

    /// `secret_backend_command_allow_group_exec_perm`.
    pub fn allow_group_exec(&self) -> bool {
        self.allow_group_exec
    }

    /// `secret_backend_remove_trailing_line_break`.
    pub fn remove_trailing_line_break(&self) -> bool {
        self.remove_trailing_line_break
    }

    /// `secret_refresh_interval`; `None` when periodic refresh is off.
    pub fn refresh_interval(&self) -> Option<Duration> {
        self.refresh_interval
    }

    /// `secret_refresh_scatter`.
    pub fn refresh_scatter(&self) -> bool {
        self.refresh_scatter
    }

    /// `secret_refresh_on_api_key_failure_interval` (minutes in the file): minimum spacing of
    /// refreshes triggered from outside; `None` when such triggers are not throttled.
    pub fn refresh_trigger_interval(&self) -> Option<Duration> {
        self.refresh_trigger_interval
    }

    /// `secret_audit_file_max_size`, in bytes.
    pub fn audit_file_max_size(&self) -> u64 {
        self.audit_file_max_size
    }

    /// `run_path`: directory of the audit file and the API token.
    pub fn run_path(&self) -> Option<&Path> {
        self.run_path.as_deref()
    }

    /// `secret_backend_protocol_version`: the payload sent to `secret_backend_command`
    /// (`1.1` by default; `1.0` sends exactly `version` and `secrets`). keyturn's own built-in
    /// backend is always sent `1.1`.
    pub fn protocol_version(&self) -> PayloadVersion {
        self.protocol_version
    }

    /// `secret_memory_lock`: lock the process' memory into RAM (`mlockall`) at start, so that
    /// secrets are never written to swap. Applied by `hygiene::harden` (feature `daemon`).
    pub fn memory_lock(&self) -> bool {
        self.memory_lock
    }

    /// The settings file's directory, when set by [`Settings::relative_to`]: backends run in
    /// it, so that relative paths in `secret_backend_config` mean the same.
    pub fn working_dir(&self) -> Option<&Path> {
        self.working_dir.as_deref()
    }

    /// Warnings found while reading (settings that were ignored), for the caller to log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// These settings with another backend (or none).
    pub fn with_backend(mut self, backend: impl Into<Option<BackendSelection>>) -> Settings {
        self.backend = backend.into();
        self
    }

    /// These settings with other `secret_backend_arguments`.
    pub fn with_arguments<S: Into<String>>(
        mut self,
        arguments: impl IntoIterator<Item = S>,
    ) -> Settings {
        self.arguments = arguments.into_iter().map(Into::into).collect();
        self
    }

    /// These settings with another backend deadline: zero means the default (as in the file),
    /// and a deadline past [`MAX_DURATION`] is shortened to it.
    pub fn with_timeout(mut self, timeout: Duration) -> Settings {
        self.timeout = if timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            timeout.min(MAX_DURATION)
        };
        self
    }

    /// These settings with another cap on each of the backend's stdout and stderr, in bytes:
    /// zero means the default (as in the file).
    pub fn with_output_max_size(mut self, bytes: usize) -> Settings {
        self.output_max_size = if bytes == 0 {
            DEFAULT_OUTPUT_MAX_SIZE
        } else {
            bytes
        };
        self
    }

    /// These settings, allowing (or not) group read and execute on the backend command.
    pub fn with_allow_group_exec(mut self, allow: bool) -> Settings {
        self.allow_group_exec = allow;
        self
    }

    /// These settings, stripping (or not) every trailing `\r` and `\n` from values.
    pub fn with_remove_trailing_line_break(mut self, remove: bool) -> Settings {
        self.remove_trailing_line_break = remove;
        self
    }

    /// These settings with periodic refresh every `interval` (at most [`MAX_DURATION`]), or
    /// off with `None` or zero.
    pub fn with_refresh_interval(mut self, interval: Option<Duration>) -> Settings {
        self.refresh_interval = bounded(interval);
        self
    }

    /// These settings, scattering (or not) the first periodic refresh.
    pub fn with_refresh_scatter(mut self, scatter: bool) -> Settings {
        self.refresh_scatter = scatter;
        self
    }

    /// These settings with refreshes triggered from outside spaced by at least `interval` (at
    /// most [`MAX_DURATION`]), or not throttled with `None` or zero.
    pub fn with_refresh_trigger_interval(mut self, interval: Option<Duration>) -> Settings {
        self.refresh_trigger_interval = bounded(interval);
        self
    }

    /// These settings with the audit file rotated at `bytes`: zero means the default (as in
    /// the file).
    pub fn with_audit_file_max_size(mut self, bytes: u64) -> Settings {
        self.audit_file_max_size = if bytes == 0 {
            DEFAULT_AUDIT_FILE_MAX_SIZE
        } else {
            bytes
        };
        self
    }

    /// These settings with another `run_path`.
    pub fn with_run_path(mut self, run_path: Option<PathBuf>) -> Settings {
        self.run_path = run_path;
        self
    }

    /// These settings with another payload version for `secret_backend_command`.
    pub fn with_protocol_version(mut self, version: PayloadVersion) -> Settings {
        self.protocol_version = version;
        self
    }

    /// These settings, locking (or not) the process' memory into RAM at start.
    pub fn with_memory_lock(mut self, lock: bool) -> Settings {
        self.memory_lock = lock;
        self
    }
}

/// `interval` within [`MAX_DURATION`]; `None` for zero (off, as in the file).
fn bounded(interval: Option<Duration>) -> Option<Duration> {
    interval
        .filter(|interval| !interval.is_zero())
        .map(|interval| interval.min(MAX_DURATION))
}

/// The backends that serve handles, as the specs that run: what [`Settings::routing`] makes of
/// the settings' backend selection. Specs are shared so that each run's task holds its own.
pub(crate) enum Routing {
    /// No backend is configured.
    None,
    /// One backend serves every handle.
    Single(Arc<BackendSpec>),
    /// `multi_secret_backends`: by lower-case name, chosen by the handle's prefix.
    Multi(BTreeMap<String, Arc<BackendSpec>>),
}

impl Routing {
    /// The spec whose executable status output describes: the only one, or the first of the
    /// multi backends (they all run `keyturn-backend`).
    pub(crate) fn first_spec(&self) -> Option<&BackendSpec> {
        match self {
            Routing::None => None,
            Routing::Single(spec) => Some(spec),
            Routing::Multi(specs) => specs.values().next().map(|spec| &**spec),
        }
    }
}

impl Settings {
    /// The specs that run for these settings, `builtin` being the `keyturn-backend` that serves
    /// `secret_backend_type` and `multi_secret_backends`.
    pub(crate) fn routing(&self, builtin: &Path) -> Routing {
        let builtin_spec = |backend: &BuiltinBackend| {
            BackendSpec::new(builtin)
                .with_args(self.arguments())
                .with_check(PermissionCheck::Builtin)
                .with_backend_type(Some(backend.backend_type.clone()))
                .with_config(backend.config.clone())
                .with_working_dir(self.working_dir.clone())
                // keyturn's own backend needs `type`, which only 1.1 carries.
                .with_protocol(PayloadVersion::V1_1)
        };
        match &self.backend {
            None => Routing::None,
            Some(BackendSelection::Command { command, payload }) => Routing::Single(Arc::new(
                BackendSpec::new(command)
                    .with_args(self.arguments())
                    .with_check(if self.allow_group_exec {
                        PermissionCheck::AllowGroupExec
                    } else {
                        PermissionCheck::Strict
                    })
                    // The Agent sends `type` and `config` to the command whenever a type is set.
                    .with_backend_type(payload.as_ref().map(|b| b.backend_type.clone()))
                    .with_config(
                        payload
                            .as_ref()
                            .map(|b| b.config.clone())
                            .unwrap_or_default(),
                    )
                    .with_protocol(self.protocol_version)
                    .with_working_dir(self.working_dir.clone()),
            )),
            Some(BackendSelection::Type { backend }) => {
                Routing::Single(Arc::new(builtin_spec(backend)))
            }
            Some(BackendSelection::Multi { backends }) => Routing::Multi(
                backends
                    .iter()
                    .map(|(name, backend)| (name.clone(), Arc::new(builtin_spec(backend))))
                    .collect(),
            ),
        }
    }
}

fn read_multi(map: &Map<String, Value>) -> Result<BTreeMap<String, BuiltinBackend>, SettingsError> {
    let mut backends = BTreeMap::new();
    for (name, entry) in map {
        let key = format!("multi_secret_backends.{name}");
        multi_name(name)?;
        let Some(entry) = entry.as_object() else {
            return Err(SettingsError::Invalid {
                key,
                problem: format!(
                    "expected a mapping with 'type' and 'config', found {}",
                    kind(entry)
                ),
            });
        };
        let keys = Keys {
            map: entry,
            prefix: &key,
        };
        let Some(backend_type) = keys.string("type")?.filter(|t| !t.is_empty()) else {
            return Err(SettingsError::Invalid {
                key: format!("{key}.type"),
                problem: "is required".into(),
            });
        };
        let config = keys.map("config")?.unwrap_or_default();
        add_multi(
            &mut backends,
            name.clone(),
            BuiltinBackend::new(backend_type, config),
        )?;
    }
    Ok(backends)
}

/// Refuses a multi backend name that is empty or holds `;` (which ends the name in a handle).
fn multi_name(name: &str) -> Result<(), SettingsError> {
    if name.is_empty() || name.contains(';') {
        return Err(SettingsError::Invalid {
            key: format!("multi_secret_backends.{name}"),
            problem: "a backend name must be non-empty and must not contain ';'".into(),
        });
    }
    Ok(())
}

/// Adds one of `multi_secret_backends` under its lower-case name, after checking the name,
/// that it is not there yet, and its type.
fn add_multi(
    backends: &mut BTreeMap<String, BuiltinBackend>,
    name: String,
    backend: BuiltinBackend,
) -> Result<(), SettingsError> {
    multi_name(&name)?;
    let key = format!("multi_secret_backends.{name}");
    known_type(&format!("{key}.type"), &backend.backend_type)?;
    if backends.insert(name.to_lowercase(), backend).is_some() {
        return Err(SettingsError::Invalid {
            key,
            problem: "backend names are case-insensitive and this one is defined twice".into(),
        });
    }
    Ok(())
}

/// Refuses a backend type `keyturn-backend` does not serve, naming `key` and the known types.
fn known_type(key: &str, backend_type: &str) -> Result<(), SettingsError> {
    if keyturn_protocol::BUILTIN_TYPES.contains(&backend_type) {
        return Ok(());
    }
    Err(SettingsError::Invalid {
        key: key.to_owned(),
        problem: format!(
            "unknown backend type {backend_type:?}; the known types are: {}",
            keyturn_protocol::BUILTIN_TYPES.join(", ")
        ),
    })
}

/// Typed reads of one mapping's keys. Absent and `null` read as `None`.
pub(crate) struct Keys<'a> {
    pub(crate) map: &'a Map<String, Value>,
    /// Dotted path of the mapping, for error messages; empty at the top level.
    pub(crate) prefix: &'a str,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn invalid(&self, key: &str, problem: String) -> SettingsError {
        let key = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        };
        SettingsError::Invalid { key, problem }
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                Err(self.invalid(key, format!("expected a string, found {}", kind(other))))
            }
        }
    }

    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(
                key,
                format!("expected true or false, found {}", kind(other)),
            )),
        }
    }

    pub(crate) fn non_negative(&self, key: &str) -> Result<Option<u64>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
                (Some(v), _) => Ok(Some(v)),
                (None, Some(_)) => Err(self.invalid(key, "must not be negative".into())),
                (None, None) => {
                    Err(self.invalid(key, "expected a whole number, found a fraction".into()))
                }
            },
            Some(other) => Err(self.invalid(
                key,
                format!("expected a non-negative integer, found {}", kind(other)),
            )),
        }
    }

    /// `"1.0"` or `"1.1"`; an unquoted `1.0` or `1.1` (a YAML number) is read the same.
    fn protocol_version(&self, key: &str) -> Result<PayloadVersion, SettingsError> {
        let text = match self.get(key) {
            None => return Ok(PayloadVersion::default()),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(other) => {
                return Err(self.invalid(
                    key,
                    format!("expected \"1.0\" or \"1.1\", found {}", kind(other)),
                ));
            }
        };
        PayloadVersion::parse(&text)
            .ok_or_else(|| self.invalid(key, "expected \"1.0\" or \"1.1\"".to_owned()))
    }

    pub(crate) fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.invalid(
                        &format!("{key}.{i}"),
                        format!("expected a string, found {}", kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.invalid(
                key,
                format!("expected a list of strings, found {}", kind(other)),
            )),
        }
    }

    pub(crate) fn map(&self, key: &str) -> Result<Option<Map<String, Value>>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map.clone())),
            Some(other) => {
                Err(self.invalid(key, format!("expected a mapping, found {}", kind(other))))
            }
        }
    }
}

/// Names a value's type for error messages, never its content.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Parses YAML text into a JSON tree: scalars typed as YAML 1.2 core reads them, mapping keys as
/// strings. An empty text is `null`; only the first document of a stream is read. Collections
/// nesting deeper than [`MAX_DEPTH`] levels, aliases expanded, are a syntax error.
pub fn yaml_to_tree(text: &str) -> Result<Value, SettingsError> {
    load_tree(text, true)
}

#[cfg(feature = "daemon")]
/// [`yaml_to_tree`] with every scalar left as the text it was written as (`0o640` stays the
/// string `"0o640"`, `'x'` the string `"x"`): for the few settings whose spelling matters,
/// looked up at the same place in this tree as in [`yaml_to_tree`]'s.
pub(crate) fn yaml_to_spelling_tree(text: &str) -> Result<Value, SettingsError> {
    load_tree(text, false)
}

/// The loader of both trees; `typed` resolves scalars (YAML 1.2 core), otherwise they stay as
/// written.
fn load_tree(text: &str, typed: bool) -> Result<Value, SettingsError> {
    load_tree_of(text, typed, None)
}

/// The settings tree of a document that is read for its settings only (`keyturn resolve`
/// without `--config`): only the top-level keys [`Settings::from_tree`] reads are built (and,
/// elsewhere, anchored nodes they may alias), so the rest of the document costs no memory.
pub fn yaml_to_settings_tree(text: &str) -> Result<Value, SettingsError> {
    load_tree_of(text, true, Some(is_settings_key))
}

/// The settings tree of a JSON document read for its settings only: like
/// [`yaml_to_settings_tree`], only the top-level keys [`Settings::from_tree`] reads are built.
/// Text that is not JSON reads as `null` (the document's own parse reports it).
pub fn json_to_settings_tree(text: &str) -> Value {
    serde_json::from_str::<SettingsKeys>(text).map_or(Value::Null, |keys| keys.0)
}

/// A JSON document with only its settings keys kept (a non-object keeps its kind, empty).
struct SettingsKeys(Value);

impl<'de> serde::Deserialize<'de> for SettingsKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(SettingsKeysVisitor)
            .map(SettingsKeys)
    }
}

struct SettingsKeysVisitor;

impl<'de> serde::de::Visitor<'de> for SettingsKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            if is_settings_key(&key) {
                let value = entries.next_value::<Value>()?;
                map.insert(key, value);
            } else {
                entries.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(Value::Object(map))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        while items.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Whether [`Settings::from_tree`] reads this top-level key.
pub fn is_settings_key(key: &str) -> bool {
    key.starts_with("secret_") || key == "multi_secret_backends" || key == "run_path"
}

/// Bytes the values that aliases copy may add up to in a settings tree (an estimate of the tree
/// built: each scalar's text plus 32 bytes per node). Each alias copies its anchor's
/// tree; past this budget the file is refused with an error naming it.
pub const ALIAS_EXPANSION_LIMIT: usize = 16 * 1024 * 1024;

/// The estimated cost of one node of a tree beyond its text.
const NODE_COST: usize = 32;

fn load_tree_of(
    text: &str,
    typed: bool,
    keep: Option<fn(&str) -> bool>,
) -> Result<Value, SettingsError> {
    let syntax = |error: &saphyr::ScanError| SettingsError::Syntax {
        message: error.info().to_owned(),
        line: error.marker().line(),
        column: error.marker().col() + 1,
    };
    // Events are pulled one by one: saphyr's `load` recurses once per nesting level.
    // `key:<TAB>value` reads as other YAML readers read it (see `document/tabs.rs`).
    let text = crate::document::readable_yaml(text);
    let mut parser = saphyr_parser::Parser::new_from_str(&text);
    let mut depth = DepthLimit::default();
    let mut loader = TreeLoader {
        typed,
        keep,
        frames: Vec::new(),
        anchors: HashMap::new(),
        expanded: 0,
        root: None,
        documents: 0,
    };
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|error| syntax(&error))?;
        if !depth.admit(&event) {
            return Err(SettingsError::Syntax {
                message: format!("collections nest deeper than {MAX_DEPTH} levels"),
                line: span.start.line(),
                column: span.start.col() + 1,
            });
        }
        loader.event(event, span)?;
    }
    Ok(loader.root.unwrap_or(Value::Null))
}

/// Builds a JSON tree from the parser's events, without recursion. An alias copies its anchor's
/// tree (counted against [`ALIAS_EXPANSION_LIMIT`]); with `keep`, the values of top-level keys
/// it refuses are not built, except anchored nodes inside them (which later aliases may copy).
struct TreeLoader {
    typed: bool,
    keep: Option<fn(&str) -> bool>,
    frames: Vec<TreeFrame>,
    /// Anchored nodes: their tree and its estimated size.
    anchors: HashMap<usize, (Value, usize)>,
    /// Estimated bytes copied by aliases so far.
    expanded: usize,
    root: Option<Value>,
    documents: usize,
}

/// An open collection; `node` is `None` when it is not built.
struct TreeFrame {
    node: Option<TreeNode>,
    anchor: usize,
    size: usize,
}

enum TreeNode {
    Seq(Vec<Value>),
    /// A mapping and the key read for the value that comes next (with its line and column).
    Map(Map<String, Value>, Option<(String, usize, usize)>),
}

impl TreeLoader {
    fn event(
        &mut self,
        event: saphyr_parser::Event<'_>,
        span: saphyr_parser::Span,
    ) -> Result<(), SettingsError> {
        use saphyr_parser::Event;

        if let Event::DocumentStart(_) = event {
            self.documents += 1;
        }
        // Only the first document is read.
        if self.documents > 1 {
            return Ok(());
        }
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let built = (self.builds() || anchor > 0).then(|| {
                    let size = NODE_COST + value.len();
                    let value = if self.typed {
                        yaml_value(&saphyr::Yaml::value_from_cow_and_metadata(
                            value,
                            style,
                            tag.as_ref(),
                        ))
                    } else {
                        Value::String(value.into_owned())
                    };
                    (value, size)
                });
                self.complete(built, anchor, span)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let node = (self.builds() || anchor > 0).then(|| match event {
                    Event::SequenceStart(..) => TreeNode::Seq(Vec::new()),
                    _ => TreeNode::Map(Map::new(), None),
                });
                self.frames.push(TreeFrame {
                    node,
                    anchor,
                    size: NODE_COST,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.frames.pop() else {
                    return Ok(());
                };
                let built = frame.node.map(|node| {
                    let value = match node {
                        TreeNode::Seq(items) => Value::Array(items),
                        TreeNode::Map(map, _) => Value::Object(map),
                    };
                    (value, frame.size)
                });
                self.complete(built, frame.anchor, span)
            }
            Event::Alias(anchor) => {
                if !self.builds() {
                    return self.complete(None, 0, span);
                }
                let copy = match self.anchors.get(&anchor) {
                    Some((value, size)) => {
                        self.expanded = self.expanded.saturating_add(*size);
                        if self.expanded > ALIAS_EXPANSION_LIMIT {
                            return Err(SettingsError::Syntax {
                                message: format!(
                                    "aliases expand into more than {ALIAS_EXPANSION_LIMIT} bytes"
                                ),
                                line: span.start.line(),
                                column: span.start.col() + 1,
                            });
                        }
                        (value.clone(), *size)
                    }
                    // Unknown or still open (an alias to itself): null, as saphyr reads it.
                    None => (Value::Null, NODE_COST),
                };
                self.complete(Some(copy), 0, span)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => Ok(()),
        }
    }

    /// Whether the node that starts now is built: its parent is, and it is not the value of a
    /// top-level key that `keep` refuses.
    fn builds(&self) -> bool {
        let Some(parent) = self.frames.last() else {
            return true;
        };
        match &parent.node {
            None => false,
            Some(TreeNode::Map(_, Some((key, _, _)))) if self.frames.len() == 1 => {
                self.keep.is_none_or(|keep| keep(key))
            }
            Some(_) => true,
        }
    }

    /// A node is complete: remember it under its anchor, add it to its parent.
    fn complete(
        &mut self,
        built: Option<(Value, usize)>,
        anchor: usize,
        span: saphyr_parser::Span,
    ) -> Result<(), SettingsError> {
        if anchor > 0
            && let Some((value, size)) = &built
        {
            self.anchors.insert(anchor, (value.clone(), *size));
        }
        // A node built only for its anchor is not part of the tree.
        let built = if self.builds() { built } else { None };
        let Some(parent) = self.frames.last_mut() else {
            if self.root.is_none() {
                self.root = Some(built.map_or(Value::Null, |(value, _)| value));
            }
            return Ok(());
        };
        match &mut parent.node {
            None => {}
            Some(TreeNode::Seq(items)) => {
                if let Some((value, size)) = built {
                    items.push(value);
                    parent.size = parent.size.saturating_add(size);
                }
            }
            Some(TreeNode::Map(map, key)) => match key.take() {
                None => {
                    let text = match built {
                        Some((Value::String(text), _)) => text,
                        // A collection used as a key is never a key keyturn reads, and its JSON
                        // text would hold the escaped text of the keys nested in it: each level
                        // doubles the backslashes, so a small file of nested keys would make
                        // text of exponential size. It is named by its place instead.
                        Some((Value::Array(_) | Value::Object(_), _)) => format!(
                            "<collection key at line {}, column {}>",
                            span.start.line(),
                            span.start.col() + 1
                        ),
                        Some((other, _)) => other.to_string(),
                        None => String::new(),
                    };
                    *key = Some((text, span.start.line(), span.start.col() + 1));
                }
                Some((text, line, column)) => {
                    if let Some((value, size)) = built {
                        parent.size = parent.size.saturating_add(size + text.len());
                        if map.insert(text, value).is_some() {
                            return Err(SettingsError::Syntax {
                                message: "duplicated key in mapping".to_owned(),
                                line,
                                column,
                            });
                        }
                    }
                }
            },
        }
        Ok(())
    }
}

/// How deep collections may nest in settings, aliases expanded. Everything that walks the tree
/// recurses (saphyr's `load` and its loader's clones and hashes, the conversion to JSON, every
/// `drop`), so without a bound a small hostile file (`- - - - ...`) overflows the stack.
pub const MAX_DEPTH: usize = crate::document::MAX_DEPTH;

/// Follows the events of a stream and tells when the tree they build would nest deeper than
/// [`MAX_DEPTH`], counting an alias as a copy of its anchor.
#[derive(Debug, Default)]
struct DepthLimit {
    /// Per open collection: its anchor id (0 for none) and the height of its tallest child.
    open: Vec<(usize, usize)>,
    /// Height of each anchored node (a scalar is 0, a collection 1 + its tallest child).
    heights: HashMap<usize, usize>,
}

impl DepthLimit {
    /// Takes in `event`; false when the tree is now too deep.
    fn admit(&mut self, event: &saphyr_parser::Event<'_>) -> bool {
        use saphyr_parser::Event;

        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.open.push((*anchor, 0));
                self.open.len() <= MAX_DEPTH
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, tallest) = self.open.pop().unwrap_or_default();
                self.close(anchor, tallest + 1);
                true
            }
            Event::Scalar(_, _, anchor, _) => {
                self.close(*anchor, 0);
                true
            }
            Event::Alias(anchor) => {
                let height = self.heights.get(anchor).copied().unwrap_or_default();
                self.close(0, height);
                self.open.len() + height <= MAX_DEPTH
            }
            _ => true,
        }
    }

    /// A node of `height` is complete: its parent grows, and its anchor remembers it.
    fn close(&mut self, anchor: usize, height: usize) {
        if anchor > 0 {
            self.heights.insert(anchor, height);
        }
        if let Some((_, tallest)) = self.open.last_mut() {
            *tallest = (*tallest).max(height);
        }
    }
}

fn yaml_value(node: &saphyr::Yaml<'_>) -> Value {
    use saphyr::{Scalar, Yaml};
    match node {
        Yaml::Value(scalar) => match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::from(*i),
            Scalar::FloatingPoint(f) => {
                serde_json::Number::from_f64(f.into_inner()).map_or(Value::Null, Value::Number)
            }
            Scalar::String(s) => Value::String(s.to_string()),
        },
        Yaml::Representation(text, _, _) => Value::String(text.to_string()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(yaml_value).collect()),
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match yaml_value(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_value(v))
                })
                .collect(),
        ),
        Yaml::Tagged(_, inner) => yaml_value(inner),
        Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_err(text: &str, expected: &str) {
        let err = Settings::from_yaml_str(text).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn defaults() {
        let settings = Settings::from_yaml_str("api_key: x\nlogs_enabled: true\n").unwrap();
        assert_eq!(settings, Settings::default());
        assert!(!settings.is_enabled());
        assert_eq!(Settings::from_yaml_str("").unwrap(), Settings::default());
    }

    #[test]
    fn reads_every_key() {
        let settings = Settings::from_yaml_str(
            "secret_backend_command: /usr/bin/fetch\n\
             secret_backend_arguments: [a, b]\n\
             secret_backend_timeout: 5\n\
             secret_backend_output_max_size: 2048\n\
             secret_backend_command_allow_group_exec_perm: true\n\
             secret_backend_remove_trailing_line_break: true\n\
             secret_refresh_interval: 600\n\
             secret_refresh_scatter: false\n\
             secret_refresh_on_api_key_failure_interval: 2\n\
             secret_audit_file_max_size: 4096\n\
             run_path: /var/run/keyturn\n\
             secret_backend_protocol_version: '1.0'\n\
             secret_memory_lock: true\n",
        )
        .unwrap();
        assert_eq!(
            settings.backend,
            Some(BackendSelection::Command {
                command: PathBuf::from("/usr/bin/fetch"),
                payload: None,
            })
        );
        assert_eq!(settings.arguments, ["a", "b"]);
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.output_max_size, 2048);
        assert!(settings.allow_group_exec);
        assert!(settings.remove_trailing_line_break);
        assert_eq!(settings.refresh_interval, Some(Duration::from_secs(600)));
        assert!(!settings.refresh_scatter);
        assert_eq!(
            settings.refresh_trigger_interval,
            Some(Duration::from_secs(120))
        );
        assert_eq!(settings.audit_file_max_size, 4096);
        assert_eq!(settings.run_path, Some(PathBuf::from("/var/run/keyturn")));
        assert!(settings.memory_lock);
        assert_eq!(settings.protocol_version, PayloadVersion::V1_0);
    }

    #[test]
    fn protocol_version_is_1_1_by_default_and_validated() {
        assert_eq!(Settings::default().protocol_version, PayloadVersion::V1_1);
        for (text, version) in [
            ("'1.0'", PayloadVersion::V1_0),
            ("\"1.1\"", PayloadVersion::V1_1),
            // Unquoted, YAML reads a number: the same version is meant.
            ("1.0", PayloadVersion::V1_0),
            ("1.1", PayloadVersion::V1_1),
            ("null", PayloadVersion::V1_1),
        ] {
            let settings =
                Settings::from_yaml_str(&format!("secret_backend_protocol_version: {text}\n"))
                    .unwrap();
            assert_eq!(settings.protocol_version, version, "{text}");
        }
        for (text, found) in [
            ("'2.0'", ""),
            ("1", ""),
            ("'1.10'", ""),
            ("true", ", found a boolean"),
            ("[1.0]", ", found a list"),
        ] {
            check_err(
                &format!("secret_backend_protocol_version: {text}\n"),
                &format!(
                    "invalid setting 'secret_backend_protocol_version': expected \"1.0\" or \"1.1\"{found}"
                ),
            );
        }
    }

    #[test]
    fn memory_lock_is_off_by_default_and_must_be_a_boolean() {
        assert!(!Settings::default().memory_lock);
        assert!(
            !Settings::from_yaml_str("secret_memory_lock: false\n")
                .unwrap()
                .memory_lock
        );
        assert!(
            !Settings::from_yaml_str("secret_memory_lock: null\n")
                .unwrap()
                .memory_lock
        );
        check_err(
            "secret_memory_lock: 'yes'\n",
            "invalid setting 'secret_memory_lock': expected true or false, found a string",
        );
    }

    /// Found by the `settings` fuzz target (from a deep seed): every walk over saphyr's tree
    /// recursed, so deep nesting overflowed the stack instead of failing.
    /// Fuzzing found an 861-byte file of nested collection keys that ran for minutes: each
    /// key's JSON text held the escaped text of the keys inside it, doubling per level.
    #[test]
    fn nested_collection_keys_stay_small() {
        let depth = 60;
        let text = format!(
            "{}a: 1{}\n",
            "{".repeat(depth),
            "}: 1".repeat(depth - 1) + "}"
        );
        let settings = Settings::from_yaml_str(&text);
        assert!(settings.is_ok(), "{settings:?}");
    }

    #[test]
    fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
        // Directly: block sequences, flow sequences inside block mappings.
        let block = "- ".repeat(100_000) + "x\n";
        let flow = "a: ".to_owned() + &"[".repeat(200) + &"]".repeat(200);
        // Through aliases: each anchor nests 100 levels around an alias to the previous one.
        let mut aliases = String::from("a0: &a0 ");
        aliases.push_str(&"[".repeat(100));
        aliases.push_str(&"]".repeat(100));
        for i in 1..40 {
            aliases.push_str(&format!(
                "\na{i}: &a{i} {}*a{} {}",
                "[".repeat(100),
                i - 1,
                "]".repeat(100)
            ));
        }
        aliases.push('\n');
        for text in [block, flow, aliases] {
            match yaml_to_tree(&text) {
                Err(SettingsError::Syntax { message, .. }) => assert_eq!(
                    message,
                    format!("collections nest deeper than {MAX_DEPTH} levels")
                ),
                other => panic!("{other:?}"),
            }
        }
        // At the limit, and through an alias that stays within it: accepted.
        let deepest = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(yaml_to_tree(&deepest).is_ok());
        let shallow = format!(
            "a: &a [[1]]\nb: {}*a{}\n",
            "[".repeat(MAX_DEPTH - 3),
            "]".repeat(MAX_DEPTH - 3)
        );
        assert!(yaml_to_tree(&shallow).is_ok(), "{shallow}");
    }

    /// Issue 9, item 2: an alias copies its anchor's tree, within a byte budget; a document
    /// read for its settings builds only the settings keys, so aliases elsewhere cost nothing.
    #[test]
    fn aliases_are_budgeted_and_unread_keys_are_not_built() {
        let mut text = format!("big: &big \"{}\"\n", "x".repeat(1024 * 1024));
        text.push_str(&format!("copies: [{}*big]\n", "*big, ".repeat(100)));
        text.push_str("defaults: &cfg {file_path: /s}\nsecret_backend_type: file.json\n");
        text.push_str("secret_backend_config: *cfg\n");
        let tree = yaml_to_settings_tree(&text).unwrap();
        let keys: Vec<&String> = tree.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["secret_backend_config", "secret_backend_type"]);
        assert_eq!(
            tree["secret_backend_config"],
            serde_json::json!({"file_path": "/s"})
        );
        let error = yaml_to_tree(&text).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid settings syntax at line 2, column 100: aliases expand into more than \
             16777216 bytes"
        );
        // The budget counts bytes, not nodes: a few aliases of a big anchor are fine.
        let few = format!("big: &big \"{}\"\ncopies: [*big, *big]\n", "x".repeat(1024));
        assert_eq!(
            yaml_to_tree(&few).unwrap()["copies"][1]
                .as_str()
                .map(str::len),
            Some(1024)
        );
        // JSON documents keep only the settings keys too.
        assert_eq!(
            json_to_settings_tree("{\"a\": [1, 2], \"run_path\": \"/r\"}"),
            serde_json::json!({"run_path": "/r"})
        );
        assert_eq!(json_to_settings_tree("[1]"), serde_json::json!([]));
        assert_eq!(json_to_settings_tree("{"), Value::Null);
    }

    #[test]
    fn debug_shows_backend_config_keys_not_values() {
        for text in [
            "secret_backend_type: hashicorp.vault\nsecret_backend_config:\n  vault_token: hunter2-token\n",
            "multi_secret_backends:\n  aws:\n    type: aws.secrets\n    config: {aws_secret_access_key: hunter2-key}\n",
        ] {
            let settings = Settings::from_yaml_str(text).unwrap();
            let printed = format!("{settings:?}");
            assert!(
                printed.contains("_token") || printed.contains("_key"),
                "{printed}"
            );
            assert!(!printed.contains("hunter2"), "{printed}");
        }
    }

    #[test]
    fn zero_means_default() {
        let settings = Settings::from_yaml_str(
            "secret_backend_timeout: 0\nsecret_backend_output_max_size: 0\nsecret_refresh_interval: 0\n",
        )
        .unwrap();
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(settings.output_max_size, DEFAULT_OUTPUT_MAX_SIZE);
        assert_eq!(settings.refresh_interval, None);
        // Issue 9.14: the largest numbers are read as the maximum duration.
        let settings = Settings::from_yaml_str(
            "secret_backend_timeout: 9223372036854775807\nsecret_refresh_interval: 9223372036854775807\nsecret_refresh_on_api_key_failure_interval: 9223372036854775807\n",
        )
        .unwrap();
        assert_eq!(settings.timeout, MAX_DURATION);
        assert_eq!(settings.refresh_interval, Some(MAX_DURATION));
        assert_eq!(settings.refresh_trigger_interval, Some(MAX_DURATION));
    }

    #[test]
    fn wrong_types_name_the_key_not_the_value() {
        check_err(
            "secret_backend_timeout: -1\n",
            "invalid setting 'secret_backend_timeout': must not be negative",
        );
        check_err(
            "secret_backend_timeout: soon\n",
            "invalid setting 'secret_backend_timeout': expected a non-negative integer, found a string",
        );
        check_err(
            "secret_backend_arguments: --token=hunter2\n",
            "invalid setting 'secret_backend_arguments': expected a list of strings, found a string",
        );
        check_err(
            "secret_backend_arguments: [a, 1]\n",
            "invalid setting 'secret_backend_arguments.1': expected a string, found a number",
        );
        check_err(
            "secret_backend_remove_trailing_line_break: 'yes'\n",
            "invalid setting 'secret_backend_remove_trailing_line_break': expected true or false, found a string",
        );
        check_err(
            "secret_backend_config: [1]\n",
            "invalid setting 'secret_backend_config': expected a mapping, found a list",
        );
        check_err("- a\n", "settings must be a mapping of keys to values");
        check_err(
            "multi_secret_backends:\n  a:\n    config: {}\n",
            "invalid setting 'multi_secret_backends.a.type': is required",
        );
        check_err(
            "multi_secret_backends:\n  'a;b':\n    type: file.json\n",
            "invalid setting 'multi_secret_backends.a;b': a backend name must be non-empty and must not contain ';'",
        );
    }

    #[test]
    fn syntax_error_reports_position() {
        let err = Settings::from_yaml_str("a: [1, 2\n").unwrap_err();
        assert!(matches!(err, SettingsError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn unknown_backend_types_are_refused_naming_the_key() {
        let known = keyturn_protocol::BUILTIN_TYPES.join(", ");
        check_err(
            "secret_backend_type: nope\n",
            &format!(
                "invalid setting 'secret_backend_type': unknown backend type \"nope\"; the known types are: {known}"
            ),
        );
        check_err(
            "multi_secret_backends:\n  Vault:\n    type: hashicorp.vaul\n",
            &format!(
                "invalid setting 'multi_secret_backends.Vault.type': unknown backend type \"hashicorp.vaul\"; the known types are: {known}"
            ),
        );
        // Beside a command, the type is ignored (with a warning), as in the Agent.
        let settings =
            Settings::from_yaml_str("secret_backend_command: /bin/x\nsecret_backend_type: nope\n")
                .unwrap();
        assert!(matches!(
            settings.backend,
            Some(BackendSelection::Command { .. })
        ));
    }

    #[test]
    fn type_and_config() {
        let settings = Settings::from_yaml_str(
            "secret_backend_type: hashicorp.vault\nsecret_backend_config:\n  vault_address: http://127.0.0.1:8200\n  vault_session:\n    vault_auth_type: approle\n",
        )
        .unwrap();
        let Some(BackendSelection::Type { backend: builtin }) = settings.backend else {
            panic!()
        };
        assert_eq!(builtin.backend_type, "hashicorp.vault");
        assert_eq!(
            builtin.config["vault_session"]["vault_auth_type"],
            "approle"
        );
    }

    #[test]
    fn precedence_command_type_multi_with_warning() {
        let settings = Settings::from_yaml_str(
            "secret_backend_command: /bin/x\nsecret_backend_type: file.json\nsecret_backend_config: {file_path: /s.json}\nmulti_secret_backends:\n  A:\n    type: file.yaml\n",
        )
        .unwrap();
        // The command runs, and the type and config still go into its payload (the Agent's
        // behaviour): Datadog's connector run as a command needs them.
        let Some(BackendSelection::Command {
            command,
            payload: Some(payload),
        }) = &settings.backend
        else {
            panic!("{:?}", settings.backend)
        };
        assert_eq!(command, &PathBuf::from("/bin/x"));
        assert_eq!(payload.backend_type, "file.json");
        assert_eq!(payload.config["file_path"], "/s.json");
        assert_eq!(
            settings.warnings,
            [
                format!(
                    "secret_backend_command takes precedence over secret_backend_type for choosing the executable: \
                     '/bin/x' runs, and secret_backend_type and secret_backend_config are still sent to it as the \
                     payload's type and config. Remove secret_backend_command from your settings to run the \
                     built-in backend instead. Docs: {}",
                    crate::DOCS_URL
                ),
                format!(
                    "secret_backend_command takes precedence over multi_secret_backends, which is ignored. \
                     Remove secret_backend_command from your settings to switch. Docs: {}",
                    crate::DOCS_URL
                ),
            ]
        );
        let settings = Settings::from_yaml_str(
            "secret_backend_command: /bin/x\nsecret_backend_type: file.json\nsecret_backend_protocol_version: '1.0'\n",
        )
        .unwrap();
        assert_eq!(
            settings.warnings,
            [format!(
                "secret_backend_command takes precedence over secret_backend_type for choosing the executable: \
                 '/bin/x' runs, and secret_backend_type and secret_backend_config are not sent to it \
                 (secret_backend_protocol_version 1.0 sends only version and secrets). Remove \
                 secret_backend_command from your settings to run the built-in backend instead. Docs: {}",
                crate::DOCS_URL
            )]
        );
        let settings = Settings::from_yaml_str(
            "secret_backend_type: file.json\nmulti_secret_backends:\n  A:\n    type: file.yaml\n",
        )
        .unwrap();
        assert!(matches!(
            settings.backend,
            Some(BackendSelection::Type { .. })
        ));
        assert_eq!(
            settings.warnings,
            [format!(
                "secret_backend_type takes precedence over multi_secret_backends, which is ignored. \
                 Remove secret_backend_type from your settings to switch. Docs: {}",
                crate::DOCS_URL
            )]
        );
        let settings = Settings::from_yaml_str(
            "multi_secret_backends:\n  Files:\n    type: file.yaml\n    config: {file_path: /x}\n",
        )
        .unwrap();
        let Some(BackendSelection::Multi { backends: multi }) = settings.backend else {
            panic!()
        };
        assert_eq!(multi.keys().collect::<Vec<_>>(), ["files"]);
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn setters_keep_the_file_bounds() {
        let settings = Settings::default()
            .with_timeout(Duration::MAX)
            .with_refresh_interval(Some(Duration::MAX))
            .with_refresh_trigger_interval(Some(Duration::ZERO))
            .with_output_max_size(0)
            .with_audit_file_max_size(0);
        assert_eq!(settings.timeout(), MAX_DURATION);
        assert_eq!(settings.refresh_interval(), Some(MAX_DURATION));
        assert_eq!(settings.refresh_trigger_interval(), None);
        assert_eq!(settings.output_max_size(), DEFAULT_OUTPUT_MAX_SIZE);
        assert_eq!(settings.audit_file_max_size(), DEFAULT_AUDIT_FILE_MAX_SIZE);
        assert_eq!(
            Settings::default().with_timeout(Duration::ZERO).timeout(),
            DEFAULT_TIMEOUT
        );
    }

    #[test]
    fn built_selections_are_checked_like_the_file() {
        let json = || BuiltinBackend::new("file.json", Map::new());
        let Ok(BackendSelection::Multi { backends }) =
            BackendSelection::multi([("Files", json()), ("other", json())])
        else {
            panic!()
        };
        assert_eq!(backends.keys().collect::<Vec<_>>(), ["files", "other"]);
        let refused = |result: Result<BackendSelection, SettingsError>| match result {
            Err(SettingsError::Invalid { key, problem }) => format!("{key}: {problem}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(BackendSelection::multi([("a;b", json())])),
            "multi_secret_backends.a;b: a backend name must be non-empty and must not contain ';'"
        );
        assert_eq!(
            refused(BackendSelection::multi([("A", json()), ("a", json())])),
            "multi_secret_backends.a: backend names are case-insensitive and this one is defined twice"
        );
        assert_eq!(
            refused(BackendSelection::multi(Vec::<(String, _)>::new())),
            "multi_secret_backends: at least one backend is required"
        );
        let typo = || BuiltinBackend::new("file.jsn", Map::new());
        assert!(
            refused(BackendSelection::multi([("a", typo())]))
                .starts_with("multi_secret_backends.a.type: unknown backend type \"file.jsn\"")
        );
        assert!(
            refused(BackendSelection::builtin(typo()))
                .starts_with("secret_backend_type: unknown backend type")
        );
        assert!(BackendSelection::builtin(json()).is_ok());
    }
}
