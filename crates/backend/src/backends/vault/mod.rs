//! `hashicorp.vault`: secrets of HashiCorp Vault or OpenBao, KV v1 and KV v2.
//!
//! Handles, read as Datadog's connector reads them:
//! - `path;key`: the secret's full path including its mount (`secret/myapp/db;password`, a
//!   leading `/` is ignored) and the key inside the secret's data. The handle splits at its
//!   *first* `;`, so everything after it is the key, `;` included (`secret/app;a;b` is key
//!   `a;b`).
//! - `vault://path#pointer`: an RFC 6901 JSON pointer into the secret's data
//!   (`vault://secret/myapp/db#/replicas/0/password`, `~1` for `/` and `~0` for `~` in a key,
//!   array elements by decimal index). The handle splits at its first `#`. As in the connector,
//!   the value a pointer names must be a string (`secret value is not a string` otherwise); a
//!   `%` is refused, since a URL reading of the handle would decode it.
//!
//! keyturn's extension, a KV v2 version: `;path;key;version` (`;secret/myapp/db;password;3`),
//! split at the first `;` after the leading one and at the last. It starts with `;` because
//! that is a form the connector refuses: it reads an empty secret path (and a key of all the
//! rest), which names no secret, so the handle can never mean one thing there and another here.
//! A suffix on the path (`db@3`) or a third `;` field would not do: Vault accepts any
//! character in a secret's name, and the connector reads a third field as part of the key.
//!
//! Config (Datadog connector names first, then ours): `vault_address` (or `VAULT_ADDR`),
//! `vault_token`, `vault_session` (`vault_auth_type`: `approle` with `vault_role_id` and
//! `vault_secret_id`; `userpass` with `vault_username`, `vault_password`; `ldap` with
//! `vault_ldap_username`, `vault_ldap_password`; `kubernetes` with `vault_kubernetes_role`,
//! `vault_kubernetes_jwt` or `vault_kubernetes_jwt_path`; `aws` (IAM) with `vault_aws_role`
//! and the AWS session keys, see [`crate::backends::aws::iam_login`]; plus ours
//! `vault_secret_id_file`,
//! `vault_auth_path`), `vault_namespace` (or `VAULT_NAMESPACE`), `vault_tls_config`
//! (`ca_cert` or `VAULT_CACERT`, `ca_path`, `client_cert`, `client_key`, `insecure`), and ours
//! `vault_token_file`, `key_separator` (another separator than `;`, split at its last
//! occurrence, no version: `secret/myapp/db.password` with `"."`, for callers such as Vector
//! whose handle syntax cannot hold `;`; `vault://` handles read the same with any separator).
//! Without any credentials, `VAULT_TOKEN` is used.
//!
//! Requests per run: one login when a `vault_session` is configured, one mount listing
//! (`sys/internal/ui/mounts`, which every valid token may read, filtered to what it can see),
//! then one read per distinct `(path, version)`, at most [`MAX_IN_FLIGHT`] at a time, however
//! many keys are asked of each. When the listing is refused, each path asks for its own mount
//! (`sys/internal/ui/mounts/<path>`) before its read.
//!
//! Layout: [`config`] validates the configuration and says how to obtain a token; this module
//! parses handles, logs in, finds mounts and reads secrets.
//!
//! Invariants: the token travels only in the `X-Vault-Token` header and is registered with the
//! [`Redactor`] before first use; values are taken from `data` (KV v1 and other engines) or
//! `data.data` (KV v2) and rendered by [`value::json_text`] (a pointer's only when it names a
//! string); errors name paths, keys and pointers, never a value.

mod config;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use ureq::http::Method;
use zeroize::Zeroizing;

use self::config::{Auth, VaultConfig};
use crate::backends::{Context, Outcome};
use crate::http::{self, Client, HttpError, Reply};
use crate::redact::Redactor;
use crate::schedule::{MAX_IN_FLIGHT, map_bounded};
use crate::settings::{Settings, SettingsError};
use crate::value;

/// A failure of the whole backend, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VaultError {
    /// The configuration is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The client could not be built (TLS files).
    #[error("vault_tls_config: {0}")]
    Tls(HttpError),
    /// A credential file could not be read.
    #[error("config key `{key}`: {reason}")]
    CredentialFile { key: String, reason: String },
    /// The server could not be reached.
    #[error("{0}")]
    Unreachable(HttpError),
    /// Logging in failed.
    #[error("Vault login ({method} at auth/{mount}) failed: {reason}")]
    Login {
        method: &'static str,
        mount: String,
        reason: String,
    },
}

