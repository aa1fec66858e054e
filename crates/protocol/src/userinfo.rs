//! URL user info (`scheme://user:password@host`): found and redacted wherever a URL is printed.
//!
//! Both executables print URLs taken from configuration (a Vault address, an AWS endpoint) or
//! from a backend's own texts, and a URL may carry a user name and password. Every error text
//! they build from outside text goes through [`redact_userinfo`].

use std::borrow::Cow;

/// What replaces the user info of a URL.
pub const REDACTED_USERINFO: &str = "<redacted>";

/// `text` with the user info of every URL in it replaced by [`REDACTED_USERINFO`]: in each
/// `scheme://authority` (the authority ending at `/`, `?`, `#`, white space, a quote or `<>`),
/// everything up to the authority's last `@`. A password holding one of those delimiters
/// cannot be told apart from a path in free text; callers that know the URL also register its
/// [`userinfo`] as a credential.
pub fn redact_userinfo(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text.get(search..).and_then(|rest| rest.find("://")) {
        let separator = search + found;
        let authority = separator + 3;
        search = authority;
        if !has_scheme(text.get(..separator).unwrap_or_default()) {
            continue;
        }
        let rest = text.get(authority..).unwrap_or_default();
        let end = rest
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(rest.len());
        if let Some(at) = rest.get(..end).and_then(|authority| authority.rfind('@')) {
            out.push_str(text.get(copied..authority).unwrap_or_default());
            out.push_str(REDACTED_USERINFO);
            copied = authority + at;
            search = copied;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// The user info of a configured URL (between `://` and the last `@`), when it has one. A
/// configured address is one URL, so a password holding `/`, `?` or `#` is found too.
pub fn userinfo(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if !has_scheme(scheme) {
        return None;
    }
    let at = rest.rfind('@')?;
    rest.get(..at).filter(|info| !info.is_empty())
}

/// Whether `before` ends with a URL scheme (a letter, then letters, digits, `+`, `-`, `.`).
fn has_scheme(before: &str) -> bool {
    let scheme_len = before
        .bytes()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        .count();
    let scheme = before.get(before.len() - scheme_len..).unwrap_or_default();
    // The scheme starts at its first letter: `1http` in `x1http://` is read as `http`.
    scheme.bytes().any(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_redacted_in_every_url() {
        for (text, expected) in [
            ("no url here", "no url here"),
            ("http://vault:8200/v1/x", "http://vault:8200/v1/x"),
            (
                "request to http://admin:hunter2@vault:8200 failed",
                "request to http://<redacted>@vault:8200 failed",
            ),
            (
                "a https://u@h/p?q@r and 'svc+ssh://x:y@z' http://a:b:c@@d:1#f",
                "a https://<redacted>@h/p?q@r and 'svc+ssh://<redacted>@z' http://<redacted>@d:1#f",
            ),
            ("://user:pw@host", "://user:pw@host"),
            ("http://user:pw@", "http://<redacted>@"),
            ("é://ü:pw@h", "é://ü:pw@h"),
        ] {
            assert_eq!(redact_userinfo(text), expected, "{text}");
        }
    }

    #[test]
    fn user_info_of_a_configured_url() {
        assert_eq!(
            userinfo("http://admin:p/ss#1@vault:8200/"),
            Some("admin:p/ss#1")
        );
        assert_eq!(userinfo("https://vault:8200"), None);
        assert_eq!(userinfo("https://@vault"), None);
        assert_eq!(userinfo("vault@host"), None);
    }
}
