//! Tests across the two decoders and the two classifications: the scanner answers only for
//! what serde_json decodes to the same slots, the decoder as a whole accepts exactly what the
//! protocol crate accepts, and an early classification is the classification.

use keyturn_protocol::parse_response;

use super::classify::{Classified, Pending, classify, classify_early};
use super::decode::{Decoded, Lookup, Requested, Scanner, Text, decode, decode_with_serde};
use crate::backend::{FailureKind, Fetched};
use crate::secret::Buffer;

pub(super) fn classify_str(output: &str, handles: &[String], strip: bool) -> Fetched {
    let requested = Requested::new(handles);
    let results = classify(output.as_bytes(), &requested, strip, &[]).unwrap();
    requested.named(handles, results)
}

#[test]
fn decoding_accepts_what_the_protocol_crate_accepts() {
    let requested = [String::from("h"), String::from("h\"2")];
    for input in [
        r#"{}"#,
        r#"{"h":{"value":"v"},"x":{"value":"w","error":null,"other":[1]}}"#,
        r#"{"h":{"value":"a\u00e9\n"},"h\"2":{"error":"e\t"}}"#,
        r#"{"h":{"value":"first"},"h":{"value":"last"}}"#,
        r#"{"h":["v","e"]}"#,
        r#"{"h":{"value":"v","value":"w"}}"#,
        r#"{"x":{"value":1}}"#,
        r#"{"h":"v"}"#,
        r#"[]"#,
        r#"{"h":{}} {}"#,
        r#"{"h":{"value":"v"}"#,
        "",
        // The scanner's edges: each is either in its shape or left to serde_json.
        " \t\r\n{ \"h\" :\n{ \"value\" : \"v\" , \"error\" : null } } \n",
        r#"{"h":{"error":null,"value":null}}"#,
        r#"{"h":{"value":nul}}"#,
        r#"{"h":{"value":nullx}}"#,
        r#"{"h":{"value":"v"},}"#,
        r#"{"h":{"value":"v",}}"#,
        r#"{"h":{"value":"v"}}}"#,
        r#"{"h":{"value":"v" "error":"e"}}"#,
        r#"{"h" {"value":"v"}}"#,
        r#"{"h":{"value":"v","error":"e","error":"f"}}"#,
        r#"{"h":{"value":null,"value":"w"}}"#,
        r#"{"h":{"valu\u0065":"v"}}"#,
        r#"{"\u0068":{"value":"v"}}"#,
        r#"{"h":{"value":"v\""}}"#,
        r#"{"h":{"value":"v\x"}}"#,
        r#"{"h":{"value":"v","ttl":[1,{"a":null}]}}"#,
        r#"{"h":{"value":true}}"#,
        r#"{"":{"value":"v"},"h":{"value":"w"}}"#,
        "{\"h\":{\"value\":\"a\u{7f}\u{e9}\u{1F511}\"}}",
        "{\"h\":{\"value\":\"a\u{1}\"}}",
        "{\"h\":{\"value\":\"a\tb\"}}",
        "\u{feff}{\"h\":{\"value\":\"v\"}}",
        "{\"h\":{\"value\":\"v\"}}\u{c}",
        "{\"h\":{\"value\":\"v\"}}\0",
        r#"{"h":{"value":"v"}}x"#,
        // The compact entry and its near misses.
        r#"{"h":{"value":"","error":null}}"#,
        r#"{"h":{"value":"v","error":null },"h\"2":{"value":"w" }}"#,
        r#"{"h":{"value":"v","error":nul}}"#,
        r#"{"h":{"value":"v","error":null,"error":null}}"#,
        r#"{"h":{"value":"v","error":null,"value":"w"}}"#,
        r#"{"h":{"value":"v"},"h\"2":{"value":"w","error":"e"}}"#,
        r#"{"h":{"value":"v"#,
        r#"{"h":{"value":"v""#,
        r#"{"h":{"value":"v","error":null"#,
        r#"{"h":{"value":"v""#,
        r#"{"h":{"value":"#,
        r#"{"h":"#,
        r#"{"#,
        r#"{"h":{"value":"v"}} {"h":{"value":"w"}}"#,
        r#"{"h\"2":{"value":"v"},"h":{"value":"w"},"h":{"error":"e"}}"#,
    ] {
        check_parity(input.as_bytes(), &requested);
        let theirs = parse_response(input.as_bytes());
        let distinct = Requested::new(&requested);
        let ours = classify(input.as_bytes(), &distinct, false, &[]);
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{input}");
        if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
            for (handle, result) in distinct.named(&requested, ours) {
                let expected = theirs.get(&handle).and_then(|entry| entry.value.as_deref());
                let got = result.as_ref().ok().map(|secret| secret.expose());
                if got.is_some() {
                    assert_eq!(got, expected.map(String::as_str), "{input}");
                }
            }
        }
    }
    for input in [
        &b"{\"h\":{\"value\":\"a\xff\"}}"[..],
        b"{\"h\xc3\":{\"value\":\"v\"}}",
        b"{\"h\":{\"value\":\"\xed\xa0\x80\"}}",
    ] {
        check_parity(input, &requested);
        assert!(classify(input, &Requested::new(&requested), false, &[]).is_err());
    }
    for common in [
        &b" {\"h\" : {\"value\":\"v\", \"error\":null},\"x\":{}}\n"[..],
        br#"{"h":{"value":"first"},"h":{"value":"last"},"x":{"error":"e"}}"#,
    ] {
        let requested = Requested::new(&requested);
        assert!(
            Scanner::new(common)
                .and_then(|scanner| scanner.answer(Lookup::new(&requested)))
                .is_some()
        );
    }
    let fetched = classify_str(
        r#"{"h":{"value":"first"},"h":{"value":"last"}}"#,
        &requested[..1],
        false,
    );
    assert_eq!(fetched[0].1.as_ref().unwrap().expose(), "last");
    let fetched = classify_str(r#"{"h\"2":{"value":"\u00e9"}}"#, &requested[1..], false);
    assert_eq!(fetched[0].1.as_ref().unwrap().expose(), "é");
    let handles = [String::from("a"), String::from("b"), String::from("a")];
    assert_eq!(Requested::new(&handles).handles, ["a", "b"]);
}