/// One secret to read: a path and, for KV v2, a version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SecretRef {
    path: String,
    version: Option<u64>,
}

/// A handle parsed: which secret, what inside it.
#[derive(Debug, PartialEq, Eq)]
struct HandleRef {
    secret: SecretRef,
    lookup: Lookup,
}

/// What a handle takes from a secret's data.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// One key of the data (`path;key`).
    Key(String),
    /// An RFC 6901 pointer into the data (`vault://path#pointer`), unescaped into its tokens.
    Pointer {
        /// The pointer as written, for messages.
        text: String,
        /// Its reference tokens, `~1` and `~0` decoded.
        tokens: Vec<String>,
    },
}

/// A mount as far as reading goes: its path (`secret/`) and whether it is KV v2.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    path: String,
    kv2: bool,
}

/// A secret's data: key to raw JSON value.
type Data = BTreeMap<String, Box<RawValue>>;

/// Resolves `handles` against Vault.
pub(crate) fn resolve(
    settings: &Settings<'_>,
    handles: &[&str],
    context: &mut Context<'_>,
) -> Result<Vec<Outcome>, VaultError> {
    let separator = settings
        .string("key_separator")?
        .unwrap_or(DEFAULT_KEY_SEPARATOR);
    let parsed: Vec<Result<HandleRef, String>> = handles
        .iter()
        .map(|handle| parse_handle(handle, separator))
        .collect();
    let config =
        VaultConfig::from_settings(settings, context.redactor, context.env, context.deadline)?;
    let client = Client::new(&config.tls, context.deadline).map_err(VaultError::Tls)?;
    let session = Session::login(&client, &config, context.redactor)?;
    let secrets: Vec<SecretRef> = {
        let mut distinct: Vec<SecretRef> = parsed
            .iter()
            .filter_map(|handle| handle.as_ref().ok().map(|handle| handle.secret.clone()))
            .collect();
        distinct.sort();
        distinct.dedup();
        distinct
    };
    // Unreachable or silent server: every read would fail the same way, so stop here. A refused
    // listing falls back to one mount lookup per path.
    let mounts = if secrets.is_empty() {
        None
    } else {
        match session.list_mounts() {
            Ok(mounts) => Some(mounts),
            Err(MountsError::Refused) => None,
            Err(MountsError::Unreachable(error)) => return Err(VaultError::Unreachable(error)),
        }
    };
    let fetched = map_bounded(&secrets, MAX_IN_FLIGHT, |secret| {
        session.read(secret, mounts.as_deref())
    });
    let by_secret: BTreeMap<&SecretRef, &Result<Data, String>> =
        secrets.iter().zip(fetched.iter()).collect();
    Ok(parsed
        .into_iter()
        .map(|handle| {
            let handle = handle?;
            let data = by_secret
                .get(&handle.secret)
                .ok_or_else(|| format!("{} was not fetched", handle.secret.path))?
                .as_ref()
                .map_err(Clone::clone)?;
            match &handle.lookup {
                Lookup::Key(key) => {
                    let raw = data
                        .get(key)
                        .ok_or_else(|| format!("key {key:?} not found in {}", handle.secret))?;
                    value::json_text(raw)
                        .map_err(|error| format!("key {key:?} in {} {error}", handle.secret))
                }
                Lookup::Pointer { text, tokens } => {
                    let in_secret =
                        |reason: &str| format!("pointer {text:?} in {}: {reason}", handle.secret);
                    // The empty pointer names the whole data, an object.
                    let raw = match tokens.as_slice() {
                        [] => return Err(in_secret("secret value is not a string")),
                        tokens => follow_pointer(data, tokens)
                            .ok_or_else(|| in_secret("no such value"))?,
                    };
                    if !raw.get().trim_start().starts_with('"') {
                        return Err(in_secret("secret value is not a string"));
                    }
                    value::json_text(raw).map_err(|error| in_secret(&error.to_string()))
                }
            }
        })
        .collect())
}

