//! `k8s.secrets`: a key of a Kubernetes Secret, read through the API server.
//!
//! Handle: `namespace/secret-name;key` (Datadog's format, which the Agent's namespace scoping
//! reads), or `secret-name;key` in the configured `namespace`. The key's `data` value is
//! base64-decoded and must be UTF-8 text.
//!
//! Where the API server and the credentials come from, first configured wins:
//! - `kubeconfig_path` (its `current-context`, or `kubeconfig_context`): the cluster's `server`,
//!   `certificate-authority` / `-data`, and the user's `token`, `tokenFile` or client
//!   certificate (`client-certificate` / `-data`, `client-key` / `-data`); `exec` and
//!   `auth-provider` users are refused (they would run programs or need cloud SDKs), and so is
//!   `insecure-skip-tls-verify`;
//! - in-cluster: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (or `api_server`),
//!   the service account token (`token_path`, read once per run: the kubelet rotates it) and the
//!   cluster CA (`ca_path`).
//!
//! TLS verification is always on. One `GET /api/v1/namespaces/{ns}/secrets/{name}` per distinct
//! secret, at most [`MAX_IN_FLIGHT`] at a time. A 403 is reported as the RBAC refusal it is,
//! with the API server's message (which names the service account and the verb).
//!
//! Invariant: the token is registered with the redactor as soon as it is read and travels only
//! in the `Authorization` header; error texts never quote a Secret's data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use ureq::http::Method;
use zeroize::Zeroizing;

use crate::backends::{Context, Outcome};
use crate::http::{self, Client, HttpError, InlinePem, Reply, TlsOptions};
use crate::schedule::{MAX_IN_FLIGHT, map_distinct};
use crate::settings::{Settings, SettingsError};

/// Where a pod's service account is mounted.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Largest token, CA or kubeconfig file read.
const MAX_FILE: u64 = 1024 * 1024;

/// A failure of the whole backend, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum K8sError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Http(#[from] HttpError),
    /// No API server configured and not running in a cluster.
    #[error(
        "no Kubernetes API server: not in a cluster (KUBERNETES_SERVICE_HOST is not set); \
         set kubeconfig_path or api_server"
    )]
    NoServer,
    /// A file could not be read.
    #[error("{what}: {reason}")]
    File { what: String, reason: String },
    /// The kubeconfig cannot be used.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
}

/// A connection to the API server.
struct Api {
    http: Client,
    server: String,
    token: Option<Zeroizing<String>>,
}

/// Resolves `handles` through the Kubernetes API.
pub(crate) fn resolve(
    settings: &Settings<'_>,
    handles: &[&str],
    context: &mut Context<'_>,
) -> Result<Vec<Outcome>, K8sError> {
    let default_namespace = settings.string("namespace")?;
    let parsed: Vec<Result<(String, &str, &str), String>> = handles
        .iter()
        .map(|handle| parse_handle(handle, default_namespace))
        .collect();
    let api = connect(settings, context)?;
    let fetched = map_distinct(
        parsed
            .iter()
            .filter_map(|handle| handle.as_ref().ok())
            .map(|(namespace, name, _)| (namespace.clone(), *name)),
        MAX_IN_FLIGHT,
        |(namespace, name)| api.secret(namespace, name),
    );
    Ok(parsed
        .into_iter()
        .map(|handle| {
            let (namespace, name, key) = handle?;
            let data = fetched
                .get(&(namespace.clone(), name))
                .ok_or_else(|| format!("secret {namespace}/{name} was not fetched"))?
                .as_ref()
                .map_err(Clone::clone)?;
            let encoded = data
                .get(key)
                .ok_or_else(|| format!("key {key:?} not found in secret {namespace}/{name}"))?;
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|_| {
                        format!("key {key:?} of secret {namespace}/{name} is not valid base64")
                    })?,
            );
            std::str::from_utf8(&bytes)
                .map(|text| Zeroizing::new(text.to_owned()))
                .map_err(|_| format!("key {key:?} of secret {namespace}/{name} is not UTF-8 text"))
        })
        .collect())
}

