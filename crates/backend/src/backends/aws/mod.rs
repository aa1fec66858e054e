//! What `aws.secrets` and `aws.ssm` share: the session (region, credentials, endpoint) and one
//! signed JSON call.
//!
//! Config, as Datadog's connector names it: `aws_session: {aws_region, aws_access_key_id,
//! aws_secret_access_key, aws_session_token, aws_profile, aws_role_arn, aws_external_id}`; plus
//! ours `aws_session.aws_role_session_name`, `endpoint_url` (another endpoint for the service: a
//! VPC or FIPS endpoint, a test server) and `sts_endpoint_url` (else `AWS_ENDPOINT_URL_STS`).
//!
//! Credentials come from the [chain] (static keys, profiles with their role chains and
//! `credential_process`, environment, web identity, container credentials, instance metadata);
//! with `aws_role_arn`, those credentials then assume that role (`sts:AssumeRole`). Temporary
//! credentials are fetched again from their source when they come within [`REFRESH_MARGIN`] of
//! their expiry, so a long run never signs with expired keys.
//! Region: `aws_region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, then the
//! instance's region from instance metadata.
//!
//! Invariant: every secret key and session token is registered with the [`Redactor`] as soon
//! as it is read (those obtained by a refresh inside a worker thread are kept in the session and
//! registered by [`Session::register_refreshed`] before the errors are scrubbed); they leave the
//! process only inside a SigV4 signature or the `x-amz-security-token` header.

mod chain;
pub(crate) mod iam_login;
mod process;
mod remote;
pub(crate) mod secrets;
mod sigv4;
pub(crate) mod ssm;
mod sts;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use ureq::http::Method;
use zeroize::Zeroizing;

use self::chain::{Profiles, Provider, Sources};
use self::sts::Sts;
use crate::backends::Context;
use crate::http::{self, Client, HttpError, TlsOptions};
use crate::redact::Redactor;
use crate::schedule::Deadline;
use crate::settings::{Settings, SettingsError};

/// Largest shared credentials or config file, token file or credentials document read.
const MAX_PROFILE_FILE: u64 = 1024 * 1024;

/// Temporary credentials this close to their expiry are fetched again before the next call.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// AWS credentials.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Zeroizing<String>,
    pub(crate) session_token: Option<Zeroizing<String>>,
    /// When temporary credentials expire; `None` for long-term keys.
    pub(crate) expires: Option<OffsetDateTime>,
}

impl Credentials {
    /// Whether these credentials should be fetched again before signing at `now`.
    fn needs_refresh(&self, now: OffsetDateTime) -> bool {
        self.expires
            .is_some_and(|expires| expires - now < REFRESH_MARGIN)
    }
}

/// A failure of the whole backend, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The configuration is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No credentials were found anywhere; the text says why the last resort gave none.
    #[error(
        "no AWS credentials: set aws_session.aws_access_key_id and aws_secret_access_key, \
         the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables, a profile \
         in ~/.aws/credentials, a web identity, container credentials or an instance role{0}"
    )]
    NoCredentials(String),
    /// No region was found anywhere.
    #[error("no AWS region: set aws_session.aws_region, AWS_REGION or a profile region{0}")]
    NoRegion(String),
    /// A profile was named but is not in the shared files.
    #[error("AWS profile {0:?} not found in the shared credentials or config file")]
    NoProfile(String),
    /// A profile cannot give credentials.
    #[error("AWS profile {name:?}: {reason}")]
    Profile { name: String, reason: String },
    /// A configured source of credentials failed.
    #[error("cannot get AWS credentials from {origin}: {reason}")]
    Source { origin: String, reason: String },
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
    /// Credentials expired and could not be fetched again.
    #[error("{0}")]
    Refresh(String),
}

impl CallError {
    /// The AWS error code (`ResourceNotFoundException`), if AWS answered with one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            CallError::Api { code, .. } => Some(code),
            CallError::Http(_) | CallError::Refresh(_) => None,
        }
    }
}

/// Where requests to one service go: the URL and the `Host` header it implies.
#[derive(Clone)]
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

/// Credentials, their source, and what a refresh registered.
pub(crate) struct Identity {
    provider: Provider,
    sts: Sts,
    deadline: Deadline,
    current: Mutex<Arc<Credentials>>,
    /// Secrets obtained by refreshes, for the redactor.
    refreshed: Mutex<Vec<Zeroizing<String>>>,
    pub(crate) region: String,
}

impl Identity {
    /// Resolves the credential chain of `settings` (the `aws_session` keys, `sts_endpoint_url`)
    /// and fetches the first credentials.
    pub(crate) fn new(
        settings: &Settings<'_>,
        context: &mut Context<'_>,
    ) -> Result<Identity, SessionError> {
        let session = settings.section("aws_session")?;
        let sts_url = url_setting(settings, "sts_endpoint_url")?;
        Identity::from_section(&session, sts_url, None, context)
    }