/// The value `tokens` point to in `data`: the first token is a key of the data, each next one
/// a key of an object or the decimal index of an array element (RFC 6901: no sign, no leading
/// zero). Values are borrowed from the answer's text, never copied.
fn follow_pointer<'a>(data: &'a Data, tokens: &[String]) -> Option<&'a RawValue> {
    let (first, rest) = tokens.split_first()?;
    let mut current: &'a RawValue = data.get(first)?;
    for token in rest {
        let text = current.get().trim_start();
        current = if text.starts_with('{') {
            let object: BTreeMap<std::borrow::Cow<'a, str>, &'a RawValue> =
                serde_json::from_str(current.get()).ok()?;
            *object.get(token.as_str())?
        } else if text.starts_with('[') {
            let valid_index = token == "0"
                || (!token.is_empty()
                    && !token.starts_with('0')
                    && token.bytes().all(|b| b.is_ascii_digit()));
            if !valid_index {
                return None;
            }
            let array: Vec<&'a RawValue> = serde_json::from_str(current.get()).ok()?;
            *array.get(token.parse::<usize>().ok()?)?
        } else {
            return None;
        };
    }
    Some(current)
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(version) => write!(f, "{} (version {version})", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// The default separator between a secret's path (or id) and the key inside it.
pub(crate) const DEFAULT_KEY_SEPARATOR: &str = ";";

/// The prefix of a handle holding a JSON pointer.
const POINTER_SCHEME: &str = "vault://";

/// Parses a handle (see the module documentation): `vault://path#pointer`, then with the
/// default separator `path;key` (split at the first `;`) or `;path;key;version`; with another
/// `key_separator`, `path<sep>key` split at the separator's last occurrence (Vector's
/// `SECRET[...]` cannot hold `;`).
fn parse_handle(handle: &str, separator: &str) -> Result<HandleRef, String> {
    let bad = |reason: &str| {
        Err(format!(
            "invalid handle {handle:?}: {reason} (expected `path{separator}key`{}, \
             e.g. `secret/myapp/db{separator}password`, or `vault://path#/json/pointer`)",
            if separator == DEFAULT_KEY_SEPARATOR {
                ", `;path;key;version`"
            } else {
                ""
            }
        ))
    };
    let (path, lookup, version) = if let Some(rest) = handle.strip_prefix(POINTER_SCHEME) {
        let Some((path, pointer)) = rest.split_once('#') else {
            return bad("no `#` before the JSON pointer");
        };
        if rest.contains('%') {
            return bad("`%` in a vault:// handle");
        }
        let Some(tokens) = pointer_tokens(pointer) else {
            return bad("the JSON pointer must start with `/`, and `~` be followed by 0 or 1");
        };
        let lookup = Lookup::Pointer {
            text: pointer.to_owned(),
            tokens,
        };
        (path, lookup, None)
    } else if separator == DEFAULT_KEY_SEPARATOR {
        if let Some(versioned) = handle.strip_prefix(';') {
            let Some((path, key, version)) = versioned
                .split_once(';')
                .and_then(|(path, rest)| rest.rsplit_once(';').map(|(k, v)| (path, k, v)))
            else {
                return bad("a versioned handle needs `;path;key;version`");
            };
            (path, Lookup::Key(key.to_owned()), Some(version))
        } else {
            let Some((path, key)) = handle.split_once(';') else {
                return bad("no `;` between the secret path and the key");
            };
            (path, Lookup::Key(key.to_owned()), None)
        }
    } else {
        let Some((path, key)) = handle.rsplit_once(separator) else {
            return bad("no separator between the secret path and the key");
        };
        (path, Lookup::Key(key.to_owned()), None)
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return bad("empty secret path");
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return bad("empty, `.` or `..` segment in the secret path");
    }
    if lookup == Lookup::Key(String::new()) {
        return bad("empty key");
    }
    let version = match version {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(number) if number > 0 && !text.starts_with('+') => Some(number),
            _ => return bad("the version must be a positive integer"),
        },
    };
    Ok(HandleRef {
        secret: SecretRef {
            path: path.to_owned(),
            version,
        },
        lookup,
    })
}

/// The reference tokens of an RFC 6901 pointer, `~1` decoded to `/` and then `~0` to `~`;
/// `None` when it is not a pointer (it must be empty or start with `/`, and every `~` be
/// followed by `0` or `1`). The empty pointer names the whole data: no tokens.
fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    pointer
        .strip_prefix('/')?
        .split('/')
        .map(|token| {
            let mut decoded = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => decoded.push('~'),
                        Some('1') => decoded.push('/'),
                        _ => return None,
                    },
                    c => decoded.push(c),
                }
            }
            Some(decoded)
        })
        .collect()
}

/// Why the mount listing is unavailable.
enum MountsError {
    /// Vault answered, but not with a listing: look mounts up one path at a time.
    Refused,
    /// Vault could not be reached: nothing else will work either.
    Unreachable(HttpError),
}

