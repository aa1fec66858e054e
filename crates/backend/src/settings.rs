//! Typed access to the payload's `config` object.
//!
//! Backends read their configuration through [`Settings`], which turns a missing or mistyped key
//! into a [`SettingsError`] naming the key by its full path (`vault_session.vault_role_id`).
//!
//! Invariant: a [`SettingsError`] never quotes a configured value. Values may be credentials, so
//! the error says which key is wrong and what was expected, never what was found.

use serde_json::{Map, Value};

/// A configuration problem, reported as the error of every handle of the request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    /// A required key is absent, null or empty.
    #[error("config key `{key}` is required{hint}")]
    Missing { key: String, hint: &'static str },
    /// A key holds a value of the wrong JSON type.
    #[error("config key `{key}` must be {expected}")]
    WrongType { key: String, expected: &'static str },
    /// A key holds a value of the right type that cannot be used.
    #[error("config key `{key}` {reason}")]
    Invalid { key: String, reason: String },
}

/// A view of one object of the configuration (the top level or a nested section).
#[derive(Debug, Clone)]
pub(crate) struct Settings<'a> {
    map: Option<&'a Map<String, Value>>,
    /// Path of this section, `""` at the top level, `"vault_session."` below it.
    prefix: String,
}

impl<'a> Settings<'a> {
    /// The top-level configuration; `None` (no `config` in the payload) reads as empty.
    pub(crate) fn new(map: Option<&'a Map<String, Value>>) -> Settings<'a> {
        Settings {
            map,
            prefix: String::new(),
        }
    }

    /// The full dotted name of `key` in this section, for error messages.
    pub(crate) fn key_path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A string value. Absent, `null` and `""` read as `None`, as Datadog's connector does.
    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, SettingsError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.wrong_type(key, "a string")),
        }
    }

    /// A string value that must be present.
    pub(crate) fn required_string(
        &self,
        key: &str,
        hint: &'static str,
    ) -> Result<&'a str, SettingsError> {
        self.string(key)?.ok_or_else(|| SettingsError::Missing {
            key: self.key_path(key),
            hint,
        })
    }

    /// A boolean value; absent or `null` reads as `None`.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, SettingsError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(self.wrong_type(key, "true or false")),
        }
    }

    /// A non-negative integer value; absent or `null` reads as `None`.
    pub(crate) fn u64(&self, key: &str) -> Result<Option<u64>, SettingsError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a non-negative integer")),
            Some(_) => Err(self.wrong_type(key, "a non-negative integer")),
        }
    }

    /// A nested object; absent or `null` reads as an empty section.
    pub(crate) fn section(&self, key: &str) -> Result<Settings<'a>, SettingsError> {
        let map = match self.raw(key) {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err(self.wrong_type(key, "an object")),
        };
        Ok(Settings {
            map,
            prefix: format!("{}{key}.", self.prefix),
        })
    }

    /// An error for a key whose value cannot be used.
    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> SettingsError {
        SettingsError::Invalid {
            key: self.key_path(key),
            reason: reason.into(),
        }
    }

    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map
            .and_then(|map| map.get(key))
            .filter(|value| !value.is_null())
    }

    fn wrong_type(&self, key: &str, expected: &'static str) -> SettingsError {
        SettingsError::WrongType {
            key: self.key_path(key),
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_typed_values_and_treats_null_and_empty_as_absent() {
        let map = config(r#"{"s":"x","e":"","n":null,"b":true,"u":7,"o":{"inner":"y"},"bad":[1]}"#);
        let settings = Settings::new(Some(&map));
        assert_eq!(settings.string("s").unwrap(), Some("x"));
        assert_eq!(settings.string("e").unwrap(), None);
        assert_eq!(settings.string("n").unwrap(), None);
        assert_eq!(settings.string("missing").unwrap(), None);
        assert_eq!(settings.bool("b").unwrap(), Some(true));
        assert_eq!(settings.u64("u").unwrap(), Some(7));
        let section = settings.section("o").unwrap();
        assert_eq!(section.string("inner").unwrap(), Some("y"));
        assert_eq!(section.key_path("inner"), "o.inner");
    }

    #[test]
    fn errors_name_the_key_and_never_the_value() {
        let map = config(r#"{"token":123456789,"flag":"hunter2","o":{"k":["hunter2"]}}"#);
        let settings = Settings::new(Some(&map));
        let section = settings.section("o").unwrap();
        let errors = [
            settings.string("token").unwrap_err().to_string(),
            settings.bool("flag").unwrap_err().to_string(),
            settings.u64("flag").unwrap_err().to_string(),
            section.string("k").unwrap_err().to_string(),
            settings
                .required_string("nope", " (the file to read)")
                .unwrap_err()
                .to_string(),
        ];
        assert_eq!(
            errors,
            [
                "config key `token` must be a string",
                "config key `flag` must be true or false",
                "config key `flag` must be a non-negative integer",
                "config key `o.k` must be a string",
                "config key `nope` is required (the file to read)",
            ]
        );
    }
}
