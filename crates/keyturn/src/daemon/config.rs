//! The daemon's settings file: the resolver [`Settings`] plus an `api` section and a list of
//! `templates`, parsed once into validated types.
//!
//! The `secret_*` keys and `run_path` are read by [`Settings::from_tree`] (unknown top-level keys
//! are ignored, so a `datadog.yaml` still works). The `api` and `templates` sections are
//! keyturn's own: an unknown key inside them is an error, so a typo never silently disables
//! something. Errors name the key (`templates.0.destination`) and never quote a value.
//!
//! Relative paths (`run_path`, `api.auth_token_file`, `templates.N.source`,
//! `templates.N.destination`) are relative to the settings file's directory, which is also the
//! default `run_path`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::document::Format;
use crate::settings::{Keys, Settings, SettingsError, kind, yaml_to_tree};

/// Default of `api.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5009";
/// File name of the API token in `run_path` when `api.auth_token_file` is not set.
pub const DEFAULT_TOKEN_FILE_NAME: &str = "auth_token";
/// Default of `templates.N.mode`.
pub const DEFAULT_MODE: u32 = 0o600;
/// Default of `templates.N.on_change_timeout`.
pub const DEFAULT_ON_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything `keyturn serve` reads from its settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// The resolver's settings; their `run_path` is set to [`DaemonConfig::run_path`].
    pub settings: Settings,
    /// `run_path`, made absolute; the settings file's directory when unset.
    pub run_path: PathBuf,
    /// The `api` section.
    pub api: ApiConfig,
    /// The `templates` list, in file order.
    pub templates: Vec<TemplateConfig>,
}

/// The `api` section: where the HTTP API listens and how clients authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `api.listen`: an `IP:port` address.
    pub listen: SocketAddr,
    /// `api.auth_token_file`; default `<run_path>/auth_token`.
    pub auth_token_file: PathBuf,
    /// `api.allow_non_loopback`: whether `listen` may be a non-loopback address.
    pub allow_non_loopback: bool,
}

/// One entry of `templates`: a document with handles and where its resolved form goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateConfig {
    /// `source`: the document with `ENC[...]` handles. Its path is the origin of its handles.
    pub source: PathBuf,
    /// `destination`: where the resolved document is written (atomically).
    pub destination: PathBuf,
    /// `mode`: permission bits of `destination`.
    pub mode: u32,
    /// `format`: syntax of the source; by default from the source's extension, then the
    /// destination's.
    pub format: Format,
    /// `refresh_allowlist`: path segments a refresh may change; `None` means every use.
    pub refresh_allowlist: Option<Vec<String>>,
    /// `on_change` and `on_change_timeout`: a command run after `destination` changed.
    pub on_change: Option<OnChange>,
}

/// A command run after a destination changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChange {
    /// The program (`argv[0]`, a path or a name looked up on `PATH`) and its arguments; never
    /// empty.
    pub argv: Vec<String>,
    /// How long it may run before its process group is killed.
    pub timeout: Duration,
}

/// Why the daemon's settings file could not be used. Never quotes a value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read settings file {path}: {source}")]
    Read {
        /// The settings file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's content is invalid.
    #[error("{path}: {source}")]
    Invalid {
        /// The settings file.
        path: PathBuf,
        /// What is wrong, naming the key.
        source: SettingsError,
    },
}

impl DaemonConfig {
    /// Reads and validates the settings file at `path`.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("/"));
        DaemonConfig::from_yaml_str(&text, base).map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses settings text; relative paths are taken relative to `base` (the settings file's
    /// directory).
    pub fn from_yaml_str(text: &str, base: &Path) -> Result<DaemonConfig, SettingsError> {
        let tree = yaml_to_tree(text)?;
        let mut settings = Settings::from_tree(&tree)?;
        let empty = Map::new();
        let map = tree.as_object().unwrap_or(&empty);
        let run_path = match &settings.run_path {
            Some(path) => base.join(path),
            None => base.to_path_buf(),
        };
        // The resolver (audit file) and the API token use the same, absolute, run path.
        settings.run_path = Some(run_path.clone());
        let top = Keys { map, prefix: "" };
        let api = match top.map("api")? {
            Some(section) => read_api(&section, base, &run_path)?,
            None => read_api(&Map::new(), base, &run_path)?,
        };
        let templates = read_templates(map.get("templates"), base)?;
        Ok(DaemonConfig {
            settings,
            run_path,
            api,
            templates,
        })
    }
}

fn read_api(
    section: &Map<String, Value>,
    base: &Path,
    run_path: &Path,
) -> Result<ApiConfig, SettingsError> {
    let keys = Keys {
        map: section,
        prefix: "api",
    };
    reject_unknown(&keys, &["listen", "auth_token_file", "allow_non_loopback"])?;
    let allow_non_loopback = keys.boolean("allow_non_loopback")?.unwrap_or(false);
    let listen_text = keys
        .string("listen")?
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        keys.invalid(
            "listen",
            "expected an IP address and a port, like 127.0.0.1:5009".into(),
        )
    })?;
    if !listen.ip().is_loopback() && !allow_non_loopback {
        return Err(keys.invalid(
            "listen",
            "is not a loopback address; set api.allow_non_loopback: true to listen on it".into(),
        ));
    }
    let auth_token_file = match non_empty_string(&keys, "auth_token_file")? {
        Some(path) => base.join(path),
        None => run_path.join(DEFAULT_TOKEN_FILE_NAME),
    };
    Ok(ApiConfig {
        listen,
        auth_token_file,
        allow_non_loopback,
    })
}

