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
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::document::Format;
use crate::settings::{Keys, Settings, SettingsError, kind, yaml_to_spelling_tree, yaml_to_tree};

/// Default of `api.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5009";
/// File name of the API token in `run_path` when `api.auth_token_file` is not set.
pub const DEFAULT_TOKEN_FILE_NAME: &str = "auth_token";
/// Default of `api.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default of `api.header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `api.header_read_timeout` accepted, in seconds.
pub const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 3600;
/// Default of `templates.N.mode`.
pub const DEFAULT_MODE: u32 = 0o600;
/// Default of `templates.N.on_change_timeout`.
pub const DEFAULT_ON_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything `keyturn serve` reads from its settings file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct ApiConfig {
    /// `api.listen`: an `IP:port` address.
    pub listen: SocketAddr,
    /// `api.auth_token_file`; default `<run_path>/auth_token`.
    pub auth_token_file: PathBuf,
    /// `api.allow_non_loopback`: whether `listen` may be a non-loopback address.
    pub allow_non_loopback: bool,
    /// `api.max_connections`: at most this many connections open at once (fewer when the
    /// descriptor limit is low, see [`crate::daemon::server`]).
    pub max_connections: usize,
    /// `api.header_read_timeout`: a client must send a request's header (and body) within it.
    pub header_read_timeout: Duration,
    /// `api.unauthenticated_metrics`: serve `/metrics` without the token.
    pub unauthenticated_metrics: bool,
}

/// One entry of `templates`: a document with handles and where its resolved form goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct OnChange {
    /// The program (`argv[0]`, a path or a name looked up on `PATH`) and its arguments; never
    /// empty.
    pub argv: Vec<String>,
    /// How long it may run before its process group is killed.
    pub timeout: Duration,
}

/// Why the daemon's settings file could not be used. Never quotes a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read settings file {path}: {error}")]
    Read {
        /// The settings file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file's content is invalid.
    #[error("{path}: {error}")]
    Invalid {
        /// The settings file.
        path: PathBuf,
        /// What is wrong, naming the key.
        error: SettingsError,
    },
}

