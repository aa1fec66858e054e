//! What `aws.secrets` and `aws.ssm` share: the session (region, credentials, endpoint) and one
//! signed JSON call.
//!
//! Config, as Datadog's connector names it: `aws_session: {aws_region, aws_access_key_id,
//! aws_secret_access_key, aws_session_token, aws_profile, aws_role_arn, aws_external_id}`; plus
//! ours `aws_session.aws_role_session_name`, `endpoint_url` (another endpoint for the service: a
//! VPC or FIPS endpoint, a test server) and `sts_endpoint_url` (else `AWS_ENDPOINT_URL_STS`).
//!
//! Base credentials, first found wins: the static keys of `aws_session`; the named `aws_profile`
//! of the shared files when one is configured; the `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` environment variables; a web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, as EKS IRSA sets them, exchanged with
//! `sts:AssumeRoleWithWebIdentity`); the profile `AWS_PROFILE` (or `default`) of
//! `~/.aws/credentials` and `~/.aws/config` (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`).
//! With `aws_role_arn`, those credentials then assume that role (`sts:AssumeRole`).
//! Region: `aws_region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
//! Not supported: instance roles (IMDS), container credentials, SSO, profiles that assume roles
//! themselves (`source_profile`).
//!
//! Invariant: every secret key and session token is registered with the [`Redactor`] as soon
//! as it is read; they leave the process only inside a SigV4 signature or the
//! `x-amz-security-token` header.

pub(crate) mod secrets;
mod sigv4;
pub(crate) mod ssm;
mod sts;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ureq::http::Method;
use zeroize::Zeroizing;

use self::sts::Sts;
use crate::backends::Context;
use crate::http::{self, Client, HttpError, TlsOptions};
use crate::redact::Redactor;
use crate::settings::{Settings, SettingsError};

/// Largest shared credentials or config file read.
const MAX_PROFILE_FILE: u64 = 1024 * 1024;

/// AWS credentials.
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Zeroizing<String>,
    pub(crate) session_token: Option<Zeroizing<String>>,
}

/// A failure of the whole backend, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The configuration is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No credentials were found anywhere.
    #[error(
        "no AWS credentials: set aws_session.aws_access_key_id and aws_secret_access_key, \
         the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables, or a profile \
         in ~/.aws/credentials (instance roles and SSO are not supported)"
    )]
    NoCredentials,
    /// No region was found anywhere.
    #[error("no AWS region: set aws_session.aws_region, AWS_REGION or a profile region")]
    NoRegion,
    /// A profile was named but is not in the shared files.
    #[error("AWS profile {0:?} not found in the shared credentials or config file")]
    NoProfile(String),
    /// `aws_role_arn` could not be assumed.
    #[error("cannot assume the role {role_arn}: {reason}")]
    AssumeRole { role_arn: String, reason: String },
    /// The web identity token could not be exchanged.
    #[error("cannot assume the role {role_arn} with the web identity token: {reason}")]
    WebIdentity { role_arn: String, reason: String },
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The server could not be reached or did not answer in time.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// AWS answered with an error.
    #[error("AWS answered HTTP {status} {code}{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl CallError {
    /// The AWS error code (`ResourceNotFoundException`), if AWS answered with one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            CallError::Api { code, .. } => Some(code),
            CallError::Http(_) => None,
        }
    }
}

/// Where requests to one service go: the URL and the `Host` header it implies.
pub(crate) struct Endpoint {
    url: String,
    host: String,
}

impl Endpoint {
    /// The configured URL of `service`, or its regional default.
    fn new(configured: Option<&str>, service: &str, region: &str) -> Endpoint {
        let url = match configured {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{service}.{region}.{suffix}")
            }
        };
        let host = url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
            .unwrap_or_default()
            .to_owned();
        Endpoint { url, host }
    }
}

/// A signed-call client for one AWS service.
pub(crate) struct Session {
    http: Client,
    endpoint: Endpoint,
    region: String,
    service: &'static str,
    credentials: Credentials,
}

