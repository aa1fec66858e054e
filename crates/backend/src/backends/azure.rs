//! `azure.keyvault`: Azure Key Vault secrets.
//!
//! Handle: `name`, `name;key` or `name;key;version` (`name;;VERSION` for a version of the whole
//! secret); the latest version when none is given. With a key, the secret must be a JSON object
//! and the key's value follows [`crate::value`].
//!
//! Config: `keyvaulturl` and `azure_session: {azure_tenant_id, azure_client_id,
//! azure_client_secret}` (the connector's), plus ours `ca_cert` (a PEM CA bundle replacing the
//! default roots for this backend's HTTPS).
//!
//! Credentials, as `DefaultAzureCredential` finds them: a client secret (`azure_session`, else
//! `AZURE_TENANT_ID` / `AZURE_CLIENT_ID` / `AZURE_CLIENT_SECRET`); workload identity
//! (`AZURE_FEDERATED_TOKEN_FILE` with `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`, as AKS sets them);
//! managed identity: App Service / Functions (`IDENTITY_ENDPOINT` with `IDENTITY_HEADER`), else
//! the instance metadata service (`Metadata: true`; `AZURE_POD_IDENTITY_AUTHORITY_HOST`, else
//! `http://169.254.169.254`; each request given at most [`IMDS_TIMEOUT`]), with the client id of
//! a user-assigned identity when one is configured. Microsoft Entra ID is reached at ours
//! `azure_session.azure_authority_host`, else `AZURE_AUTHORITY_HOST`, else
//! `https://login.microsoftonline.com`.
//!
//! One `GET /secrets/{name}/{version}?api-version=7.4` per distinct secret version, at most
//! [`MAX_IN_FLIGHT`] at a time, all within the run's deadline.
//!
//! Invariant: the client secret, the federated token and the access token are registered with
//! the redactor as soon as they are read or obtained; the access token travels only in
//! `Authorization`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::http::Method;
use zeroize::Zeroizing;

use crate::backends::oauth::{self, TokenError};
use crate::backends::{Context, Outcome};
use crate::http::{self, Client, HttpError, TlsOptions};
use crate::schedule::{MAX_IN_FLIGHT, map_distinct};
use crate::settings::{Settings, SettingsError};

/// The Key Vault REST API version asked for.
const API_VERSION: &str = "7.4";

/// Longest wait for one instance metadata request.
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest federated token file read.
const MAX_FILE: u64 = 1024 * 1024;

/// A failure of the whole backend, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AzureError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A token could not be obtained.
    #[error("cannot get an Azure access token from {origin}: {reason}")]
    Token { origin: String, reason: String },
    /// Nothing configured, and the instance metadata service gave nothing.
    #[error(
        "no Azure credentials: set azure_session (azure_tenant_id, azure_client_id, \
         azure_client_secret), AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, or run with a \
         managed identity; the instance metadata service at {host} gave none: {reason}"
    )]
    NoCredentials { host: String, reason: String },
}

/// Resolves `handles` against Key Vault.
pub(crate) fn resolve(
    settings: &Settings<'_>,
    handles: &[&str],
    context: &mut Context<'_>,
) -> Result<Vec<Outcome>, AzureError> {
    let vault = settings.required_string("keyvaulturl", " (https://<name>.vault.azure.net)")?;
    if !vault.starts_with("https://") {
        return Err(settings
            .invalid("keyvaulturl", "must start with https://")
            .into());
    }
    let vault = vault.trim_end_matches('/');
    let parsed: Vec<Result<Parsed<'_>, String>> =
        handles.iter().map(|handle| parse_handle(handle)).collect();
    let tls = TlsOptions {
        ca_files: settings
            .string("ca_cert")?
            .map(PathBuf::from)
            .into_iter()
            .collect(),
        ..TlsOptions::default()
    };
    let http = Client::new(&tls, context.deadline)?;
    let token = access_token(
        &settings.section("azure_session")?,
        &http,
        &scope_of(vault),
        context,
    )?;
    let fetched = map_distinct(
        parsed
            .iter()
            .filter_map(|handle| handle.as_ref().ok().map(|(version, _)| *version)),
        MAX_IN_FLIGHT,
        |(name, version)| get_secret(&http, vault, &token, name, version),
    );
    Ok(parsed
        .into_iter()
        .map(|handle| {
            let (version, key) = handle?;
            let secret = fetched
                .get(&version)
                .ok_or_else(|| format!("secret {:?} was not fetched", version.0))?
                .as_ref()
                .map_err(Clone::clone)?;
            match key {
                None => Ok(secret.clone()),
                Some(key) => crate::backends::aws::secrets::json_key(secret, version.0, key),
            }
        })
        .collect())
}

