//! Credentials served over HTTP where the process runs: the container credentials endpoint
//! (ECS task roles, EKS pod identity) and EC2 instance metadata (IMDSv2).
//!
//! Container: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (under `http://169.254.170.2`) or
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`, which must be HTTPS or plain HTTP to a loopback
//! address or the ECS / EKS link-local hosts, as the AWS SDKs require (anything else would send
//! the authorization token in clear across a network). The token comes from
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at every fetch: EKS rotates it) or
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN` and goes, as it is, in the `Authorization` header.
//!
//! IMDS: `PUT /latest/api/token` for a session token, then
//! `GET /latest/meta-data/iam/security-credentials/` for the role and `.../<role>` for its
//! credentials, each with the token in `X-aws-ec2-metadata-token`. IMDSv1 (no token) is never
//! used. Each request is given at most [`IMDS_TIMEOUT`] (as the SDKs do), so a host outside EC2
//! finds out in a second, not at the end of the run's deadline.
//!
//! Invariant: tokens and credentials are given to `register` before any use; error texts carry
//! status codes and the server's error message, never an answer that held credentials.

use std::time::Duration;

use serde::Deserialize;
use ureq::http::{Method, Uri};
use zeroize::Zeroizing;

use super::chain::set;
use super::{Credentials, MAX_PROFILE_FILE, SessionError};
use crate::http::{self, Client, HttpError, TlsOptions};
use crate::schedule::Deadline;

/// Longest wait for one instance metadata request.
pub(super) const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// The ECS container credentials host, for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_HOST: &str = "http://169.254.170.2";

/// Plain-HTTP hosts allowed in `AWS_CONTAINER_CREDENTIALS_FULL_URI` besides loopback: the ECS
/// and EKS pod identity agents.
const CONTAINER_HOSTS: [&str; 3] = ["169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"];

/// Lifetime asked for an IMDSv2 session token (the SDKs' default).
const IMDS_TOKEN_TTL: &str = "21600";

/// A container credentials endpoint.
#[derive(Clone)]
pub(crate) struct Container {
    pub(crate) url: String,
    authorization: Option<Authorization>,
}

#[derive(Clone)]
enum Authorization {
    Token(Zeroizing<String>),
    File(String),
}

/// The credentials document of both endpoints.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Zeroizing<String>,
    #[serde(rename = "Token", default)]
    token: Option<Zeroizing<String>>,
    #[serde(rename = "Expiration", default)]
    expiration: Option<String>,
}

