//! The backend stderr scrubber (`keyturn_protocol::scrub`, shared by both executables): values
//! and a stderr text built from the input. Never panics, and no fragment of 8 characters of any
//! value, as it is or in any escaping the scrubber recognises (serde's, Python's, Go's, all as
//! upper-case `\uXXXX`), survives in the scrubbed tail (with its control characters escaped, as the tail is) or in the scrubbed text.
//!
//! Input: the values, separated by `0xFE`, then `0xFF` and a script; without `0xFF` the script
//! prints every value once in each escaping. Value bytes pick characters from [`VALUE_CHARS`].
//! Each script byte is one step: below `0x80` it prints a value in an escaping; from `0x80` to
//! `0xBF` it adds filler (to move where the tail is cut); from `0xC0` it prints a value run on
//! into the next one (sharing the longest end of the first that starts the second), escaped as
//! one text. Values are only ever printed whole, and the filler shares no character with them,
//! so any fragment of a value in the output is one the scrubber let through.

#![no_main]

use std::collections::HashSet;

use keyturn_protocol::fuzzing::{Escaping, escape};
use keyturn_protocol::scrub::{STDERR_TAIL, Scrubber, escape_controls};
use libfuzzer_sys::fuzz_target;

/// What values are made of: JSON's escaped characters, controls, non-ASCII of 2, 3 and 4 bytes,
/// Go's HTML-escaped `<>&` and U+2028. None is in [`FILLER`] or the mask, a hex digit or `u`,
/// so no fragment of an escaped value can arise from anything but that value.
const VALUE_CHARS: &[char] = &[
    'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'v', 'w', 'x', 'y', 'z',
    '<', '>', '&', '\'', '"', '\\', '\n', '\t', '\u{1}', 'ä', 'ö', '€', '🔑', '\u{2028}',
];

/// Text between prints.
const FILLER: &str = " QRS,";

/// At most this many values (more segments are ignored).
const MAX_VALUES: usize = 16;

/// The stderr text stops growing past this (a few tails' worth, so the scrubber stays fast).
const MAX_STDERR: usize = 8 * STDERR_TAIL;

/// The shortest fragment that must not survive.
const FRAGMENT: usize = 8;

/// `first` run on into `second`: the longest end of `first` that starts `second` is written once.
fn run_on(first: &str, second: &str) -> String {
    let shared = first
        .char_indices()
        .map(|(at, _)| at)
        .find(|&at| second.starts_with(&first[at..]))
        .map_or(0, |at| first.len() - at);
    format!("{first}{}", &second[shared..])
}

/// Every run of `len` characters of `text`.
fn fragments(text: &str, len: usize) -> impl Iterator<Item = &str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain([text.len()])
        .collect();
    (len..bounds.len()).map(move |end| &text[bounds[end - len]..bounds[end]])
}

fuzz_target!(|data: &[u8]| {
    let (values_part, script) = match data.iter().position(|&byte| byte == 0xFF) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let values: Vec<String> = values_part
        .split(|&byte| byte == 0xFE)
        .take(MAX_VALUES)
        .map(|bytes| {
            bytes
                .iter()
                .map(|&byte| VALUE_CHARS[usize::from(byte) % VALUE_CHARS.len()])
                .collect()
        })
        .collect();
    let n = values.len();
    let mut stderr = String::new();
    match script {
        None => {
            for value in &values {
                for escaping in Escaping::ALL {
                    stderr.push_str(&escape(value, escaping));
                    stderr.push_str(FILLER);
                }
            }
        }
        Some(script) => {
            for &step in script {
                if stderr.len() > MAX_STDERR {
                    break;
                }
                let k = usize::from(step & 0x3f);
                match step {
                    0x00..=0x7f => {
                        let k = usize::from(step);
                        let escaping = Escaping::ALL[(k / n) % Escaping::ALL.len()];
                        stderr.push_str(&escape(&values[k % n], escaping));
                    }
                    0x80..=0xbf => stderr.push_str(&FILLER.repeat(k)),
                    _ => {
                        let escaping = Escaping::ALL[(k / n) % Escaping::ALL.len()];
                        let printed = run_on(&values[k % n], &values[(k + 1) % n]);
                        stderr.push_str(&escape(&printed, escaping));
                    }
                }
            }
        }
    }

    let scrubber = Scrubber::new(values.iter().map(String::as_str));
    let tail = scrubber.stderr_tail(stderr.as_bytes());
    let scrubbed = scrubber.scrub(&stderr);
    let tail_fragments: HashSet<&str> = fragments(&tail, FRAGMENT).collect();
    let scrubbed_fragments: HashSet<&str> = fragments(&scrubbed, FRAGMENT).collect();
    for value in &values {
        for escaping in Escaping::ALL {
            let printed = escape(value, escaping);
            for fragment in fragments(&escape_controls(&printed), FRAGMENT) {
                assert!(
                    !tail_fragments.contains(fragment),
                    "{fragment:?} of {value:?} ({escaping:?}) survives in the tail {tail:?}"
                );
            }
            for fragment in fragments(&printed, FRAGMENT) {
                assert!(
                    !scrubbed_fragments.contains(fragment),
                    "{fragment:?} of {value:?} ({escaping:?}) survives in {scrubbed:?}"
                );
            }
        }
    }
});
