//! One audit record: what a line of the audit file says, how keyturn encodes it, and how
//! existing lines are read back.
//!
//! Invariant: the only way to put a value into a [`Record`] is [`AuditEntry::new`], which keeps
//! it only when [`masked_key`] says it is likely an API or application key, and then keeps it
//! masked. No other secret value can reach the audit file.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::backend::FailureKind;
use crate::resolver::Trigger;
use crate::secret::Secret;

/// One handle of a refresh response, with its value only if that value is a likely key, masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    handle: String,
    masked_value: Option<String>,
}

impl AuditEntry {
    /// The entry for `handle` resolved to `value`. `last_segments` holds the last key-path
    /// segment of every place the handle is used (for `[api, apiKey]`, pass `apiKey`); the value
    /// is kept, masked, only when [`masked_key`] accepts it.
    pub fn new<'a>(
        handle: impl Into<String>,
        value: &Secret,
        last_segments: impl IntoIterator<Item = &'a str>,
    ) -> AuditEntry {
        AuditEntry {
            handle: handle.into(),
            masked_value: masked_key(value, last_segments),
        }
    }

    /// The handle.
    pub fn handle(&self) -> &str {
        &self.handle
    }

    /// The masked value, when the value is a likely key.
    pub fn masked_value(&self) -> Option<&str> {
        self.masked_value.as_deref()
    }
}

/// A handle the refresh could not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedHandle {
    /// The handle.
    pub handle: String,
    /// Why it failed; written as [`FailureKind::as_str`].
    pub reason: FailureKind,
}

/// A use whose new value a refresh did not apply: its origin's `refresh_allowlist` held it
/// back, so it keeps the value it was last rendered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldBackUse {
    /// The handle.
    pub handle: String,
    /// The origin (document) of the use.
    pub origin: String,
    /// Its key path, joined with `/`.
    pub path: String,
}

/// What one refresh that changed a value or failed appends to the audit file. The time is
/// given when the record is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What started the refresh.
    pub trigger: Trigger,
    /// Every handle of the refresh response (not only the changed ones), in any order: they are
    /// written sorted by handle.
    pub entries: Vec<AuditEntry>,
    /// Handles the refresh could not resolve, in any order: they are written sorted by handle.
    pub failed: Vec<FailedHandle>,
    /// Uses whose new value was not applied (written sorted; the field is left out when empty).
    pub held_back: Vec<HeldBackUse>,
}

impl Record {
    /// The record as one line of the audit file, `\n` included, stamped with `time` in UTC.
    /// Fails only when `time` cannot be written as RFC 3339 (a year outside 0..=9999).
    pub(crate) fn encode(&self, time: OffsetDateTime) -> Result<Vec<u8>, String> {
        let time = time
            .checked_to_offset(UtcOffset::UTC)
            .ok_or_else(|| "time out of range".to_owned())?
            .format(&Rfc3339)
            .map_err(|err| err.to_string())?;
        let mut data: Vec<WireEntry<'_>> = self
            .entries
            .iter()
            .map(|entry| WireEntry {
                handle: &entry.handle,
                value: entry.masked_value.as_deref(),
            })
            .collect();
        data.sort_by(|a, b| a.handle.cmp(b.handle));
        let mut failed: Vec<WireFailure<'_>> = self
            .failed
            .iter()
            .map(|failure| WireFailure {
                handle: &failure.handle,
                reason: failure.reason.as_str(),
            })
            .collect();
        failed.sort_by(|a, b| a.handle.cmp(b.handle));
        let mut held_back: Vec<&HeldBackUse> = self.held_back.iter().collect();
        held_back
            .sort_by(|a, b| (&a.handle, &a.origin, &a.path).cmp(&(&b.handle, &b.origin, &b.path)));
        let wire = WireRecord {
            time: &time,
            data,
            trigger: self.trigger.as_str(),
            failed,
            held_back,
        };
        let mut line = serde_json::to_vec(&wire).map_err(|err| err.to_string())?;
        line.push(b'\n');
        Ok(line)
    }
}

