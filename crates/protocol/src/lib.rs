//! Wire types of the secret backend protocol.
//!
//! A backend is an executable that reads one [`Request`] as JSON on its stdin and writes one
//! [`Response`] as JSON on its stdout. This is the protocol of the Datadog Agent's secrets
//! management (payload version `1.1`), so every backend written for the Agent works with keyturn
//! and `keyturn-backend` works with the Agent.
//!
//! This crate holds the contract shared by `keyturn` (which writes requests and reads responses)
//! and `keyturn-backend` (which does the opposite), and the two things both executables do to
//! text a backend or a server wrote: [`scrub`] masks known values out of it, escaped or not,
//! and [`printable`] escapes the characters that could change how it reads. It does no I/O.
//!
//! Invariant: values in a [`Response`] are kept in [`zeroize::Zeroizing`] buffers and never
//! appear in a `Debug` print.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub mod printable;
pub mod scrub;
mod userinfo;

pub use userinfo::{REDACTED_USERINFO, redact_userinfo, userinfo};

/// Every backend type `keyturn-backend` serves, as named in the payload's `type` (and in
/// `secret_backend_type`). keyturn refuses any other type in its settings before anything runs.
pub const BUILTIN_TYPES: &[&str] = &[
    "file.json",
    "file.yaml",
    "file.text",
    "k8s.file",
    "docker.secrets",
    "hashicorp.vault",
    "aws.secrets",
    "aws.ssm",
    "k8s.secrets",
    "gcp.secretmanager",
    "azure.keyvault",
];

/// The payload version keyturn sends by default, as the current Datadog Agent does.
pub const PAYLOAD_VERSION: &str = "1.1";

/// The payload versions keyturn can send (`secret_backend_protocol_version`).
///
/// - `1.1` (the default, the current Agent's): `version`, `secrets`, `secret_backend_timeout`,
///   and `type` / `config` when a backend type is configured.
/// - `1.0` (older Agents, the Agent's documentation): exactly `version` and `secrets`, for
///   programs that refuse any other version or any other key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PayloadVersion {
    /// `"1.0"`: `{"version":"1.0","secrets":[...]}` and no other key.
    V1_0,
    /// `"1.1"`: today's payload.
    #[default]
    V1_1,
}

impl PayloadVersion {
    /// The version as it is written in the payload and in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadVersion::V1_0 => "1.0",
            PayloadVersion::V1_1 => PAYLOAD_VERSION,
        }
    }

    /// Reads a version as written in settings (`"1.0"` or `"1.1"`).
    pub fn parse(text: &str) -> Option<PayloadVersion> {
        match text {
            "1.0" => Some(PayloadVersion::V1_0),
            "1.1" => Some(PayloadVersion::V1_1),
            _ => None,
        }
    }
}

impl fmt::Display for PayloadVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a backend reads on stdin. `Debug` shows the config's keys, not its values.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version: `"1.1"` from keyturn, `"1.0"` from older Datadog Agents.
    pub version: String,
    /// Handles to resolve, distinct, in first-seen order.
    pub secrets: Vec<String>,
    /// The caller's timeout in seconds; a backend should answer well within it.
    /// Absent in version `1.0` payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_backend_timeout: Option<u64>,
    /// Built-in backend type (`file.json`, `hashicorp.vault`, ...), when one is selected.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<String>,
    /// Backend configuration, sent only when non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Request {
    /// Encodes the request as the compact JSON the Agent sends (no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and a `serde_json::Map` cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a request read from stdin.
    pub fn from_json(bytes: &[u8]) -> Result<Request, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A [`Request`] that borrows its parts, for a caller that holds the handles already: it
