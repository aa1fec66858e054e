//! [`Redactor`]: the last line of defence that keeps credentials out of error texts.
//!
//! Error texts are built from handles, paths, keys and status codes, never from credentials; but
//! some carry text chosen by a remote server (Vault's `errors`, AWS's `message`), and a server may
//! echo what it was sent. Before the answer is written, every error text is scrubbed of every
//! credential the backend handled: the configuration's credential-like values plus whatever a
//! backend registers (tokens read from files or the environment, tokens obtained by logging in).
//!
//! The scrubbing itself is `keyturn_protocol::scrub`, the scrubber keyturn uses on backend
//! texts: values found as written or JSON-escaped, one mask for both executables.
//!
//! Invariant: every credential a backend reads or obtains is registered here before any request
//! that uses it is sent.

use keyturn_protocol::scrub::{MASK, Scrubber};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// What replaces a credential found in an error text: the mask keyturn uses too.
pub(crate) const REDACTED: &str = MASK;

/// Credentials shorter than this are not searched for: replacing every `abc` in an error text
/// would mangle it, and such a credential protects nothing.
const MIN_CREDENTIAL_LEN: usize = 4;

/// A credential cut by [`crate::http::tidy`]'s 300-character cap ends just before its `...`;
/// a cut part this long is still scrubbed.
const MIN_CUT_LEN: usize = 8;

/// The credentials to scrub from error texts.
#[derive(Default)]
pub(crate) struct Redactor {
    needles: Vec<Zeroizing<String>>,
}

impl Redactor {
    /// A redactor that knows the credential-like values of the payload's `config`: string values
    /// whose key names a token, secret, password or JWT, except keys naming a path or file.
    pub(crate) fn from_config(config: Option<&Map<String, Value>>) -> Redactor {
        let mut redactor = Redactor::default();
        if let Some(map) = config {
            redactor.walk_map(map);
        }
        redactor
    }

    /// Registers a credential, and its form-encoded spelling (a server echoing a form body
    /// shows `a%2Fb` for `a/b`).
    pub(crate) fn add(&mut self, credential: &str) {
        let encoded = crate::http::form_encode(credential.trim());
        if encoded != credential.trim() {
            self.add_one(&encoded);
        }
        self.add_one(credential);
    }

    fn add_one(&mut self, credential: &str) {
        let credential = credential.trim();
        if credential.len() >= MIN_CREDENTIAL_LEN
            && !self
                .needles
                .iter()
                .any(|known| known.as_str() == credential)
        {
            self.needles.push(Zeroizing::new(credential.to_owned()));
            // Longest first, so a credential containing another is replaced whole.
            self.needles
                .sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        }
    }

    /// Registers the user info of `url` (`user:password@`), whole and its password alone, when
    /// it has one.
    pub(crate) fn add_url(&mut self, url: &str) {
        if let Some(info) = keyturn_protocol::userinfo(url) {
            self.add(info);
            if let Some((_, password)) = info.split_once(':') {
                self.add(password);
            }
        }
    }