/// A parsed handle: `(name, version)` (an empty version means the latest) and the JSON key.
type Parsed<'h> = ((&'h str, &'h str), Option<&'h str>);

/// `name[;key[;version]]`.
fn parse_handle(handle: &str) -> Result<Parsed<'_>, String> {
    let invalid = |why: &str| {
        format!(
            "invalid handle {handle:?}: {why} (expected `name`, `name;key` or `name;key;version`)"
        )
    };
    let mut parts = handle.splitn(3, ';');
    let name = parts.next().unwrap_or_default();
    let key = parts.next().filter(|key| !key.is_empty());
    let version = parts.next().unwrap_or_default();
    if name.is_empty()
        || name.len() > 127
        || !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    {
        return Err(invalid("a secret name is 1-127 letters, digits or `-`"));
    }
    if !version.bytes().all(|byte| byte.is_ascii_hexdigit()) || version.len() > 64 {
        return Err(invalid("a version is a hexadecimal id"));
    }
    Ok(((name, version), key))
}

/// The token scope of a vault: its cloud's Key Vault resource.
fn scope_of(vault: &str) -> String {
    let host = vault
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let resource = [
        "vault.azure.cn",
        "vault.usgovcloudapi.net",
        "vault.microsoftazure.de",
        "managedhsm.azure.net",
    ]
    .into_iter()
    .find(|suffix| host.ends_with(&format!(".{suffix}")))
    .unwrap_or("vault.azure.net");
    format!("https://{resource}")
}

/// The first configured credential's access token for `resource`.
fn access_token(
    session: &Settings<'_>,
    http: &Client,
    resource: &str,
    context: &mut Context<'_>,
) -> Result<Zeroizing<String>, AzureError> {
    let env = context.env;
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    let tenant = session
        .string("azure_tenant_id")?
        .map(str::to_owned)
        .or_else(|| set("AZURE_TENANT_ID"));
    let client_id = session
        .string("azure_client_id")?
        .map(str::to_owned)
        .or_else(|| set("AZURE_CLIENT_ID"));
    let client_secret = session
        .string("azure_client_secret")?
        .map(|secret| Zeroizing::new(secret.to_owned()))
        .or_else(|| set("AZURE_CLIENT_SECRET").map(Zeroizing::new));
    let authority = session
        .string("azure_authority_host")?
        .map(str::to_owned)
        .or_else(|| set("AZURE_AUTHORITY_HOST"))
        .unwrap_or_else(|| "https://login.microsoftonline.com".to_owned());
    let scope = format!("{resource}/.default");
    let redactor = &mut *context.redactor;
    let mut register = |secret: &str| redactor.add(secret);
    let token_url = |tenant: &str| {
        format!(
            "{}/{}/oauth2/v2.0/token",
            authority.trim_end_matches('/'),
            http::encode_path(tenant)
        )
    };
    let failed = |origin: String| {
        move |error: TokenError| AzureError::Token {
            origin,
            reason: error.to_string(),
        }
    };
    if let Some(secret) = &client_secret {
        register(secret);
        let (Some(tenant), Some(client_id)) = (&tenant, &client_id) else {
            return Err(session
                .invalid(
                    "azure_client_secret",
                    "needs azure_tenant_id and azure_client_id (or AZURE_TENANT_ID and \
                     AZURE_CLIENT_ID)",
                )
                .into());
        };
        let url = token_url(tenant);
        return oauth::post_form(
            http,
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", &scope),
            ],
            &[],
            &mut register,
        )
        .map_err(failed(url.clone()));
    }
    if let (Some(file), Some(tenant), Some(client_id)) =
        (set("AZURE_FEDERATED_TOKEN_FILE"), &tenant, &client_id)
    {
        let assertion =
            crate::backends::file::read_text(Path::new(&file), MAX_FILE).map_err(|error| {
                AzureError::Token {
                    origin: "workload identity".to_owned(),
                    reason: format!("AZURE_FEDERATED_TOKEN_FILE: {error}"),
                }
            })?;
        let assertion = Zeroizing::new(assertion.trim().to_owned());
        register(&assertion);
        let url = token_url(tenant);
        return oauth::post_form(
            http,
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
                ("scope", &scope),
            ],
            &[],
            &mut register,
        )
        .map_err(failed(url.clone()));
    }
    let mut query = vec![("resource", resource)];
    if let Some(client_id) = &client_id {
        query.push(("client_id", client_id));
    }
    if let (Some(endpoint), Some(header)) = (set("IDENTITY_ENDPOINT"), set("IDENTITY_HEADER")) {
        let header = Zeroizing::new(header);
        register(&header);
        query.insert(0, ("api-version", "2019-08-01"));
        let url = format!("{endpoint}?{}", http::form_body(&query).as_str());
        return oauth::request(
            http,
            Method::GET,
            &url,
            &[("x-identity-header", header.as_str())],
            None,
            &mut register,
        )
        .map_err(failed(format!("the managed identity endpoint {endpoint}")));
    }
    let host = set("AZURE_POD_IDENTITY_AUTHORITY_HOST")
        .map(|host| host.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| "http://169.254.169.254".to_owned());
    query.insert(0, ("api-version", "2018-02-01"));
    let url = format!(
        "{host}/metadata/identity/oauth2/token?{}",
        http::form_body(&query).as_str()
    );
    let imds = Client::new(
        &TlsOptions::default(),
        context.deadline.capped(IMDS_TIMEOUT),
    )?;
    oauth::request(
        &imds,
        Method::GET,
        &url,
        &[("metadata", "true")],
        None,
        &mut register,
    )
    .map_err(|error| match error {
        TokenError::Http(HttpError::Timeout(_)) => AzureError::NoCredentials {
            host: host.clone(),
            reason: format!("no answer within {IMDS_TIMEOUT:?}"),
        },
        TokenError::Http(other) => AzureError::NoCredentials {
            host: host.clone(),
            reason: other.to_string(),
        },
        refused => AzureError::Token {
            origin: format!("the instance metadata service at {host}"),
            reason: refused.to_string(),
        },
    })
}

