//! Data-driven tests of [`Document`] across formats, and the round-trip property test.

use std::collections::HashMap;

use super::{Document, DocumentError, Format};

mod roundtrip;

/// Parses `text` and compares its sites, as `handle @ path/joined` strings, in order.
#[track_caller]
fn check_sites(format: Format, text: &str, expected: &[&str]) {
    let document = parse(format, text);
    let sites: Vec<String> = document
        .sites()
        .map(|site| format!("{} @ {}", site.handle(), site.path().join("/")))
        .collect();
    assert_eq!(sites, expected, "sites of {text:?}");
}

/// Parses `text`, renders it with `values` (handle, value), and compares the output.
#[track_caller]
fn check_render(format: Format, text: &str, values: &[(&str, &str)], expected: &str) {
    let document = parse(format, text);
    let values: HashMap<&str, &str> = values.iter().copied().collect();
    let rendered = document.render(|handle| values.get(handle).copied());
    assert_eq!(rendered.as_str(), expected, "render of {text:?}");
    let mut written = Vec::new();
    document
        .render_to(|handle| values.get(handle).copied(), &mut written)
        .unwrap();
    assert_eq!(written, expected.as_bytes(), "render_to of {text:?}");
    assert_eq!(
        document.render(|_| None).as_str(),
        text,
        "render with nothing resolved changes {text:?}"
    );
}

/// Parsing `text` fails with exactly `expected`.
#[track_caller]
fn check_error(format: Format, text: &str, expected: &str) {
    match Document::parse(text.to_owned(), format) {
        Ok(document) => panic!("{text:?} parsed: {:?}", document.sites()),
        Err(error) => assert_eq!(error.to_string(), expected, "error for {text:?}"),
    }
}

#[track_caller]
fn parse(format: Format, text: &str) -> Document {
    match Document::parse(text.to_owned(), format) {
        Ok(document) => document,
        Err(error) => panic!("{text:?} does not parse: {error}"),
    }
}

use Format::{Json, Yaml};

#[test]
fn conformance_9_only_string_values_are_visited() {
    let text = "\
slice:
  - ENC[1]
  - - ENC[test1]
    - ENC[test2]
  - 123
hash:
  a: ENC[test3]
  b: \"ENC[2]\"
  c: 456
  slice:
    - ENC[test4]
    - ENC[test5]
";
    check_sites(
        Yaml,
        text,
        &[
            "1 @ slice/0",
            "test1 @ slice/1/0",
            "test2 @ slice/1/1",
            "test3 @ hash/a",
            "2 @ hash/b",
            "test4 @ hash/slice/0",
            "test5 @ hash/slice/1",
        ],
    );
    let document = parse(Yaml, text);
    let verified: HashMap<String, String> = document
        .handles()
        .into_iter()
        .map(|handle| (handle.to_owned(), format!("{handle}_verified")))
        .collect();
    let rendered = document.render(|handle| verified.get(handle).map(String::as_str));
    assert_eq!(
        rendered.as_str(),
        "\
slice:
  - \"1_verified\"
  - - \"test1_verified\"
    - \"test2_verified\"
  - 123
hash:
  a: \"test3_verified\"
  b: \"2_verified\"
  c: 456
  slice:
    - \"test4_verified\"
    - \"test5_verified\"
"
    );
}

#[test]
fn conformance_12_handle_used_twice() {
    let text = "a: ENC[pass1]\nb:\n  c: ENC[pass1]\n";
    check_sites(Yaml, text, &["pass1 @ a", "pass1 @ b/c"]);
    assert_eq!(parse(Yaml, text).handles(), ["pass1"]);
    check_render(
        Yaml,
        text,
        &[("pass1", "password1")],
        "a: \"password1\"\nb:\n  c: \"password1\"\n",
    );
}

#[test]
fn conformance_13_to_18_paths() {
    // 13: a list element.
    check_sites(
        Yaml,
        "secret_backend_arguments:\n  - ENC[pass1]\n",
        &["pass1 @ secret_backend_arguments/0"],
    );
    // 14: a handle next to a value that looks like YAML.
    check_sites(
        Yaml,
        "some_encoded_password: ENC[pass1]\nkeys_with_dash_string_value:\n  foo: \"-\"\n",
        &["pass1 @ some_encoded_password"],
    );
    // 15: a key containing `:` and `/` is one segment.
    check_sites(
        Yaml,
        "additional_endpoints:\n  http://example.com:\n    - ENC[pass1]\n",
        &["pass1 @ additional_endpoints/http://example.com/0"],
    );
    // 17: nested maps.
    check_sites(
        Yaml,
        "some:\n  encoded:\n    data: ENC[pass1]\n",
        &["pass1 @ some/encoded/data"],
    );
    // 18: siblings after the handle do not disturb its path.
    check_sites(
        Yaml,
        "some:\n  encoded:\n    - data: ENC[pass1]\n      sibling: x\n    - more: y\n",
        &["pass1 @ some/encoded/0/data"],
    );
}

