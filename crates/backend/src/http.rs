//! The HTTP client of the remote backends (Vault, AWS): one `ureq` agent per request, rustls
//! with Mozilla's roots or the configured CA, keep-alive shared by the worker threads.
//!
//! [`Client::send`] gives every request the time left before the [`Deadline`], reads at most
//! [`MAX_BODY_BYTES`] of the answer into a zeroizing buffer, and returns any status code as a
//! [`Reply`]: the backends map statuses to messages, because each store words its errors
//! differently.
//!
//! Invariant: credentials travel only in headers or request bodies, never in a URL, so an
//! [`HttpError`] (which may name the host) cannot carry one. TLS verification is on unless the
//! configuration explicitly turns it off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::http;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::{Agent, RequestExt};
use zeroize::Zeroizing;

use crate::schedule::Deadline;

/// Largest answer body read from a server. A Vault secret or an AWS secret (64 KiB max) is far
/// smaller; a mount listing of a large Vault stays well under it.
pub(crate) const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// Largest PEM file (CA bundle, client certificate or key) read from disk.
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// TLS settings of a backend.
#[derive(Debug, Default, Clone)]
pub(crate) struct TlsOptions {
    /// PEM files whose certificates replace the default roots, when not empty.
    pub(crate) ca_files: Vec<PathBuf>,
    /// PEM certificates given inline (a kubeconfig's `certificate-authority-data`), added to
    /// `ca_files`, each with a name for errors.
    pub(crate) ca_pems: Vec<InlinePem>,
    /// Client certificate chain and key (PEM files), for mutual TLS.
    pub(crate) client: Option<(PathBuf, PathBuf)>,
    /// Client certificate chain and key given inline, each with a name for errors.
    pub(crate) client_pem: Option<(InlinePem, InlinePem)>,
    /// Skip server certificate verification. Off unless configured.
    pub(crate) insecure: bool,
}

/// PEM text given inline rather than in a file.
#[derive(Debug, Clone)]
pub(crate) struct InlinePem {
    /// What it is, for errors (`kubeconfig: client-key-data`).
    pub(crate) name: String,
    /// The PEM text, wiped when dropped: it may hold a private key.
    pub(crate) pem: Zeroizing<Vec<u8>>,
}

/// A failure to talk to the server at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The deadline passed before or during the request.
    #[error("no answer within the {0}s secret_backend_timeout")]
    Timeout(u64),
    /// Connecting, TLS or the exchange failed.
    #[error("request to {host} failed: {reason}")]
    Transport { host: String, reason: String },
    /// The answer was larger than [`MAX_BODY_BYTES`].
    #[error("the answer of {host} is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge { host: String },
    /// A TLS file could not be used.
    #[error("{path}: {reason}")]
    TlsFile { path: PathBuf, reason: String },
    /// The request could not be built (a malformed address or header).
    #[error("cannot build a request for {host}: {reason}")]
    Build { host: String, reason: String },
}

/// A server's answer, whatever its status.
pub(crate) struct Reply {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The body, wiped when dropped: it may hold secret values.
    pub(crate) body: Zeroizing<String>,
}

/// An HTTP client bound to one request's deadline.
#[derive(Clone)]
pub(crate) struct Client {
    agent: Agent,
    deadline: Deadline,
}