/// The value to write for a handle, or `None` to write none: `Some` only when `value` is exactly
/// 32 or 40 hexadecimal characters (the shape of Datadog API and application keys) AND at least
/// one of `last_segments` ends with `key` once lower-cased (`apiKey`, `app_key`, ...). The value
/// is then masked: every character `*` except the last 5.
///
/// The Datadog Agent means the same rule but, because of a malformed regular expression, only
/// ever accepts 32 characters; keyturn accepts 40 as intended.
pub fn masked_key<'a>(
    value: &Secret,
    last_segments: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    const KEPT: usize = 5;
    let value = value.expose();
    let key_shaped =
        matches!(value.len(), 32 | 40) && value.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !key_shaped {
        return None;
    }
    let under_key = last_segments
        .into_iter()
        .any(|segment| segment.to_lowercase().ends_with("key"));
    if !under_key {
        return None;
    }
    // All ASCII, so byte offsets are character offsets.
    let (hidden, kept) = value.split_at(value.len() - KEPT);
    Some("*".repeat(hidden.len()) + kept)
}

/// What [`scan`] found in the content of an audit file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every line that is a record (a JSON object with a non-zero RFC 3339 `time`), in order.
    pub records: Vec<ScannedRecord>,
    /// Lines that are not blank and not a record.
    pub invalid_lines: usize,
    /// The content does not end with `\n`: its last line was cut short (a crash while writing)
    /// or written by another tool. That line still counts as a record if it parses.
    pub torn_tail: bool,
}

/// One record read back from an audit file. Fields keyturn does not know are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    /// When the record was written.
    pub time: OffsetDateTime,
    /// The `data` entries as written.
    pub data: Vec<ScannedEntry>,
    /// The `trigger`, absent from records written by the Datadog Agent.
    pub trigger: Option<String>,
    /// The `failed` entries, absent from records written by the Datadog Agent.
    pub failed: Vec<ScannedFailure>,
}

/// One `data` entry read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScannedEntry {
    /// The handle.
    pub handle: String,
    /// The (masked) value, when one was written.
    #[serde(default)]
    pub value: Option<String>,
}

/// One `failed` entry read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScannedFailure {
    /// The handle.
    pub handle: String,
    /// The failure kind as written.
    pub reason: String,
}

/// Reads the content of an audit file, tolerating anything: lines that do not parse are
/// counted, never fatal. Never panics.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan {
        torn_tail: bytes.last().is_some_and(|&last| last != b'\n'),
        ..Scan::default()
    };
    for line in bytes.split(|&byte| byte == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_record(line) {
            Some(record) => scan.records.push(record),
            None => scan.invalid_lines += 1,
        }
    }
    scan
}

/// The time of the record on `line` (with or without its `\n`), if the line is a record.
pub(crate) fn record_time(line: &[u8]) -> Option<OffsetDateTime> {
    #[derive(Deserialize)]
    struct TimeOnly {
        time: String,
    }
    let wire: TimeOnly = serde_json::from_slice(line).ok()?;
    parse_time(&wire.time)
}

fn parse_record(line: &[u8]) -> Option<ScannedRecord> {
    let wire: WireRecordIn = serde_json::from_slice(line).ok()?;
    Some(ScannedRecord {
        time: parse_time(&wire.time)?,
        data: wire.data.unwrap_or_default(),
        trigger: wire.trigger,
        failed: wire.failed.unwrap_or_default(),
    })
}

/// An RFC 3339 time that is not Go's zero time (which the Datadog Agent writes for "no time").
fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let go_zero = time::macros::datetime!(0001-01-01 00:00:00 UTC);
    (time != go_zero).then_some(time)
}

#[derive(Serialize)]
struct WireRecord<'a> {
    time: &'a str,
    data: Vec<WireEntry<'a>>,
    trigger: &'a str,
    failed: Vec<WireFailure<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    held_back: Vec<&'a HeldBackUse>,
}

#[derive(Serialize)]
struct WireEntry<'a> {
    handle: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
}

#[derive(Serialize)]
struct WireFailure<'a> {
    handle: &'a str,
    reason: &'a str,
}