impl Container {
    /// The endpoint the environment names, if any.
    pub(crate) fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Container>, SessionError> {
        let url = if let Some(relative) = set(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!("{ECS_HOST}/{}", relative.trim_start_matches('/'))
        } else if let Some(full) = set(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            check_full_uri(&full).map_err(|reason| SessionError::Source {
                origin: "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(),
                reason,
            })?;
            full
        } else {
            return Ok(None);
        };
        let authorization = set(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
            .map(Authorization::File)
            .or_else(|| {
                set(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN")
                    .map(|token| Authorization::Token(Zeroizing::new(token)))
            });
        Ok(Some(Container { url, authorization }))
    }

    /// Asks the endpoint for credentials.
    pub(crate) fn fetch(
        &self,
        deadline: Deadline,
        register: &mut dyn FnMut(&str),
    ) -> Result<Credentials, String> {
        let token = match &self.authorization {
            None => None,
            Some(Authorization::Token(token)) => Some(token.clone()),
            Some(Authorization::File(path)) => {
                let text =
                    crate::backends::file::read_text(std::path::Path::new(path), MAX_PROFILE_FILE)
                        .map_err(|error| {
                            format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: {error}")
                        })?;
                Some(Zeroizing::new(text.trim().to_owned()))
            }
        };
        let mut headers = vec![("accept", "application/json")];
        if let Some(token) = &token {
            register(token);
            headers.push(("authorization", token.as_str()));
        }
        let client = Client::new(&TlsOptions::default(), deadline).map_err(|e| e.to_string())?;
        let reply = client
            .send(Method::GET, &self.url, &headers, None)
            .map_err(|error| error.to_string())?;
        if reply.status != 200 {
            return Err(format!(
                "HTTP {}: {}",
                reply.status,
                http::tidy(&reply.body)
            ));
        }
        credentials(&reply.body, register)
    }
}

/// Plain HTTP only to loopback or the ECS / EKS agents; HTTPS anywhere.
fn check_full_uri(full: &str) -> Result<(), String> {
    let uri: Uri = full.parse().map_err(|_| "is not a valid URL".to_owned())?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http")
            if host == "localhost"
                || host == "[::1]"
                || host.starts_with("127.")
                || CONTAINER_HOSTS.contains(&host) =>
        {
            Ok(())
        }
        Some("http") => Err(format!(
            "plain http is allowed only to a loopback address or {}, not to {host}",
            CONTAINER_HOSTS.join(", ")
        )),
        _ => Err("must start with http:// or https://".to_owned()),
    }
}

/// The instance metadata endpoint: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the IPv4 or
/// (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`) IPv6 address.
pub(super) fn imds_endpoint(env: &dyn Fn(&str) -> Option<String>) -> String {
    match set(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
        None if set(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
            .is_some_and(|mode| mode.eq_ignore_ascii_case("ipv6")) =>
        {
            "http://[fd00:ec2::254]".to_owned()
        }
        None => "http://169.254.169.254".to_owned(),
    }
}

/// The instance's region (`placement/region`), by IMDSv2.
pub(super) fn imds_region(
    endpoint: &str,
    deadline: Deadline,
    register: &mut dyn FnMut(&str),
) -> Result<String, String> {
    let send = imds_sender(endpoint, deadline);
    let token = imds_token(&send, register)?;
    let region = send(
        Method::GET,
        "/latest/meta-data/placement/region",
        &[("x-aws-ec2-metadata-token", token.as_str())],
    )?;
    let region = region.trim();
    if region.is_empty()
        || !region
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    {
        return Err("unexpected answer for the region".to_owned());
    }
    Ok(region.to_owned())
}

type ImdsSend<'a> =
    Box<dyn Fn(Method, &str, &[(&str, &str)]) -> Result<Zeroizing<String>, String> + 'a>;

/// One IMDS request within [`IMDS_TIMEOUT`]: the body on HTTP 200.
fn imds_sender(endpoint: &str, deadline: Deadline) -> ImdsSend<'_> {
    Box::new(
        move |method: Method, path: &str, headers: &[(&str, &str)]| {
            let client = Client::new(&TlsOptions::default(), deadline.capped(IMDS_TIMEOUT))
                .map_err(|error| error.to_string())?;
            let reply = client
                .send(method, &format!("{endpoint}{path}"), headers, None)
                .map_err(|error| match error {
                    HttpError::Timeout(_) => format!("{path}: no answer within {IMDS_TIMEOUT:?}"),
                    other => other.to_string(),
                })?;
            if reply.status == 200 {
                Ok(reply.body)
            } else {
                Err(format!("{path}: HTTP {}", reply.status))
            }
        },
    )
}

/// An IMDSv2 session token.
fn imds_token(
    send: &ImdsSend<'_>,
    register: &mut dyn FnMut(&str),
) -> Result<Zeroizing<String>, String> {
    let token = send(
        Method::PUT,
        "/latest/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL)],
    )?;
    let token = Zeroizing::new(token.trim().to_owned());
    register(&token);
    Ok(token)
}

/// The instance role's credentials, by IMDSv2.
pub(super) fn imds(
    endpoint: &str,
    deadline: Deadline,
    register: &mut dyn FnMut(&str),
) -> Result<Credentials, String> {
    let send = imds_sender(endpoint, deadline);
    let token = imds_token(&send, register)?;
    let with_token = [("x-aws-ec2-metadata-token", token.as_str())];
    let roles = send(
        Method::GET,
        "/latest/meta-data/iam/security-credentials/",
        &with_token,
    )
    .map_err(|reason| format!("{reason} (no IAM role attached to the instance?)"))?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .ok_or("no IAM role is attached to the instance")?
        .to_owned();
    let body = send(
        Method::GET,
        &format!(
            "/latest/meta-data/iam/security-credentials/{}",
            http::encode_path(&role)
        ),
        &with_token,
    )?;
    credentials(&body, register)
}

/// Credentials from the JSON document both endpoints serve.
fn credentials(body: &str, register: &mut dyn FnMut(&str)) -> Result<Credentials, String> {
    let answer: Answer =
        serde_json::from_str(body).map_err(|_| "unexpected answer (not a credentials document)")?;
    register(&answer.secret_access_key);
    if let Some(token) = &answer.token {
        register(token);
    }
    let expires = answer
        .expiration
        .as_deref()
        .map(super::parse_time)
        .transpose()
        .map_err(|_| "unreadable Expiration in the answer".to_owned())?;
    Ok(Credentials {
        access_key_id: answer.access_key_id,
        secret_access_key: answer.secret_access_key,
        session_token: answer.token.filter(|token| !token.is_empty()),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_uri_rules() {
        for (uri, ok) in [
            ("https://creds.example/x", true),
            ("http://127.0.0.1:8080/creds", true),
            ("http://localhost/creds", true),
            ("http://[::1]:1/creds", true),
            ("http://169.254.170.23/v1/credentials", true),
            ("http://169.254.170.2/creds", true),
            ("http://evil.example/creds", false),
            ("http://127.0.0.1@evil.example/creds", false),
            ("ftp://127.0.0.1/creds", false),
        ] {
            assert_eq!(check_full_uri(uri).is_ok(), ok, "{uri}");
        }
    }

    #[test]
    fn credentials_documents() {
        let mut seen = Vec::new();
        let credentials = credentials(
            r#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"sk-1234",
                "Token":"tok-5678","Expiration":"2030-01-01T00:00:00Z"}"#,
            &mut |secret: &str| seen.push(secret.to_owned()),
        )
        .unwrap();
        assert_eq!(credentials.access_key_id, "ASIA1");
        assert_eq!(
            credentials.expires,
            Some(time::macros::datetime!(2030-01-01 00:00:00 UTC))
        );
        assert_eq!(seen, ["sk-1234", "tok-5678"]);
        let error = credentials_error(r#"{"AccessKeyId":"ASIA1","SecretAccessKey":"sk-1234""#);
        assert!(!error.contains("sk-1234"), "{error}");
    }

    fn credentials_error(body: &str) -> String {
        match credentials(body, &mut |_| {}) {
            Ok(_) => panic!("accepted {body}"),
            Err(error) => error,
        }
    }
}
