//! How a value found in a structured source (a JSON file, a Vault secret's data, an AWS JSON
//! secret) becomes the text of a secret.
//!
//! One rule for every JSON source: a string is returned as it is; a number or a boolean as its
//! JSON text exactly as written (`0.10` stays `0.10`); an object or an array as its JSON text as
//! written (useful for a service-account document stored under one key); `null` is an error.
//! This matches Datadog's connector for AWS secrets and is a superset of what it accepts for
//! `file.json` (strings only), so a file that works there works here.
//!
//! Invariant: a [`ValueError`] describes the kind of value, never the value.

use serde_json::value::RawValue;
use zeroize::Zeroizing;

/// Why a value cannot be used as a secret's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ValueError {
    /// The value is `null` (or `~` in YAML).
    #[error("is null")]
    Null,
    /// A YAML mapping, which has no single text.
    #[error("is a mapping, not a scalar")]
    Mapping,
    /// A YAML sequence, which has no single text.
    #[error("is a sequence, not a scalar")]
    Sequence,
    /// A YAML node the parser could not resolve.
    #[error("is not a valid YAML value")]
    Invalid,
}

/// The secret text of one JSON value, following the module's rule.
pub(crate) fn json_text(raw: &RawValue) -> Result<Zeroizing<String>, ValueError> {
    let text = raw.get().trim();
    if text.starts_with('"') {
        // A string that came out of a JSON parser parses again as one.
        return serde_json::from_str::<String>(text)
            .map(Zeroizing::new)
            .map_err(|_| ValueError::Invalid);
    }
    if text == "null" {
        return Err(ValueError::Null);
    }
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expected: Result<&str, ValueError>) {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        let got = json_text(&raw);
        assert_eq!(
            got.as_ref().map(|text| text.as_str()),
            expected.as_ref().map(|text| *text),
            "{json}"
        );
    }

    #[test]
    fn renders_json_values() {
        check(r#""plain""#, Ok("plain"));
        check(r#""esc\"aped\n\u00e9""#, Ok("esc\"aped\né"));
        check("0.10", Ok("0.10"));
        check("12345678901234567890123", Ok("12345678901234567890123"));
        check("true", Ok("true"));
        check(r#"{"a": [1, "b"]}"#, Ok(r#"{"a": [1, "b"]}"#));
        check("null", Err(ValueError::Null));
    }
}
