//! A minimal HTTP/1.1 client for the daemon's API, used by `keyturn status` and
//! `keyturn refresh`.
//!
//! It reads `api.listen` and the token file from the same settings file as `keyturn serve`,
//! opens one connection per request and sends it with hyper's connection-level HTTP/1.1 client
//! (hyper is already built for the server; its client half adds no new crate and handles
//! chunked bodies, keep-alive and header parsing correctly). Answers are capped in size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use keyturn::daemon::DaemonConfig;
use keyturn::token::AuthToken;

use crate::Failure;

/// The largest answer read.
const MAX_ANSWER: usize = 256 * 1024 * 1024;

/// Where the daemon listens and the token to show it.
pub(crate) struct Client {
    address: SocketAddr,
    token: AuthToken,
}

/// A status and a body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Client {
    /// Reads `api.listen` and the token from the settings file at `path`.
    pub(crate) fn from_settings(path: &Path) -> Result<Client, Failure> {
        let config = DaemonConfig::load(path).map_err(Failure::input)?;
        let token = AuthToken::read(&config.api.auth_token_file)
            .with_context(|| {
                format!(
                    "cannot authenticate to keyturn serve (is `keyturn serve --config {}` \
                     running?)",
                    path.display()
                )
            })
            .map_err(Failure::operational)?;
        let mut address = config.api.listen;
        // A daemon listening on every address is reached on loopback.
        if address.ip().is_unspecified() {
            address.set_ip(match address.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Ok(Client { address, token })
    }

    /// Sends one request with an empty body and reads the whole answer, within `timeout`.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        accept_json: bool,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let address = self.address;
        let unreachable = |error: anyhow::Error| {
            Failure::operational(error.context(format!("cannot reach keyturn serve at {address}")))
        };
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| unreachable(e.into()))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| unreachable(e.into()))?;
            tokio::spawn(connection);
            let mut authorization =
                HeaderValue::from_str(&format!("Bearer {}", self.token.expose())).map_err(
                    |_| {
                        Failure::operational(anyhow!(
                            "the API token holds characters a header cannot carry"
                        ))
                    },
                )?;
            authorization.set_sensitive(true);
            let accept = if accept_json {
                "application/json"
            } else {
                "text/plain"
            };
            let request = Request::builder()
                .method(method)
                .uri(path_and_query)
                .header(HOST, address.to_string())
                .header(USER_AGENT, concat!("keyturn/", env!("CARGO_PKG_VERSION")))
                .header(ACCEPT, accept)
                .header(AUTHORIZATION, authorization)
                .body(Empty::<Bytes>::new())
                .context("cannot build the request")
                .map_err(Failure::operational)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.into()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unreachable(anyhow::Error::from_boxed(e)))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unreachable(anyhow!("no answer within {timeout:?}")))?
    }
}

impl Answer {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Result<serde_json::Value, Failure> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("unexpected answer from keyturn serve ({})", self.status))
            .map_err(Failure::operational)
    }

    /// The `error` of a JSON error answer, or the status.
    pub(crate) fn error(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("status {}", self.status))
    }

    /// The failure of an answer with an unexpected status.
    pub(crate) fn failure(&self) -> Failure {
        Failure::operational(anyhow!(
            "keyturn serve answered {}: {}",
            self.status,
            self.error()
        ))
    }
}

/// Percent-encodes a query parameter value: unreserved characters stay, every other byte is
/// `%XX`.
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::encode_query_value;

    #[test]
    fn query_values() {
        for (value, expected) in [
            ("db_pass", "db_pass"),
            ("vault;secret/db", "vault%3Bsecret%2Fdb"),
            ("a b&c=d", "a%20b%26c%3Dd"),
            ("é", "%C3%A9"),
            ("", ""),
        ] {
            assert_eq!(encode_query_value(value), expected, "{value}");
        }
    }
}
