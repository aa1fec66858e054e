//! What `aws.secrets` and `aws.ssm` share: the session (region, credentials, endpoint) and one
//! signed JSON call.
//!
//! Config, as Datadog's connector names it: `aws_session: {aws_region, aws_access_key_id,
//! aws_secret_access_key, aws_session_token, aws_profile}`; plus ours `endpoint_url` (another
//! endpoint: a VPC endpoint, a FIPS endpoint, a test server).
//!
//! Credentials, first found wins: the static keys of `aws_session`; the named `aws_profile` of
//! the shared files when one is configured; the `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN` environment variables; the profile `AWS_PROFILE` (or `default`) of
//! `~/.aws/credentials` and `~/.aws/config` (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`).
//! Region: `aws_region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
//! Instance roles (IMDS), container credentials, web identity (IRSA), SSO and `aws_role_arn`
//! are not supported: the configuration is refused with a message saying so.
//!
//! Invariant: every secret key and session token is registered with the [`Redactor`] as soon
//! as it is read; they leave the process only inside a SigV4 signature or the
//! `x-amz-security-token` header.

pub(crate) mod secrets;
mod sigv4;
pub(crate) mod ssm;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ureq::http::Method;
use zeroize::Zeroizing;

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
         in ~/.aws/credentials (instance roles, IRSA and SSO are not supported)"
    )]
    NoCredentials,
    /// No region was found anywhere.
    #[error("no AWS region: set aws_session.aws_region, AWS_REGION or a profile region")]
    NoRegion,
    /// A profile was named but is not in the shared files.
    #[error("AWS profile {0:?} not found in the shared credentials or config file")]
    NoProfile(String),
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

/// A signed-call client for one AWS service.
pub(crate) struct Session {
    http: Client,
    endpoint: String,
    host: String,
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
        for unsupported in ["aws_role_arn", "aws_external_id"] {
            if session.string(unsupported)?.is_some() {
                return Err(session
                    .invalid(unsupported, "is not supported by keyturn-backend")
                    .into());
            }
        }
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
        let credentials = credentials(&session, profile_name.is_some(), profile, redactor, env)?;
        let region = match session.string("aws_region")? {
            Some(region) => region.to_owned(),
            None => env("AWS_REGION")
                .filter(|region| !region.is_empty())
                .or_else(|| env("AWS_DEFAULT_REGION").filter(|region| !region.is_empty()))
                .or_else(|| profile.and_then(|profile| profile.get("region").cloned()))
                .ok_or(SessionError::NoRegion)?,
        };
        let endpoint = match settings.string("endpoint_url")? {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            Some(_) => {
                return Err(settings
                    .invalid("endpoint_url", "must start with http:// or https://")
                    .into());
            }
            None => {
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{service}.{region}.{suffix}")
            }
        };
        let host = endpoint
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
            .unwrap_or_default()
            .to_owned();
        let http = Client::new(&TlsOptions::default(), context.deadline)?;
        Ok(Session {
            http,
            endpoint,
            host,
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
        let body = body.to_string().into_bytes();
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let signed = sigv4::sign(
            &sigv4::Unsigned {
                method: "POST",
                host: &self.host,
                path: "/",
                headers: &headers,
                body: &body,
                region: &self.region,
                service: self.service,
            },
            &self.credentials,
            time::OffsetDateTime::now_utc(),
        );
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.extend(signed.iter().map(|(name, value)| (*name, value.as_str())));
        let reply = self.http.send(
            Method::POST,
            &format!("{}/", self.endpoint),
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
}

fn credentials(
    session: &Settings<'_>,
    profile_named: bool,
    profile: Option<&BTreeMap<String, String>>,
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
        let profile = profile?;
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
    let found = if profile_named {
        configured.or_else(from_profile)
    } else {
        configured.or_else(from_env).or_else(from_profile)
    };
    let found = found.ok_or(SessionError::NoCredentials)?;
    redactor.add(&found.secret_access_key);
    if let Some(token) = &found.session_token {
        redactor.add(token);
    }
    Ok(found)
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