#[test]
fn conformance_14_and_16_rendering() {
    // 14: the "-" sibling stays as written.
    check_render(
        Yaml,
        "some_encoded_password: ENC[pass1] # the password\nkeys_with_dash_string_value:\n  foo: \"-\"\n",
        &[("pass1", "password1")],
        "some_encoded_password: \"password1\" # the password\nkeys_with_dash_string_value:\n  foo: \"-\"\n",
    );
    // 16: a value ending with a line break reads back unchanged.
    let text = "some_encoded_password: ENC[pass1]\n";
    let rendered = parse(Yaml, text).render(|_| Some("password1\n"));
    assert_eq!(
        rendered.as_str(),
        "some_encoded_password: \"password1\\n\"\n"
    );
    let reread = parse_yaml_value(&rendered);
    assert_eq!(reread["some_encoded_password"], "password1\n");
}

#[test]
fn keys_and_non_string_scalars_are_never_sites() {
    check_sites(
        Yaml,
        "ENC[key]: 1\nint: 123\nbool: true\nnothing: ~\nfloat: 1.5\nquoted: \"123\"\nlist: [1, true, ~]\ns: ENC[s]\n",
        &["s @ s"],
    );
    check_sites(
        Json,
        r#"{"ENC[key]": 1, "a": [1, true, null, 1.5, "x"]}"#,
        &[],
    );
}

#[test]
fn handle_spelling() {
    check_sites(
        Yaml,
        "a: \"  ENC[x]\t\"\nb: 'ENC[ a ]'\nc: \"\\u0045NC[esc]\"\nd: ENC[multi\n  line]\ne: \"ENC[x]\\n\"\nf: db-ENC[x]\n",
        &["x @ a", " a  @ b", "esc @ c", "multi line @ d"],
    );
    check_sites(
        Json,
        r#"{"a": "  ENC[x]\t", "b": "\u0045NC[esc]", "c": "ENC[x]\n", "d": "ENC[\"q\"]"}"#,
        &["x @ a", "esc @ b", "\"q\" @ d"],
    );
}

#[test]
fn yaml_scalar_styles_are_replaced_whole() {
    let values = [("x", "v"), ("y", "w")];
    check_render(
        Yaml,
        "a: 'ENC[x]'\nb: \"ENC[y]\"  # note\nc: [ \"ENC[x]\" , 'ENC[y]' ]\nd: {k: \"ENC[x]\"}\n",
        &values,
        "a: \"v\"\nb: \"w\"  # note\nc: [ \"v\" , \"w\" ]\nd: {k: \"v\"}\n",
    );
    check_render(
        Yaml,
        "a: |-\n  ENC[x]\nb: >- # folded\n  ENC[y]\n\nc: |+\n    ENC[x]\n\nd: 1\n",
        &values,
        "a: \"v\"\nb: \"w\" # folded\n\nc: |+\n    ENC[x]\n\nd: 1\n",
    );
    check_render(
        Yaml,
        "- |2-\n   ENC[x]\n-   |-  \n  ENC[y]\n- ENC[x\n  y]\n",
        &[("x", "v"), ("y", "w"), ("x y", "z")],
        "- \"v\"\n-   \"w\"\n- \"z\"\n",
    );
}

#[test]
fn yaml_tags_and_anchors_stay() {
    check_sites(
        Yaml,
        "a: !!str ENC[x]\nb: ! ENC[y]\nc: !custom ENC[z]\nd: !!binary ENC[no]\ne: !!int ENC[no]\nf: !<tag:yaml.org,2002:str> ENC[w]\n",
        &["x @ a", "y @ b", "z @ c", "w @ f"],
    );
    check_render(
        Yaml,
        "a: !!str ENC[x]\nb: &anchor\n  ENC[x]\nc: !!str &other |-\n  ENC[x]\n",
        &[("x", "v")],
        "a: !!str \"v\"\nb: &anchor\n  \"v\"\nc: !!str &other \"v\"\n",
    );
}