    /// [`Identity::new`] from a section holding the `aws_*` keys, with the STS endpoint given
    /// and a region to fall back on.
    pub(crate) fn from_section(
        session: &Settings<'_>,
        sts_url: Option<&str>,
        default_region: Option<&str>,
        context: &mut Context<'_>,
    ) -> Result<Identity, SessionError> {
        let (env, redactor) = (context.env, &mut *context.redactor);
        let profile_named = session.string("aws_profile")?;
        let profiles = Profiles::load(env, redactor);
        let profile = match profile_named {
            Some(name) => Some(
                profiles
                    .get(name)
                    .ok_or_else(|| SessionError::NoProfile(name.to_owned()))?,
            ),
            None => profiles
                .get(&chain::set(env, "AWS_PROFILE").unwrap_or_else(|| "default".to_owned())),
        };
        let configured = match session.string("aws_region")? {
            Some(region) => Some(region.to_owned()),
            None => chain::set(env, "AWS_REGION")
                .or_else(|| chain::set(env, "AWS_DEFAULT_REGION"))
                .or_else(|| profile.and_then(|profile| profile.get("region").cloned()))
                .or_else(|| default_region.map(str::to_owned)),
        };
        // As the SDKs do on EC2: the instance's own region, unless instance metadata is off.
        let region = match configured {
            Some(region) => region,
            None if chain::imds_disabled(env) => return Err(SessionError::NoRegion(String::new())),
            None => {
                let endpoint = remote::imds_endpoint(env);
                remote::imds_region(&endpoint, context.deadline, &mut |secret| {
                    redactor.add(secret);
                })
                .map_err(|reason| {
                    SessionError::NoRegion(format!(
                        "; the EC2 instance metadata service at {endpoint} gave none: {reason}"
                    ))
                })?
            }
        };
        let sts = Sts {
            http: Client::new(&TlsOptions::default(), context.deadline)?,
            endpoint: Endpoint::new(
                sts_url
                    .map(str::to_owned)
                    .or_else(|| chain::set(env, "AWS_ENDPOINT_URL_STS"))
                    .as_deref(),
                "sts",
                &region,
            ),
            region: region.clone(),
        };
        let mut provider = chain::resolve(&Sources {
            session,
            profile_named,
            profiles: &profiles,
            env,
        })?;
        if let Some(role_arn) = session.string("aws_role_arn")? {
            provider = Provider::AssumeRole {
                base: Box::new(provider),
                role_arn: role_arn.to_owned(),
                session_name: session
                    .string("aws_role_session_name")?
                    .unwrap_or(sts::SESSION_NAME)
                    .to_owned(),
                external_id: session.string("aws_external_id")?.map(str::to_owned),
            };
        }
        let credentials =
            provider.fetch(&sts, context.deadline, &mut |secret| redactor.add(secret))?;
        Ok(Identity {
            provider,
            sts,
            deadline: context.deadline,
            current: Mutex::new(Arc::new(credentials)),
            refreshed: Mutex::new(Vec::new()),
            region,
        })
    }

    /// Credentials to sign with now: the current ones, fetched again first when they are
    /// within [`REFRESH_MARGIN`] of their expiry. One refresh at a time (the others wait for
    /// its result); when it fails, credentials that have not yet expired are still used.
    pub(crate) fn credentials(&self) -> Result<Arc<Credentials>, CallError> {
        // A poisoned lock only means a worker panicked; the credentials are still whole.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let now = OffsetDateTime::now_utc();
        if !current.needs_refresh(now) {
            return Ok(Arc::clone(&current));
        }
        let mut found = Vec::new();
        let fetched = self
            .provider
            .fetch(&self.sts, self.deadline, &mut |secret| {
                found.push(Zeroizing::new(secret.to_owned()));
            });
        self.refreshed
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend(found);
        match fetched {
            Ok(fresh) => *current = Arc::new(fresh),
            Err(error) if current.expires.is_some_and(|expires| expires <= now) => {
                return Err(CallError::Refresh(format!(
                    "the AWS credentials expired and could not be fetched again: {error}"
                )));
            }
            Err(_) => {}
        }
        Ok(Arc::clone(&current))
    }

    /// Registers the secrets obtained by refreshes with `redactor`.
    pub(crate) fn register_refreshed(&self, redactor: &mut Redactor) {
        for secret in self
            .refreshed
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
        {
            redactor.add(secret);
        }
    }
}

/// A signed-call client for one AWS service.
pub(crate) struct Session {
    http: Client,
    endpoint: Endpoint,
    service: &'static str,
    identity: Identity,
}

impl Session {
    /// Builds the session of `service` (`secretsmanager`, `ssm`) from the configuration.
    pub(crate) fn new(
        service: &'static str,
        settings: &Settings<'_>,
        context: &mut Context<'_>,
    ) -> Result<Session, SessionError> {
        let identity = Identity::new(settings, context)?;
        let endpoint = Endpoint::new(
            url_setting(settings, "endpoint_url")?,
            service,
            &identity.region,
        );
        Ok(Session {
            http: Client::new(&TlsOptions::default(), context.deadline)?,
            endpoint,
            service,
            identity,
        })
    }

    /// Calls `target` (`secretsmanager.GetSecretValue`) with a JSON body; returns the answer's
    /// body on HTTP 200.
    pub(crate) fn call(
        &self,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<Zeroizing<String>, CallError> {
        let credentials = self.identity.credentials()?;
        post(
            &self.http,
            &self.endpoint,
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", target),
            ],
            body.to_string().into_bytes(),
            Some((&credentials, &self.identity.region, self.service)),
        )
    }

    /// Registers the secrets obtained by credential refreshes with `redactor`.
    pub(crate) fn register_refreshed(&self, redactor: &mut Redactor) {
        self.identity.register_refreshed(redactor);
    }
}

/// An RFC 3339 time (`Expiration` of AWS credentials).
fn parse_time(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
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
    fn temporary_credentials_are_refreshed_within_the_margin() {
        let now = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let with = |expires: Option<OffsetDateTime>| Credentials {
            access_key_id: "ASIA1".to_owned(),
            secret_access_key: Zeroizing::new("s".to_owned()),
            session_token: None,
            expires,
        };
        assert!(!with(None).needs_refresh(now));
        assert!(!with(Some(now + time::Duration::seconds(61))).needs_refresh(now));
        assert!(with(Some(now + time::Duration::seconds(59))).needs_refresh(now));
        assert!(with(Some(now - time::Duration::seconds(1))).needs_refresh(now));
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