/// A logged-in client.
struct Session<'a> {
    client: Client,
    config: &'a VaultConfig,
    token: Zeroizing<String>,
}

/// Mount listing answer: `data.secret` maps mount paths to their type and options.
#[derive(Deserialize)]
struct MountList {
    data: MountListData,
}

#[derive(Deserialize)]
struct MountListData {
    #[serde(default)]
    secret: BTreeMap<String, MountInfo>,
}

#[derive(Deserialize)]
struct MountInfo {
    /// Present in the per-path answer, absent in the listing (where the map key is the path).
    #[serde(default)]
    path: Option<String>,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    options: Option<BTreeMap<String, serde_json::Value>>,
}

impl MountInfo {
    fn into_mount(self, path: String) -> Mount {
        let version = self
            .options
            .as_ref()
            .and_then(|options| options.get("version"))
            .and_then(|version| version.as_str().map(str::to_owned));
        Mount {
            path,
            kv2: (self.kind == "kv" || self.kind == "generic") && version.as_deref() == Some("2"),
        }
    }
}

#[derive(Deserialize)]
struct OneMount {
    data: MountInfo,
}

#[derive(Deserialize)]
struct LoginAnswer {
    auth: Option<LoginAuth>,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
}

#[derive(Deserialize)]
struct ReadAnswer {
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Kv2Answer {
    data: Option<Kv2Data>,
}

#[derive(Deserialize)]
struct Kv2Data {
    data: Option<Data>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    errors: Vec<String>,
}

impl<'a> Session<'a> {
    fn login(
        client: &Client,
        config: &'a VaultConfig,
        redactor: &mut Redactor,
    ) -> Result<Session<'a>, VaultError> {
        let token = match &config.auth {
            Auth::Token(token) => token.clone(),
            Auth::Login {
                method,
                mount,
                suffix,
                body,
            } => {
                let failed = |reason: String| VaultError::Login {
                    method,
                    mount: mount.clone(),
                    reason,
                };
                let url = format!(
                    "{}/v1/auth/{}/login{suffix}",
                    config.address,
                    http::encode_path(mount)
                );
                let mut headers = vec![("Content-Type", "application/json")];
                if let Some(namespace) = &config.namespace {
                    headers.push(("X-Vault-Namespace", namespace));
                }
                let reply = client
                    .send(Method::POST, &url, &headers, Some(body.as_bytes().to_vec()))
                    .map_err(|error| failed(error.to_string()))?;
                if reply.status != 200 {
                    return Err(failed(status_reason(&reply)));
                }
                let answer: LoginAnswer = serde_json::from_str(&reply.body)
                    .map_err(|_| failed("unexpected answer".to_owned()))?;
                let token = answer
                    .auth
                    .map(|auth| Zeroizing::new(auth.client_token))
                    .filter(|token| !token.is_empty())
                    .ok_or_else(|| failed("the answer holds no token".to_owned()))?;
                redactor.add(&token);
                token
            }
        };
        Ok(Session {
            client: client.clone(),
            config,
            token,
        })
    }

    fn get(&self, path_and_query: &str) -> Result<Reply, HttpError> {
        let url = format!("{}/v1/{path_and_query}", self.config.address);
        let mut headers = vec![("X-Vault-Token", self.token.as_str())];
        if let Some(namespace) = &self.config.namespace {
            headers.push(("X-Vault-Namespace", namespace));
        }
        self.client.send(Method::GET, &url, &headers, None)
    }

    /// Every secret mount the token can see.
    fn list_mounts(&self) -> Result<Vec<Mount>, MountsError> {
        let reply = self
            .get("sys/internal/ui/mounts")
            .map_err(MountsError::Unreachable)?;
        if reply.status != 200 {
            return Err(MountsError::Refused);
        }
        let list: MountList =
            serde_json::from_str(&reply.body).map_err(|_| MountsError::Refused)?;
        Ok(list
            .data
            .secret
            .into_iter()
            .map(|(path, info)| info.into_mount(path))
            .collect())
    }

    /// The mount of one path, asked of Vault when the listing was refused.
    fn mount_of(&self, path: &str) -> Result<Mount, String> {
        let reply = self
            .get(&format!(
                "sys/internal/ui/mounts/{}",
                http::encode_path(path)
            ))
            .map_err(|error| format!("cannot find the mount of {path}: {error}"))?;
        if reply.status == 403 {
            return Err(format!(
                "permission denied looking up the mount of {path} (is the token valid?): {}",
                status_reason(&reply)
            ));
        }
        if reply.status != 200 {
            return Err(format!(
                "cannot find the mount of {path}: {}",
                status_reason(&reply)
            ));
        }
        let one: OneMount = serde_json::from_str(&reply.body)
            .map_err(|_| format!("cannot find the mount of {path}: unexpected answer"))?;
        let mount_path = one.data.path.clone().unwrap_or_default();
        Ok(one.data.into_mount(mount_path))
    }

