//! The daemon's HTTP API: status, refresh, throttled triggers, metrics and a health check.
//!
//! [`router`] builds the whole API over a [`Daemon`]; tests drive it with
//! `tower::ServiceExt::oneshot`, no socket. Every route but `GET /healthz` requires
//! `Authorization: Bearer <token>`; the token is compared in constant time whatever the length
//! of the candidate. A request body over [`BODY_LIMIT`] is refused with 413 on every route.
//! Every error goes through [`ApiError`] and is answered as JSON
//! `{"error": "..."}`.
//!
//! Routes:
//! - `GET /healthz`: 200 `ok`.
//! - `GET /secrets`: the status as text, or as JSON when `Accept` asks for `application/json`.
//! - `GET|POST /secret/refresh[?handle=H]...[&trigger=cli]`: refreshes (all handles, coalesced
//!   with concurrent refreshes, or only the named ones), re-renders changed templates, and
//!   answers the report: text, or JSON `{"report": {...}, "text": "..."}`. On failure: 500 with
//!   JSON `{"error": "..."}` (plus `report` and `text` in the JSON form); 404 naming the
//!   handles when a `handle` is used by no template (nothing runs).
//! - `POST /secret/trigger`: queues a throttled refresh and answers at once: 202
//!   `{"queued": true}`, 200 `{"queued": false}` when one is already waiting, 409 when triggers
//!   are disabled.
//! - `GET /metrics`: Prometheus metrics, in the OpenMetrics text format when `Accept` asks for
//!   `application/openmetrics-text` (as Prometheus does), else in the classic text format
//!   (0.0.4). With `api.unauthenticated_metrics: true` it needs no token.
//!
//! Invariant: no response carries a secret value; reports and statuses name handles and paths.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::daemon::Daemon;
use crate::daemon::schedule::TriggerRefused;
use crate::metrics::MetricsFormat;
use crate::resolver::{RefreshReport, Trigger};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;
/// Content type of text answers.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The API over `daemon`.
/// With `api.unauthenticated_metrics`, `/metrics` is served without the token too.
pub fn router(daemon: Daemon) -> Router {
    let open_metrics = daemon.api_config().unauthenticated_metrics;
    let mut protected = Router::new()
        .route("/secrets", get(secrets))
        .route("/secret/refresh", get(refresh).post(refresh))
        .route("/secret/trigger", post(trigger));
    if !open_metrics {
        protected = protected.route("/metrics", get(metrics));
    }
    let protected = protected
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(daemon.clone(), authorize));
    let mut open = Router::new().route("/healthz", get(healthz));
    if open_metrics {
        open = open.route("/metrics", get(metrics));
    }
    open.merge(protected)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(daemon.clone(), limit_body))
        .with_state(daemon)
}

/// Every way a request can fail, each mapped to one status and a JSON `{"error": ...}` body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token: send 'Authorization: Bearer <token>'")]
    MissingToken,
    /// A token that is not the daemon's.
    #[error("invalid token")]
    InvalidToken,
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// No such route.
    #[error("not found")]
    NotFound,
    /// `?handle=` names handles that no template uses.
    #[error("{}", unknown_handles_message(.0))]
    UnknownHandles(Vec<String>),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request body over [`BODY_LIMIT`].
    #[error("request body is larger than {BODY_LIMIT} bytes")]
    PayloadTooLarge,
    /// A request body that did not arrive within `api.header_read_timeout`.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// `POST /secret/trigger` while triggers are off.
    #[error(
        "refresh triggers are disabled: set secret_refresh_on_api_key_failure_interval to enable them"
    )]
    TriggersDisabled,
    /// A refresh ran and did not fully succeed.
    #[error("{message}")]
    RefreshFailed {
        /// The report's error text.
        message: String,
        /// The report, for the JSON form.
        details: Option<Box<RefreshBody>>,
    },
}

/// The JSON form of a refresh answer.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RefreshBody {
    /// What the refresh did.
    #[serde(serialize_with = "serialize_report")]
    pub report: Arc<RefreshReport>,
    /// The report as text (as the text form answers it).
    pub text: String,
}

