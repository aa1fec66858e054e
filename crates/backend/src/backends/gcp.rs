//! `gcp.secretmanager`: GCP Secret Manager.
//!
//! Handle: `name`, `name@version` (the connector's version form; a secret id cannot hold `@`),
//! `name;key`, `name@version;key` or `name;key;version` (`name;;3` for a version of the whole
//! secret). `name` is a secret id in the configured
//! project or `projects/P/secrets/S`; the version defaults to `latest`. With a key, the secret
//! must be a JSON object and the key's value follows [`crate::value`].
//!
//! Config: `gcp_session.project_id` (the connector's), plus ours `gcp_session.credentials_file`,
//! `endpoint_url` (another Secret Manager endpoint: a regional or private one, a test server)
//! and `ca_cert` (a PEM CA bundle replacing the default roots for this backend's HTTPS).
//!
//! Credentials, as Application Default Credentials finds them: the JSON file of
//! `gcp_session.credentials_file`, else `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's
//! `~/.config/gcloud/application_default_credentials.json` when it exists; else the metadata
//! server (GCE, GKE workload identity) at `GCE_METADATA_HOST` or `metadata.google.internal`,
//! asked with `Metadata-Flavor: Google`, each request given at most [`METADATA_TIMEOUT`]. Files
//! of type `service_account` (an RS256-signed JWT exchanged at the file's `token_uri`),
//! `authorized_user` (its refresh token) and `external_account` (workload identity federation:
//! a subject token from a file or URL exchanged at the file's `token_url`, then optionally
//! impersonating a service account) are read. The project: the handle's, else `project_id`,
//! else the credentials file's, else the metadata server's.
//!
//! One `versions/V:access` per distinct (project, secret, version), at most [`MAX_IN_FLIGHT`]
//! at a time, all within the run's deadline.
//!
//! Invariant: the private key, refresh token, client secret, subject token and access token are
//! registered with the redactor as soon as they are read or obtained; the access token travels
//! only in `Authorization`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use ureq::http::Method;
use zeroize::Zeroizing;

use crate::backends::oauth::{self, TokenError};
use crate::backends::{Context, Outcome};
use crate::http::{self, Client, HttpError, TlsOptions};
use crate::schedule::{MAX_IN_FLIGHT, map_distinct};
use crate::settings::{Settings, SettingsError};

/// Secret Manager's endpoint.
const ENDPOINT: &str = "https://secretmanager.googleapis.com";

/// Google's OAuth token endpoint, for files without their own.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope asked for: Secret Manager accepts `cloud-platform`.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Longest wait for one metadata server request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest credentials file or subject token read.
const MAX_FILE: u64 = 1024 * 1024;

/// A failure of the whole backend, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GcpError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The credentials file cannot be used.
    #[error("GCP credentials file {path}: {reason}")]
    CredentialsFile { path: String, reason: String },
    /// A token could not be obtained.
    #[error("cannot get a GCP access token from {origin}: {reason}")]
    Token { origin: String, reason: String },
    /// Nothing configured, and the metadata server gave nothing.
    #[error(
        "no GCP credentials: set gcp_session.credentials_file or GOOGLE_APPLICATION_CREDENTIALS, \
         or run on GCP; the metadata server at {host} gave none: {reason}"
    )]
    NoCredentials { host: String, reason: String },
    /// No project for handles that name none.
    #[error("no GCP project: set gcp_session.project_id or use handles `projects/P/secrets/S`")]
    NoProject,
}

/// One secret version to fetch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version<'h> {
    project: Option<&'h str>,
    secret: &'h str,
    version: &'h str,
}