#[test]
fn yaml_aliases_share_the_anchor_text() {
    let text = "a: &p ENC[x]\nb: *p\nbase: &b\n  user: ENC[u]\n  list: [\"ENC[l]\"]\nother: *b\n";
    check_sites(
        Yaml,
        text,
        &[
            "x @ a",
            "x @ b",
            "u @ base/user",
            "l @ base/list/0",
            "u @ other/user",
            "l @ other/list/0",
        ],
    );
    check_render(
        Yaml,
        text,
        &[("x", "X"), ("u", "U"), ("l", "L")],
        "a: &p \"X\"\nb: *p\nbase: &b\n  user: \"U\"\n  list: [\"L\"]\nother: *b\n",
    );
}

/// Issue 9, item 16: an alias used as a value to an anchored key that is a handle reads as
/// that handle; it is replaced at the alias, and the key stays as written.
#[test]
fn yaml_alias_to_a_handle_key_is_replaced_at_the_alias() {
    for (text, sites, values, expected) in [
        (
            "&a ENC[x]: 1\nv: *a\n",
            &["x @ v"][..],
            &[("x", "V")][..],
            "&a ENC[x]: 1\nv: \"V\"\n",
        ),
        (
            "{&a \"ENC[x]\": 1, v: [*a, *a ], w: {k: *a}}",
            &["x @ v/0", "x @ v/1", "x @ w/k"],
            &[("x", "V")],
            "{&a \"ENC[x]\": 1, v: [\"V\", \"V\" ], w: {k: \"V\"}}",
        ),
        // Written inside a complex key (whose mapping is skipped).
        (
            "m:\n  ? [&a \"ENC[x]\"]\n  : 1\nv: *a\n",
            &["x @ v"],
            &[("x", "V")],
            "m:\n  ? [&a \"ENC[x]\"]\n  : 1\nv: \"V\"\n",
        ),
        // Copied through an anchored collection: every copy shares the alias' text.
        (
            "&a ENC[x]: 1\nb: &b [*a]\nc: *b\n",
            &["x @ b/0", "x @ c/0"],
            &[("x", "V")],
            "&a ENC[x]: 1\nb: &b [\"V\"]\nc: *b\n",
        ),
        // As a key again, it is a key: never replaced.
        (
            "&a ENC[x]: 1\nm:\n  *a : 2\n",
            &[],
            &[("x", "V")],
            "&a ENC[x]: 1\nm:\n  *a : 2\n",
        ),
    ] {
        check_sites(Yaml, text, sites);
        check_render(Yaml, text, values, expected);
    }
}

/// Issue 9, item 18 (found by the `yaml_document` fuzz target): a key must never change, so an
/// alias inside a key (a plain alias key, a complex key, a merge into a complex key) may not
/// reach a handle that is replaced, and a value may not copy a collection holding a handle
/// written inside a key (it could not be replaced there).
#[test]
fn yaml_handles_never_reach_keys() {
    check_error(
        Yaml,
        "base: &base\n  user: ENC[user]\n  pass: &p ENC[pass]\nderived:\n  ? <<: *base\n  : 1\n",
        "could not parse YAML: an alias inside a mapping key at 'derived' refers to a handle; a \
         key cannot hold a secret",
    );
    for text in [
        "a: &p ENC[p]\nm:\n  *p : 1\n",
        "a: &p ENC[p]\nm:\n  ? [*p]\n  : 1\n",
        "a: &p [\"ENC[p]\"]\nm:\n  ? {k: *p}\n  : 1\n",
    ] {
        check_error(
            Yaml,
            text,
            "could not parse YAML: an alias inside a mapping key at 'm' refers to a handle; a key \
             cannot hold a secret",
        );
    }
    for text in [
        "m:\n  ? &k {a: \"ENC[x]\"}\n  : 1\nv: *k\n",
        "m:\n  ? &k [\"ENC[x]\"]\n  : 1\nv: *k\n",
        "m:\n  ? &k {a: \"ENC[x]\"}\n  : 1\nv:\n  <<: *k\n",
        "&a ENC[x]: 1\nm:\n  ? &k [*a]\n  : 1\nv: *k\n",
    ] {
        check_error(
            Yaml,
            text,
            "could not parse YAML: the alias at 'v' copies a handle written inside a mapping key, \
             which cannot be replaced",
        );
    }
    // Aliases inside keys to nodes without a replaced handle are fine, and so are collections
    // that only hold a skipped mapping with such a key.
    check_sites(
        Yaml,
        "a: &a {k: v}\nm:\n  ? *a\n  : ENC[x]\nn: ENC[y]\n",
        &["y @ n"],
    );
    check_sites(
        Yaml,
        "b: &b [{? [\"ENC[x]\"] : 1}]\nc: *b\nd: ENC[y]\n",
        &["y @ d"],
    );
}