fn read_templates(
    value: Option<&Value>,
    base: &Path,
) -> Result<Vec<TemplateConfig>, SettingsError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(SettingsError::Invalid {
                key: "templates".into(),
                problem: format!("expected a list of templates, found {}", kind(other)),
            });
        }
    };
    let mut templates: Vec<TemplateConfig> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("templates.{i}");
        let Some(map) = item.as_object() else {
            return Err(SettingsError::Invalid {
                key: prefix,
                problem: format!("expected a mapping, found {}", kind(item)),
            });
        };
        let template = read_template(
            &Keys {
                map,
                prefix: &prefix,
            },
            base,
        )?;
        for (j, earlier) in templates.iter().enumerate() {
            if earlier.source == template.source {
                return Err(SettingsError::Invalid {
                    key: format!("{prefix}.source"),
                    problem: format!(
                        "templates.{j} has the same source; each source may be used once"
                    ),
                });
            }
            if earlier.destination == template.destination {
                return Err(SettingsError::Invalid {
                    key: format!("{prefix}.destination"),
                    problem: format!("templates.{j} has the same destination"),
                });
            }
        }
        if template.destination == template.source {
            return Err(SettingsError::Invalid {
                key: format!("{prefix}.destination"),
                problem: "must differ from the source".into(),
            });
        }
        templates.push(template);
    }
    Ok(templates)
}

fn read_template(keys: &Keys<'_>, base: &Path) -> Result<TemplateConfig, SettingsError> {
    reject_unknown(
        keys,
        &[
            "source",
            "destination",
            "mode",
            "format",
            "refresh_allowlist",
            "on_change",
            "on_change_timeout",
        ],
    )?;
    let required = |key: &str| -> Result<PathBuf, SettingsError> {
        match non_empty_string(keys, key)? {
            Some(path) => Ok(base.join(path)),
            None => Err(keys.invalid(key, "is required".into())),
        }
    };
    let source = required("source")?;
    let destination = required("destination")?;
    let mode = read_mode(keys)?;
    let format = match keys.string("format")? {
        Some(name) => Format::from_name(&name)
            .ok_or_else(|| keys.invalid("format", "expected yaml or json".into()))?,
        None => Format::from_path(&source)
            .or_else(|| Format::from_path(&destination))
            .ok_or_else(|| {
                keys.invalid(
                    "format",
                    "cannot tell from the file extensions; set yaml or json".into(),
                )
            })?,
    };
    let refresh_allowlist = keys.string_list("refresh_allowlist")?;
    let timeout = match keys.non_negative("on_change_timeout")? {
        None | Some(0) => DEFAULT_ON_CHANGE_TIMEOUT,
        Some(secs) => Duration::from_secs(secs),
    };
    let on_change = match keys.string_list("on_change")? {
        None => None,
        Some(argv) if argv.first().is_none_or(String::is_empty) => {
            return Err(keys.invalid(
                "on_change",
                "expected a command and its arguments, like [systemctl, reload, app]".into(),
            ));
        }
        Some(argv) => Some(OnChange { argv, timeout }),
    };
    Ok(TemplateConfig {
        source,
        destination,
        mode,
        format,
        refresh_allowlist,
        on_change,
    })
}