/// Resolves `handles` against Secret Manager.
pub(crate) fn resolve(
    settings: &Settings<'_>,
    handles: &[&str],
    context: &mut Context<'_>,
) -> Result<Vec<Outcome>, GcpError> {
    let session = settings.section("gcp_session")?;
    let parsed: Vec<Result<(Version<'_>, Option<&str>), String>> =
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
    let endpoint = match settings.string("endpoint_url")? {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            url.trim_end_matches('/').to_owned()
        }
        Some(_) => {
            return Err(settings
                .invalid("endpoint_url", "must start with https:// or http://")
                .into());
        }
        None => ENDPOINT.to_owned(),
    };
    let identity = Identity::find(&session, &http, context)?;
    let project = session
        .string("project_id")?
        .map(str::to_owned)
        .or(identity.project.clone());
    let fetched = map_distinct(
        parsed
            .iter()
            .filter_map(|handle| handle.as_ref().ok().map(|(version, _)| version.clone())),
        MAX_IN_FLIGHT,
        |version| {
            let project = version
                .project
                .or(project.as_deref())
                .ok_or_else(|| GcpError::NoProject.to_string())?;
            access(&http, &endpoint, &identity.token, project, version)
        },
    );
    Ok(parsed
        .into_iter()
        .map(|handle| {
            let (version, key) = handle?;
            let secret = fetched
                .get(&version)
                .ok_or_else(|| format!("secret {:?} was not fetched", version.secret))?
                .as_ref()
                .map_err(Clone::clone)?;
            match key {
                None => Ok(secret.clone()),
                Some(key) => crate::backends::aws::secrets::json_key(secret, version.secret, key),
            }
        })
        .collect())
}

/// `name[@version][;key]` or `name[;key[;version]]`. `name@version` is how Datadog's connector
/// names a version; both `@` and a third `;` field is an error.
fn parse_handle(handle: &str) -> Result<(Version<'_>, Option<&str>), String> {
    let invalid = |why: &str| {
        format!(
            "invalid handle {handle:?}: {why} (expected `name`, `name@version`, `name;key`, \
             `name@version;key` or `name;key;version`)"
        )
    };
    let mut parts = handle.splitn(3, ';');
    let name = parts.next().unwrap_or_default();
    let key = parts.next().filter(|key| !key.is_empty());
    let (name, version) = match (name.split_once('@'), parts.next()) {
        (None, version) => (name, version),
        (Some((_, "")), _) => return Err(invalid("nothing after `@`")),
        (Some((name, version)), None) => (name, Some(version)),
        (Some(_), Some(_)) => return Err(invalid("two versions, after `@` and after `;`")),
    };
    let (project, secret) = match name.strip_prefix("projects/") {
        Some(rest) => match rest.split_once("/secrets/") {
            Some((project, secret)) => (Some(project), secret),
            None => return Err(invalid("a full name is `projects/P/secrets/S`")),
        },
        None => (None, name),
    };
    let id_ok = |text: &str| {
        !text.is_empty()
            && text.len() <= 255
            && text
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    };
    if !id_ok(secret) {
        return Err(invalid("a secret id is 1-255 letters, digits, `_` or `-`"));
    }
    if let Some(project) = project
        && (project.is_empty() || project.contains('/'))
    {
        return Err(invalid("bad project in `projects/P/secrets/S`"));
    }
    let version = match version {
        None | Some("") => "latest",
        Some(version) if version == "latest" || version.bytes().all(|b| b.is_ascii_digit()) => {
            version
        }
        Some(_) => return Err(invalid("a version is a number or `latest`")),
    };
    Ok((
        Version {
            project,
            secret,
            version,
        },
        key,
    ))
}

#[derive(Deserialize)]
struct AccessAnswer {
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    data: Zeroizing<String>,
}

/// `GET .../versions/V:access`: the secret's text.
fn access(
    http: &Client,
    endpoint: &str,
    token: &str,
    project: &str,
    version: &Version<'_>,
) -> Result<Zeroizing<String>, String> {
    let name = format!(
        "projects/{project}/secrets/{}/versions/{}",
        version.secret, version.version
    );
    let url = format!("{endpoint}/v1/{}:access", http::encode_path(&name));
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
        .map_err(|error| format!("secret {name}: {error}"))?;
    match reply.status {
        200 => {}
        404 => {
            return Err(format!(
                "secret {name} not found{}",
                oauth::error_detail(&reply.body)
            ));
        }
        403 => {
            return Err(format!(
                "secret {name}: permission denied (HTTP 403{}); grant \
                 roles/secretmanager.secretAccessor",
                oauth::error_detail(&reply.body)
            ));
        }
        401 => {
            return Err(format!(
                "secret {name}: the access token was refused (HTTP 401{})",
                oauth::error_detail(&reply.body)
            ));
        }
        status => {
            return Err(format!(
                "secret {name}: Secret Manager answered HTTP {status}{}",
                oauth::error_detail(&reply.body)
            ));
        }
    }
    let answer: AccessAnswer = serde_json::from_str(&reply.body)
        .map_err(|_| format!("secret {name}: unexpected answer from Secret Manager"))?;
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(answer.payload.data.as_bytes())
            .map_err(|_| format!("secret {name}: the payload is not valid base64"))?,
    );
    std::str::from_utf8(&bytes)
        .map(|text| Zeroizing::new(text.to_owned()))
        .map_err(|_| format!("secret {name} is not UTF-8 text"))
}