impl Session {
    /// Builds the session of `service` (`secretsmanager`, `ssm`) from the configuration.
    pub(crate) fn new(
        service: &'static str,
        settings: &Settings<'_>,
        context: &mut Context<'_>,
    ) -> Result<Session, SessionError> {
        let (env, redactor) = (context.env, &mut *context.redactor);
        let session = settings.section("aws_session")?;
        let profile_name = session.string("aws_profile")?.map(str::to_owned);
        let profiles = Profiles::load(env, redactor);
        let profile = match &profile_name {
            Some(name) => Some(
                profiles
                    .get(name)
                    .ok_or_else(|| SessionError::NoProfile(name.clone()))?,
            ),
            None => profiles.get(&env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned())),
        };
        let region = match session.string("aws_region")? {
            Some(region) => region.to_owned(),
            None => env("AWS_REGION")
                .filter(|region| !region.is_empty())
                .or_else(|| env("AWS_DEFAULT_REGION").filter(|region| !region.is_empty()))
                .or_else(|| profile.and_then(|profile| profile.get("region").cloned()))
                .ok_or(SessionError::NoRegion)?,
        };
        let endpoint = Endpoint::new(url_setting(settings, "endpoint_url")?, service, &region);
        let http = Client::new(&TlsOptions::default(), context.deadline)?;
        let sts = Sts {
            http: &http,
            endpoint: Endpoint::new(
                url_setting(settings, "sts_endpoint_url")?
                    .map(str::to_owned)
                    .or_else(|| env("AWS_ENDPOINT_URL_STS").filter(|url| !url.is_empty()))
                    .as_deref(),
                "sts",
                &region,
            ),
            region: &region,
        };
        let source = Source {
            session: &session,
            profile_named: profile_name.is_some(),
            profile,
        };
        let mut credentials = credentials(&source, &sts, redactor, env)?;
        if let Some(role_arn) = session.string("aws_role_arn")? {
            let session_name = session
                .string("aws_role_session_name")?
                .unwrap_or(sts::SESSION_NAME);
            credentials = sts
                .assume_role(
                    &credentials,
                    role_arn,
                    session_name,
                    session.string("aws_external_id")?,
                )
                .map_err(|reason| SessionError::AssumeRole {
                    role_arn: role_arn.to_owned(),
                    reason,
                })?;
            redactor.add(&credentials.secret_access_key);
            if let Some(token) = &credentials.session_token {
                redactor.add(token);
            }
        }
        Ok(Session {
            http,
            endpoint,
            region,
            service,
            credentials,
        })
    }

    /// Calls `target` (`secretsmanager.GetSecretValue`) with a JSON body; returns the answer's
    /// body on HTTP 200.
    pub(crate) fn call(
        &self,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<Zeroizing<String>, CallError> {
        post(
            &self.http,
            &self.endpoint,
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", target),
            ],
            body.to_string().into_bytes(),
            Some((&self.credentials, &self.region, self.service)),
        )
    }
}

/// POSTs `body` to the endpoint, signed when `signer` is given; the answer's body on HTTP 200.
fn post(
    http: &Client,
    endpoint: &Endpoint,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    signer: Option<(&Credentials, &str, &str)>,
) -> Result<Zeroizing<String>, CallError> {
    let signed = match signer {
        Some((credentials, region, service)) => sigv4::sign(
            &sigv4::Unsigned {
                method: "POST",
                host: &endpoint.host,
                path: "/",
                headers,
                body: &body,
                region,
                service,
            },
            credentials,
            time::OffsetDateTime::now_utc(),
        ),
        None => Vec::new(),
    };
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.extend(signed.iter().map(|(name, value)| (*name, value.as_str())));
    let reply = http.send(
        Method::POST,
        &format!("{}/", endpoint.url),
        &all,
        Some(body),
    )?;
    if reply.status == 200 {
        return Ok(reply.body);
    }
    let (code, message) = error_details(&reply.body);
    Err(CallError::Api {
        status: reply.status,
        code: code.unwrap_or_default(),
        message: message
            .map(|message| format!(": {}", http::tidy(&message)))
            .unwrap_or_default(),
    })
}

