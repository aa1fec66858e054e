//! The dispatcher: one request in, one answer for every handle out.
//!
//! [`resolve`] checks the payload version, selects the backend named by `type`, runs it, and
//! turns whatever failed into per-handle errors: a failure of the whole backend (bad config,
//! unreachable server, refused login) becomes the error of every handle, a failure of one handle
//! stays with that handle. Every error text passes through the [`Redactor`] on the way out.
//!
//! Each backend module exposes `resolve(settings, handles, ...) -> Result<Vec<Outcome>, E>`:
//! `Ok` holds one outcome per handle, in the order given; `Err` fails them all.

pub(crate) mod aws;
pub(crate) mod azure;
pub(crate) mod dir;
pub(crate) mod file;
pub(crate) mod gcp;
pub(crate) mod k8s;
pub(crate) mod oauth;
pub(crate) mod vault;

use std::collections::BTreeSet;
use std::time::Instant;

use keyturn_protocol::{Entry, Request, Response};
use zeroize::Zeroizing;

use crate::redact::Redactor;
use crate::schedule::Deadline;
use crate::settings::Settings;

/// The result for one handle: its secret text, or why it could not be resolved.
pub(crate) type Outcome = Result<Zeroizing<String>, String>;

/// What every remote backend needs besides its settings and handles.
pub(crate) struct Context<'a> {
    /// When the answer is due.
    pub(crate) deadline: Deadline,
    /// Where credentials are registered as they are read or obtained.
    pub(crate) redactor: &'a mut Redactor,
    /// Environment lookup (`std::env::var` in production).
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

/// Payload versions this binary answers: `1.0` (older Agents, docs) and `1.1` (current Agents
/// and keyturn). They differ only by `secret_backend_timeout`, which is optional here.
const SUPPORTED_VERSIONS: [&str; 2] = ["1.0", "1.1"];

/// Every backend type, as named in the payload's `type` (shared with keyturn, which checks
/// its settings against it).
pub(crate) use keyturn_protocol::BUILTIN_TYPES as TYPES;

/// Resolves every handle of `request`, which arrived at `started`.
pub(crate) fn resolve(request: &Request, started: Instant) -> Response {
    let mut seen = BTreeSet::new();
    let handles: Vec<&str> = request
        .secrets
        .iter()
        .map(String::as_str)
        .filter(|handle| seen.insert(*handle))
        .collect();
    let mut redactor = Redactor::from_config(request.config.as_ref());
    // Vector's `exec` backend sends no timeout: its users can put theirs in the config.
    let timeout = request.secret_backend_timeout.or_else(|| {
        Settings::new(request.config.as_ref())
            .u64("secret_backend_timeout")
            .ok()
            .flatten()
    });
    let deadline = Deadline::for_request(started, timeout);
    let outcomes = dispatch(request, &handles, deadline, &mut redactor);
    handles
        .iter()
        .zip(outcomes)
        .map(|(handle, outcome)| {
            let entry = match outcome {
                Ok(value) => Entry {
                    value: Some(value),
                    error: None,
                },
                Err(error) => Entry::error(redactor.scrub(&error)),
            };
            ((*handle).to_owned(), entry)
        })
        .collect()
}

/// Answers every handle of `request` with the same error (a failure found before any backend
/// ran, such as an unreadable `--config-file`).
pub(crate) fn fail_request(request: &Request, error: &str) -> Response {
    let redactor = Redactor::from_config(request.config.as_ref());
    request
        .secrets
        .iter()
        .map(|handle| (handle.clone(), Entry::error(redactor.scrub(error))))
        .collect()
}

/// Runs the selected backend; always one outcome per handle.
fn dispatch(
    request: &Request,
    handles: &[&str],
    deadline: Deadline,
    redactor: &mut Redactor,
) -> Vec<Outcome> {
    if !SUPPORTED_VERSIONS.contains(&request.version.as_str()) {
        return fail_all(
            handles,
            format!(
                "unsupported payload version {:?}: keyturn-backend speaks {}",
                request.version,
                SUPPORTED_VERSIONS.join(" and ")
            ),
        );
    }
    let settings = Settings::new(request.config.as_ref());
    let env = |name: &str| std::env::var(name).ok();
    let mut context = Context {
        deadline,
        redactor,
        env: &env,
    };
    let result = match request.backend_type.as_deref() {
        None => Err(format!(
            "the request names no backend `type`; keyturn-backend needs one of: {}",
            TYPES.join(", ")
        )),
        Some("file.json") => file::resolve(file::Format::Json, &settings, handles).map_err(fail),
        Some("file.yaml") => file::resolve(file::Format::Yaml, &settings, handles).map_err(fail),
        Some("file.text") => dir::resolve(dir::Kind::Text, &settings, handles).map_err(fail),
        Some("k8s.file") => dir::resolve(dir::Kind::Kubernetes, &settings, handles).map_err(fail),
        Some("docker.secrets") => dir::resolve(dir::Kind::Docker, &settings, handles).map_err(fail),
        Some("hashicorp.vault") => vault::resolve(&settings, handles, &mut context).map_err(fail),
        Some("aws.secrets") => {
            aws::secrets::resolve(&settings, handles, &mut context).map_err(fail)
        }
        Some("aws.ssm") => aws::ssm::resolve(&settings, handles, &mut context).map_err(fail),
        Some("k8s.secrets") => k8s::resolve(&settings, handles, &mut context).map_err(fail),
        Some("gcp.secretmanager") => gcp::resolve(&settings, handles, &mut context).map_err(fail),
        Some("azure.keyvault") => azure::resolve(&settings, handles, &mut context).map_err(fail),
        Some(other) => Err(format!(
            "unknown backend type {other:?}; keyturn-backend knows: {}",
            TYPES.join(", ")
        )),
    };
    match result {
        Ok(outcomes) if outcomes.len() == handles.len() => outcomes,
        Ok(_) => fail_all(
            handles,
            "internal error: the backend did not answer every handle".to_owned(),
        ),
        Err(error) => fail_all(handles, error),
    }
}

fn fail(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn fail_all(handles: &[&str], error: String) -> Vec<Outcome> {
    handles.iter().map(|_| Err(error.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Request {
        Request::from_json(json.as_bytes()).unwrap()
    }

    fn errors(response: &Response) -> Vec<(&str, &str)> {
        response
            .iter()
            .map(|(handle, entry)| (handle.as_str(), entry.error.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn whole_request_failures_become_per_handle_errors() {
        for (json, expected) in [
            (
                r#"{"version":"1.1","secrets":["a","b","a"]}"#,
                "the request names no backend `type`",
            ),
            (
                r#"{"version":"1.1","secrets":["a","b"],"type":"nope"}"#,
                "unknown backend type \"nope\"",
            ),
            (
                r#"{"version":"2.0","secrets":["a","b"],"type":"file.json"}"#,
                "unsupported payload version \"2.0\"",
            ),
            (
                r#"{"version":"1.0","secrets":["a","b"],"type":"file.json"}"#,
                "config key `file_path` is required",
            ),
        ] {
            let response = resolve(&request(json), Instant::now());
            let got = errors(&response);
            assert_eq!(got.len(), 2, "{json}");
            for (_, error) in got {
                assert!(error.starts_with(expected), "{json}: {error}");
            }
        }
    }

    #[test]
    fn no_handles_no_entries() {
        let response = resolve(
            &request(r#"{"version":"1.1","secrets":[],"type":"nope"}"#),
            Instant::now(),
        );
        assert!(response.is_empty());
    }
}