/// `mode`: an integer whose decimal digits are read as octal (YAML reads `0640` as 640), or a
/// string of octal digits with an optional `0o` prefix. At most `0777`.
fn read_mode(keys: &Keys<'_>) -> Result<u32, SettingsError> {
    let digits = match keys.map.get("mode") {
        None | Some(Value::Null) => return Ok(DEFAULT_MODE),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => n.to_string(),
            None => return Err(keys.invalid("mode", "expected octal digits like 0640".into())),
        },
        Some(Value::String(s)) => s.strip_prefix("0o").unwrap_or(s).to_owned(),
        Some(other) => {
            return Err(keys.invalid(
                "mode",
                format!("expected octal digits like 0640, found {}", kind(other)),
            ));
        }
    };
    match u32::from_str_radix(&digits, 8) {
        Ok(mode) if mode <= 0o777 && !digits.is_empty() => Ok(mode),
        _ => Err(keys.invalid(
            "mode",
            "expected permission bits in octal, 0000 to 0777, like 0640 or \"0640\"".into(),
        )),
    }
}

fn non_empty_string(keys: &Keys<'_>, key: &str) -> Result<Option<String>, SettingsError> {
    Ok(keys.string(key)?.filter(|s| !s.is_empty()))
}

fn reject_unknown(keys: &Keys<'_>, known: &[&str]) -> Result<(), SettingsError> {
    match keys.map.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(keys.invalid(
            key,
            format!("unknown key; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/etc/keyturn";

    fn parse(text: &str) -> Result<DaemonConfig, SettingsError> {
        DaemonConfig::from_yaml_str(text, Path::new(BASE))
    }

    #[track_caller]
    fn check_err(text: &str, expected: &str) {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => assert_eq!(err.to_string(), expected),
        }
    }

    #[track_caller]
    fn check_mode(value: &str, expected: u32) {
        let config = parse(&format!(
            "templates:\n  - {{source: a.yaml, destination: b.yaml, mode: {value}}}\n"
        ))
        .unwrap();
        assert_eq!(config.templates[0].mode, expected, "mode: {value}");
    }

    #[test]
    fn defaults() {
        let config = parse("secret_backend_command: /bin/x\n").unwrap();
        assert_eq!(config.run_path, Path::new(BASE));
        assert_eq!(config.settings.run_path.as_deref(), Some(Path::new(BASE)));
        assert_eq!(
            config.api,
            ApiConfig {
                listen: DEFAULT_LISTEN.parse().unwrap(),
                auth_token_file: Path::new(BASE).join("auth_token"),
                allow_non_loopback: false,
            }
        );
        assert!(config.templates.is_empty());
        assert!(config.settings.is_enabled());
        assert_eq!(parse("").unwrap().api.listen.port(), 5009);
    }

    #[test]
    fn reads_every_key() {
        let config = parse(
            "run_path: run\n\
             api:\n  listen: '[::1]:7000'\n  auth_token_file: /secret/token\n\
             templates:\n\
             \x20 - source: app.tmpl\n\
             \x20   destination: /etc/app/app.conf\n\
             \x20   mode: '0640'\n\
             \x20   format: json\n\
             \x20   refresh_allowlist: [password]\n\
             \x20   on_change: [systemctl, reload, app]\n\
             \x20   on_change_timeout: 5\n\
             \x20 - {source: /abs/b.yml, destination: out/b.yml}\n",
        )
        .unwrap();
        assert_eq!(config.run_path, Path::new("/etc/keyturn/run"));
        assert_eq!(
            config.settings.run_path.as_deref(),
            Some(config.run_path.as_path())
        );
        assert_eq!(config.api.listen, "[::1]:7000".parse().unwrap());
        assert_eq!(config.api.auth_token_file, Path::new("/secret/token"));
        assert_eq!(
            config.templates,
            [
                TemplateConfig {
                    source: "/etc/keyturn/app.tmpl".into(),
                    destination: "/etc/app/app.conf".into(),
                    mode: 0o640,
                    format: Format::Json,
                    refresh_allowlist: Some(vec!["password".into()]),
                    on_change: Some(OnChange {
                        argv: vec!["systemctl".into(), "reload".into(), "app".into()],
                        timeout: Duration::from_secs(5),
                    }),
                },
                TemplateConfig {
                    source: "/abs/b.yml".into(),
                    destination: "/etc/keyturn/out/b.yml".into(),
                    mode: 0o600,
                    format: Format::Yaml,
                    refresh_allowlist: None,
                    on_change: None,
                },
            ]
        );
    }

    #[test]
    fn token_file_follows_run_path() {
        let config = parse("run_path: /var/run/keyturn\n").unwrap();
        assert_eq!(
            config.api.auth_token_file,
            Path::new("/var/run/keyturn/auth_token")
        );
    }

    #[test]
    fn modes() {
        check_mode("0640", 0o640);
        check_mode("640", 0o640);
        check_mode("'0640'", 0o640);
        check_mode("'0o755'", 0o755);
        check_mode("0", 0);
        check_mode("'0777'", 0o777);
    }

    #[test]
    fn errors_name_the_key() {
        let t =
            |rest: &str| format!("templates:\n  - {{source: a.yaml, destination: b.yaml{rest}}}\n");
        check_err(
            &t(", mode: 0800"),
            "invalid setting 'templates.0.mode': expected permission bits in octal, 0000 to 0777, like 0640 or \"0640\"",
        );
        check_err(
            &t(", mode: '1777'"),
            "invalid setting 'templates.0.mode': expected permission bits in octal, 0000 to 0777, like 0640 or \"0640\"",
        );
        check_err(
            &t(", mode: [1]"),
            "invalid setting 'templates.0.mode': expected octal digits like 0640, found a list",
        );
        check_err(
            "templates:\n  - {source: a.yaml}\n",
            "invalid setting 'templates.0.destination': is required",
        );
        check_err(
            "templates:\n  - {source: a.yaml, destination: ''}\n",
            "invalid setting 'templates.0.destination': is required",
        );
        check_err(
            "templates:\n  - {source: a.tmpl, destination: b.out}\n",
            "invalid setting 'templates.0.format': cannot tell from the file extensions; set yaml or json",
        );
        check_err(
            &t(", format: toml"),
            "invalid setting 'templates.0.format': expected yaml or json",
        );
        check_err(
            &t(", on_change: []"),
            "invalid setting 'templates.0.on_change': expected a command and its arguments, like [systemctl, reload, app]",
        );
        check_err(
            &t(", on_change: reload"),
            "invalid setting 'templates.0.on_change': expected a list of strings, found a string",
        );
        check_err(
            &t(", refresh_allowlist: [1]"),
            "invalid setting 'templates.0.refresh_allowlist.0': expected a string, found a number",
        );
        check_err(
            &t(", destinaton: x"),
            "invalid setting 'templates.0.destinaton': unknown key; expected one of source, destination, mode, format, refresh_allowlist, on_change, on_change_timeout",
        );
        check_err(
            "templates: {source: a}\n",
            "invalid setting 'templates': expected a list of templates, found a mapping",
        );
        check_err(
            "templates: [a.yaml]\n",
            "invalid setting 'templates.0': expected a mapping, found a string",
        );
        check_err(
            "templates:\n  - {source: a.yaml, destination: b.yaml}\n  - {source: a.yaml, destination: c.yaml}\n",
            "invalid setting 'templates.1.source': templates.0 has the same source; each source may be used once",
        );
        check_err(
            "templates:\n  - {source: a.yaml, destination: b.yaml}\n  - {source: c.yaml, destination: b.yaml}\n",
            "invalid setting 'templates.1.destination': templates.0 has the same destination",
        );
        check_err(
            "templates:\n  - {source: a.yaml, destination: a.yaml}\n",
            "invalid setting 'templates.0.destination': must differ from the source",
        );
        check_err(
            "api:\n  listen: localhost:5009\n",
            "invalid setting 'api.listen': expected an IP address and a port, like 127.0.0.1:5009",
        );
        check_err(
            "api:\n  listen: 0.0.0.0:5009\n",
            "invalid setting 'api.listen': is not a loopback address; set api.allow_non_loopback: true to listen on it",
        );
        check_err(
            "api:\n  port: 1\n",
            "invalid setting 'api.port': unknown key; expected one of listen, auth_token_file, allow_non_loopback",
        );
        check_err(
            "api: [1]\n",
            "invalid setting 'api': expected a mapping, found a list",
        );
        check_err(
            "secret_refresh_interval: -1\n",
            "invalid setting 'secret_refresh_interval': must not be negative",
        );
    }

    #[test]
    fn non_loopback_when_allowed() {
        let config = parse("api:\n  listen: 0.0.0.0:5009\n  allow_non_loopback: true\n").unwrap();
        assert!(config.api.allow_non_loopback);
        assert!(!config.api.listen.ip().is_loopback());
    }

    #[test]
    fn load_resolves_relative_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyturn.yaml");
        std::fs::write(
            &path,
            "templates:\n  - {source: a.yaml, destination: b.yaml}\n",
        )
        .unwrap();
        let config = DaemonConfig::load(&path).unwrap();
        assert_eq!(config.templates[0].source, dir.path().join("a.yaml"));
        assert_eq!(config.run_path, dir.path());
        let missing = DaemonConfig::load(&dir.path().join("absent.yaml")).unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot read settings file"),
            "{missing}"
        );
        std::fs::write(&path, "templates: 1\n").unwrap();
        let invalid = DaemonConfig::load(&path).unwrap_err();
        assert!(invalid.to_string().ends_with("keyturn.yaml: invalid setting 'templates': expected a list of templates, found a number"), "{invalid}");
    }
}