    /// Reads one secret's data.
    fn read(&self, secret: &SecretRef, mounts: Option<&[Mount]>) -> Result<Data, String> {
        let mount = match mounts {
            Some(mounts) => longest_mount(mounts, &secret.path),
            None => Some(self.mount_of(&secret.path)?),
        };
        let kv2_mount = mount.filter(|mount| mount.kv2);
        let request_path = match (&kv2_mount, secret.version) {
            (Some(mount), version) => {
                let rest = secret
                    .path
                    .strip_prefix(mount.path.as_str())
                    .filter(|rest| !rest.is_empty())
                    .ok_or_else(|| format!("{secret} names a mount, not a secret in it"))?;
                let mut request_path = format!(
                    "{}data/{}",
                    http::encode_path(&mount.path),
                    http::encode_path(rest)
                );
                if let Some(version) = version {
                    request_path.push_str(&format!("?version={version}"));
                }
                request_path
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{secret}: versions exist only on KV v2 mounts, and {} is not on one",
                    secret.path
                ));
            }
            (None, None) => http::encode_path(&secret.path),
        };
        let reply = self
            .get(&request_path)
            .map_err(|error| format!("reading {secret}: {error}"))?;
        match reply.status {
            200 => {}
            404 => return Err(format!("no secret at {secret}")),
            403 => {
                return Err(format!(
                    "permission denied reading {secret} (check the token and its policies): {}",
                    status_reason(&reply)
                ));
            }
            _ => return Err(format!("reading {secret}: {}", status_reason(&reply))),
        }
        let unexpected = || format!("reading {secret}: unexpected answer from Vault");
        let data = if kv2_mount.is_some() {
            serde_json::from_str::<Kv2Answer>(&reply.body)
                .map_err(|_| unexpected())?
                .data
                .and_then(|data| data.data)
        } else {
            serde_json::from_str::<ReadAnswer>(&reply.body)
                .map_err(|_| unexpected())?
                .data
        };
        data.ok_or_else(|| format!("no data at {secret} (deleted or destroyed version?)"))
    }
}

/// The mount `path` lies in: the longest mount path that is a prefix of it.
fn longest_mount(mounts: &[Mount], path: &str) -> Option<Mount> {
    let with_slash = format!("{path}/");
    mounts
        .iter()
        .filter(|mount| with_slash.starts_with(mount.path.as_str()))
        .max_by_key(|mount| mount.path.len())
        .cloned()
}