/// encodes to the same bytes without copying each handle first. `Debug` shows the config's
/// keys, not its values.
#[derive(Clone, Copy, PartialEq, Serialize)]
pub struct RequestRef<'a> {
    /// See [`Request::version`].
    pub version: &'a str,
    /// See [`Request::secrets`].
    pub secrets: &'a [&'a str],
    /// See [`Request::secret_backend_timeout`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_backend_timeout: Option<u64>,
    /// See [`Request::backend_type`].
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<&'a str>,
    /// See [`Request::config`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl<'a> RequestRef<'a> {
    /// The request of `version` for `handles`: with `1.0`, exactly `version` and `secrets`
    /// (the timeout, `type` and `config` are left out); with `1.1`, every part given.
    pub fn new(
        version: PayloadVersion,
        secrets: &'a [&'a str],
        secret_backend_timeout: u64,
        backend_type: Option<&'a str>,
        config: Option<&'a serde_json::Map<String, serde_json::Value>>,
    ) -> RequestRef<'a> {
        match version {
            PayloadVersion::V1_0 => RequestRef {
                version: version.as_str(),
                secrets,
                secret_backend_timeout: None,
                backend_type: None,
                config: None,
            },
            PayloadVersion::V1_1 => RequestRef {
                version: version.as_str(),
                secrets,
                secret_backend_timeout: Some(secret_backend_timeout),
                backend_type,
                config: config.filter(|config| !config.is_empty()),
            },
        }
    }

    /// Encodes the request exactly as [`Request::to_json`] does, into a buffer sized up front
    /// for the handles instead of one regrown about a dozen times for 10,000 of them.
    pub fn to_json(&self) -> Vec<u8> {
        let handles: usize = self.secrets.iter().map(|handle| handle.len() + 3).sum();
        let mut json = Vec::with_capacity(128 + handles);
        // Serializing plain strings, numbers and a `serde_json::Map` cannot fail.
        match serde_json::to_writer(&mut json, self) {
            Ok(()) => json,
            Err(_) => Vec::new(),
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("version", &self.version)
            .field("secrets", &self.secrets)
            .field("secret_backend_timeout", &self.secret_backend_timeout)
            .field("backend_type", &self.backend_type)
            .field("config", &self.config.as_ref().map(RedactedConfig))
            .finish()
    }
}

impl fmt::Debug for RequestRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRef")
            .field("version", &self.version)
            .field("secrets", &self.secrets)
            .field("secret_backend_timeout", &self.secret_backend_timeout)
            .field("backend_type", &self.backend_type)
            .field("config", &self.config.map(RedactedConfig))
            .finish()
    }
}

/// A backend configuration as `Debug` shows it: its keys, each value replaced by
/// `<redacted>`. A configuration may carry credentials (a Vault token, an AWS secret key).
pub struct RedactedConfig<'a>(pub &'a serde_json::Map<String, serde_json::Value>);

impl fmt::Debug for RedactedConfig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, format_args!("<redacted>"))))
            .finish()
    }
}

/// What a backend writes on stdout: handle to result.
///
/// Handles the caller did not ask for are allowed and ignored by keyturn.
pub type Response = BTreeMap<String, Entry>;

/// The result for one handle. A missing or `null` field reads as an empty string.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The secret value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Zeroizing<String>>,
    /// Why the backend could not resolve this handle.
    #[serde(default)]
    pub error: Option<String>,
}

impl Entry {
    /// A resolved value.
    pub fn value(value: impl Into<String>) -> Entry {
        Entry {
            value: Some(Zeroizing::new(value.into())),
            error: None,
        }
    }

