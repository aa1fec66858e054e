//! `aws.secrets`: AWS Secrets Manager.
//!
//! Handle: `secretId;jsonKey` (a key of a JSON secret) or `secretId` (the whole secret string);
//! `secretId` is a name or an ARN. Only the first `;` splits, so a key may contain `;`.
//!
//! Config: the [session](super) keys, `force_string: true` to return the whole secret string
//! even when a key is given, as Datadog's connector does, and ours `key_separator` to use
//! another separator than `;` (split at its last occurrence), for callers such as Vector whose
//! handle syntax cannot hold `;`.
//!
//! Values of JSON secrets follow [`crate::value`]. Unlike Datadog's connector, asking a key of a
//! secret that is not a JSON object is an error, not the whole string: a wrong handle shows up
//! instead of resolving to something else.
//!
//! One `GetSecretValue` per distinct secret, at most [`MAX_IN_FLIGHT`] at a time.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::{CallError, Session, SessionError};
use crate::backends::vault::DEFAULT_KEY_SEPARATOR;
use crate::backends::{Context, Outcome};
use crate::schedule::{MAX_IN_FLIGHT, map_bounded};
use crate::settings::Settings;
use crate::value;

#[derive(Deserialize)]
struct GetSecretValue {
    #[serde(rename = "SecretString")]
    secret_string: Option<String>,
}

/// Resolves `handles` against Secrets Manager.
pub(crate) fn resolve(
    settings: &Settings<'_>,
    handles: &[&str],
    context: &mut Context<'_>,
) -> Result<Vec<Outcome>, SessionError> {
    let force_string = settings.bool("force_string")?.unwrap_or(false);
    let session = Session::new("secretsmanager", settings, context)?;
    let separator = settings
        .string("key_separator")?
        .unwrap_or(DEFAULT_KEY_SEPARATOR);
    let parsed: Vec<Result<(&str, Option<&str>), String>> = handles
        .iter()
        .map(|handle| parse_handle(handle, separator))
        .collect();
    let mut ids: Vec<&str> = parsed
        .iter()
        .filter_map(|handle| handle.as_ref().ok().map(|(id, _)| *id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let fetched = map_bounded(&ids, MAX_IN_FLIGHT, |id| fetch(&session, id));
    session.register_refreshed(context.redactor);
    let by_id: BTreeMap<&str, &Result<Zeroizing<String>, String>> =
        ids.iter().copied().zip(fetched.iter()).collect();
    Ok(parsed
        .into_iter()
        .map(|handle| {
            let (id, key) = handle?;
            let secret = by_id
                .get(id)
                .ok_or_else(|| format!("secret {id:?} was not fetched"))?
                .as_ref()
                .map_err(Clone::clone)?;
            match key {
                None => Ok(secret.clone()),
                Some(_) if force_string => Ok(secret.clone()),
                Some(key) => json_key(secret, id, key),
            }
        })
        .collect())
}

/// Splits `secretId;jsonKey` at the first `;` (a key may contain `;`), or with another
/// `key_separator` at its last occurrence (a secret name may contain `.` or `/`).
fn parse_handle<'h>(
    handle: &'h str,
    separator: &str,
) -> Result<(&'h str, Option<&'h str>), String> {
    let split = if separator == DEFAULT_KEY_SEPARATOR {
        handle.split_once(separator)
    } else {
        handle.rsplit_once(separator)
    };
    let (id, key) = match split {
        Some((id, key)) => (id, Some(key)),
        None => (handle, None),
    };
    if id.is_empty() {
        return Err(format!(
            "invalid handle {handle:?}: empty secret id (expected `secretId;jsonKey` or `secretId`)"
        ));
    }
    if key == Some("") {
        return Err(format!(
            "invalid handle {handle:?}: empty key (expected `secretId;jsonKey` or `secretId`)"
        ));
    }
    Ok((id, key))
}

fn fetch(session: &Session, id: &str) -> Result<Zeroizing<String>, String> {
    let body = session
        .call(
            "secretsmanager.GetSecretValue",
            &serde_json::json!({ "SecretId": id }),
        )
        .map_err(|error| match error.code() {
            Some("ResourceNotFoundException") => format!("secret {id:?} not found"),
            _ => format!("secret {id:?}: {}", describe(&error)),
        })?;
    let answer: GetSecretValue = serde_json::from_str(&body)
        .map_err(|_| format!("secret {id:?}: unexpected answer from Secrets Manager"))?;
    answer
        .secret_string
        .map(Zeroizing::new)
        .ok_or_else(|| format!("secret {id:?} holds binary data, which is not supported"))
}

/// The value of `key` in the JSON object `secret` (shared with the other JSON-secret stores).
pub(crate) fn json_key(secret: &str, id: &str, key: &str) -> Outcome {
    let object: BTreeMap<String, Box<RawValue>> = serde_json::from_str(secret).map_err(|_| {
        format!("secret {id:?} is not a JSON object; use the handle {id:?} for its whole value")
    })?;
    let raw = object
        .get(key)
        .ok_or_else(|| format!("key {key:?} not found in secret {id:?}"))?;
    value::json_text(raw).map_err(|error| format!("key {key:?} in secret {id:?} {error}"))
}

/// A call error, with a hint for the ones that mean "check your credentials".
pub(super) fn describe(error: &CallError) -> String {
    let hint = match error.code() {
        Some(
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "ExpiredTokenException"
            | "IncompleteSignature",
        ) => " (check the AWS credentials)",
        Some("AccessDeniedException" | "AccessDenied") => " (check the IAM policy)",
        _ => "",
    };
    format!("{error}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(
            parse_handle("db;password", ";"),
            Ok(("db", Some("password")))
        );
        assert_eq!(parse_handle("db;a;b", ";"), Ok(("db", Some("a;b"))));
        assert_eq!(
            parse_handle("arn:aws:secretsmanager:us-east-1:1:secret:db", ";"),
            Ok(("arn:aws:secretsmanager:us-east-1:1:secret:db", None))
        );
        assert!(
            parse_handle(";k", ";")
                .unwrap_err()
                .contains("empty secret id")
        );
        assert!(parse_handle("db;", ";").unwrap_err().contains("empty key"));
        assert_eq!(
            parse_handle("prod/db.v2.password", "."),
            Ok(("prod/db.v2", Some("password")))
        );
        assert_eq!(parse_handle("prod/db", "."), Ok(("prod/db", None)));
    }

    #[test]
    fn json_keys() {
        let secret = r#"{"user":"u","port":5432,"none":null}"#;
        assert_eq!(json_key(secret, "db", "user").unwrap().as_str(), "u");
        assert_eq!(json_key(secret, "db", "port").unwrap().as_str(), "5432");
        assert_eq!(
            json_key(secret, "db", "none").unwrap_err(),
            "key \"none\" in secret \"db\" is null"
        );
        assert_eq!(
            json_key(secret, "db", "x").unwrap_err(),
            "key \"x\" not found in secret \"db\""
        );
        assert!(
            json_key("plain", "db", "x")
                .unwrap_err()
                .contains("not a JSON object")
        );
    }
}
