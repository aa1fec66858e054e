//! The `exec` section of the settings file: what `keyturn exec` does when a value in its
//! child's environment changes, and when the child exits.
//!
//! ```yaml
//! exec:
//!   on_change: restart        # restart (default), signal or never
//!   stop_signal: SIGTERM      # how a restart stops the child
//!   stop_timeout: 30          # seconds before SIGKILL
//!   reload_signal: SIGHUP     # sent by on_change: signal
//!   restart_on_exit: never    # never (default), on-failure or always
//! ```
//!
//! An unknown key in the section is an error, like in `api` and `templates`; errors name the
//! key (`exec.stop_signal`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Map, Value};

use crate::daemon::{ConfigError, DaemonConfig};
use crate::settings::{Keys, SettingsError, kind, yaml_to_tree};

/// Default of `exec.stop_timeout`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest `exec.stop_timeout`, in seconds (a day).
pub const MAX_STOP_TIMEOUT_SECS: u64 = 86_400;

/// What a changed value in the child's environment does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeAction {
    /// Stop the child and start it again with the new environment.
    Restart,
    /// Send `reload_signal` to the child (files were re-rendered; its environment stays).
    Signal,
    /// Nothing beyond re-rendering files.
    Never,
}

/// Whether the child is started again after it exits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartOnExit {
    /// keyturn exits with the child's status.
    Never,
    /// Started again after an unsuccessful exit or a death by signal; a success ends keyturn.
    OnFailure,
    /// Started again after any exit.
    Always,
}

/// The `exec` section, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecConfig {
    /// `on_change`.
    pub on_change: ChangeAction,
    /// `stop_signal`: what stops the child for a restart.
    pub stop_signal: Signal,
    /// `stop_timeout`: how long a stopping child has before `SIGKILL`.
    pub stop_timeout: Duration,
    /// `reload_signal`: what `on_change: signal` sends.
    pub reload_signal: Signal,
    /// `restart_on_exit`.
    pub restart_on_exit: RestartOnExit,
}

impl Default for ExecConfig {
    fn default() -> ExecConfig {
        ExecConfig {
            on_change: ChangeAction::Restart,
            stop_signal: Signal::SIGTERM,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            reload_signal: Signal::SIGHUP,
            restart_on_exit: RestartOnExit::Never,
        }
    }
}

/// Everything `keyturn exec` reads from its settings file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExecSettings {
    /// What `keyturn serve` would read (secret_* keys, `run_path`, `api`, `templates`).
    pub daemon: DaemonConfig,
    /// Whether the file has an `api` section: only then does `keyturn exec` serve the API.
    pub api: bool,
    /// The `exec` section.
    pub exec: ExecConfig,
}

impl ExecSettings {
    /// Reads and validates the settings file at `path` (read once: the daemon's sections and
    /// the `exec` section come from the same text). Relative paths are taken from the file's
    /// directory, as `keyturn serve` does.
    pub fn load(path: &Path) -> Result<ExecSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let text = zeroize::Zeroizing::new(text);
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("/"));
        let invalid = |error| ConfigError::Invalid {
            path: path.to_path_buf(),
            error,
        };
        let daemon = DaemonConfig::from_yaml_str(&text, base).map_err(invalid)?;
        let (api, exec) = read_exec_section(&text).map_err(invalid)?;
        Ok(ExecSettings { daemon, api, exec })
    }

    /// Settings with nothing configured: no backend, no API, no templates, default `exec`.
    /// Relative paths would be taken from `base`. (An empty text is valid settings; the
    /// error is that of [`DaemonConfig::from_yaml_str`].)
    pub fn empty(base: &Path) -> Result<ExecSettings, SettingsError> {
        Ok(ExecSettings {
            daemon: DaemonConfig::from_yaml_str("", base)?,
            api: false,
            exec: ExecConfig::default(),
        })
    }
}

/// Whether the text has an `api` section, and its validated `exec` section.
pub fn read_exec_section(text: &str) -> Result<(bool, ExecConfig), SettingsError> {
    let tree = yaml_to_tree(text)?;
    let empty = Map::new();
    let map = tree.as_object().unwrap_or(&empty);
    let api = map.get("api").is_some_and(|v| !v.is_null());
    let top = Keys { map, prefix: "" };
    let exec = match top.map("exec")? {
        Some(section) => read_exec(&Keys {
            map: &section,
            prefix: "exec",
        })?,
        None => ExecConfig::default(),
    };
    Ok((api, exec))
}