fn serialize_report<S: serde::Serializer>(
    report: &Arc<RefreshReport>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    report.as_ref().serialize(serializer)
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingToken | ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound | ApiError::UnknownHandles(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TriggersDisabled => StatusCode::CONFLICT,
            ApiError::RefreshFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: String,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            details: Option<&'a RefreshBody>,
        }
        let status = self.status();
        let details = match &self {
            ApiError::RefreshFailed { details, .. } => details.as_deref(),
            _ => None,
        };
        let body = Body {
            error: self.to_string(),
            details,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn unknown_handles_message(handles: &[String]) -> String {
    let quoted: Vec<String> = handles.iter().map(|h| format!("'{h}'")).collect();
    format!(
        "unknown handle{}: {} (no template uses {})",
        if handles.len() == 1 { "" } else { "s" },
        quoted.join(", "),
        if handles.len() == 1 { "it" } else { "them" }
    )
}

/// Refuses a body over [`BODY_LIMIT`] on every route, before anything else: a declared
/// `Content-Length` over it at once, any other body once it passes it. No route reads a body,
/// and `DefaultBodyLimit` only bounds extractors that do, so without this a request of any
/// size would be served (and a refresh run) with its body unread. A body that has not arrived
/// within `api.header_read_timeout` is answered 408, so a slow client cannot hold a
/// connection.
async fn limit_body(
    State(daemon): State<Daemon>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let timeout = daemon.api_config().header_read_timeout;
    let request = tokio::time::timeout(timeout, read_body(request))
        .await
        .map_err(|_| ApiError::RequestTimeout)??;
    Ok(next.run(request).await)
}

/// Reads the body of `request` into memory, up to [`BODY_LIMIT`].
async fn read_body(request: Request) -> Result<Request, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame
            .map_err(|_| ApiError::BadRequest("could not read the request body".to_owned()))?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > BODY_LIMIT {
                return Err(ApiError::PayloadTooLarge);
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

async fn authorize(
    State(daemon): State<Daemon>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer(request.headers()).ok_or(ApiError::MissingToken)?;
    if !daemon.token().matches(token) {
        return Err(ApiError::InvalidToken);
    }
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

async fn healthz() -> Response {
    text("ok\n".to_owned())
}

async fn secrets(State(daemon): State<Daemon>, headers: HeaderMap) -> Response {
    if wants_json(&headers) {
        Json(daemon.status().await).into_response()
    } else {
        text(daemon.status_text().await)
    }
}

async fn refresh(
    State(daemon): State<Daemon>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut handles = Vec::new();
    let mut trigger = Trigger::Api;
    for (key, value) in params {
        match (key.as_str(), value.as_str()) {
            ("handle", _) => handles.push(value),
            ("trigger", "api") => trigger = Trigger::Api,
            ("trigger", "cli") => trigger = Trigger::Cli,
            ("trigger", _) => {
                return Err(ApiError::BadRequest(
                    "query parameter 'trigger' must be api or cli".into(),
                ));
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{key}'; expected handle or trigger"
                )));
            }
        }
    }
    let unknown = daemon.unknown_handles(&handles);
    if !unknown.is_empty() {
        return Err(ApiError::UnknownHandles(
            unknown.into_iter().map(str::to_owned).collect(),
        ));
    }
    let only = (!handles.is_empty()).then_some(handles.as_slice());
    let report = daemon.refresh(trigger, only).await;
    let json = wants_json(&headers);
    if let Some(message) = report.error_text() {
        let details = json.then(|| {
            Box::new(RefreshBody {
                text: report.to_text(),
                report,
            })
        });
        return Err(ApiError::RefreshFailed { message, details });
    }
    Ok(if json {
        Json(RefreshBody {
            text: report.to_text(),
            report,
        })
        .into_response()
    } else {
        text(report.to_text())
    })
}

async fn trigger(State(daemon): State<Daemon>) -> Result<Response, ApiError> {
    #[derive(Serialize)]
    struct Body {
        queued: bool,
    }
    match daemon.trigger() {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(Body { queued: true })).into_response()),
        Err(TriggerRefused::Pending) => Ok(Json(Body { queued: false }).into_response()),
        Err(TriggerRefused::Disabled) => Err(ApiError::TriggersDisabled),
    }
}