/// A line as read back: `data` and `failed` may be missing or `null` (Go writes a nil slice
/// as `null`).
#[derive(Deserialize)]
struct WireRecordIn {
    time: String,
    #[serde(default)]
    data: Option<Vec<ScannedEntry>>,
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    failed: Option<Vec<ScannedFailure>>,
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const HEX32: &str = "0123456789abcdef0123456789ABCDEF";
    const HEX40: &str = "0123456789abcdef0123456789abcdef01234567";

    #[track_caller]
    fn check_mask(value: &str, segments: &[&str], expected: Option<&str>) {
        let got = masked_key(&Secret::new(value), segments.iter().copied());
        assert_eq!(got.as_deref(), expected, "segments {segments:?}");
    }

    #[test]
    fn masks_only_key_shaped_values_under_key_paths() {
        // Item 32, plus the 40-character keys the reference misses.
        check_mask(HEX32, &["apiKey"], Some("***************************BCDEF"));
        check_mask(
            HEX40,
            &["app_key"],
            Some("***********************************34567"),
        );
        check_mask(
            HEX32,
            &["password", "API_KEY"],
            Some("***************************BCDEF"),
        );
        check_mask(&HEX32[..29], &["apiKey"], None);
        check_mask(&HEX40[..39], &["apiKey"], None);
        check_mask(&format!("{HEX32}0"), &["apiKey"], None);
        check_mask("0123456789abcdef0123456789abcdeg", &["apiKey"], None);
        check_mask(HEX32, &["password"], None);
        check_mask(HEX32, &["keys"], None);
        check_mask(HEX32, &[], None);
        // Unicode lower-casing, as Go's strings.ToLower: KELVIN SIGN lower-cases to `k`.
        check_mask(
            HEX32,
            &["\u{212A}EY"],
            Some("***************************BCDEF"),
        );
    }

    #[test]
    fn key_only_under_another_handle_is_not_written() {
        // Item 32: the `apiKey` context belongs to `other`; `token` is only used at `password`.
        let record = Record {
            trigger: Trigger::Timer,
            entries: vec![
                AuditEntry::new("other", &Secret::new("not-hex"), ["apiKey"]),
                AuditEntry::new("token", &Secret::new(HEX32), ["password"]),
            ],
            failed: Vec::new(),
            held_back: Vec::new(),
        };
        let line = record.encode(datetime!(2014-02-04 10:30:00 UTC)).unwrap();
        let line = String::from_utf8(line).unwrap();
        assert_eq!(
            line,
            "{\"time\":\"2014-02-04T10:30:00Z\",\"data\":[{\"handle\":\"other\"},\
             {\"handle\":\"token\"}],\"trigger\":\"timer\",\"failed\":[]}\n"
        );
    }