    /// `text` with every registered credential, as written or JSON-escaped, replaced by
    /// [`REDACTED`] (overlapping ones by one mask), and the user info of every URL in it too.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let scrubber = Scrubber::new(self.needles.iter().map(|needle| needle.as_str()));
        let mut out = scrubber.scrub(text);
        for needle in &self.needles {
            out = scrub_cut(&out, needle);
        }
        out
    }

    fn walk_map(&mut self, map: &Map<String, Value>) {
        for (key, value) in map {
            match value {
                Value::String(text) if is_credential_key(key) => self.add(text),
                Value::String(text) => self.add_url(text),
                Value::Object(inner) => self.walk_map(inner),
                Value::Array(items) => {
                    for item in items {
                        if let Value::Object(inner) = item {
                            self.walk_map(inner);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// `text` with the start of `needle` removed where it stands cut just before a `...`.
fn scrub_cut(text: &str, needle: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("...") {
        let head = &rest[..at];
        let cut = (MIN_CUT_LEN..needle.len())
            .rev()
            .filter(|len| needle.is_char_boundary(*len))
            .find(|len| head.ends_with(&needle[..*len]));
        match cut {
            Some(len) => {
                out.push_str(&head[..head.len() - len]);
                out.push_str(REDACTED);
            }
            None => out.push_str(head),
        }
        out.push_str("...");
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

/// Whether a configuration key names a credential (`vault_token`, `aws_secret_access_key`,
/// `vault_password`, `vault_kubernetes_jwt`) rather than where one is stored (`vault_token_file`,
/// `secrets_path`).
fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let names_location = ["_path", "_file", "_dir"]
        .iter()
        .any(|suffix| key.ends_with(suffix));
    !names_location
        && ["token", "secret", "password", "passwd", "jwt", "credential"]
            .iter()
            .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_keys_are_recognised_and_locations_are_not() {
        for (key, expected) in [
            ("vault_token", true),
            ("aws_secret_access_key", true),
            ("aws_session_token", true),
            ("vault_secret_id", true),
            ("vault_password", true),
            ("vault_ldap_password", true),
            ("vault_kubernetes_jwt", true),
            ("vault_token_file", false),
            ("vault_secret_id_file", false),
            ("secrets_path", false),
            ("vault_address", false),
            ("aws_access_key_id", false),
            ("file_path", false),
        ] {
            assert_eq!(is_credential_key(key), expected, "{key}");
        }
    }

    #[test]
    fn scrubs_config_credentials_and_registered_ones() {
        let config: Map<String, Value> = serde_json::from_str(
            r#"{"vault_token":"s.ABCDEFGH","vault_address":"http://vault:8200",
                "vault_session":{"vault_secret_id":"sid-123456"},"short":"x",
                "list":[{"password":"pw-987654"}]}"#,
        )
        .unwrap();
        let mut redactor = Redactor::from_config(Some(&config));
        redactor.add("hvs.login-token");
        redactor.add("ab");
        let text = "token s.ABCDEFGH sid-123456 pw-987654 hvs.login-token at http://vault:8200 ab";
        assert_eq!(
            redactor.scrub(text),
            "token <redacted> <redacted> <redacted> <redacted> at http://vault:8200 ab"
        );
    }

    // Issue 9.17: user info in any URL of the configuration, or of any error text.
    #[test]
    fn url_user_info_is_redacted() {
        let config: Map<String, Value> =
            serde_json::from_str(r#"{"vault_address":"https://admin:pa/ss-7f@vault:8200"}"#)
                .unwrap();
        let redactor = Redactor::from_config(Some(&config));
        assert_eq!(
            redactor.scrub("at https://admin:pa/ss-7f@vault:8200: pa/ss-7f, ftp://u:p@h/x"),
            "at https://<redacted>@vault:8200: <redacted>, ftp://<redacted>@h/x"
        );
    }

    #[test]
    fn cut_and_form_encoded_credentials_are_scrubbed() {
        let mut redactor = Redactor::default();
        redactor.add("1//0gRefreshToken+abc/def=");
        redactor.add("eyJhbGciOiJSUzI1NiJ9.claims.signature");
        let echoed = crate::http::tidy(&format!(
            "{} refresh_token=1%2F%2F0gRefreshToken%2Babc%2Fdef%3D assertion=eyJhbGciOiJSUzI1NiJ9.claims.signature",
            "x".repeat(260)
        ));
        assert!(echoed.ends_with("..."), "{echoed}");
        let scrubbed = redactor.scrub(&echoed);
        assert!(!scrubbed.contains("0gRefresh"), "{scrubbed}");
        assert!(!scrubbed.contains("eyJhbGci"), "{scrubbed}");
        assert!(scrubbed.ends_with("<redacted>..."), "{scrubbed}");
        // Short coincidences before an ellipsis are left alone.
        assert_eq!(redactor.scrub("wait 1//0g..."), "wait 1//0g...");
    }

    #[test]
    fn longer_credentials_are_replaced_whole() {
        let mut redactor = Redactor::default();
        redactor.add("abcd");
        redactor.add("abcdefgh");
        assert_eq!(
            redactor.scrub("x abcdefgh y abcd"),
            "x <redacted> y <redacted>"
        );
    }
}