    /// A per-handle failure.
    pub fn error(error: impl Into<String>) -> Entry {
        Entry {
            value: None,
            error: Some(error.into()),
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("error", &self.error)
            .finish()
    }
}

/// Decodes a backend's stdout strictly: one JSON object of entries and nothing after it but
/// whitespace. A non-string `value` or `error` is an error.
pub fn parse_response(bytes: &[u8]) -> Result<Response, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Encodes a response as compact JSON.
pub fn encode_response(response: &Response) -> Vec<u8> {
    serde_json::to_vec(response).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_matches_agent_payload() {
        let request = Request {
            version: PAYLOAD_VERSION.to_owned(),
            secrets: vec!["db_user".into(), "db_pass".into()],
            secret_backend_timeout: Some(30),
            backend_type: None,
            config: None,
        };
        assert_eq!(
            String::from_utf8(request.to_json()).unwrap(),
            r#"{"version":"1.1","secrets":["db_user","db_pass"],"secret_backend_timeout":30}"#
        );
    }

    #[test]
    fn version_1_0_sends_exactly_version_and_secrets() {
        let mut config = serde_json::Map::new();
        config.insert("foo".into(), "bar".into());
        let secrets = ["a", "b"];
        let old = RequestRef::new(
            PayloadVersion::V1_0,
            &secrets,
            30,
            Some("file.json"),
            Some(&config),
        );
        assert_eq!(
            String::from_utf8(old.to_json()).unwrap(),
            r#"{"version":"1.0","secrets":["a","b"]}"#
        );
        let new = RequestRef::new(
            PayloadVersion::V1_1,
            &secrets,
            30,
            Some("file.json"),
            Some(&config),
        );
        assert_eq!(
            String::from_utf8(new.to_json()).unwrap(),
            r#"{"version":"1.1","secrets":["a","b"],"secret_backend_timeout":30,"type":"file.json","config":{"foo":"bar"}}"#
        );
        let empty = serde_json::Map::new();
        let bare = RequestRef::new(PayloadVersion::V1_1, &secrets, 5, None, Some(&empty));
        assert_eq!(
            String::from_utf8(bare.to_json()).unwrap(),
            r#"{"version":"1.1","secrets":["a","b"],"secret_backend_timeout":5}"#
        );
        assert_eq!(PayloadVersion::parse("1.0"), Some(PayloadVersion::V1_0));
        assert_eq!(PayloadVersion::parse("1.1"), Some(PayloadVersion::V1_1));
        assert_eq!(PayloadVersion::parse("1"), None);
        assert_eq!(PayloadVersion::default().as_str(), PAYLOAD_VERSION);
    }

    /// Fuzzing found a request whose config held a number serde_json's fast float parser
    /// rounds differently from the shortest text it writes: the backend would read back
    /// another number than the one keyturn meant. Floats are read correctly rounded.
    #[test]
    fn config_numbers_read_back_as_themselves() {
        let text = br#"{"version":"1.1","secrets":["a"],"config":{"n":187777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777446744073709551616,"f":0.30000000000000004,"g":2.2250738585072014e-308}}"#;
        let request = Request::from_json(text).unwrap();
        let again = Request::from_json(&request.to_json()).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn request_carries_type_and_config() {
        let mut config = serde_json::Map::new();
        config.insert("foo".into(), "bar".into());
        let request = Request {
            version: PAYLOAD_VERSION.to_owned(),
            secrets: vec!["a".into()],
            secret_backend_timeout: Some(60),
            backend_type: Some("aws.secrets".into()),
            config: Some(config),
        };
        let json = String::from_utf8(request.to_json()).unwrap();
        assert!(json.contains(r#""type":"aws.secrets""#), "{json}");
        assert!(json.contains(r#""config":{"foo":"bar"}"#), "{json}");
        assert!(json.contains(r#""secret_backend_timeout":60"#), "{json}");
    }

    #[test]
    fn borrowed_request_encodes_like_the_owned_one() {
        let mut config = serde_json::Map::new();
        config.insert("k".into(), serde_json::json!({"n": [1, "x"]}));
        for (timeout, backend_type, config) in [
            (Some(30), None, None),
            (None, Some("file.json"), Some(config.clone())),
            (Some(5), Some("hashicorp.vault"), Some(config)),
        ] {
            let secrets = ["a", "b \"quoted\"", "ünï", ""];
            let owned = Request {
                version: PAYLOAD_VERSION.to_owned(),
                secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
                secret_backend_timeout: timeout,
                backend_type: backend_type.map(str::to_owned),
                config: config.clone(),
            };
            let borrowed = RequestRef {
                version: PAYLOAD_VERSION,
                secrets: &secrets,
                secret_backend_timeout: timeout,
                backend_type,
                config: config.as_ref(),
            };
            assert_eq!(borrowed.to_json(), owned.to_json());
        }
    }

    #[test]
    fn response_nulls_and_missing_fields_read_as_none() {
        let response =
            parse_response(br#"{"a":{"value":null,"error":null},"b":{},"c":{"value":"v","x":1}}"#)
                .unwrap();
        assert_eq!(response["a"], Entry::default());
        assert_eq!(response["b"], Entry::default());
        assert_eq!(
            response["c"].value.as_deref().map(String::as_str),
            Some("v")
        );
    }

    #[test]
    fn response_rejects_non_objects_non_strings_and_trailing_garbage() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"\"x\"",
            br#"{"a":{"value":1}}"#,
            br#"{"a":1}"#,
            b"{} x",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn request_debug_shows_config_keys_not_values() {
        let mut config = serde_json::Map::new();
        config.insert("vault_token".into(), "hunter2-token".into());
        let request = Request {
            version: PAYLOAD_VERSION.to_owned(),
            secrets: vec!["a".into()],
            secret_backend_timeout: None,
            backend_type: Some("hashicorp.vault".into()),
            config: Some(config.clone()),
        };
        let borrowed = RequestRef {
            version: PAYLOAD_VERSION,
            secrets: &["a"],
            secret_backend_timeout: None,
            backend_type: Some("hashicorp.vault"),
            config: Some(&config),
        };
        for printed in [format!("{request:?}"), format!("{borrowed:#?}")] {
            assert!(printed.contains("vault_token"), "{printed}");
            assert!(!printed.contains("hunter2"), "{printed}");
        }
    }

    #[test]
    fn entry_debug_redacts_value() {
        let entry = Entry::value("hunter2");
        assert!(!format!("{entry:?}").contains("hunter2"));
    }
}
