//! AWS STS: temporary credentials for a role, by `AssumeRole` (signed with the base
//! credentials; `aws_role_arn`) or `AssumeRoleWithWebIdentity` (unsigned, with the token of
//! `AWS_WEB_IDENTITY_TOKEN_FILE`; EKS IRSA).
//!
//! Invariant: the returned credentials are registered with the redactor by the caller before
//! any use; errors carry the STS error code and message, never a credential or the token.

use zeroize::Zeroizing;

use super::{CallError, Credentials, Endpoint, post};
use crate::http::Client;
use crate::http::form_encode;

/// Session name when none is configured; it shows in the role's CloudTrail events.
pub(super) const SESSION_NAME: &str = "keyturn-backend";

/// Lifetime asked for: the shortest STS allows. One run needs the credentials for seconds.
const DURATION_SECONDS: &str = "900";

/// An STS client.
pub(super) struct Sts {
    pub(super) http: Client,
    pub(super) endpoint: Endpoint,
    pub(super) region: String,
}

impl Sts {
    /// `sts:AssumeRole`, signed with `base`.
    pub(super) fn assume_role(
        &self,
        base: &Credentials,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials, String> {
        let mut form = vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn),
            ("RoleSessionName", session_name),
            ("DurationSeconds", DURATION_SECONDS),
        ];
        if let Some(external_id) = external_id {
            form.push(("ExternalId", external_id));
        }
        self.call(&form, Some(base))
    }

    /// `sts:AssumeRoleWithWebIdentity`, unsigned: the token is the credential.
    pub(super) fn assume_role_with_web_identity(
        &self,
        role_arn: &str,
        session_name: &str,
        token: &str,
    ) -> Result<Credentials, String> {
        self.call(
            &[
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", role_arn),
                ("RoleSessionName", session_name),
                ("DurationSeconds", DURATION_SECONDS),
                ("WebIdentityToken", token),
            ],
            None,
        )
    }

    fn call(
        &self,
        form: &[(&str, &str)],
        signer: Option<&Credentials>,
    ) -> Result<Credentials, String> {
        let body = Zeroizing::new(
            form.iter()
                .map(|(name, value)| format!("{name}={}", form_encode(value)))
                .collect::<Vec<_>>()
                .join("&"),
        );
        let answer = post(
            &self.http,
            &self.endpoint,
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body.as_bytes().to_vec(),
            signer.map(|credentials| (credentials, self.region.as_str(), "sts")),
        )
        .map_err(|error: CallError| error.to_string())?;
        parse_credentials(&answer).ok_or_else(|| "unexpected answer from STS".to_owned())
    }
}

/// The credentials of an `AssumeRole*Response`.
fn parse_credentials(xml: &str) -> Option<Credentials> {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{name}>"))? + start;
        Some(unescape(xml[start..end].trim()))
    };
    Some(Credentials {
        access_key_id: tag("AccessKeyId")?,
        secret_access_key: Zeroizing::new(tag("SecretAccessKey")?),
        session_token: Some(Zeroizing::new(tag("SessionToken")?)),
        expires: tag("Expiration").and_then(|text| super::parse_time(&text).ok()),
    })
}

/// XML character entities, as STS may escape them in tokens.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assume_role_answers() {
        let xml = "<AssumeRoleResponse><AssumeRoleResult><Credentials>\
                   <AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s/k+1</SecretAccessKey>\
                   <SessionToken>tok&amp;en=</SessionToken>\
                   <Expiration>2030-01-02T03:04:05Z</Expiration></Credentials></AssumeRoleResult>\
                   </AssumeRoleResponse>";
        let credentials = parse_credentials(xml).unwrap();
        assert_eq!(credentials.access_key_id, "ASIA1");
        assert_eq!(credentials.secret_access_key.as_str(), "s/k+1");
        assert_eq!(credentials.session_token.unwrap().as_str(), "tok&en=");
        assert_eq!(
            credentials.expires,
            Some(time::macros::datetime!(2030-01-02 03:04:05 UTC))
        );
        assert!(parse_credentials("<Error/>").is_none());
    }
}