impl Client {
    /// A client with the given TLS settings whose requests all end by `deadline`.
    pub(crate) fn new(tls: &TlsOptions, deadline: Deadline) -> Result<Client, HttpError> {
        let mut builder = TlsConfig::builder().disable_verification(tls.insecure);
        if !tls.ca_files.is_empty() || !tls.ca_pems.is_empty() {
            let mut roots = Vec::new();
            for path in &tls.ca_files {
                roots.extend(read_pem(path)?.0);
            }
            for inline in &tls.ca_pems {
                roots.extend(parse_pem(&inline.pem, Path::new(&inline.name))?.0);
            }
            builder = builder.root_certs(RootCerts::Specific(Arc::new(roots)));
        }
        let client = match (&tls.client, &tls.client_pem) {
            (Some((cert_path, key_path)), _) => Some((
                read_pem(cert_path)?.0,
                read_pem(key_path)?.1,
                key_path.clone(),
            )),
            (None, Some((cert, key))) => Some((
                parse_pem(&cert.pem, Path::new(&cert.name))?.0,
                parse_pem(&key.pem, Path::new(&key.name))?.1,
                PathBuf::from(&key.name),
            )),
            (None, None) => None,
        };
        if let Some((chain, key, key_path)) = client {
            let key = key.ok_or_else(|| HttpError::TlsFile {
                path: key_path,
                reason: "no private key in the file".to_owned(),
            })?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent = Agent::config_builder()
            .tls_config(builder.build())
            .http_status_as_error(false)
            .user_agent(concat!("keyturn-backend/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(crate::schedule::MAX_IN_FLIGHT)
            .build()
            .new_agent();
        Ok(Client { agent, deadline })
    }

    /// Sends one request and reads its answer, within the time left.
    pub(crate) fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, HttpError> {
        let host = host_of(url);
        let timeout_secs = self.deadline.timeout().as_secs();
        let left = self
            .deadline
            .remaining()
            .ok_or(HttpError::Timeout(timeout_secs))?;
        let mut builder = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let build_error = |error: http::Error| HttpError::Build {
            host: host.clone(),
            reason: error.to_string(),
        };
        let result = match body {
            Some(bytes) => self.run(builder.body(bytes).map_err(build_error)?, left),
            None => self.run(builder.body(()).map_err(build_error)?, left),
        };
        let mut response = result.map_err(|error| transport_error(error, &host, timeout_secs))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|error| match error {
                ureq::Error::BodyExceedsLimit(_) => HttpError::TooLarge { host: host.clone() },
                other => transport_error(other, &host, timeout_secs),
            })?;
        Ok(Reply {
            status,
            body: Zeroizing::new(body),
        })
    }

    /// Runs a built request with the time left as its global timeout.
    fn run(
        &self,
        request: http::Request<impl ureq::AsSendBody>,
        left: std::time::Duration,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        request
            .with_agent(&self.agent)
            .configure()
            .timeout_global(Some(left))
            .build()
            .run()
    }
}

fn transport_error(error: ureq::Error, host: &str, timeout_secs: u64) -> HttpError {
    match error {
        ureq::Error::Timeout(_) => HttpError::Timeout(timeout_secs),
        other => HttpError::Transport {
            host: host.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// `scheme://host:port` of a URL, for error messages, its user info redacted.
fn host_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return keyturn_protocol::redact_userinfo(url).into_owned();
    };
    // The user info ends at the last `@` (a password may hold `/`); our paths encode `@`.
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((_, host)) => (keyturn_protocol::REDACTED_USERINFO, host),
        None => ("", rest),
    };
    let host = rest.split('/').next().unwrap_or_default();
    let at = if userinfo.is_empty() { "" } else { "@" };
    format!("{scheme}://{userinfo}{at}{host}")
}

/// The certificates and the first private key of a PEM file.
fn read_pem(
    path: &Path,
) -> Result<(Vec<Certificate<'static>>, Option<PrivateKey<'static>>), HttpError> {
    let error = |reason: String| HttpError::TlsFile {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|source| error(source.to_string()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_PEM_BYTES), &mut bytes)
        .map_err(|source| error(source.to_string()))?;
    parse_pem(&bytes, path)
}

/// The certificates and the first private key of PEM text; `path` names it in errors.
fn parse_pem(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<Certificate<'static>>, Option<PrivateKey<'static>>), HttpError> {
    let error = |reason: String| HttpError::TlsFile {
        path: path.to_owned(),
        reason,
    };
    let mut certs = Vec::new();
    let mut key = None;
    for item in ureq::tls::parse_pem(bytes) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(PemItem::PrivateKey(found)) => key = key.or(Some(found)),
            Ok(_) => {}
            Err(_) => return Err(error("not a valid PEM file".to_owned())),
        }
    }
    if certs.is_empty() && key.is_none() {
        return Err(error("no certificate or key in the file".to_owned()));
    }
    Ok((certs, key))
}

/// Percent-encodes a path for a URL, keeping `/` between segments.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(char::from(byte));
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of a value (RFC 3986 unreserved kept).
pub(crate) fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// An `application/x-www-form-urlencoded` body.
pub(crate) fn form_body(pairs: &[(&str, &str)]) -> Zeroizing<String> {
    Zeroizing::new(
        pairs
            .iter()
            .map(|(name, value)| format!("{name}={}", form_encode(value)))
            .collect::<Vec<_>>()
            .join("&"),
    )
}

/// The server-chosen part of an error answer, made fit for an error text: whitespace collapsed,
/// at most 300 characters.
pub(crate) fn tidy(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &collapsed[..cut]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_path() {
        assert_eq!(
            host_of("https://vault:8200/v1/secret"),
            "https://vault:8200"
        );
        assert_eq!(host_of("http://127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(
            host_of("http://admin:pa/ss@127.0.0.1:1/v1/x"),
            "http://<redacted>@127.0.0.1:1"
        );
    }

    #[test]
    fn encode_path_keeps_slashes_and_escapes_the_rest() {
        assert_eq!(
            encode_path("secret/data/my app/ü?x"),
            "secret/data/my%20app/%C3%BC%3Fx"
        );
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode("arn:aws:iam::1:role/a b+c"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b%2Bc"
        );
        assert_eq!(
            form_body(&[("a", "1 2"), ("b", "=")]).as_str(),
            "a=1%202&b=%3D"
        );
    }

    #[test]
    fn tidy_collapses_and_caps() {
        assert_eq!(
            tidy("1 error occurred:\n\t* permission denied\n\n"),
            "1 error occurred: * permission denied"
        );
        assert_eq!(tidy(&"x".repeat(400)).len(), 303);
    }
}