/// `HTTP <status>: <Vault's errors>`.
fn status_reason(reply: &Reply) -> String {
    let errors = serde_json::from_str::<ErrorAnswer>(&reply.body)
        .map(|answer| answer.errors.join("; "))
        .unwrap_or_default();
    if errors.trim().is_empty() {
        format!("HTTP {}", reply.status)
    } else {
        format!("HTTP {}: {}", reply.status, http::tidy(&errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, key: &str, version: Option<u64>) -> Result<HandleRef, String> {
        Ok(HandleRef {
            secret: SecretRef {
                path: path.to_owned(),
                version,
            },
            lookup: Lookup::Key(key.to_owned()),
        })
    }

    fn pointer(path: &str, text: &str, tokens: &[&str]) -> Result<HandleRef, String> {
        Ok(HandleRef {
            secret: SecretRef {
                path: path.to_owned(),
                version: None,
            },
            lookup: Lookup::Pointer {
                text: text.to_owned(),
                tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
            },
        })
    }

    #[test]
    fn handles() {
        for (handle, expected) in [
            (
                "secret/app/db;password",
                key("secret/app/db", "password", None),
            ),
            (
                "/Datadog/Production;apikey",
                key("Datadog/Production", "apikey", None),
            ),
            // As in the connector: everything after the first `;` is the key.
            ("secret/app/db;a;b", key("secret/app/db", "a;b", None)),
            (
                "secret/app/db;password;3",
                key("secret/app/db", "password;3", None),
            ),
            // keyturn's versioned form.
            (
                ";secret/app/db;password;3",
                key("secret/app/db", "password", Some(3)),
            ),
            (";secret/app/db;a;b;3", key("secret/app/db", "a;b", Some(3))),
            (
                "vault://secret/app/db#/replicas/0/pass~1word~0",
                pointer(
                    "secret/app/db",
                    "/replicas/0/pass~1word~0",
                    &["replicas", "0", "pass/word~"],
                ),
            ),
            // `~01` is `~1` decoded once: `~` then `1`, not `/`.
            (
                "vault://secret/app/db#/a~01",
                pointer("secret/app/db", "/a~01", &["a~1"]),
            ),
            ("vault://secret/app/db#", pointer("secret/app/db", "", &[])),
            (
                "vault://secret/app;x#/a#b",
                pointer("secret/app;x", "/a#b", &["a#b"]),
            ),
        ] {
            assert_eq!(parse_handle(handle, ";"), expected, "{handle}");
        }
        for (handle, reason) in [
            ("secret/app/db", "no `;`"),
            (";password", "`;path;key;version`"),
            (";secret/app;password", "`;path;key;version`"),
            (";;password;3", "empty secret path"),
            ("secret/app;", "empty key"),
            (";secret/app;;3", "empty key"),
            (";secret/app;k;0", "positive integer"),
            (";secret/app;k;x", "positive integer"),
            (";secret/app;k;+3", "positive integer"),
            ("secret//app;k", "segment"),
            ("secret/../sys;k", "segment"),
            ("vault://secret/app/db", "no `#`"),
            ("vault://secret/app/db#password", "must start with `/`"),
            ("vault://secret/app/db#/a~2", "must start with `/`"),
            ("vault://secret/app/db#/a~", "must start with `/`"),
            ("vault://secret/app/db#/a%20b", "`%`"),
            ("vault://#/a", "empty secret path"),
        ] {
            let error = parse_handle(handle, ";").unwrap_err();
            assert!(error.contains(reason), "{handle}: {error}");
        }
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let data: Data = serde_json::from_str(
            r#"{"a": {"b/c": "slash", "m~n": "tilde", "": "empty key"},
                "list": ["zero", {"x": "in list"}],
                "n": 5}"#,
        )
        .unwrap();
        let found = |pointer: &str| {
            follow_pointer(&data, &pointer_tokens(pointer).unwrap()).map(|raw| raw.get().to_owned())
        };
        assert_eq!(found("/a/b~1c").as_deref(), Some(r#""slash""#));
        assert_eq!(found("/a/m~0n").as_deref(), Some(r#""tilde""#));
        assert_eq!(found("/a/").as_deref(), Some(r#""empty key""#));
        assert_eq!(found("/list/0").as_deref(), Some(r#""zero""#));
        assert_eq!(found("/list/1/x").as_deref(), Some(r#""in list""#));
        assert_eq!(found("/n").as_deref(), Some("5"));
        for missing in [
            "/list/01", "/list/+1", "/list/-", "/list/2", "/n/x", "/a/zz", "/zz",
        ] {
            assert_eq!(found(missing), None, "{missing}");
        }
    }

    #[test]
    fn other_separators_split_at_the_last_occurrence() {
        let parsed = parse_handle("secret/app.prod/db.password", ".").unwrap();
        assert_eq!(parsed.secret.path, "secret/app.prod/db");
        assert_eq!(parsed.lookup, Lookup::Key("password".into()));
        let parsed = parse_handle("secret/app/db/password", "/").unwrap();
        assert_eq!(parsed.secret.path, "secret/app/db");
        assert_eq!(parsed.lookup, Lookup::Key("password".into()));
        let error = parse_handle("secret;x", ".").unwrap_err();
        assert!(error.contains("no separator"), "{error}");
        // Pointers read the same whatever the separator.
        assert_eq!(
            parse_handle("vault://secret/app.prod/db#/password", "."),
            pointer("secret/app.prod/db", "/password", &["password"])
        );
    }

    #[test]
    fn longest_mount_wins() {
        let mounts = [
            Mount {
                path: "secret/".into(),
                kv2: true,
            },
            Mount {
                path: "secret/team/".into(),
                kv2: false,
            },
            Mount {
                path: "kv".into(),
                kv2: false,
            },
        ];
        let found = |path| longest_mount(&mounts, path).map(|mount| mount.path);
        assert_eq!(found("secret/app/db"), Some("secret/".into()));
        assert_eq!(found("secret/team/db"), Some("secret/team/".into()));
        assert_eq!(found("secretive/db"), None);
        assert_eq!(found("other/db"), None);
    }
}