/// OpenMetrics when `Accept` asks for it (as Prometheus does), the classic text format
/// otherwise.
async fn metrics(State(daemon): State<Daemon>, headers: HeaderMap) -> Response {
    let format = if accepts(&headers, "application/openmetrics-text") {
        MetricsFormat::OpenMetrics
    } else {
        MetricsFormat::Classic
    };
    (
        [(CONTENT_TYPE, format.content_type())],
        daemon.metrics().encode(format),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn text(body: String) -> Response {
    ([(CONTENT_TYPE, TEXT_CONTENT_TYPE)], body).into_response()
}

/// Whether `Accept` lists `application/json` (with a non-zero quality).
fn wants_json(headers: &HeaderMap) -> bool {
    accepts(headers, "application/json")
}

/// Whether `Accept` lists `media` (with a non-zero quality).
fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let listed = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|param| {
                param
                    .split_once('=')
                    .is_some_and(|(k, v)| k.trim() == "q" && v.trim().parse() == Ok(0.0f32))
            });
            listed.eq_ignore_ascii_case(media) && !refused
        })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use axum::body::Body;
    use axum::http::Method;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::daemon::DaemonConfig;
    use crate::resolver::status::DISABLED_MESSAGE;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    struct Answer {
        status: StatusCode,
        content_type: String,
        body: String,
    }

    impl Answer {
        fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap()
        }
    }

    /// A daemon with no backend and no templates, its token written beforehand.
    async fn daemon(dir: &Path, settings: &str) -> Daemon {
        fs::write(dir.join("auth_token"), format!("{TOKEN}\n")).unwrap();
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        fs::set_permissions(dir.join("auth_token"), private).unwrap();
        let config = DaemonConfig::from_yaml_str(settings, dir).unwrap();
        Daemon::start(config, None).await.unwrap()
    }

    async fn send(daemon: &Daemon, request: axum::http::request::Builder) -> Answer {
        let response = router(daemon.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            content_type,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    fn authed(method: Method, uri: &str) -> axum::http::request::Builder {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
    }

    #[tokio::test]
    async fn every_route_but_healthz_needs_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), "").await;
        let health = send(&daemon, Request::builder().uri("/healthz")).await;
        assert_eq!(
            (health.status, health.body.as_str()),
            (StatusCode::OK, "ok\n")
        );

        let cases: &[(Method, &str, Option<&str>, &str)] = &[
            (
                Method::GET,
                "/secrets",
                None,
                "missing bearer token: send 'Authorization: Bearer <token>'",
            ),
            (
                Method::GET,
                "/secrets",
                Some("Bearer nope"),
                "invalid token",
            ),
            (
                Method::GET,
                "/secrets",
                Some(&format!("Bearer {TOKEN}x")),
                "invalid token",
            ),
            (
                Method::GET,
                "/secrets",
                Some(&format!("Bearer {}", &TOKEN[1..])),
                "invalid token",
            ),
            (
                Method::GET,
                "/secrets",
                Some(&format!("Basic {TOKEN}")),
                "missing bearer token: send 'Authorization: Bearer <token>'",
            ),
            (
                Method::GET,
                "/secrets",
                Some("Bearer "),
                "missing bearer token: send 'Authorization: Bearer <token>'",
            ),
            (
                Method::POST,
                "/secret/refresh",
                Some("Bearer wrong"),
                "invalid token",
            ),
            (
                Method::GET,
                "/metrics",
                None,
                "missing bearer token: send 'Authorization: Bearer <token>'",
            ),
            (
                Method::POST,
                "/secret/trigger",
                None,
                "missing bearer token: send 'Authorization: Bearer <token>'",
            ),
            (
                Method::GET,
                "/no-such-route",
                None,
                "missing bearer token: send 'Authorization: Bearer <token>'",
            ),
        ];
        for (method, uri, header, error) in cases {
            let mut request = Request::builder().method(method.clone()).uri(*uri);
            if let Some(header) = header {
                request = request.header(AUTHORIZATION, *header);
            }
            let answer = send(&daemon, request).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {header:?}"
            );
            assert_eq!(answer.content_type, "application/json");
            assert_eq!(answer.json(), serde_json::json!({ "error": error }));
        }
        let lower = send(
            &daemon,
            Request::builder()
                .uri("/secrets")
                .header(AUTHORIZATION, format!("bearer {TOKEN}")),
        )
        .await;
        assert_eq!(lower.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn secrets_as_text_or_json() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), "").await;
        let answer = send(&daemon, authed(Method::GET, "/secrets")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(
            answer.body,
            format!("\n{DISABLED_MESSAGE}\n\n=== Templates ===\nNo templates configured\n")
        );
        for accept in [
            "application/json",
            "text/html, application/json;q=0.5",
            "Application/JSON",
        ] {
            let answer = send(
                &daemon,
                authed(Method::GET, "/secrets").header(ACCEPT, accept),
            )
            .await;
            assert_eq!(answer.content_type, "application/json", "{accept}");
            assert_eq!(
                answer.json(),
                serde_json::json!({"backendCommandSet": false, "message": DISABLED_MESSAGE, "templates": []})
            );
        }
        let refused = send(
            &daemon,
            authed(Method::GET, "/secrets").header(ACCEPT, "application/json;q=0, text/plain"),
        )
        .await;
        assert_eq!(refused.content_type, TEXT_CONTENT_TYPE);
    }

    #[tokio::test]
    async fn refresh_with_nothing_to_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), "").await;
        for method in [Method::GET, Method::POST] {
            let answer = send(&daemon, authed(method, "/secret/refresh")).await;
            assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, ""));
            assert_eq!(answer.content_type, TEXT_CONTENT_TYPE);
        }
        let answer = send(
            &daemon,
            authed(
                Method::GET,
                "/secret/refresh?handle=a&handle=b%3Bc&trigger=cli",
            )
            .header(ACCEPT, "application/json"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(
            answer.json(),
            serde_json::json!({"error": "unknown handles: 'a', 'b;c' (no template uses them)"})
        );
        let answer = send(&daemon, authed(Method::POST, "/secret/refresh?handle=a")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(
            answer.json(),
            serde_json::json!({"error": "unknown handle: 'a' (no template uses it)"})
        );
    }

    #[tokio::test]
    async fn refresh_rejects_unknown_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), "").await;
        for (uri, error) in [
            (
                "/secret/refresh?handles=a",
                "unknown query parameter 'handles'; expected handle or trigger",
            ),
            (
                "/secret/refresh?trigger=timer",
                "query parameter 'trigger' must be api or cli",
            ),
        ] {
            let answer = send(&daemon, authed(Method::GET, uri)).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(answer.json(), serde_json::json!({ "error": error }));
        }
    }

    #[tokio::test]
    async fn refresh_failure_is_500_json() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), "").await;
        let report = RefreshReport {
            candidates: 1,
            failures: vec![crate::resolver::Failure {
                handle: "db".into(),
                kind: crate::backend::FailureKind::Missing,
                message: "not found".into(),
                paths: vec![["a"].into_iter().collect()],
            }],
            ..RefreshReport::default()
        };
        let error = ApiError::RefreshFailed {
            message: report.error_text().unwrap(),
            details: None,
        };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"error": "'db' (missing) at a: not found"})
        );
        let with_details = ApiError::RefreshFailed {
            message: report.error_text().unwrap(),
            details: Some(Box::new(RefreshBody {
                text: report.to_text(),
                report: Arc::new(report),
            })),
        };
        let body = with_details
            .into_response()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "'db' (missing) at a: not found");
        assert_eq!(json["report"]["failures"][0]["handle"], "db");
        assert_eq!(
            json["text"],
            "=== Secret stats ===\nNumber of secrets reloaded: 0\nSecrets handle reloaded:\n\n"
        );
        drop(daemon);
    }

    #[tokio::test]
    async fn triggers() {
        let dir = tempfile::tempdir().unwrap();
        let disabled = daemon(dir.path(), "").await;
        let answer = send(&disabled, authed(Method::POST, "/secret/trigger")).await;
        assert_eq!(answer.status, StatusCode::CONFLICT);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("refresh triggers are disabled")
        );

        let dir = tempfile::tempdir().unwrap();
        let enabled = daemon(
            dir.path(),
            // A backend is configured (never run here: there are no templates).
            "secret_backend_command: /nonexistent/backend\nsecret_refresh_on_api_key_failure_interval: 1\n",
        )
        .await;
        let first = send(&enabled, authed(Method::POST, "/secret/trigger")).await;
        assert_eq!(
            (first.status, first.json()),
            (StatusCode::ACCEPTED, serde_json::json!({"queued": true}))
        );
        // No loop is running here: the first stays queued and the next is dropped.
        let second = send(&enabled, authed(Method::POST, "/secret/trigger")).await;
        assert_eq!(
            (second.status, second.json()),
            (StatusCode::OK, serde_json::json!({"queued": false}))
        );
        let get = send(&enabled, authed(Method::GET, "/secret/trigger")).await;
        assert_eq!(
            (get.status, get.json()),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "method not allowed"})
            )
        );
    }

    /// A request body that never arrives.
    struct Stalled;

    impl HttpBody for Stalled {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    // Issue 9, item 8: a client that sends a header and then trickles (or withholds) its body
    // is answered 408 at `api.header_read_timeout`, so it cannot hold a connection.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), "api:\n  header_read_timeout: 5\n").await;
        for uri in ["/healthz", "/secret/refresh"] {
            let started = tokio::time::Instant::now();
            let response = router(daemon.clone())
                .oneshot(
                    authed(Method::POST, uri)
                        .header(CONTENT_LENGTH, 10)
                        .body(Body::new(Stalled))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT, "{uri}");
            assert_eq!(started.elapsed(), std::time::Duration::from_secs(5));
        }
    }

    #[tokio::test]
    async fn metrics_and_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path(), "").await;
        // OpenMetrics when the scraper asks for it (Prometheus' own Accept header), the
        // classic format otherwise.
        let answer = send(
            &daemon,
            authed(Method::GET, "/metrics").header(
                ACCEPT,
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.content_type,
            MetricsFormat::OpenMetrics.content_type()
        );
        assert!(
            answer.body.contains("# TYPE keyturn_handles_known gauge"),
            "{}",
            answer.body
        );
        assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
        let answer = send(&daemon, authed(Method::GET, "/metrics")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.content_type,
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(
            answer
                .body
                .contains("# TYPE keyturn_backend_unparsable_outputs_total counter"),
            "{}",
            answer.body
        );
        assert!(!answer.body.contains("# EOF"), "{}", answer.body);
        // Without the token: refused unless the settings open it.
        let anonymous = send(&daemon, Request::builder().uri("/metrics")).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        let open_dir = tempfile::tempdir().unwrap();
        let open = self::daemon(open_dir.path(), "api:\n  unauthenticated_metrics: true\n").await;
        let anonymous = send(&open, Request::builder().uri("/metrics")).await;
        assert_eq!(anonymous.status, StatusCode::OK);
        assert!(anonymous.body.contains("keyturn_build_info"));
        let secrets = send(&open, Request::builder().uri("/secrets")).await;
        assert_eq!(
            secrets.status,
            StatusCode::UNAUTHORIZED,
            "only /metrics opens"
        );
        // Bodies over the limit are refused on every route, whether `Content-Length` declares
        // them or not (then they are read up to the limit); at the limit they pass.
        for (method, uri, size, declared, status) in [
            (Method::GET, "/metrics", BODY_LIMIT, true, StatusCode::OK),
            (Method::GET, "/metrics", BODY_LIMIT, false, StatusCode::OK),
            (
                Method::GET,
                "/metrics",
                BODY_LIMIT + 1,
                true,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Method::GET,
                "/metrics",
                BODY_LIMIT + 1,
                false,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Method::GET,
                "/healthz",
                BODY_LIMIT + 1,
                true,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Method::POST,
                "/secret/refresh",
                1 << 20,
                false,
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ] {
            let mut request = authed(method, uri);
            if declared {
                request = request.header(CONTENT_LENGTH, size);
            }
            let response = router(daemon.clone())
                .oneshot(request.body(Body::from(vec![b'x'; size])).unwrap())
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                status,
                "{uri} {size} declared={declared}"
            );
        }
        let missing = send(&daemon, authed(Method::GET, "/nope")).await;
        assert_eq!(
            (missing.status, missing.json()),
            (
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not found"})
            )
        );
    }
}
