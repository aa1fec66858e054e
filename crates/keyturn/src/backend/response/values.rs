//! The values of a whole answer, gathered for scrubbing what else the backend said (its
//! per-handle error texts and its stderr).

use std::fmt;

use serde::Deserializer;
use serde::de::{self, MapAccess, Visitor};
use zeroize::Zeroizing;

/// The values of `output` when it is a valid answer: what to scrub from the backend's other
/// texts. `None` when it is not an answer (a value there cannot be told apart reliably, so
/// callers withhold those texts instead of scrubbing them). Every entry's value counts, those
/// of a handle the answer repeats included (a map would keep only the last one, and the
/// backend may still print the others).
pub(crate) fn answer_values(output: &[u8]) -> Option<Vec<Zeroizing<String>>> {
    // Accepts exactly what `keyturn_protocol::parse_response` accepts: an object of entries,
    // then only whitespace.
    let mut deserializer = serde_json::Deserializer::from_slice(output);
    let values = deserializer.deserialize_map(AllValues).ok()?;
    deserializer.end().ok()?;
    Some(values)
}

/// Collects the value of every entry of an answer object, in order, repeated keys included.
struct AllValues;

impl<'de> Visitor<'de> for AllValues {
    type Value = Vec<Zeroizing<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of handles")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            let entry: keyturn_protocol::Entry = map.next_value()?;
            values.extend(entry.value);
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_values_are_the_values_of_a_valid_answer_only() {
        let check = |output: &str, expected: Option<&[&str]>| {
            let values = answer_values(output.as_bytes());
            let values: Option<Vec<&str>> = values
                .as_ref()
                .map(|v| v.iter().map(|v| v.as_str()).collect());
            assert_eq!(values.as_deref(), expected, "{output}");
        };
        check(
            r#"{"a":{"value":"x1","error":"e1","ttl":3},"value":{"value":"x\"2"}}"#,
            Some(&["x1", "x\"2"]),
        );
        check(r#"{"a":{"error":"e"}}"#, Some(&[]));
        check(r#"{"a":{"value": "trunc"#, None);
        check(r#"{"a":{"value":"ok"}} trailing"#, None);
        check(r#"{"a":"bare"}"#, None);
        // Issue 9.4c: a repeated handle's first value is a value too.
        check(
            r#"{"a":{"value":"first"},"b":{"value":"x"},"a":{"value":"second"}}"#,
            Some(&["first", "x", "second"]),
        );
    }
}
