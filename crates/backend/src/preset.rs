//! The command line: `--version`, `--help`, and a backend preset for callers whose payload names
//! no backend.
//!
//! The Datadog Agent sends `type` and `config` only to its bundled connector; when
//! `keyturn-backend` is its `secret_backend_command`, the payload holds just the handles, and the
//! backend comes from `secret_backend_arguments`: `--type hashicorp.vault --config-file
//! /etc/keyturn/vault.json`. Vector's `exec` backend with protocol `v1` is in the same
//! situation. A payload that names a `type` always wins over the preset.
//!
//! Invariant: a config file's content is never quoted in an error (it may hold credentials);
//! inline `--config` is accepted for non-secret settings, since arguments are visible to every
//! local user in the process list.

use std::path::PathBuf;

use keyturn_protocol::Request;
use serde_json::{Map, Value};

/// Largest `--config-file` read.
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Print the version.
    Version,
    /// Print the usage.
    Help,
    /// Answer one request, with this preset.
    Answer(Preset),
}

/// A backend named on the command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Preset {
    backend_type: Option<String>,
    config: Option<ConfigSource>,
}

#[derive(Debug, PartialEq, Eq)]
enum ConfigSource {
    Inline(String),
    File(PathBuf),
}

/// Parses the arguments (without the program name). The error is a usage message.
pub(crate) fn parse_args(args: &[String]) -> Result<Command, String> {
    if let [only] = args {
        match only.as_str() {
            "--version" | "-V" => return Ok(Command::Version),
            "--help" | "-h" => return Ok(Command::Help),
            _ => {}
        }
    }
    let mut preset = Preset::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let duplicate = || format!("{flag} given twice");
        match flag {
            "--type" if preset.backend_type.is_none() => preset.backend_type = Some(value()?),
            "--config" if preset.config.is_none() => {
                preset.config = Some(ConfigSource::Inline(value()?));
            }
            "--config-file" if preset.config.is_none() => {
                preset.config = Some(ConfigSource::File(PathBuf::from(value()?)));
            }
            "--type" => return Err(duplicate()),
            "--config" | "--config-file" => {
                return Err("only one of --config and --config-file may be given".to_owned());
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if preset.config.is_some() && preset.backend_type.is_none() {
        return Err("--config and --config-file need --type".to_owned());
    }
    if let Some(backend_type) = &preset.backend_type
        && !crate::backends::TYPES.contains(&backend_type.as_str())
    {
        return Err(format!(
            "--type: unknown backend type {backend_type:?}; the known types are: {}",
            crate::backends::TYPES.join(", ")
        ));
    }
    Ok(Command::Answer(preset))
}

impl Preset {
    /// Fills in the request's backend when its payload names none. The error is a whole-request
    /// failure, reported for every handle.
    pub(crate) fn apply(self, request: &mut Request) -> Result<(), String> {
        if request.backend_type.is_some() {
            return Ok(());
        }
        let Some(backend_type) = self.backend_type else {
            return Ok(());
        };
        let config = match self.config {
            None => None,
            Some(ConfigSource::Inline(text)) => Some(parse_config(text.as_bytes(), "--config")?),
            Some(ConfigSource::File(path)) => {
                let name = format!("--config-file {}", path.display());
                let text = crate::backends::file::read_text(&path, MAX_CONFIG_FILE)
                    .map_err(|error| format!("--config-file: {error}"))?;
                Some(parse_config(text.as_bytes(), &name)?)
            }
        };
        request.backend_type = Some(backend_type);
        request.config = config;
        Ok(())
    }
}

fn parse_config(bytes: &[u8], name: &str) -> Result<Map<String, Value>, String> {
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => format!("{name}: not a JSON object"),
        _ => format!(
            "{name}: invalid JSON at line {}, column {}",
            error.line(),
            error.column()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn parses_commands_and_presets() {
        assert_eq!(parse_args(&args(&["--version"])), Ok(Command::Version));
        assert_eq!(parse_args(&args(&["-h"])), Ok(Command::Help));
        assert_eq!(parse_args(&[]), Ok(Command::Answer(Preset::default())));
        assert_eq!(
            parse_args(&args(&["--type", "file.json", "--config={\"a\":1}"])),
            Ok(Command::Answer(Preset {
                backend_type: Some("file.json".into()),
                config: Some(ConfigSource::Inline("{\"a\":1}".into())),
            }))
        );
        for (bad, expected) in [
            (&["--bogus"][..], "unexpected argument \"--bogus\""),
            (&["--type"], "--type needs a value"),
            (&["--type", "a", "--type", "b"], "--type given twice"),
            (
                &["--config", "{}"],
                "--config and --config-file need --type",
            ),
            (
                &["--type", "a", "--config", "{}", "--config-file", "x"],
                "only one of --config and --config-file may be given",
            ),
            (
                &["--version", "--help"],
                "unexpected argument \"--version\"",
            ),
            (
                &["--type", "file.jsn"],
                "--type: unknown backend type \"file.jsn\"; the known types are: file.json, \
                 file.yaml, file.text, k8s.file, docker.secrets, hashicorp.vault, aws.secrets, \
                 aws.ssm, k8s.secrets, gcp.secretmanager, azure.keyvault",
            ),
        ] {
            assert_eq!(parse_args(&args(bad)).unwrap_err(), expected);
        }
    }

    #[test]
    fn the_payload_wins_and_config_errors_do_not_quote() {
        let mut request =
            Request::from_json(br#"{"version":"1.1","secrets":[],"type":"x"}"#).unwrap();
        let preset = Preset {
            backend_type: Some("y".into()),
            config: None,
        };
        preset.apply(&mut request).unwrap();
        assert_eq!(request.backend_type.as_deref(), Some("x"));
        let mut request = Request::from_json(br#"{"version":"1.0","secrets":[]}"#).unwrap();
        let preset = Preset {
            backend_type: Some("y".into()),
            config: Some(ConfigSource::Inline("{\"token\": \"hunter2\"".into())),
        };
        let error = preset.apply(&mut request).unwrap_err();
        assert_eq!(error, "--config: invalid JSON at line 1, column 19");
    }
}