/// An `http://` or `https://` URL setting.
fn url_setting<'a>(settings: &Settings<'a>, key: &str) -> Result<Option<&'a str>, SettingsError> {
    match settings.string(key)? {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(Some(url)),
        Some(_) => Err(settings.invalid(key, "must start with http:// or https://")),
        None => Ok(None),
    }
}

/// Where the base credentials may come from.
struct Source<'a, 's> {
    session: &'a Settings<'s>,
    /// Whether `aws_profile` names the profile (then it wins over the environment).
    profile_named: bool,
    profile: Option<&'a BTreeMap<String, String>>,
}

fn credentials(
    source: &Source<'_, '_>,
    sts: &Sts<'_>,
    redactor: &mut Redactor,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, SessionError> {
    let from = |id: Option<String>, secret: Option<String>, token: Option<String>| {
        let (id, secret) = (id?, secret?);
        Some(Credentials {
            access_key_id: id,
            secret_access_key: Zeroizing::new(secret),
            session_token: token.filter(|token| !token.is_empty()).map(Zeroizing::new),
        })
    };
    let session = source.session;
    let id = session.string("aws_access_key_id")?;
    let secret = session.string("aws_secret_access_key")?;
    let configured = match (id, secret) {
        (Some(id), Some(secret)) => from(
            Some(id.to_owned()),
            Some(secret.to_owned()),
            session.string("aws_session_token")?.map(str::to_owned),
        ),
        (None, None) => None,
        (Some(_), None) => {
            return Err(session
                .invalid(
                    "aws_secret_access_key",
                    "is required with aws_access_key_id",
                )
                .into());
        }
        (None, Some(_)) => {
            return Err(session
                .invalid(
                    "aws_access_key_id",
                    "is required with aws_secret_access_key",
                )
                .into());
        }
    };
    let from_profile = || {
        let profile = source.profile?;
        from(
            profile.get("aws_access_key_id").cloned(),
            profile.get("aws_secret_access_key").cloned(),
            profile.get("aws_session_token").cloned(),
        )
    };
    let from_env = || {
        from(
            env("AWS_ACCESS_KEY_ID").filter(|id| !id.is_empty()),
            env("AWS_SECRET_ACCESS_KEY").filter(|secret| !secret.is_empty()),
            env("AWS_SESSION_TOKEN"),
        )
    };
    let found = if source.profile_named {
        configured.or_else(from_profile)
    } else {
        match configured.or_else(from_env) {
            Some(found) => Some(found),
            None => match web_identity(sts, redactor, env)? {
                Some(found) => Some(found),
                None => from_profile(),
            },
        }
    };
    let found = found.ok_or(SessionError::NoCredentials)?;
    redactor.add(&found.secret_access_key);
    if let Some(token) = &found.session_token {
        redactor.add(token);
    }
    Ok(found)
}

/// Credentials for the role of `AWS_ROLE_ARN` in exchange for the token in
/// `AWS_WEB_IDENTITY_TOKEN_FILE` (EKS IRSA), when both are set.
fn web_identity(
    sts: &Sts<'_>,
    redactor: &mut Redactor,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, SessionError> {
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    let (Some(token_file), Some(role_arn)) =
        (set("AWS_WEB_IDENTITY_TOKEN_FILE"), set("AWS_ROLE_ARN"))
    else {
        return Ok(None);
    };
    let failed = |reason: String| SessionError::WebIdentity {
        role_arn: role_arn.clone(),
        reason,
    };
    let token =
        crate::backends::file::read_text(std::path::Path::new(&token_file), MAX_PROFILE_FILE)
            .map_err(|error| failed(format!("AWS_WEB_IDENTITY_TOKEN_FILE: {error}")))?;
    let token = Zeroizing::new(token.trim().to_owned());
    redactor.add(&token);
    let session_name = set("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| sts::SESSION_NAME.to_owned());
    sts.assume_role_with_web_identity(&role_arn, &session_name, &token)
        .map(Some)
        .map_err(failed)
}

/// The profiles of the shared credentials and config files, merged (credentials file first).
struct Profiles {
    profiles: BTreeMap<String, BTreeMap<String, String>>,
}

impl Profiles {
    /// Reads both files; a missing or unreadable file contributes nothing.
    fn load(env: &dyn Fn(&str) -> Option<String>, redactor: &mut Redactor) -> Profiles {
        let home = env("HOME").map(PathBuf::from);
        let path = |variable: &str, default: &str| {
            env(variable)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
        };
        let mut profiles: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (file, is_config) in [
            (path("AWS_SHARED_CREDENTIALS_FILE", "credentials"), false),
            (path("AWS_CONFIG_FILE", "config"), true),
        ] {
            let Some(text) = file
                .and_then(|file| crate::backends::file::read_text(&file, MAX_PROFILE_FILE).ok())
            else {
                continue;
            };
            for (name, values) in parse_ini(&text, is_config) {
                let profile = profiles.entry(name).or_default();
                for (key, value) in values {
                    if key.contains("secret") || key.contains("token") {
                        redactor.add(&value);
                    }
                    profile.entry(key).or_insert(value);
                }
            }
        }
        Profiles { profiles }
    }

    fn get(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.profiles.get(name)
    }
}

/// Sections of an AWS INI file. In the config file, `[profile NAME]` names profile `NAME`.
fn parse_ini(text: &str, is_config: bool) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            let header = header.trim();
            let name = match header.strip_prefix("profile ") {
                Some(name) if is_config => name.trim(),
                _ => header,
            };
            sections.push((name.to_owned(), Vec::new()));
        } else if let (Some((key, value)), Some((_, values))) =
            (line.split_once('='), sections.last_mut())
        {
            values.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    sections
}

/// The error code and message of an AWS error answer: JSON (`__type`, `message`) from the
/// services, XML (`<Code>`, `<Message>`) from the signature checker.
fn error_details(body: &str) -> (Option<String>, Option<String>) {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) {
        let code = map
            .get("__type")
            .and_then(|code| code.as_str())
            .map(|code| code.rsplit('#').next().unwrap_or(code).to_owned());
        let message = ["message", "Message"]
            .iter()
            .find_map(|key| map.get(*key).and_then(|message| message.as_str()))
            .map(str::to_owned);
        return (code, message);
    }
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_owned())
    };
    (tag("Code"), tag("Message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_profiles() {
        let text = "# c\n[default]\naws_access_key_id = AKIA1\nregion=eu-west-1\n\n\
                    [profile dev]\nregion = us-east-2\n[plain]\nkey = v = w\n";
        let sections = parse_ini(text, true);
        let names: Vec<&str> = sections.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["default", "dev", "plain"]);
        assert_eq!(sections[2].1, [("key".to_owned(), "v = w".to_owned())]);
        assert_eq!(parse_ini("[profile dev]\n", false)[0].0, "profile dev");
    }

    #[test]
    fn error_details_from_json_and_xml() {
        assert_eq!(
            error_details(r#"{"__type":"com.amazon#ResourceNotFoundException","message":"no"}"#),
            (Some("ResourceNotFoundException".into()), Some("no".into()))
        );
        assert_eq!(
            error_details(
                "<ErrorResponse><Error><Code>InvalidSignatureException</Code><Message>bad sig</Message></Error></ErrorResponse>"
            ),
            (
                Some("InvalidSignatureException".into()),
                Some("bad sig".into())
            )
        );
        assert_eq!(error_details("garbage"), (None, None));
    }
}
