//! `aws.ssm`: AWS Systems Manager Parameter Store.
//!
//! Handle: a parameter name (`/DatadogAgent/Production/ApiKey`) or ARN, optionally with a
//! version or label selector (`/app/key:3`). `SecureString` parameters are decrypted.
//!
//! Config: the [session](super) keys.
//!
//! `GetParameters` takes up to [`BATCH`] names, so N distinct parameters cost ⌈N/10⌉ requests,
//! at most [`MAX_IN_FLIGHT`] at a time; Datadog's connector makes one request per handle.

use serde::Deserialize;
use zeroize::Zeroizing;

use super::secrets::describe;
use super::{Session, SessionError};
use crate::backends::{Context, Outcome};
use crate::schedule::{MAX_IN_FLIGHT, map_bounded};
use crate::settings::Settings;

/// Most names one `GetParameters` call accepts.
const BATCH: usize = 10;

#[derive(Deserialize)]
struct GetParameters {
    #[serde(rename = "Parameters", default)]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ARN", default)]
    arn: Option<String>,
    #[serde(rename = "Selector", default)]
    selector: Option<String>,
    #[serde(rename = "Value")]
    value: Option<String>,
}

impl Parameter {
    /// Whether `handle` names this parameter (by name or ARN, with or without its selector).
    fn answers(&self, handle: &str) -> bool {
        let selector = self.selector.as_deref().unwrap_or("");
        [Some(self.name.as_str()), self.arn.as_deref()]
            .into_iter()
            .flatten()
            .any(|name| {
                handle == name
                    || (!selector.is_empty() && handle.strip_prefix(name) == Some(selector))
            })
    }
}

/// Resolves `handles` against Parameter Store.
pub(crate) fn resolve(
    settings: &Settings<'_>,
    handles: &[&str],
    context: &mut Context<'_>,
) -> Result<Vec<Outcome>, SessionError> {
    let session = Session::new("ssm", settings, context)?;
    let names: Vec<&str> = handles
        .iter()
        .copied()
        .filter(|handle| !handle.is_empty())
        .collect();
    let batches: Vec<&[&str]> = names.chunks(BATCH).collect();
    let fetched = map_bounded(&batches, MAX_IN_FLIGHT, |batch| fetch(&session, batch));
    session.register_refreshed(context.redactor);
    Ok(handles
        .iter()
        .map(|handle| {
            if handle.is_empty() {
                return Err("invalid handle \"\": empty parameter name".to_owned());
            }
            let (batch, result) = batches
                .iter()
                .zip(&fetched)
                .find(|(batch, _)| batch.contains(handle))
                .ok_or_else(|| format!("parameter {handle:?} was not fetched"))?;
            let parameters = result.as_ref().map_err(|error| {
                if batch.len() > 1 {
                    format!("{error} (fetching {} parameters together)", batch.len())
                } else {
                    error.clone()
                }
            })?;
            let parameter = parameters
                .iter()
                .find(|parameter| parameter.answers(handle))
                .ok_or_else(|| format!("parameter {handle:?} not found"))?;
            parameter
                .value
                .clone()
                .map(Zeroizing::new)
                .ok_or_else(|| format!("parameter {handle:?} has no value"))
        })
        .collect())
}

fn fetch(session: &Session, names: &[&str]) -> Result<Vec<Parameter>, String> {
    let body = session
        .call(
            "AmazonSSM.GetParameters",
            &serde_json::json!({ "Names": names, "WithDecryption": true }),
        )
        .map_err(|error| format!("Parameter Store: {}", describe(&error)))?;
    serde_json::from_str::<GetParameters>(&body)
        .map(|answer| answer.parameters)
        .map_err(|_| "unexpected answer from Parameter Store".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_answer_by_name_arn_and_selector() {
        let parameter = Parameter {
            name: "/app/key".into(),
            arn: Some("arn:aws:ssm:us-east-1:1:parameter/app/key".into()),
            selector: Some(":3".into()),
            value: None,
        };
        for (handle, expected) in [
            ("/app/key", true),
            ("/app/key:3", true),
            ("arn:aws:ssm:us-east-1:1:parameter/app/key:3", true),
            ("/app/key:4", false),
            ("/app/ke", false),
        ] {
            assert_eq!(parameter.answers(handle), expected, "{handle}");
        }
    }
}
