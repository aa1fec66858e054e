//! OAuth 2.0 access tokens, as the GCP and Azure backends obtain them: a form POST to a token
//! endpoint (RFC 6749 §4, RFC 8693 token exchange) or a GET of a metadata / managed identity
//! endpoint, answered by a JSON document holding the token.
//!
//! Invariant: the token is registered with the caller's sink before it is returned; error
//! texts carry the status and the OAuth `error` / `error_description` (or the provider's
//! `error.message`), never a body that could hold a token.

use serde::Deserialize;
use ureq::http::Method;
use zeroize::Zeroizing;

use crate::http::{self, Client, HttpError};

/// A token endpoint's answer. GCP's IAM credentials API names the field `accessToken`.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(alias = "accessToken")]
    access_token: Zeroizing<String>,
}

/// Why a token request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("HTTP {status}{detail}")]
    Refused { status: u16, detail: String },
    #[error("the answer holds no access token")]
    Unexpected,
}

/// POSTs `form` to `url` and returns the `access_token` of the answer.
pub(crate) fn post_form(
    client: &Client,
    url: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
    register: &mut dyn FnMut(&str),
) -> Result<Zeroizing<String>, TokenError> {
    let body = http::form_body(form);
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    let reply = client.send(Method::POST, url, &all, Some(body.as_bytes().to_vec()))?;
    token_of(reply.status, &reply.body, register)
}

/// Sends a request without a form (metadata servers, JSON APIs) and returns the access token
/// of the answer.
pub(crate) fn request(
    client: &Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    register: &mut dyn FnMut(&str),
) -> Result<Zeroizing<String>, TokenError> {
    let reply = client.send(method, url, headers, body)?;
    token_of(reply.status, &reply.body, register)
}

fn token_of(
    status: u16,
    body: &str,
    register: &mut dyn FnMut(&str),
) -> Result<Zeroizing<String>, TokenError> {
    if status != 200 {
        return Err(TokenError::Refused {
            status,
            detail: error_detail(body),
        });
    }
    let answer: TokenAnswer = serde_json::from_str(body).map_err(|_| TokenError::Unexpected)?;
    if answer.access_token.is_empty() {
        return Err(TokenError::Unexpected);
    }
    register(&answer.access_token);
    Ok(answer.access_token)
}

/// `: <error>: <description>` of an OAuth error answer, or `: <message>` of a Google / Azure
/// API error (`{"error": {"message": ...}}`); empty when the body is neither.
pub(crate) fn error_detail(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return String::new();
    };
    fn text<'v>(object: &'v serde_json::Value, key: &str) -> Option<&'v str> {
        object.get(key)?.as_str()
    }
    let parts: Vec<&str> = match value.get("error") {
        Some(serde_json::Value::String(code)) => {
            [Some(code.as_str()), text(&value, "error_description")]
                .into_iter()
                .flatten()
                .collect()
        }
        Some(error @ serde_json::Value::Object(_)) => [
            text(error, "status"),
            text(error, "code"),
            text(error, "message"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        _ => text(&value, "message").into_iter().collect(),
    };
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", http::tidy(&parts.join(": ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details() {
        assert_eq!(
            error_detail(
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
            ),
            ": invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(
            error_detail(
                r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#
            ),
            ": PERMISSION_DENIED: Permission denied"
        );
        assert_eq!(
            error_detail(r#"{"error":{"code":"Forbidden","message":"no access"}}"#),
            ": Forbidden: no access"
        );
        assert_eq!(error_detail("<html>"), "");
    }

    #[test]
    fn tokens_are_registered_and_never_quoted() {
        let mut seen = Vec::new();
        let token = token_of(
            200,
            r#"{"access_token":"ya29.token-1234","expires_in":3599}"#,
            &mut |secret: &str| seen.push(secret.to_owned()),
        )
        .unwrap();
        assert_eq!(token.as_str(), "ya29.token-1234");
        assert_eq!(seen, ["ya29.token-1234"]);
        let error = token_of(500, r#"{"access_token":"ya29.leak"}"#, &mut |_| {}).unwrap_err();
        assert_eq!(error.to_string(), "HTTP 500");
    }
}