/// An access token, and the project the credentials name.
struct Identity {
    token: Zeroizing<String>,
    project: Option<String>,
}

/// A credentials file, whatever its type.
#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type")]
    kind: String,
    project_id: Option<String>,
    quota_project_id: Option<String>,
    // service_account
    client_email: Option<String>,
    private_key: Option<Zeroizing<String>>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    // authorized_user
    client_id: Option<String>,
    client_secret: Option<Zeroizing<String>>,
    refresh_token: Option<Zeroizing<String>>,
    // external_account
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    credential_source: Option<CredentialSource>,
}

#[derive(Deserialize)]
struct CredentialSource {
    file: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    format: Option<SourceFormat>,
    environment_id: Option<String>,
    executable: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SourceFormat {
    #[serde(rename = "type")]
    kind: String,
    subject_token_field_name: Option<String>,
}

impl Identity {
    fn find(
        session: &Settings<'_>,
        http: &Client,
        context: &mut Context<'_>,
    ) -> Result<Identity, GcpError> {
        let env = context.env;
        let set = |name: &str| env(name).filter(|value| !value.is_empty());
        let file = session
            .string("credentials_file")?
            .map(PathBuf::from)
            .or_else(|| set("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from))
            .or_else(|| {
                let well_known = Path::new(&set("HOME")?)
                    .join(".config/gcloud/application_default_credentials.json");
                well_known.is_file().then_some(well_known)
            });
        match file {
            Some(path) => from_file(&path, http, context),
            None => from_metadata(context),
        }
    }
}

fn from_file(path: &Path, http: &Client, context: &mut Context<'_>) -> Result<Identity, GcpError> {
    let failed = |reason: String| GcpError::CredentialsFile {
        path: path.display().to_string(),
        reason,
    };
    let text = crate::backends::file::read_text(path, MAX_FILE)
        .map_err(|error| failed(error.to_string()))?;
    // Register every credential-looking value before anything can fail and quote it.
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text) {
        for key in ["private_key", "client_secret", "refresh_token"] {
            if let Some(secret) = map.get(key).and_then(|value| value.as_str()) {
                context.redactor.add(secret);
            }
        }
    }
    let file: CredentialsFile = serde_json::from_str(&text)
        .map_err(|_| failed("not a GCP credentials JSON file".to_owned()))?;
    let redactor = &mut *context.redactor;
    let mut register = |secret: &str| redactor.add(secret);
    let token_error = |origin: &str, error: TokenError| GcpError::Token {
        origin: origin.to_owned(),
        reason: error.to_string(),
    };
    let token = match file.kind.as_str() {
        "service_account" => {
            let email = file
                .client_email
                .as_deref()
                .ok_or_else(|| failed("no client_email".to_owned()))?;
            let key = file
                .private_key
                .as_ref()
                .ok_or_else(|| failed("no private_key".to_owned()))?;
            let token_uri = file.token_uri.as_deref().unwrap_or(TOKEN_URI);
            let assertion = jwt::assertion(email, file.private_key_id.as_deref(), key, token_uri)
                .map_err(|reason| failed(format!("private_key: {reason}")))?;
            register(&assertion);
            oauth::post_form(
                http,
                token_uri,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ],
                &[],
                &mut register,
            )
            .map_err(|error| token_error(token_uri, error))?
        }
        "authorized_user" => {
            let (Some(client_id), Some(client_secret), Some(refresh_token)) =
                (&file.client_id, &file.client_secret, &file.refresh_token)
            else {
                return Err(failed(
                    "an authorized_user file needs client_id, client_secret and refresh_token"
                        .to_owned(),
                ));
            };
            let token_uri = file.token_uri.as_deref().unwrap_or(TOKEN_URI);
            oauth::post_form(
                http,
                token_uri,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("refresh_token", refresh_token),
                ],
                &[],
                &mut register,
            )
            .map_err(|error| token_error(token_uri, error))?
        }
        "external_account" => external_account(&file, path, http, &mut register)?,
        other => {
            return Err(failed(format!(
                "type {other:?} is not supported (service_account, authorized_user, \
                 external_account)"
            )));
        }
    };
    Ok(Identity {
        token,
        project: file.project_id.or(file.quota_project_id),
    })
}

