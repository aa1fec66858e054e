//! What counts as a secret handle.
//!
//! A string value is a handle when, after trimming ASCII spaces and tabs only, it starts with
//! `ENC[` and ends with `]`. The handle is the text in between, verbatim: no nesting, no escapes,
//! no trimming inside. `ENC[]` is a handle (the empty one). This matches the Datadog Agent.

/// Returns the handle if `value` is written `ENC[handle]`.
pub fn parse_handle(value: &str) -> Option<&str> {
    let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
    trimmed.strip_prefix("ENC[")?.strip_suffix(']')
}

#[cfg(test)]
mod tests {
    use super::parse_handle;

    #[track_caller]
    fn check(value: &str, expected: Option<&str>) {
        assert_eq!(parse_handle(value), expected, "value {value:?}");
    }

    #[test]
    fn conformance_items_1_to_7() {
        check("", None);
        check("ENC[]", Some(""));
        check("test", None);
        check("ENC[", None);
        check("ENC[test]", Some("test"));
        check("ENC[]]]]", Some("]]]"));
        check("  ENC[test]\t", Some("test"));
    }

    #[test]
    fn only_space_and_tab_are_trimmed() {
        check("ENC[x]\n", None);
        check("\nENC[x]", None);
        check("ENC[x]\r", None);
        check("\u{a0}ENC[x]", None);
    }

    #[test]
    fn inner_text_is_verbatim() {
        check("ENC[ a ]", Some(" a "));
        check("ENC[user_array[1234]]", Some("user_array[1234]"));
        check("ENC[ENC[x]]", Some("ENC[x]"));
        check(r#"ENC[{"env": "prod"}]"#, Some(r#"{"env": "prod"}"#));
    }

    #[test]
    fn case_sensitive_and_whole_value_only() {
        check("enc[x]", None);
        check("Enc[x]", None);
        check("db-ENC[prod_password]", None);
        check("ENC[x] suffix", None);
    }
}
