//! yaml v3's resolution rules for scalars, as the Datadog Agent's Go code decodes them: which
//! tags give a string, and which plain scalars resolve to null, bool, int, float or timestamp
//! instead (so do not count as string keys).

use saphyr_parser::{ScalarStyle, Tag};

const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// How a scalar key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyClass {
    String,
    Merge,
    NonString,
}

/// How yaml v3 sees a scalar key.
pub(super) fn classify_key(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> KeyClass {
    match tag {
        Some(tag) if tag_is(tag, "tag:yaml.org,2002:str") => KeyClass::String,
        Some(tag) if tag_is(tag, "tag:yaml.org,2002:merge") => KeyClass::Merge,
        // yaml v3 resolves a plain scalar tagged `!` like an untagged one.
        Some(tag) if !tag_is(tag, "!") => KeyClass::NonString,
        _ if style != ScalarStyle::Plain => KeyClass::String,
        _ if value == "<<" => KeyClass::Merge,
        _ if plain_is_non_string(value) => KeyClass::NonString,
        _ => KeyClass::String,
    }
}

/// Whether yaml v3 decodes a scalar with this tag to a string (given it looks like a handle).
pub(super) fn value_is_string(tag: Option<&Tag>) -> bool {
    match tag {
        None => true,
        Some(tag) => {
            tag_is(tag, "!")
                || tag_is(tag, "tag:yaml.org,2002:str")
                || !(tag.handle.starts_with(CORE_TAG_PREFIX)
                    || (tag.handle.is_empty() && tag.suffix.starts_with(CORE_TAG_PREFIX)))
        }
    }
}

/// Whether `tag` (as saphyr splits it into handle and suffix) is `name`.
pub(super) fn tag_is(tag: &Tag, name: &str) -> bool {
    name.len() == tag.handle.len() + tag.suffix.len()
        && name.starts_with(tag.handle.as_str())
        && name.ends_with(tag.suffix.as_str())
}

/// Whether yaml v3 resolves this plain scalar to null, bool, float, int or timestamp.
fn plain_is_non_string(value: &str) -> bool {
    match value {
        "" | "~" | "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False"
        | "FALSE" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
        | "-.INF" | ".nan" | ".NaN" | ".NAN" => return true,
        _ => {}
    }
    let starts_numeric = value
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.'));
    if !starts_numeric {
        return false;
    }
    looks_like_timestamp(value) || looks_like_number(&value.replace('_', ""))
}

/// `[-+]?` then an integer in Go's base-0 syntax (`0x`, `0o`, `0b`, leading-zero octal,
/// decimal) or a float matching yaml v3's `yamlStyleFloat`.
fn looks_like_number(value: &str) -> bool {
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let radix_digits = |prefixes: [&str; 2], is_digit: fn(&u8) -> bool| {
        prefixes.iter().any(|prefix| {
            unsigned
                .strip_prefix(prefix)
                .is_some_and(|digits| !digits.is_empty() && digits.as_bytes().iter().all(is_digit))
        })
    };
    if radix_digits(["0x", "0X"], u8::is_ascii_hexdigit)
        || radix_digits(["0o", "0O"], |byte| matches!(byte, b'0'..=b'7'))
        || radix_digits(["0b", "0B"], |byte| matches!(byte, b'0' | b'1'))
    {
        return true;
    }
    // yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$ (decimal and
    // leading-zero integers match it too).
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent
        .is_none_or(|exponent| digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)));
    mantissa_ok && exponent_ok
}

/// Approximately yaml v3's timestamp formats: `YYYY-M-D`, optionally followed by `T`, `t` or a
/// space and a time.
fn looks_like_timestamp(value: &str) -> bool {
    let mut parts = value.splitn(3, '-');
    let (Some(year), Some(month), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number = |text: &str, max_len: usize| {
        !text.is_empty() && text.len() <= max_len && text.bytes().all(|byte| byte.is_ascii_digit())
    };
    if year.len() != 4 || !number(year, 4) || !number(month, 2) || !(1..=2).contains(&day_len) {
        return false;
    }
    let time = &rest[day_len..];
    time.is_empty()
        || (time.starts_with(['T', 't', ' '])
            && time[1..]
                .bytes()
                .next()
                .is_some_and(|byte| byte.is_ascii_digit())
            && time.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::{looks_like_timestamp, plain_is_non_string};

    #[test]
    fn plain_key_resolution_follows_yaml_v3() {
        for non_string in [
            "",
            "~",
            "null",
            "NULL",
            "true",
            "False",
            "123",
            "-1",
            "+1",
            "0755",
            "08",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            "1.5",
            ".5",
            "1e3",
            "1.e3",
            "-.inf",
            ".NaN",
            "2001-12-14",
            "2001-12-14T21:59:43.10-05:00",
            "2001-12-14 21:59:43.10",
        ] {
            assert!(
                plain_is_non_string(non_string),
                "{non_string:?} is not a string"
            );
        }
        for string in [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "a",
            "1a",
            "1.2.3",
            "0x",
            "0xG",
            "-",
            ".",
            "1e",
            "+",
            "<<",
            "e3",
            "2001-12",
            "v1.0",
            "12:30",
            "2001-12-14x",
        ] {
            assert!(!plain_is_non_string(string), "{string:?} is a string");
        }
        assert!(!looks_like_timestamp("201-12-14"));
    }
}