fn read_exec(keys: &Keys<'_>) -> Result<ExecConfig, SettingsError> {
    const KNOWN: [&str; 5] = [
        "on_change",
        "stop_signal",
        "stop_timeout",
        "reload_signal",
        "restart_on_exit",
    ];
    if let Some(key) = keys.map.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(keys.invalid(
            key,
            format!("unknown key; expected one of {}", KNOWN.join(", ")),
        ));
    }
    let defaults = ExecConfig::default();
    let on_change = match keys.string("on_change")?.as_deref() {
        None => defaults.on_change,
        Some("restart") => ChangeAction::Restart,
        Some("signal") => ChangeAction::Signal,
        Some("never") => ChangeAction::Never,
        Some(_) => {
            return Err(keys.invalid("on_change", "expected restart, signal or never".into()));
        }
    };
    let restart_on_exit = match keys.string("restart_on_exit")?.as_deref() {
        None => defaults.restart_on_exit,
        Some("never") => RestartOnExit::Never,
        Some("on-failure") => RestartOnExit::OnFailure,
        Some("always") => RestartOnExit::Always,
        Some(_) => {
            return Err(keys.invalid(
                "restart_on_exit",
                "expected never, on-failure or always".into(),
            ));
        }
    };
    let stop_timeout = match keys.non_negative("stop_timeout")? {
        None | Some(0) => defaults.stop_timeout,
        Some(secs) if secs > MAX_STOP_TIMEOUT_SECS => {
            return Err(keys.invalid(
                "stop_timeout",
                format!("must be at most {MAX_STOP_TIMEOUT_SECS} seconds"),
            ));
        }
        Some(secs) => Duration::from_secs(secs),
    };
    Ok(ExecConfig {
        on_change,
        stop_signal: read_signal(keys, "stop_signal")?.unwrap_or(defaults.stop_signal),
        stop_timeout,
        reload_signal: read_signal(keys, "reload_signal")?.unwrap_or(defaults.reload_signal),
        restart_on_exit,
    })
}

/// A signal by name: `SIGHUP`, `HUP` or `hup`.
fn read_signal(keys: &Keys<'_>, key: &str) -> Result<Option<Signal>, SettingsError> {
    let Some(value) = keys.map.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::String(name) = value else {
        return Err(keys.invalid(
            key,
            format!("expected a signal name like SIGTERM, found {}", kind(value)),
        ));
    };
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full)
        .map(Some)
        .map_err(|_| keys.invalid(key, "expected a signal name like SIGTERM or HUP".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_err(text: &str, expected: &str) {
        match read_exec_section(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => assert_eq!(err.to_string(), expected),
        }
    }

    #[test]
    fn defaults_and_every_key() {
        assert_eq!(
            read_exec_section("secret_backend_command: /x\n").unwrap(),
            (false, ExecConfig::default())
        );
        let (api, exec) = read_exec_section(
            "api: {listen: '127.0.0.1:1'}\nexec:\n  on_change: signal\n  stop_signal: int\n  \
             stop_timeout: 5\n  reload_signal: SIGUSR1\n  restart_on_exit: on-failure\n",
        )
        .unwrap();
        assert!(api);
        assert_eq!(
            exec,
            ExecConfig {
                on_change: ChangeAction::Signal,
                stop_signal: Signal::SIGINT,
                stop_timeout: Duration::from_secs(5),
                reload_signal: Signal::SIGUSR1,
                restart_on_exit: RestartOnExit::OnFailure,
            }
        );
        let (_, exec) =
            read_exec_section("exec: {on_change: never, restart_on_exit: always}\n").unwrap();
        assert_eq!(exec.on_change, ChangeAction::Never);
        assert_eq!(exec.restart_on_exit, RestartOnExit::Always);
    }

    #[test]
    fn errors_name_the_key() {
        check_err(
            "exec: {on_change: reload}\n",
            "invalid setting 'exec.on_change': expected restart, signal or never",
        );
        check_err(
            "exec: {stop_signal: SIGNOPE}\n",
            "invalid setting 'exec.stop_signal': expected a signal name like SIGTERM or HUP",
        );
        check_err(
            "exec: {reload_signal: 1}\n",
            "invalid setting 'exec.reload_signal': expected a signal name like SIGTERM, found a number",
        );
        check_err(
            "exec: {stop_timeout: 86401}\n",
            "invalid setting 'exec.stop_timeout': must be at most 86400 seconds",
        );
        check_err(
            "exec: {restart_on_exit: sometimes}\n",
            "invalid setting 'exec.restart_on_exit': expected never, on-failure or always",
        );
        check_err(
            "exec: {stop_timout: 1}\n",
            "invalid setting 'exec.stop_timout': unknown key; expected one of on_change, stop_signal, stop_timeout, reload_signal, restart_on_exit",
        );
        check_err(
            "exec: [1]\n",
            "invalid setting 'exec': expected a mapping, found a list",
        );
    }

    #[test]
    fn load_reads_the_file_once_for_both_parts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyturn.yaml");
        std::fs::write(
            &path,
            "templates:\n  - {source: a.yaml, destination: b.yaml}\nexec: {on_change: never}\n",
        )
        .unwrap();
        let settings = ExecSettings::load(&path).unwrap();
        assert!(!settings.api);
        assert_eq!(settings.exec.on_change, ChangeAction::Never);
        assert_eq!(settings.daemon.run_path, dir.path());
        assert_eq!(
            settings.daemon.templates[0].source,
            dir.path().join("a.yaml")
        );
        std::fs::write(&path, "exec: {on_change: bogus}\n").unwrap();
        let error = ExecSettings::load(&path).unwrap_err().to_string();
        assert!(
            error.ends_with(
                "keyturn.yaml: invalid setting 'exec.on_change': expected restart, signal or never"
            ),
            "{error}"
        );
        let missing = ExecSettings::load(&dir.path().join("absent.yaml")).unwrap_err();
        assert!(missing.to_string().starts_with("cannot read settings file"));
    }
}