/// Workload identity federation: a subject token exchanged at Google's STS, then optionally
/// a service account impersonated with the federated token.
fn external_account(
    file: &CredentialsFile,
    path: &Path,
    http: &Client,
    register: &mut dyn FnMut(&str),
) -> Result<Zeroizing<String>, GcpError> {
    let failed = |reason: String| GcpError::CredentialsFile {
        path: path.display().to_string(),
        reason,
    };
    let (Some(audience), Some(token_type), Some(token_url), Some(source)) = (
        &file.audience,
        &file.subject_token_type,
        &file.token_url,
        &file.credential_source,
    ) else {
        return Err(failed(
            "an external_account file needs audience, subject_token_type, token_url and \
             credential_source"
                .to_owned(),
        ));
    };
    if source.environment_id.is_some() || source.executable.is_some() {
        return Err(failed(
            "credential_source: only `file` and `url` sources are supported".to_owned(),
        ));
    }
    let raw = match (&source.file, &source.url) {
        (Some(file), _) => crate::backends::file::read_text(Path::new(file), MAX_FILE)
            .map_err(|error| failed(format!("credential_source.file: {error}")))?,
        (None, Some(url)) => {
            let headers: Vec<(&str, &str)> = source
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let reply = http
                .send(Method::GET, url, &headers, None)
                .map_err(|error| failed(format!("credential_source.url: {error}")))?;
            if reply.status != 200 {
                return Err(failed(format!(
                    "credential_source.url answered HTTP {}",
                    reply.status
                )));
            }
            reply.body
        }
        (None, None) => {
            return Err(failed("credential_source needs `file` or `url`".to_owned()));
        }
    };
    let subject = match &source.format {
        Some(format) if format.kind == "json" => {
            let field = format.subject_token_field_name.as_deref().ok_or_else(|| {
                failed("credential_source.format needs subject_token_field_name".to_owned())
            })?;
            let value: serde_json::Value = serde_json::from_str(&raw)
                .map_err(|_| failed("the subject token source is not JSON".to_owned()))?;
            Zeroizing::new(
                value
                    .get(field)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| failed(format!("the subject token has no field {field:?}")))?
                    .to_owned(),
            )
        }
        _ => Zeroizing::new(raw.trim().to_owned()),
    };
    register(&subject);
    let federated = oauth::post_form(
        http,
        token_url,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token_type", token_type),
            ("subject_token", &subject),
            ("audience", audience),
            ("scope", SCOPE),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
        &[],
        register,
    )
    .map_err(|error| GcpError::Token {
        origin: token_url.clone(),
        reason: error.to_string(),
    })?;
    let Some(impersonate) = &file.service_account_impersonation_url else {
        return Ok(federated);
    };
    let bearer = Zeroizing::new(format!("Bearer {}", federated.as_str()));
    oauth::request(
        http,
        Method::POST,
        impersonate,
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        Some(
            serde_json::json!({"scope": [SCOPE], "lifetime": "3600s"})
                .to_string()
                .into_bytes(),
        ),
        register,
    )
    .map_err(|error| GcpError::Token {
        origin: impersonate.clone(),
        reason: error.to_string(),
    })
}