    #[test]
    fn secret_values_never_reach_the_line_or_debug() {
        let record = Record {
            trigger: Trigger::Api,
            entries: vec![
                AuditEntry::new("db", &Secret::new("hunter2-correct-horse"), ["api_key"]),
                AuditEntry::new("hex", &Secret::new(HEX40), ["password"]),
                AuditEntry::new("key", &Secret::new(HEX32), ["apiKey"]),
            ],
            failed: vec![FailedHandle {
                handle: "gone".into(),
                reason: FailureKind::Missing,
            }],
            held_back: Vec::new(),
        };
        let line = record.encode(datetime!(2014-02-04 10:30:00 UTC)).unwrap();
        let line = String::from_utf8(line).unwrap();
        let debug = format!("{record:?}");
        for text in [&line, &debug] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(HEX40), "{text}");
            assert!(!text.contains(HEX32), "{text}");
            assert!(!text.contains(&HEX32[..27]), "{text}");
        }
        assert!(line.contains(r#"{"handle":"key","value":"***************************BCDEF"}"#));
        assert!(line.contains(r#""failed":[{"handle":"gone","reason":"missing"}]"#));
    }

    #[test]
    fn encodes_sorted_with_fractional_seconds_only_when_non_zero() {
        let record = Record {
            trigger: Trigger::Signal,
            entries: vec![
                AuditEntry::new("pear", &Secret::new("x"), []),
                AuditEntry::new("apple", &Secret::new("y"), []),
            ],
            failed: vec![
                FailedHandle {
                    handle: "z".into(),
                    reason: FailureKind::BackendError,
                },
                FailedHandle {
                    handle: "b".into(),
                    reason: FailureKind::Empty,
                },
            ],
            held_back: Vec::new(),
        };
        let at = |time| String::from_utf8(record.encode(time).unwrap()).unwrap();
        assert_eq!(
            at(datetime!(2014-02-04 12:30:00.5 +02:00)),
            "{\"time\":\"2014-02-04T10:30:00.5Z\",\"data\":[{\"handle\":\"apple\"},\
             {\"handle\":\"pear\"}],\"trigger\":\"signal\",\"failed\":[{\"handle\":\"b\",\
             \"reason\":\"empty\"},{\"handle\":\"z\",\"reason\":\"backend_error\"}]}\n"
        );
        assert!(at(datetime!(2014-02-04 10:30:00.000_000_123 UTC)).contains("10:30:00.000000123Z"));
        assert!(
            record
                .encode(datetime!(9999-12-31 23:59:59 -01:00))
                .is_err()
        );
    }

    #[test]
    fn scan_reads_records_and_counts_the_rest() {
        let content = concat!(
            "{\"time\":\"2014-02-04T10:30:00Z\",\"data\":[{\"handle\":\"apple\",\"value\":\"red\"}],\"payload\":1}\n",
            "not json\n",
            "\n",
            "{\"data\":[]}\n",
            "{\"time\":\"0001-01-01T00:00:00Z\",\"data\":[]}\n",
            "{\"time\":\"2014-02-04T10:30:10.25Z\",\"data\":null,\"trigger\":\"cli\",",
            "\"failed\":[{\"handle\":\"b\",\"reason\":\"missing\"}]}\r\n",
            "{\"time\":\"2014-02-04T10:30:20Z\",\"da",
        );
        let scan = scan(content.as_bytes());
        assert_eq!(scan.invalid_lines, 4);
        assert!(scan.torn_tail);
        assert_eq!(
            scan.records,
            vec![
                ScannedRecord {
                    time: datetime!(2014-02-04 10:30:00 UTC),
                    data: vec![ScannedEntry {
                        handle: "apple".into(),
                        value: Some("red".into()),
                    }],
                    trigger: None,
                    failed: Vec::new(),
                },
                ScannedRecord {
                    time: datetime!(2014-02-04 10:30:10.25 UTC),
                    data: Vec::new(),
                    trigger: Some("cli".into()),
                    failed: vec![ScannedFailure {
                        handle: "b".into(),
                        reason: "missing".into(),
                    }],
                },
            ]
        );
        assert_eq!(super::scan(b""), Scan::default());
    }

    #[test]
    fn scan_reads_back_what_encode_writes() {
        let record = Record {
            trigger: Trigger::Startup,
            entries: vec![AuditEntry::new("k", &Secret::new(HEX32), ["apiKey"])],
            failed: Vec::new(),
            held_back: Vec::new(),
        };
        let time = datetime!(2014-02-04 10:30:00.125 UTC);
        let scanned = scan(&record.encode(time).unwrap());
        assert_eq!(scanned.invalid_lines, 0);
        assert!(!scanned.torn_tail);
        assert_eq!(scanned.records.len(), 1);
        assert_eq!(scanned.records[0].time, time);
        assert_eq!(scanned.records[0].trigger.as_deref(), Some("startup"));
        assert_eq!(
            scanned.records[0].data[0].value.as_deref(),
            Some("***************************BCDEF")
        );
    }

    proptest::proptest! {
        #[test]
        fn scan_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let scanned = scan(&bytes);
            proptest::prop_assert!(scanned.records.len() + scanned.invalid_lines <= bytes.len());
        }

        #[test]
        fn scan_never_panics_on_near_records(
            time in "[0-9T:.Z+-]{0,40}",
            tail in "[\\[\\]{}\",:a-z0-9 ]{0,40}",
        ) {
            let line = format!("{{\"time\":\"{time}\",\"data\":{tail}\n");
            let _ = scan(line.as_bytes());
        }
    }
}