#[derive(serde::Deserialize)]
struct SecretBundle {
    value: Option<Zeroizing<String>>,
}

/// `GET /secrets/{name}/{version}`: the secret's value.
fn get_secret(
    http: &Client,
    vault: &str,
    token: &str,
    name: &str,
    version: &str,
) -> Result<Zeroizing<String>, String> {
    let url = format!("{vault}/secrets/{name}/{version}?api-version={API_VERSION}");
    let what = if version.is_empty() {
        format!("secret {name:?}")
    } else {
        format!("secret {name:?} version {version}")
    };
    let bearer = Zeroizing::new(format!("Bearer {token}"));
    let reply = http
        .send(
            Method::GET,
            &url,
            &[
                ("authorization", bearer.as_str()),
                ("accept", "application/json"),
            ],
            None,
        )
        .map_err(|error| format!("{what}: {error}"))?;
    let detail = || oauth::error_detail(&reply.body);
    match reply.status {
        200 => serde_json::from_str::<SecretBundle>(&reply.body)
            .ok()
            .and_then(|bundle| bundle.value)
            .ok_or_else(|| format!("{what}: unexpected answer from Key Vault")),
        404 => Err(format!("{what} not found{}", detail())),
        403 => Err(format!(
            "{what}: forbidden (HTTP 403{}); grant the identity `get` on secrets (access \
             policy) or the Key Vault Secrets User role",
            detail()
        )),
        401 => Err(format!(
            "{what}: the access token was refused (HTTP 401{})",
            detail()
        )),
        status => Err(format!(
            "{what}: Key Vault answered HTTP {status}{}",
            detail()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(parse_handle("api-key"), Ok((("api-key", ""), None)));
        assert_eq!(
            parse_handle("db;password;0123abcd"),
            Ok((("db", "0123abcd"), Some("password")))
        );
        assert_eq!(parse_handle("db;;0123abcd"), Ok((("db", "0123abcd"), None)));
        for (handle, expected) in [
            ("", "a secret name is"),
            ("db_x", "a secret name is"),
            ("a/b", "a secret name is"),
            ("db;k;v/1", "a version is"),
        ] {
            let error = parse_handle(handle).unwrap_err();
            assert!(error.contains(expected), "{handle}: {error}");
        }
    }

    #[test]
    fn scopes_follow_the_cloud() {
        assert_eq!(
            scope_of("https://v.vault.azure.net"),
            "https://vault.azure.net"
        );
        assert_eq!(
            scope_of("https://v.vault.azure.cn/"),
            "https://vault.azure.cn"
        );
        assert_eq!(
            scope_of("https://v.vault.usgovcloudapi.net"),
            "https://vault.usgovcloudapi.net"
        );
        assert_eq!(
            scope_of("https://127.0.0.1:8443"),
            "https://vault.azure.net"
        );
    }
}