impl DaemonConfig {
    /// Reads and validates the settings file at `path`.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("/"));
        DaemonConfig::from_yaml_str(&text, base).map_err(|error| ConfigError::Invalid {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Parses settings text; relative paths are taken relative to `base` (the settings file's
    /// directory).
    pub fn from_yaml_str(text: &str, base: &Path) -> Result<DaemonConfig, SettingsError> {
        let tree = yaml_to_tree(text)?;
        let settings = Settings::from_tree(&tree)?.relative_to(base);
        let empty = Map::new();
        let map = tree.as_object().unwrap_or(&empty);
        let run_path = match settings.run_path() {
            Some(path) => base.join(path),
            None => base.to_path_buf(),
        };
        // The resolver (audit file) and the API token use the same, absolute, run path.
        let settings = settings.with_run_path(Some(run_path.clone()));
        let top = Keys { map, prefix: "" };
        let api = match top.map("api")? {
            Some(section) => read_api(&section, base, &run_path)?,
            None => read_api(&Map::new(), base, &run_path)?,
        };
        // `templates.N.mode` needs its spelling, not only its value.
        let spellings = yaml_to_spelling_tree(text)?;
        let templates = read_templates(map.get("templates"), spellings.get("templates"), base)?;
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
    reject_unknown(
        &keys,
        &[
            "listen",
            "auth_token_file",
            "allow_non_loopback",
            "max_connections",
            "header_read_timeout",
            "unauthenticated_metrics",
        ],
    )?;
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
    let max_connections = match keys.non_negative("max_connections")? {
        None | Some(0) => DEFAULT_MAX_CONNECTIONS,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let header_read_timeout = match keys.non_negative("header_read_timeout")? {
        None | Some(0) => DEFAULT_HEADER_READ_TIMEOUT,
        Some(secs) if secs > MAX_HEADER_READ_TIMEOUT_SECS => {
            return Err(keys.invalid(
                "header_read_timeout",
                format!("must be at most {MAX_HEADER_READ_TIMEOUT_SECS} seconds"),
            ));
        }
        Some(secs) => Duration::from_secs(secs),
    };
    let unauthenticated_metrics = keys.boolean("unauthenticated_metrics")?.unwrap_or(false);
    Ok(ApiConfig {
        listen,
        auth_token_file,
        allow_non_loopback,
        max_connections,
        header_read_timeout,
        unauthenticated_metrics,
    })
}

/// `spellings`: the same list as written (see [`yaml_to_spelling_tree`]).
fn read_templates(
    value: Option<&Value>,
    spellings: Option<&Value>,
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
        let spelling = spellings.and_then(|list| list.get(i));
        let template = read_template(
            &Keys {
                map,
                prefix: &prefix,
            },
            spelling,
            base,
        )?;
        templates.push(template);
    }
    check_distinct(&templates, |path| Some(lexical(path)))?;
    Ok(templates)
}

/// Fails unless every source, and every destination, names a file of its own: no two
/// templates share a source or a destination, and no destination is any template's source.
/// `key` says what a path names; `None` (not known) matches nothing.
fn check_distinct<K: PartialEq>(
    templates: &[TemplateConfig],
    key: impl Fn(&Path) -> Option<K>,
) -> Result<(), SettingsError> {
    let sources: Vec<Option<K>> = templates.iter().map(|t| key(&t.source)).collect();
    let destinations: Vec<Option<K>> = templates.iter().map(|t| key(&t.destination)).collect();
    let same = |a: &Option<K>, b: &Option<K>| matches!((a, b), (Some(a), Some(b)) if a == b);
    let invalid = |i: usize, key: &str, problem: String| SettingsError::Invalid {
        key: format!("templates.{i}.{key}"),
        problem,
    };
    for (i, (source, destination)) in sources.iter().zip(&destinations).enumerate() {
        let earlier = sources.iter().zip(&destinations).take(i);
        for (j, (earlier_source, earlier_destination)) in earlier.enumerate() {
            if same(source, earlier_source) {
                return Err(invalid(
                    i,
                    "source",
                    format!("templates.{j} has the same source; each source may be used once"),
                ));
            }
            if same(destination, earlier_destination) {
                return Err(invalid(
                    i,
                    "destination",
                    format!("templates.{j} has the same destination"),
                ));
            }
        }
        for (j, other_source) in sources.iter().enumerate() {
            if same(destination, other_source) {
                let problem = if i == j {
                    "must differ from the source".to_owned()
                } else {
                    format!("is the source of templates.{j}")
                };
                return Err(invalid(i, "destination", problem));
            }
        }
    }
    Ok(())
}

/// `path` with `.` and `..` folded away as text (`/a/b/../c` is `/a/c`). Exact for paths
/// without symbolic links; [`check_distinct_on_disk`] covers the others.
fn lexical(path: &Path) -> PathBuf {
    let mut folded = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !folded.pop() {
                    folded.push(component);
                }
            }
            other => folded.push(other),
        }
    }
    folded
}

/// What a template path names on disk: its canonical path (of its directory, when the file does
/// not exist yet) and, when it exists, its `(device, inode)`, so that symbolic links and hard
/// links are seen through.
#[derive(Debug)]
struct OnDisk {
    canonical: PathBuf,
    inode: Option<(u64, u64)>,
}

impl PartialEq for OnDisk {
    fn eq(&self, other: &OnDisk) -> bool {
        self.canonical == other.canonical || (self.inode.is_some() && self.inode == other.inode)
    }
}

/// The checks of [`read_templates`] again, on the files the paths name now: a destination
/// reached through `..` and a symbolic link, or a hard link of a source, is still that source.
/// A path whose directory does not exist names nothing yet (reading or writing it fails on its
/// own).
pub(crate) fn check_distinct_on_disk(templates: &[TemplateConfig]) -> Result<(), SettingsError> {
    check_distinct(templates, |path| {
        let inode = std::fs::metadata(path)
            .ok()
            .map(|meta| (meta.dev(), meta.ino()));
        let canonical = std::fs::canonicalize(path).ok().or_else(|| {
            let parent = std::fs::canonicalize(path.parent()?).ok()?;
            Some(parent.join(path.file_name()?))
        })?;
        Some(OnDisk { canonical, inode })
    })
}

/// `spelling`: the template as written (see [`yaml_to_spelling_tree`]).
fn read_template(
    keys: &Keys<'_>,
    spelling: Option<&Value>,
    base: &Path,
) -> Result<TemplateConfig, SettingsError> {
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
    let mode = read_mode(keys, spelling.and_then(|t| t.get("mode")))?;
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
        Some(secs) => crate::settings::clamped_secs(secs),
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

/// `mode`: permission bits, read as the number they denote, in octal with a leading `0` or `0o`
/// (`0640`, `0o640`, quoted or not) or in hexadecimal (`0x1a0`). A decimal number (`640`,
/// `416`) is refused: YAML reads `640` as six hundred and forty, and `0640` as the same number
/// (YAML 1.2) or as octal (YAML 1.1), so an integer's value alone cannot say what was meant;
/// `written` is how it was written. A mode that lets group or others write is refused.
fn read_mode(keys: &Keys<'_>, written: Option<&Value>) -> Result<u32, SettingsError> {
    let text = match keys.map.get("mode") {
        None | Some(Value::Null) => return Ok(DEFAULT_MODE),
        Some(Value::Number(_)) => written.and_then(Value::as_str).unwrap_or_default(),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(keys.invalid(
                "mode",
                format!("expected octal digits like 0640, found {}", kind(other)),
            ));
        }
    };
    match parse_mode(text) {
        None => Err(keys.invalid(
            "mode",
            "expected permission bits in octal with a leading 0, like 0640, 0o640 or \"0640\" \
             (without it, 640 is a decimal number)"
                .into(),
        )),
        Some(mode) if mode > 0o777 => {
            Err(keys.invalid("mode", "expected permission bits from 0000 to 0777".into()))
        }
        Some(mode) if mode & 0o022 != 0 => Err(keys.invalid(
            "mode",
            "lets group or others write the destination; use 0600 or 0640, for example".into(),
        )),
        Some(mode) => Ok(mode),
    }
}

/// The number `text` denotes as a mode: `0o` octal, `0x` hexadecimal, a leading `0` octal (as
/// chmod and YAML 1.1 read it). `None` for anything else, decimal included.
fn parse_mode(text: &str) -> Option<u32> {
    let (digits, radix) = if let Some(digits) = text.strip_prefix("0o") {
        (digits, 8)
    } else if let Some(digits) = text.strip_prefix("0x") {
        (digits, 16)
    } else if text == "0" {
        (text, 8)
    } else {
        (text.strip_prefix('0')?, 8)
    };
    // `from_str_radix` takes a sign of its own; a mode has none.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
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
        assert_eq!(config.settings.run_path(), Some(Path::new(BASE)));
        assert_eq!(
            config.api,
            ApiConfig {
                listen: DEFAULT_LISTEN.parse().unwrap(),
                auth_token_file: Path::new(BASE).join("auth_token"),
                allow_non_loopback: false,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
                unauthenticated_metrics: false,
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
             \x20 max_connections: 8\n  header_read_timeout: 3\n\
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
        assert_eq!(config.settings.run_path(), Some(config.run_path.as_path()));
        assert_eq!(config.api.listen, "[::1]:7000".parse().unwrap());
        assert_eq!(config.api.auth_token_file, Path::new("/secret/token"));
        assert_eq!(config.api.max_connections, 8);
        assert_eq!(config.api.header_read_timeout, Duration::from_secs(3));
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
    fn modes_are_the_numbers_they_denote() {
        for (written, mode) in [
            ("0640", 0o640),
            ("0o640", 0o640),
            ("0x1a0", 0o640),
            ("'0640'", 0o640),
            ("\"0o640\"", 0o640),
            ("00600", 0o600),
            ("'0o755'", 0o755),
            ("0400", 0o400),
            ("0", 0),
            ("&m 0640", 0o640),
        ] {
            check_mode(written, mode);
        }
        // Through an alias, the anchor's spelling counts.
        let config = parse(
            "templates:\n  - {source: a.yaml, destination: b.yaml, mode: &m 0o640}\n  - {source: c.yaml, destination: d.yaml, mode: *m}\n",
        )
        .unwrap();
        assert_eq!(config.templates[1].mode, 0o640);
    }

    /// Regression: `0o640` was read as 416, whose decimal digits were then read as octal
    /// (`0o416`, `-r----xrw-`: world-writable); `416`, `0x1a0` and `640` were misread alike.
    #[test]
    fn modes_that_are_decimal_or_let_others_write_are_refused() {
        let t = |mode: &str| {
            format!("templates:\n  - {{source: a.yaml, destination: b.yaml, mode: {mode}}}\n")
        };
        let decimal = "invalid setting 'templates.0.mode': expected permission bits in octal with a leading 0, like 0640, 0o640 or \"0640\" (without it, 640 is a decimal number)";
        for written in [
            "640", "416", "'640'", "600", "1e3", "0640.0", "'0o'", "'0x'", "-0640", "'0o-1'",
            "'+0640'", "'0_640'", "''", "0o9", "true",
        ] {
            let expected = if written == "true" {
                "invalid setting 'templates.0.mode': expected octal digits like 0640, found a boolean"
            } else {
                decimal
            };
            check_err(&t(written), expected);
        }
        let writable = "invalid setting 'templates.0.mode': lets group or others write the destination; use 0600 or 0640, for example";
        for written in ["0o666", "0x1b6", "0602", "0620", "'0777'", "0o2"] {
            check_err(&t(written), writable);
        }
        let range =
            "invalid setting 'templates.0.mode': expected permission bits from 0000 to 0777";
        for written in ["01777", "0o4700", "0x1000", "'0o7777777'"] {
            check_err(&t(written), range);
        }
    }

    #[test]
    fn errors_name_the_key() {
        let t =
            |rest: &str| format!("templates:\n  - {{source: a.yaml, destination: b.yaml{rest}}}\n");
        check_err(
            &t(", mode: 0800"),
            "invalid setting 'templates.0.mode': expected permission bits in octal with a leading 0, like 0640, 0o640 or \"0640\" (without it, 640 is a decimal number)",
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
        // Regression: `..` hid that a destination was its own source.
        check_err(
            "templates:\n  - {source: a.yaml, destination: x/../a.yaml}\n",
            "invalid setting 'templates.0.destination': must differ from the source",
        );
        check_err(
            "templates:\n  - {source: a.yaml, destination: b.yaml}\n  - {source: ./c.yaml, destination: /etc/keyturn/sub/../a.yaml}\n",
            "invalid setting 'templates.1.destination': is the source of templates.0",
        );
        check_err(
            "templates:\n  - {source: a.yaml, destination: c.yaml}\n  - {source: c.yaml, destination: d.yaml}\n",
            "invalid setting 'templates.0.destination': is the source of templates.1",
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
            "invalid setting 'api.port': unknown key; expected one of listen, auth_token_file, allow_non_loopback, max_connections, header_read_timeout, unauthenticated_metrics",
        );
        check_err(
            "api:\n  header_read_timeout: 3601\n",
            "invalid setting 'api.header_read_timeout': must be at most 3600 seconds",
        );
        check_err(
            "api:\n  max_connections: -1\n",
            "invalid setting 'api.max_connections': must not be negative",
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

    /// Regression: a destination reached through a symbolic link and `..`, or a hard link of a
    /// source, passed the textual check.
    #[test]
    fn destinations_are_compared_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::create_dir(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(root.join("b.yaml"), "b: 1\n").unwrap();
        std::os::unix::fs::symlink(root.join("real/sub"), root.join("link")).unwrap();
        std::fs::hard_link(root.join("b.yaml"), root.join("b-too.yaml")).unwrap();
        let check = |text: &str| {
            let config = DaemonConfig::from_yaml_str(text, root).unwrap();
            check_distinct_on_disk(&config.templates).map_err(|e| e.to_string())
        };
        // `link/..` is `real` on disk, but `.` as text.
        assert_eq!(
            check("templates:\n  - {source: real/a.yaml, destination: link/../a.yaml}\n"),
            Err("invalid setting 'templates.0.destination': must differ from the source".into())
        );
        assert_eq!(
            check(
                "templates:\n  - {source: real/a.yaml, destination: out.yaml}\n  - {source: b.yaml, destination: b-too.yaml}\n"
            ),
            Err("invalid setting 'templates.1.destination': must differ from the source".into())
        );
        assert_eq!(
            check(
                "templates:\n  - {source: b.yaml, destination: out.yaml}\n  - {source: real/a.yaml, destination: link/../../b.yaml}\n"
            ),
            Err("invalid setting 'templates.1.destination': is the source of templates.0".into())
        );
        assert_eq!(
            check(
                "templates:\n  - {source: b.yaml, destination: link/out.yaml}\n  - {source: real/a.yaml, destination: real/sub/out.yaml}\n"
            ),
            Err(
                "invalid setting 'templates.1.destination': templates.0 has the same destination"
                    .into()
            )
        );
        assert_eq!(
            check(
                "templates:\n  - {source: b.yaml, destination: link/out.yaml}\n  - {source: real/a.yaml, destination: missing/out.yaml}\n"
            ),
            Ok(())
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