type Data = BTreeMap<String, Zeroizing<String>>;

/// `namespace/name;key`, or `name;key` in the default namespace.
fn parse_handle<'h>(
    handle: &'h str,
    default_namespace: Option<&str>,
) -> Result<(String, &'h str, &'h str), String> {
    let invalid = |why: &str| {
        format!("invalid handle {handle:?}: {why} (expected `namespace/secret-name;key`)")
    };
    let (secret, key) = handle.split_once(';').ok_or_else(|| invalid("no `;key`"))?;
    let (namespace, name) = match secret.split_once('/') {
        Some((namespace, name)) => (namespace.to_owned(), name),
        None => (
            default_namespace
                .ok_or_else(|| invalid("no namespace, and no `namespace` configured"))?
                .to_owned(),
            secret,
        ),
    };
    // Kubernetes names are DNS labels / subdomains: this also keeps the URL path whole.
    let valid = |text: &str| {
        !text.is_empty()
            && text.len() <= 253
            && text.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-.".contains(&byte)
            })
    };
    if !valid(&namespace) {
        return Err(invalid("the namespace is not a Kubernetes name"));
    }
    if !valid(name) {
        return Err(invalid("the secret name is not a Kubernetes name"));
    }
    if key.is_empty() {
        return Err(invalid("empty key"));
    }
    Ok((namespace, name, key))
}

/// The API server and credentials, from a kubeconfig or the pod's service account.
fn connect(settings: &Settings<'_>, context: &mut Context<'_>) -> Result<Api, K8sError> {
    if let Some(path) = settings.string("kubeconfig_path")? {
        return kubeconfig(
            Path::new(path),
            settings.string("kubeconfig_context")?,
            context,
        );
    }
    let env = context.env;
    let server = match settings.string("api_server")? {
        Some(server) if server.starts_with("https://") => server.trim_end_matches('/').to_owned(),
        Some(_) => {
            return Err(settings
                .invalid("api_server", "must start with https://")
                .into());
        }
        None => {
            let host = env("KUBERNETES_SERVICE_HOST")
                .filter(|host| !host.is_empty())
                .ok_or(K8sError::NoServer)?;
            let port = env("KUBERNETES_SERVICE_PORT")
                .filter(|port| !port.is_empty())
                .unwrap_or_else(|| "443".to_owned());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        }
    };
    let token_path = settings
        .string("token_path")?
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(SERVICE_ACCOUNT).join("token"));
    let ca_path = settings
        .string("ca_path")?
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(SERVICE_ACCOUNT).join("ca.crt"));
    let token = read_token(&token_path, "the service account token", context)?;
    let tls = TlsOptions {
        ca_files: vec![ca_path],
        ..TlsOptions::default()
    };
    Ok(Api {
        http: Client::new(&tls, context.deadline)?,
        server,
        token: Some(token),
    })
}

fn read_token(
    path: &Path,
    what: &str,
    context: &mut Context<'_>,
) -> Result<Zeroizing<String>, K8sError> {
    let text =
        crate::backends::file::read_text(path, MAX_FILE).map_err(|error| K8sError::File {
            what: what.to_owned(),
            reason: error.to_string(),
        })?;
    let token = Zeroizing::new(text.trim().to_owned());
    context.redactor.add(&token);
    Ok(token)
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: KubeContext,
}

#[derive(Deserialize)]
struct KubeContext {
    cluster: String,
    user: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure: bool,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Deserialize, Default)]