/// What a decoder made of an answer, in comparable form.
fn view(slots: &Decoded<'_>) -> Vec<Option<(Option<String>, Option<String>)>> {
    let text = |text: &Option<Text<'_>>| text.as_ref().map(|t| t.as_str().to_owned());
    slots
        .iter()
        .map(|slot| {
            slot.as_ref()
                .map(|entry| (text(&entry.value), text(&entry.error)))
        })
        .collect()
}

/// The scanner only answers for inputs serde_json decodes to the same slots, and the
/// decoder as a whole accepts exactly what the protocol crate accepts.
fn check_parity(input: &[u8], handles: &[String]) {
    let requested = Requested::new(handles);
    let serde = decode_with_serde(input, &requested);
    if let Some(scanned) =
        Scanner::new(input).and_then(|scanner| scanner.answer(Lookup::new(&requested)))
    {
        let serde = serde.as_ref().unwrap_or_else(|error| {
            panic!(
                "{} scanned, serde_json: {error}",
                String::from_utf8_lossy(input)
            )
        });
        assert_eq!(
            view(&scanned),
            view(serde),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    let ours = decode(input, &requested).map(|slots| view(&slots));
    let theirs = parse_response(input);
    assert_eq!(
        ours.is_ok(),
        theirs.is_ok(),
        "{}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(
        ours.ok(),
        serde.ok().map(|slots| view(&slots)),
        "{}",
        String::from_utf8_lossy(input)
    );
    check_early(input, &requested);
}

/// One handle's classification, comparable: the value, or the failure kind and text.
type Outcome = Result<String, (FailureKind, String)>;

/// What a classification says (one outcome per distinct handle, in order), comparable.
fn outcomes(classified: &Classified) -> Vec<Outcome> {
    classified
        .iter()
        .map(|result| match result {
            Ok(secret) => Ok(secret.expose().to_owned()),
            Err(error) => Err((error.kind, error.message.clone())),
        })
        .collect()
}

/// `pending` with its values left in (a copy of) the answer it was classified from, as a run
/// settles them in the captured stdout.
fn settled(pending: Pending, answer: &[u8]) -> Classified {
    pending.settle(Buffer::captured(
        String::from_utf8(answer.to_vec()).unwrap(),
    ))
}

/// An early classification, when there is one, is the classification (its values left in the
/// answer, the classification's copied out of it).
fn check_early(input: &[u8], requested: &Requested<'_>) {
    for strip in [false, true] {
        if let Some(early) = classify_early(input, requested, strip) {
            let full = classify(input, requested, strip, &[]).unwrap_or_else(|error| {
                panic!(
                    "{} classified early, serde_json: {error}",
                    String::from_utf8_lossy(input)
                )
            });
            assert_eq!(
                outcomes(&settled(early, input)),
                outcomes(&full),
                "{}",
                String::from_utf8_lossy(input)
            );
            // Copied out of the answer instead of left in it: the same.
            let early = classify_early(input, requested, strip).unwrap();
            assert_eq!(outcomes(&early.copied(input)), outcomes(&full));
        }
    }
}

#[test]
fn early_classification_needs_a_whole_answer_without_error_texts() {
    let handles = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let requested = Requested::new(&handles);
    let answer = br#" {"b":{"value":"2\r\n"},"a":{"value":"1","error":null},"c":{}} "#;
    // The escaped value sends the scanner to serde_json: no early answer.
    assert!(classify_early(answer, &requested, true).is_none());
    let answer = br#" {"b":{"value":"2"},"a":{"value":"1","error":null},"c":{}}"#;
    let early = classify_early(answer, &requested, false).expect("a whole plain answer");
    assert_eq!(
        outcomes(&settled(early, answer)),
        outcomes(&classify(answer, &requested, false, &[]).unwrap())
    );
    // No prefix is a whole answer.
    for end in 0..answer.len() {
        assert!(
            classify_early(&answer[..end], &requested, false).is_none(),
            "{}",
            String::from_utf8_lossy(&answer[..end])
        );
    }
    // Per-handle error texts wait for the whole output (they are scrubbed of what keyturn
    // holds at that time).
    let with_error = br#"{"a":{"error":"no such secret"},"b":{"value":"2"}}"#;
    assert!(classify_early(with_error, &requested, false).is_none());
    assert!(classify(with_error, &requested, false, &[]).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Answers built from JSON-ish tokens, mostly near the scanner's shape.
    #[test]
    fn scanner_and_serde_agree(tokens in proptest::collection::vec(
        proptest::sample::select(&[
            "{", "}", ":", ",", " ", "\n", "\"h\"", "\"h\\\"2\"", "\"x\"",
            "\"value\"", "\"error\"", "\"v\"", "\"\"", "null", "nul", "1", "[", "]",
            "\"a\\n\"", "\"\u{e9}\"", "\"\u{1}\"", "\"", "\\", "{\"h\":{\"value\":",
            "{\"value\":\"v\"}", "{\"error\":\"e\"}", "{}", "\"value\":null",
        ][..]),
        0..24,
    )) {
        let requested = [String::from("h"), String::from("h\"2")];
        check_parity(tokens.concat().as_bytes(), &requested);
    }

    /// Well-formed answers with entries in any order, duplicates and extra handles.
    #[test]
    fn scanner_and_serde_agree_on_answers(entries in proptest::collection::vec(
        (
            proptest::sample::select(&["h0", "h1", "h2", "other", "value"][..]),
            proptest::collection::vec(
                (
                    proptest::sample::select(&["value", "error", "ttl"][..]),
                    proptest::sample::select(&["\"v\"", "null", "\"\"", "\"a\\tb\"", "3"][..]),
                ),
                0..4,
            ),
            proptest::sample::select(&["", " ", "\n\t"][..]),
        ),
        0..8,
    )) {
        let answer = entries
            .iter()
            .map(|(handle, fields, space)| {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(field, value)| format!("{space}\"{field}\"{space}:{space}{value}"))
                    .collect();
                format!("\"{handle}\":{space}{{{}}}", fields.join(","))
            })
            .collect::<Vec<_>>()
            .join(",");
        let requested: Vec<String> = ["h2", "h0", "h1"].map(String::from).to_vec();
        check_parity(format!("{{{answer}}}").as_bytes(), &requested);
    }
}

/// Values left in the answer (plain ones) and decoded ones (they held escapes) read the same
/// settled in the answer as copied out of it, with and without line breaks stripped.
#[test]
fn values_settled_in_the_answer_read_as_copied_ones() {
    let handles: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
    let requested = Requested::new(&handles);
    let answer = br#"{"a":{"value":"plain"},"b":{"value":"esc\"aped\u00e9"},"c":{"value":"line\n"},"d":{"value":""},"e":{"value":"two\r\n"}}"#;
    for strip in [false, true] {
        let pending = super::classify::classify_pending(answer, &requested, strip, &[]).unwrap();
        let copied = classify(answer, &requested, strip, &[]).unwrap();
        assert_eq!(outcomes(&settled(pending, answer)), outcomes(&copied));
    }
    let got = outcomes(&classify(answer, &requested, true, &[]).unwrap());
    assert_eq!(got[0], Ok("plain".to_owned()));
    assert_eq!(got[1], Ok("esc\"aped\u{e9}".to_owned()));
    assert_eq!(got[2], Ok("line".to_owned()));
    assert_eq!(got[3].as_ref().unwrap_err().0, FailureKind::Empty);
    assert_eq!(got[4], Ok("two".to_owned()));
}