/// The metadata server's token for the instance's (or the GKE workload's) service account.
fn from_metadata(context: &mut Context<'_>) -> Result<Identity, GcpError> {
    let env = context.env;
    let host = env("GCE_METADATA_HOST")
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "metadata.google.internal".to_owned());
    let base = format!("http://{host}/computeMetadata/v1");
    let no_credentials = |reason: String| GcpError::NoCredentials {
        host: host.clone(),
        reason,
    };
    let client = Client::new(
        &TlsOptions::default(),
        context.deadline.capped(METADATA_TIMEOUT),
    )?;
    let headers = [("metadata-flavor", "Google")];
    let redactor = &mut *context.redactor;
    let token = oauth::request(
        &client,
        Method::GET,
        &format!("{base}/instance/service-accounts/default/token"),
        &headers,
        None,
        &mut |secret| redactor.add(secret),
    )
    .map_err(|error| match error {
        TokenError::Http(HttpError::Timeout(_)) => {
            no_credentials(format!("no answer within {METADATA_TIMEOUT:?}"))
        }
        TokenError::Http(other) => no_credentials(other.to_string()),
        refused => GcpError::Token {
            origin: format!("the metadata server at {host}"),
            reason: refused.to_string(),
        },
    })?;
    let project = client
        .send(
            Method::GET,
            &format!("{base}/project/project-id"),
            &headers,
            None,
        )
        .ok()
        .filter(|reply| reply.status == 200)
        .map(|reply| reply.body.trim().to_owned())
        .filter(|project| !project.is_empty());
    Ok(Identity { token, project })
}

/// The RS256 JWT a service account signs to ask for a token (RFC 7523, Google's
/// "Using OAuth 2.0 for Server to Server Applications").
mod jwt {
    use base64::Engine as _;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use zeroize::Zeroizing;

    /// Lifetime of the assertion: the most Google accepts.
    const LIFETIME_SECS: i64 = 3600;

    pub(super) fn assertion(
        email: &str,
        key_id: Option<&str>,
        private_key_pem: &str,
        audience: &str,
    ) -> Result<Zeroizing<String>, String> {
        let key = ureq::tls::PrivateKey::from_pem(private_key_pem.as_bytes())
            .map_err(|_| "not a PEM private key".to_owned())?;
        // PKCS#8 (what Google issues), else a PKCS#1 RSA key.
        let pair = RsaKeyPair::from_pkcs8(key.der())
            .or_else(|_| RsaKeyPair::from_der(key.der()))
            .map_err(|_| "not a usable RSA key".to_owned())?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let header = match key_id {
            Some(key_id) => serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key_id}),
            None => serde_json::json!({"alg": "RS256", "typ": "JWT"}),
        };
        let claims = serde_json::json!({
            "iss": email,
            "scope": super::SCOPE,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let signed = format!(
            "{}.{}",
            encode(header.to_string().as_bytes()),
            encode(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "signing failed".to_owned())?;
        Ok(Zeroizing::new(format!("{signed}.{}", encode(&signature))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        let version = |project, secret, version| Version {
            project,
            secret,
            version,
        };
        assert_eq!(
            parse_handle("api-key"),
            Ok((version(None, "api-key", "latest"), None))
        );
        assert_eq!(
            parse_handle("db;password;3"),
            Ok((version(None, "db", "3"), Some("password")))
        );
        assert_eq!(parse_handle("db;;7"), Ok((version(None, "db", "7"), None)));
        // The connector's form.
        assert_eq!(parse_handle("db@7"), Ok((version(None, "db", "7"), None)));
        assert_eq!(
            parse_handle("db@latest;password"),
            Ok((version(None, "db", "latest"), Some("password")))
        );
        assert_eq!(
            parse_handle("projects/p-1/secrets/db;user"),
            Ok((version(Some("p-1"), "db", "latest"), Some("user")))
        );
        for (handle, expected) in [
            ("", "a secret id is"),
            ("a/b", "a secret id is"),
            ("db;k;v1", "a version is a number"),
            ("db@v1", "a version is a number"),
            ("db@", "nothing after `@`"),
            ("db@1;k;2", "two versions"),
            ("projects/p/db", "a full name is"),
        ] {
            let error = parse_handle(handle).unwrap_err();
            assert!(error.contains(expected), "{handle}: {error}");
        }
    }
}