struct User {
    token: Option<Zeroizing<String>>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<Zeroizing<String>>,
    exec: Option<serde_json::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

/// The API of a kubeconfig's context. Relative file paths are relative to the kubeconfig.
fn kubeconfig(
    path: &Path,
    context_name: Option<&str>,
    context: &mut Context<'_>,
) -> Result<Api, K8sError> {
    let failed = |reason: String| K8sError::Kubeconfig {
        path: path.display().to_string(),
        reason,
    };
    let text = crate::backends::file::read_text(path, MAX_FILE)
        .map_err(|error| failed(error.to_string()))?;
    let documents = <saphyr::Yaml<'_> as saphyr::LoadableYamlNode<'_>>::load_from_str(&text)
        .map_err(|error| {
            let marker = error.marker();
            failed(format!(
                "invalid YAML at line {}, column {}",
                marker.line(),
                marker.col() + 1
            ))
        })?;
    let json = documents.first().map(yaml_to_json).unwrap_or_default();
    // Register inline credentials before anything can fail and quote them.
    let users = json.get("users").and_then(serde_json::Value::as_array);
    for user in users.into_iter().flatten() {
        for key in ["token", "client-key-data"] {
            if let Some(secret) = user
                .get("user")
                .and_then(|user| user.get(key))
                .and_then(serde_json::Value::as_str)
            {
                context.redactor.add(secret);
            }
        }
    }
    let config: Kubeconfig = serde_json::from_value(json)
        .map_err(|error| failed(format!("not a kubeconfig ({})", strip_value(&error))))?;
    let wanted = context_name
        .map(str::to_owned)
        .or(config.current_context.clone())
        .ok_or_else(|| failed("no current-context (set kubeconfig_context)".to_owned()))?;
    let kube_context = &config
        .contexts
        .iter()
        .find(|named| named.name == wanted)
        .ok_or_else(|| failed(format!("no context {wanted:?}")))?
        .context;
    let cluster = &config
        .clusters
        .iter()
        .find(|named| named.name == kube_context.cluster)
        .ok_or_else(|| failed(format!("no cluster {:?}", kube_context.cluster)))?
        .cluster;
    let default_user = User::default();
    let user = match &kube_context.user {
        Some(name) => {
            &config
                .users
                .iter()
                .find(|named| &named.name == name)
                .ok_or_else(|| failed(format!("no user {name:?}")))?
                .user
        }
        None => &default_user,
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(failed(
            "the user authenticates with an exec plugin or auth-provider, which is not \
             supported (use a token, tokenFile or client certificate)"
                .to_owned(),
        ));
    }
    if cluster.insecure {
        return Err(failed(
            "insecure-skip-tls-verify is not supported: give the cluster's certificate-authority"
                .to_owned(),
        ));
    }
    if !cluster.server.starts_with("https://") {
        return Err(failed(
            "the cluster server must start with https://".to_owned(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let relative = |file: &str| base.join(file);
    let decode = |what: &str, data: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim().as_bytes())
            .map_err(|_| failed(format!("{what} is not valid base64")))
    };
    let mut tls = TlsOptions::default();
    if let Some(file) = &cluster.certificate_authority {
        tls.ca_files.push(relative(file));
    }
    if let Some(data) = &cluster.certificate_authority_data {
        tls.ca_pems.push(InlinePem {
            name: format!("{}: certificate-authority-data", path.display()),
            pem: Zeroizing::new(decode("certificate-authority-data", data)?),
        });
    }
    match (
        &user.client_certificate,
        &user.client_certificate_data,
        &user.client_key,
        &user.client_key_data,
    ) {
        (Some(cert), _, Some(key), _) => tls.client = Some((relative(cert), relative(key))),
        (_, Some(cert), _, Some(key)) => {
            tls.client_pem = Some((
                InlinePem {
                    name: format!("{}: client-certificate-data", path.display()),
                    pem: Zeroizing::new(decode("client-certificate-data", cert)?),
                },
                InlinePem {
                    name: format!("{}: client-key-data", path.display()),
                    pem: Zeroizing::new(decode("client-key-data", key)?),
                },
            ));
        }
        _ => {}
    }
    let token = match (&user.token, &user.token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(file)) => Some(read_token(
            &relative(file),
            "the kubeconfig tokenFile",
            context,
        )?),
        (None, None) => None,
    };
    Ok(Api {
        http: Client::new(&tls, context.deadline)?,
        server: cluster.server.trim_end_matches('/').to_owned(),
        token,
    })
}

/// A serde error's text without the value it may quote (`invalid type: string "..."`).
fn strip_value(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(": ") {
        Some(at) if text.starts_with("invalid") => format!("{} value", &text[..at]),
        _ => text,
    }
}

/// A parsed YAML node as JSON: scalars as strings, numbers or booleans; nothing is quoted back.
fn yaml_to_json(node: &saphyr::Yaml<'_>) -> serde_json::Value {
    use saphyr::{Scalar, Yaml};
    use serde_json::Value;
    match node {
        Yaml::Value(Scalar::String(text)) => Value::String(text.to_string()),
        Yaml::Value(Scalar::Boolean(flag)) => Value::Bool(*flag),
        Yaml::Value(Scalar::Integer(number)) => Value::from(*number),
        Yaml::Value(Scalar::FloatingPoint(number)) => Value::from(number.into_inner()),
        Yaml::Representation(text, _, _) => Value::String(text.to_string()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .filter_map(|(key, value)| {
                    let key = match key {
                        Yaml::Value(Scalar::String(text)) => text.to_string(),
                        Yaml::Representation(text, _, _) => text.to_string(),
                        _ => return None,
                    };
                    Some((key, yaml_to_json(value)))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[derive(Deserialize)]
struct Secret {
    #[serde(default)]
    data: Data,
}

impl Api {
    /// The `data` of a Secret.
    fn secret(&self, namespace: &str, name: &str) -> Result<Data, String> {
        let url = format!(
            "{}/api/v1/namespaces/{}/secrets/{}",
            self.server,
            http::encode_path(namespace),
            http::encode_path(name)
        );
        let bearer = self
            .token
            .as_ref()
            .map(|token| Zeroizing::new(format!("Bearer {}", token.as_str())));
        let mut headers = vec![("accept", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let reply = self
            .http
            .send(Method::GET, &url, &headers, None)
            .map_err(|error| format!("secret {namespace}/{name}: {error}"))?;
        match reply.status {
            200 => serde_json::from_str::<Secret>(&reply.body)
                .map(|secret| secret.data)
                .map_err(|_| {
                    format!("secret {namespace}/{name}: unexpected answer from the API server")
                }),
            404 => Err(format!("secret {namespace}/{name} not found")),
            401 => Err(format!(
                "secret {namespace}/{name}: the API server refused the credentials (HTTP 401{})",
                status_message(&reply)
            )),
            403 => Err(format!(
                "secret {namespace}/{name}: forbidden by RBAC (HTTP 403{}); grant `get` on \
                 this secret to the service account",
                status_message(&reply)
            )),
            status => Err(format!(
                "secret {namespace}/{name}: the API server answered HTTP {status}{}",
                status_message(&reply)
            )),
        }
    }
}

/// `: <message>` of a Kubernetes `Status` answer, if it is one.
fn status_message(reply: &Reply) -> String {
    serde_json::from_str::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|status| status.get("message")?.as_str().map(http::tidy))
        .map(|message| format!(": {message}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(
            parse_handle("prod/db-creds;password", None),
            Ok(("prod".to_owned(), "db-creds", "password"))
        );
        assert_eq!(
            parse_handle("db;a;b", Some("apps")),
            Ok(("apps".to_owned(), "db", "a;b"))
        );
        for (handle, expected) in [
            ("db;password", "no namespace"),
            ("prod/db", "no `;key`"),
            ("prod/db;", "empty key"),
            ("prod/../x;k", "not a Kubernetes name"),
            ("prod/a/b;k", "not a Kubernetes name"),
            ("Prod/db;k", "not a Kubernetes name"),
        ] {
            let error = parse_handle(handle, None).unwrap_err();
            assert!(error.contains(expected), "{handle}: {error}");
        }
    }

    #[test]
    fn yaml_to_json_keeps_strings() {
        let documents = <saphyr::Yaml<'_> as saphyr::LoadableYamlNode<'_>>::load_from_str(
            "a: x\nb: [1, true]\nc: {d: '07'}\n",
        )
        .unwrap();
        assert_eq!(
            yaml_to_json(&documents[0]),
            serde_json::json!({"a": "x", "b": [1, true], "c": {"d": "07"}})
        );
    }
}