#[test]
fn yaml_merge_keys() {
    check_sites(
        Yaml,
        "\
base: &b
  pw: ENC[pw]
  user: ENC[user]
more: &m
  pw: ENC[pw2]
  port: ENC[port]
svc:
  <<: [*b, *m]
  user: ENC[own]
inline:
  <<: {k: \"ENC[k]\"}
",
        &[
            "pw @ base/pw",
            "user @ base/user",
            "pw2 @ more/pw",
            "port @ more/port",
            "own @ svc/user",
            "pw @ svc/pw",
            "port @ svc/port",
            "k @ inline/k",
        ],
    );
    check_error(
        Yaml,
        "a:\n  <<: ENC[x]\n",
        "could not parse YAML: merge key '<<' at 'a' needs a mapping or a sequence of mappings",
    );
    check_error(
        Yaml,
        "s: &s [1]\na:\n  <<: *s\n",
        "could not parse YAML: merge key '<<' at 'a' needs a mapping or a sequence of mappings",
    );
    // A quoted "<<" is an ordinary key.
    check_sites(Yaml, "a:\n  \"<<\": ENC[x]\n", &["x @ a/<<"]);
}

#[test]
fn yaml_maps_with_non_string_keys_are_skipped() {
    check_sites(
        Yaml,
        "\
skipped:
  1: ENC[a]
  name: ENC[b]
  nested:
    k: ENC[c]
also_skipped:
  ? [complex]
  : ENC[d]
  k: ENC[e]
null_key: {~: x, k: \"ENC[f]\"}
strings:
  \"1\": ENC[g]
  yes: ENC[h]
  on: ENC[i]
kept: ENC[j]
",
        &[
            "g @ strings/1",
            "h @ strings/yes",
            "i @ strings/on",
            "j @ kept",
        ],
    );
    // The skipped handles are not replaced either.
    check_render(
        Yaml,
        "skipped:\n  1: ENC[a]\nkept: ENC[a]\n",
        &[("a", "v")],
        "skipped:\n  1: ENC[a]\nkept: \"v\"\n",
    );
    // An anchor inside a skipped map still serves aliases elsewhere.
    check_sites(Yaml, "skipped:\n  1: &a ENC[a]\nb: *a\n", &["a @ b"]);
}

#[test]
fn text_positions_count_bytes() {
    check_render(
        Yaml,
        "\u{feff}é: ü\r\nkey: ENC[x]\r\nnext: |-\r\n  ENC[y]\r\nlast: 😀\r\n",
        &[("x", "v"), ("y", "w")],
        "\u{feff}é: ü\r\nkey: \"v\"\r\nnext: \"w\"\r\nlast: 😀\r\n",
    );
    check_render(
        Json,
        "{\"é\": \"ü\", \"k\": \"ENC[x]\", \"😀\": [\"ENC[y]\"]}",
        &[("x", "v"), ("y", "w")],
        "{\"é\": \"ü\", \"k\": \"v\", \"😀\": [\"w\"]}",
    );
}

#[test]
fn rendering_preserves_everything_else() {
    let text = "\
# leading comment
b: yes      # stays yes
a: 0755
list:
  - &anchor ENC[x]

  - *anchor
  - 'single' # c
empty:
";
    check_render(
        Yaml,
        text,
        &[("x", "it's \"quoted\"\n\\")],
        "\
# leading comment
b: yes      # stays yes
a: 0755
list:
  - &anchor \"it's \\\"quoted\\\"\\n\\\\\"

  - *anchor
  - 'single' # c
empty:
",
    );
}

#[test]
fn resolved_values_are_written_literally() {
    let text = "a: ENC[x]\nb: ENC[literal-value]\n";
    let rendered = parse(Yaml, text).render(|handle| (handle == "x").then_some("ENC[y]"));
    assert_eq!(rendered.as_str(), "a: \"ENC[y]\"\nb: ENC[literal-value]\n");
    // Read back, the value is a handle again: render never resolves twice, the caller decides.
    check_sites(Yaml, &rendered, &["y @ a", "literal-value @ b"]);
}

#[test]
fn json_documents() {
    check_sites(
        Json,
        r#"{"a": {"b": ["x", "ENC[p]", {"c\u0041": "ENC[q]"}]}, "d": "ENC[p]"}"#,
        &["p @ a/b/1", "q @ a/b/2/cA", "p @ d"],
    );
    check_sites(
        Json,
        r#"["ENC[a]", [], {}, ["ENC[b]"]]"#,
        &["a @ 0", "b @ 3/0"],
    );
    check_render(
        Json,
        "{\n  \"a\": \"ENC[p]\",\n  \"n\": 1\n}\n",
        &[("p", "line\n\"q\"\u{2028}")],
        "{\n  \"a\": \"line\\n\\\"q\\\"\\u2028\",\n  \"n\": 1\n}\n",
    );
}

#[test]
fn top_level_must_be_a_collection() {
    for (format, text) in [
        (Yaml, ""),
        (Yaml, "# only a comment\n"),
        (Yaml, "---\n"),
        (Yaml, "ENC[x]\n"),
        (Yaml, "123"),
        (Json, ""),
        (Json, "  \n"),
        (Json, "\"ENC[x]\""),
        (Json, "null"),
    ] {
        check_error(
            format,
            text,
            "given data is not of expected type map not slice",
        );
    }
    // A top-level mapping with a non-string key is not a string-keyed map.
    check_error(
        Yaml,
        "1: ENC[x]\nb: ENC[y]\n",
        "given data is not of expected type map not slice",
    );
    check_sites(Yaml, "- ENC[x]\n", &["x @ 0"]);
    check_render(
        Json,
        "\u{feff}{\"a\": \"ENC[x]\"}",
        &[("x", "v")],
        "\u{feff}{\"a\": \"v\"}",
    );
    check_sites(Yaml, "{}", &[]);
}

#[test]
fn invalid_documents() {
    check_error(
        Yaml,
        "a: 1\n---\nb: ENC[x]\n",
        "could not parse YAML: a second document starts at line 2; only one document per file is supported",
    );
    check_error(
        Yaml,
        "a:\n  b: 1\n  b: 2\n",
        "could not parse YAML: duplicate key at 'a/b'",
    );
    check_error(
        Json,
        r#"{"a": {"b": 1, "\u0062": 2}}"#,
        "could not parse JSON: duplicate key at 'a/b'",
    );
    check_error(
        Json,
        "{\"a\": [1,]}",
        "could not parse JSON: expected value at line 1, column 10",
    );
    check_error(
        Json,
        "{\"a\": 1} // note",
        "could not parse JSON: trailing characters at line 1, column 10",
    );
    check_error(
        Json,
        "{\"a\": /* c */ 1}",
        "could not parse JSON: expected value at line 1, column 7",
    );
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(Document::parse(deep, Json).is_err());
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    check_error(
        Yaml,
        &deep,
        "could not parse YAML: collections nest deeper than 128 levels",
    );
}

#[test]
fn errors_never_quote_the_document() {
    for (format, text) in [
        (Yaml, "a: \"hunter2"),
        (Yaml, "a: hunter2\n b: hunter2: x\n"),
        (Yaml, "a: %hunter2\n"),
        (Yaml, "a: 'hunter2'\n  - hunter2\n"),
        (Yaml, "a: *hunter2\n"),
        (Json, "{\"a\": \"hunter2\" \"b\"}"),
        (Json, "{\"a\": hunter2}"),
        (Json, "{\"a\": \"hunter2\\q\"}"),
    ] {
        let error = match Document::parse(text.to_owned(), format) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(error) => error,
        };
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(!shown.contains('%'), "{shown}");
        assert!(matches!(error, DocumentError::Syntax { .. }), "{shown}");
    }
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [\"ENC[x]\", \"ENC[x]\", \"ENC[x]\", \"ENC[x]\"]\n");
    for level in 1..20 {
        let previous = level - 1;
        text.push_str(&format!(
            "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
        ));
    }
    check_error(
        Yaml,
        &text,
        "could not parse YAML: aliases expand into more than 250000 values",
    );
}

#[test]
fn debug_does_not_print_the_text() {
    let document = parse(Yaml, "password: hunter2\ntoken: ENC[t]\n");
    let shown = format!("{document:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("\"t\""), "{shown}");
}

