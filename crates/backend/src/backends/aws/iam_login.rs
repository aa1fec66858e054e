//! The login data of Vault's `aws` auth method, IAM type: a `sts:GetCallerIdentity` request
//! signed with the credentials of the [chain](super::chain), which Vault forwards to STS to
//! learn who the caller is (as Vault's own `awsutil.GenerateLoginData` builds it).
//!
//! Keys of `vault_session`: `vault_aws_role` (the connector's), the `aws_*` keys of the
//! [session](super) (`aws_region` defaults to `us-east-1`), and ours `aws_sts_endpoint_url` (the
//! STS endpoint Vault is configured with, else `AWS_ENDPOINT_URL_STS`, else the global
//! `https://sts.amazonaws.com` in `us-east-1` and the regional one elsewhere) and
//! `vault_aws_iam_server_id` (the `X-Vault-AWS-IAM-Server-ID` header a Vault role may require).
//!
//! Invariant: the signed headers (and the session token among them) exist only inside the
//! returned login body, which is zeroized when dropped.

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Endpoint, Identity, SessionError, sigv4};
use crate::backends::Context;
use crate::settings::Settings;

/// The request Vault forwards to STS.
const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// The JSON body of `POST auth/<mount>/login` for `role`.
pub(crate) fn login_body(
    session: &Settings<'_>,
    role: &str,
    context: &mut Context<'_>,
) -> Result<Zeroizing<String>, SessionError> {
    let configured = session.string("aws_sts_endpoint_url")?;
    if let Some(url) = configured
        && !url.starts_with("https://")
        && !url.starts_with("http://")
    {
        return Err(session
            .invalid(
                "aws_sts_endpoint_url",
                "must start with http:// or https://",
            )
            .into());
    }
    let identity = Identity::from_section(session, configured, Some("us-east-1"), context)?;
    let global = configured.is_none()
        && (context.env)("AWS_ENDPOINT_URL_STS").is_none_or(|url| url.is_empty())
        && identity.region == "us-east-1";
    let endpoint = if global {
        Endpoint::new(Some("https://sts.amazonaws.com"), "sts", &identity.region)
    } else {
        identity.sts.endpoint.clone()
    };
    let credentials = identity
        .credentials()
        .map_err(|error| SessionError::Source {
            origin: "the credential chain".to_owned(),
            reason: error.to_string(),
        })?;
    identity.register_refreshed(context.redactor);
    let mut headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    let server_id = session.string("vault_aws_iam_server_id")?;
    if let Some(server_id) = server_id {
        headers.push(("x-vault-aws-iam-server-id", server_id));
    }
    let signed = sigv4::sign(
        &sigv4::Unsigned {
            method: "POST",
            host: &endpoint.host,
            path: "/",
            headers: &headers,
            body: BODY.as_bytes(),
            region: &identity.region,
            service: "sts",
        },
        &credentials,
        time::OffsetDateTime::now_utc(),
    );
    // Vault reads the headers as Go's `http.Header`: a name to a list of values.
    let mut map = serde_json::Map::new();
    map.insert("Host".to_owned(), serde_json::json!([endpoint.host]));
    for (name, value) in headers {
        map.insert(canonical(name), serde_json::json!([value]));
    }
    for (name, value) in &signed {
        map.insert(canonical(name), serde_json::json!([value]));
    }
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let headers_json = Zeroizing::new(serde_json::Value::Object(map).to_string());
    Ok(Zeroizing::new(
        serde_json::json!({
            "role": role,
            "iam_http_request_method": "POST",
            "iam_request_url": encode(&format!("{}/", endpoint.url)),
            "iam_request_body": encode(BODY),
            "iam_request_headers": encode(&headers_json),
        })
        .to_string(),
    ))
}

/// `x-amz-date` as `X-Amz-Date`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_canonical() {
        assert_eq!(canonical("x-amz-security-token"), "X-Amz-Security-Token");
        assert_eq!(canonical("authorization"), "Authorization");
    }
}