#[test]
fn handles_in_first_seen_order() {
    let document = parse(Yaml, "a: ENC[b]\nc: [\"ENC[a]\", \"ENC[b]\", \"ENC[c]\"]\n");
    assert_eq!(document.handles(), ["b", "a", "c"]);
}

/// The document as JSON, read back through saphyr.
fn parse_yaml_value(text: &str) -> serde_json::Value {
    match roundtrip::yaml_to_json(text) {
        Ok(value) => value,
        Err(error) => panic!("output does not parse: {error}\n{text}"),
    }
}

/// U+0085, U+2028 and U+2029 are line breaks for YAML 1.1 readers (the Agent's yaml.v3 and
/// yaml.v2, PyYAML) and ordinary characters for YAML 1.2: a handle one side sees could be
/// invisible to the other, so such documents are refused, naming where.
#[test]
fn yaml_1_1_line_breaks_are_refused_naming_the_line() {
    for (text, name, line, column) in [
        ("# c\u{85}pw: ENC[db]\n", "U+0085 (next line)", 1, 4),
        (
            "a: 1\nk: ENC[h]\u{2028}\n",
            "U+2028 (line separator)",
            2,
            10,
        ),
        (
            "a: 1\n\nk: \"x\u{2029}y\"\n",
            "U+2029 (paragraph separator)",
            3,
            6,
        ),
    ] {
        match Document::parse(text.to_owned(), Format::Yaml) {
            Err(error @ DocumentError::AmbiguousLineBreak { .. }) => {
                let DocumentError::AmbiguousLineBreak {
                    name: found,
                    line: l,
                    column: c,
                    ..
                } = &error
                else {
                    unreachable!()
                };
                assert_eq!((*found, *l, *c), (name, line, column), "{text:?}");
                assert!(
                    error
                        .to_string()
                        .contains(&format!("at line {line}, column {column}")),
                    "{error}"
                );
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // Written escaped, they are ordinary characters everywhere; JSON is not affected.
    check_sites(Format::Yaml, "k: \"a\\Lb\"\np: ENC[h]\n", &["h @ p"]);
    check_sites(
        Format::Json,
        "{\"k\": \"a\u{2028}b\", \"p\": \"ENC[h]\"}",
        &["h @ p"],
    );
}

/// `key:<TAB>value` (YAML 1.2 separation, accepted by yaml.v3, yaml.v2, libyaml and js-yaml):
/// the handle after the tab is found and replaced, and every other byte stays, tabs included,
/// also the tabs inside quoted scalars, block scalars, comments and flow collections.
#[test]
fn yaml_tabs_after_a_colon_separate_like_spaces() {
    check_sites(Yaml, "a:\tENC[x]\n", &["x @ a"]);
    check_render(Yaml, "a:\tENC[x]\n", &[("x", "v")], "a:\t\"v\"\n");
    let text = "\
top:\tENC[a]
nested:
  key:\t\tENC[b]   # note:\tkept
  list:
    - item:\tENC[c]
    -\tENC[d]
  quoted: \"x:\ty ENC[no]\"
  single: 'x:\ty'
  block: |
    line:\tENC[no]
  folded: >-
    k:\tv
  flow: {f:\t\"ENC[e]\", g: [1,\t2]}
  anchored:\t&anchor ENC[f]
  alias:\t*anchor
  tagged:\t!!str ENC[g]
  number:\t-1
# comment:\tENC[no]
";
    check_sites(
        Yaml,
        text,
        &[
            "a @ top",
            "b @ nested/key",
            "c @ nested/list/0/item",
            "d @ nested/list/1",
            "e @ nested/flow/f",
            "f @ nested/anchored",
            "f @ nested/alias",
            "g @ nested/tagged",
        ],
    );
    let values = [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("d", "4"),
        ("e", "5"),
        ("f", "6"),
        ("g", "7"),
    ];
    let expected = text
        .replace("ENC[a]", "\"1\"")
        .replace("ENC[b]", "\"2\"")
        .replace("ENC[c]", "\"3\"")
        .replace("ENC[d]", "\"4\"")
        .replace("\"ENC[e]\"", "\"5\"")
        .replace("ENC[f]", "\"6\"")
        .replace("ENC[g]", "\"7\"");
    check_render(Yaml, text, &values, &expected);
    // Only the handles changed: the quoted and block scalars still hold their tabs (saphyr
    // reads the output after the same tab pre-pass).
    let read = parse_yaml_value(&super::readable_yaml(&expected));
    assert_eq!(read["nested"]["quoted"], "x:\ty ENC[no]");
    assert_eq!(read["nested"]["single"], "x:\ty");
    assert_eq!(read["nested"]["block"], "line:\tENC[no]\n");
    assert_eq!(read["nested"]["folded"], "k:\tv");
    assert_eq!(read["nested"]["number"], -1);
}

/// Tabs YAML forbids stay refused: as indentation, and before a block indicator.
#[test]
fn yaml_tabs_that_indent_are_still_refused() {
    for text in ["a:\n\tb: ENC[x]\n", "? a\n:\t- ENC[x]\n"] {
        assert!(
            matches!(
                Document::parse(text.to_owned(), Yaml),
                Err(DocumentError::Syntax { .. })
            ),
            "{text:?}"
        );
    }
}

/// The settings file reads `key:<TAB>value` too.
#[test]
fn settings_read_tabs_after_a_colon() {
    let settings =
        crate::Settings::from_yaml_str("secret_backend_command:\t/usr/bin/backend\n").unwrap();
    assert!(format!("{settings:?}").contains("/usr/bin/backend"));
}

/// A lone `!` (the non-specific tag) before a replaced value is dropped: PyYAML and ruamel
/// resolve `! "yes"` as a boolean. Anchors and other tags stay.
#[test]
fn yaml_a_lone_non_specific_tag_is_dropped() {
    for (text, expected) in [
        ("k: ! ENC[x]\n", "k: \"yes\"\n"),
        ("k: !\tENC[x]\n", "k: \"yes\"\n"),
        ("k: ! \"ENC[x]\"\n", "k: \"yes\"\n"),
        ("k: ! &a ENC[x]\nl: *a\n", "k: &a \"yes\"\nl: *a\n"),
        ("k: &a ! ENC[x]\n", "k: &a \"yes\"\n"),
        ("k: !<!> ENC[x]\n", "k: \"yes\"\n"),
        ("k: !\n  ENC[x]\n", "k: \n  \"yes\"\n"),
        ("k: ! |-\n  ENC[x]\n", "k: \"yes\"\n"),
        (
            "- ! ENC[x]\n- !!str ENC[x]\n",
            "- \"yes\"\n- !!str \"yes\"\n",
        ),
        ("k: !custom ENC[x]\n", "k: !custom \"yes\"\n"),
    ] {
        check_render(Yaml, text, &[("x", "yes")], expected);
        let read = parse_yaml_value(expected);
        assert!(
            read.to_string().contains("\"yes\""),
            "{expected:?} reads as {read}"
        );
    }
}

/// A byte order mark anywhere but at the start: yaml.v3 (like libyaml) skips one that starts a
/// line, PyYAML keeps it in the key (`\u{feff}pw`), so the document is refused, naming where.
#[test]
fn yaml_a_byte_order_mark_after_the_start_is_refused() {
    for (text, line, column) in [
        ("# config\n\u{feff}pw: ENC[db]\n", 2, 1),
        ("a: x\u{feff}y\n", 1, 5),
        ("\u{feff}a: 1\nb: \"\u{feff}\"\n", 2, 5),
    ] {
        check_error(
            Yaml,
            text,
            &format!(
                "could not parse YAML: a byte order mark (U+FEFF) at line {line}, column \
                 {column}: YAML readers disagree on one that does not start the file (some skip \
                 it, some keep it in the text); remove it, or write it escaped in a \
                 double-quoted string (\\uFEFF)"
            ),
        );
    }
    check_sites(Yaml, "\u{feff}pw: ENC[db]\n", &["db @ pw"]);
}

/// `render_to` writes what `render` returns when the text, the values and both together cross
/// the size of its pieces: a value longer than a piece, one that needs escapes, many small ones.
#[test]
fn render_to_writes_what_render_returns_in_pieces() {
    use super::RENDER_CHUNK;
    let filler = "k".repeat(RENDER_CHUNK + 10);
    let text = format!(
        "filler: {filler}\na: ENC[a]\nb: ENC[b]\n{}c: ENC[c]\n",
        (0..5000)
            .map(|i| format!("p{i}: ENC[p]\n"))
            .collect::<String>()
    );
    let document = parse(Yaml, &text);
    let big = "v".repeat(RENDER_CHUNK * 2 + 3);
    let escaped = "say \"hi\"\n\u{2028}".repeat(5000);
    let values: HashMap<&str, &str> = HashMap::from([
        ("a", big.as_str()),
        ("b", "x"),
        ("c", escaped.as_str()),
        ("p", "0123456789"),
    ]);
    let rendered = document.render(|handle| values.get(handle).copied());
    /// A writer that takes at most 1,000 bytes a call, as a pipe may.
    struct Short(Vec<u8>);
    impl std::io::Write for Short {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let n = bytes.len().min(1000);
            self.0.extend_from_slice(&bytes[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut written = Short(Vec::new());
    document
        .render_to(|handle| values.get(handle).copied(), &mut written)
        .unwrap();
    assert_eq!(written.0, rendered.as_bytes());
    let reread = parse_yaml_value(std::str::from_utf8(&written.0).unwrap());
    assert_eq!(reread["c"], escaped.as_str());
    assert_eq!(reread["a"], big.as_str());
    assert_eq!(reread["filler"], filler.as_str());
}

#[test]
fn an_anchor_used_as_a_key_is_written_once_however_many_aliases_use_it() {
    let long_key = "k".repeat(10_000);
    let mut text = format!("base: &key {long_key}\n");
    for index in 0..1_000 {
        text.push_str(&format!("m{index}:\n  *key : ENC[h{index}]\n"));
    }
    let document = parse(Format::Yaml, &text);
    assert_eq!(document.sites().len(), 1_000);
    let last = document.sites().next_back().unwrap();
    assert_eq!(last.handle(), "h999");
    assert_eq!(
        last.path().to_strings(),
        ["m999".to_owned(), long_key.clone()]
    );
    // The key once, then per site its handle and its mapping's key: far from 1,000 copies.
    assert!(
        document.names.len() < long_key.len() + 1_000 * 20,
        "{} bytes of names",
        document.names.len()
    );
}

#[test]
fn key_paths_are_built_only_when_a_path_is_asked_for() {
    let document = parse(
        Format::Yaml,
        "a:\n  b:\n  - ENC[x]\n  - ENC[y]\nc: ENC[x]\n",
    );
    let handles: Vec<&str> = document.sites().map(|site| site.handle()).collect();
    assert_eq!(handles, ["x", "y", "x"]);
    let output = document.render(|handle| Some(if handle == "x" { "1" } else { "2" }));
    assert_eq!(&*output, "a:\n  b:\n  - \"1\"\n  - \"2\"\nc: \"1\"\n");
    assert!(
        document.key_paths.get().is_none(),
        "handles and render need no path"
    );
    let paths: Vec<String> = document.sites().map(|site| site.path().join("/")).collect();
    assert_eq!(paths, ["a/b/0", "a/b/1", "c"]);
    assert!(document.key_paths.get().is_some());
    // Paths below one mapping share its node.
    let sites: Vec<super::HandleSite<'_>> = document.sites().collect();
    assert_eq!(sites[0].path().len(), 3);
    assert_ne!(sites[0], sites[1]);
    assert_eq!(
        format!("{:?}", sites[2]),
        r#"HandleSite { handle: "x", path: ["c"] }"#
    );
}

#[test]
fn documents_past_the_size_limit_are_refused() {
    // The length is checked before anything is parsed (a 1 GiB text is not made here).
    assert!(super::check_size(super::MAX_TEXT).is_ok());
    let error = super::check_size(super::MAX_TEXT + 1).unwrap_err();
    assert!(
        matches!(
            error,
            DocumentError::TooLarge {
                limit: super::MAX_TEXT
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "the document is larger than 1073741824 bytes"
    );
}

#[test]
fn sites_and_splices_are_packed() {
    // What ARCHITECTURE.md and the benchmarks count on.
    assert_eq!(std::mem::size_of::<super::Site>(), 16);
    assert_eq!(std::mem::size_of::<super::Cut>(), 20);
    // A splice that keeps text around its value (a dropped `!` tag before an anchor, the
    // comment of a block scalar's header) keeps it apart, and renders it.
    let document = parse(
        Format::Yaml,
        "a: ! &x ENC[h]\nb: |- # note\n  ENC[g]\nc: ENC[f]\n",
    );
    assert_eq!(document.margins.len(), 2);
    let output = document.render(|_| Some("v"));
    assert_eq!(&*output, "a: &x \"v\"\nb: \"v\" # note\nc: \"v\"\n");
}
