//! Property test: random trees written as YAML and as JSON, parsed, rendered with hostile
//! values, and read back give exactly the tree with the resolved handles replaced; rendering
//! with nothing resolved gives the input bytes.

use std::collections::HashMap;

use proptest::prelude::*;
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::Value;

use super::super::{Document, Format};
use crate::handle::parse_handle;

/// A generated document tree, with how each node is to be written.
#[derive(Debug, Clone)]
enum Node {
    Map {
        entries: Vec<(String, Node)>,
        flow: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    Str {
        value: String,
        style: Style,
    },
    Handle {
        value: String,
        style: Style,
        comment: bool,
    },
    Int(i64),
    Bool(bool),
    Null,
}

/// The preferred way to write a string; the emitter falls back to double quotes when the value
/// cannot be written that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Plain),
        Just(Style::Single),
        Just(Style::Double),
        Just(Style::Literal)
    ]
}

fn leaf() -> impl Strategy<Value = Node> {
    let padding = || prop_oneof![Just(""), Just(""), Just(" "), Just("\t"), Just("  ")];
    prop_oneof![
        (
            "[a-z0-9 _:#'\"\\\\\\-\\[\\]{},&*!|>%@`éü😀\n\t]{0,8}",
            style()
        )
            .prop_map(|(value, style)| Node::Str { value, style }),
        (
            padding(),
            "[a-z0-9_/. \\[\\]-]{0,10}",
            padding(),
            style(),
            any::<bool>()
        )
            .prop_map(|(before, inner, after, style, comment)| Node::Handle {
                value: format!("{before}ENC[{inner}]{after}"),
                style,
                comment,
            }),
        any::<i64>().prop_map(Node::Int),
        any::<bool>().prop_map(Node::Bool),
        Just(Node::Null),
    ]
}

fn collection(inner: impl Strategy<Value = Node> + Clone) -> impl Strategy<Value = Node> {
    let key = "k[a-z0-9_ .:/-]{0,6}";
    prop_oneof![
        (
            prop::collection::vec((key, inner.clone()), 0..6),
            any::<bool>()
        )
            .prop_map(|(mut entries, flow)| {
                let mut seen = std::collections::HashSet::new();
                entries.retain(|(key, _)| seen.insert(key.clone()));
                Node::Map { entries, flow }
            }),
        (prop::collection::vec(inner, 0..6), any::<bool>())
            .prop_map(|(items, flow)| Node::Seq { items, flow }),
    ]
}

fn tree() -> impl Strategy<Value = Node> {
    let node = leaf().prop_recursive(4, 48, 6, collection);
    collection(node)
}

/// Values a backend might return, with everything that could break a document.
fn hostile_value() -> impl Strategy<Value = String> {
    const NASTY: &[&str] = &[
        "",
        "password1\n",
        "a: b",
        "# c",
        "- x",
        "-",
        "yes",
        "on",
        "y",
        "0755",
        "1e3",
        "~",
        "null",
        "\"",
        "'",
        "\\",
        "ENC[x]",
        "ENC[other]",
        "\u{85}",
        "x\u{2028}y\u{2029}",
        "\u{feff}",
        "\t",
        "\r\n",
        " lead",
        "trail ",
        "\u{0}\u{7}\u{1b}\u{7f}\u{9f}",
        "é😀",
        "multi\nline\n",
        "|",
        ">",
        "[a]",
        "{a: 1}",
        "&a",
        "*a",
        "!!int 3",
        "%YAML 1.1",
        "---",
        "...",
        "\u{fffe}\u{ffff}",
    ];
    prop_oneof![
        prop::sample::select(NASTY).prop_map(str::to_owned),
        any::<String>(),
        "[-:#'\"\\\\ \n\t\r|>&*!%@`{}\\[\\],?~]{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rendered_documents_read_back_as_the_tree(
        tree in tree(),
        pool in prop::collection::vec(prop::option::weighted(0.8, hostile_value()), 1..6),
        spaced in any::<bool>(),
    ) {
        let values = assign_values(&tree, &pool);
        let lookup = |handle: &str| values.get(handle).and_then(|value| value.as_deref());
        let expected_value = expected(&tree, &values);
        let mut expected_sites = Vec::new();
        collect_sites(&tree, &mut Vec::new(), &mut expected_sites);

        for (format, text) in [(Format::Yaml, yaml(&tree)), (Format::Json, json(&tree, spaced))] {
            let document = match Document::parse(text.clone(), format) {
                Ok(document) => document,
                Err(error) => panic!("{format:?} does not parse: {error}\n{text}"),
            };
            let sites: Vec<(String, Vec<String>)> = document
                .sites()
                .map(|site| (site.handle().to_owned(), site.path().to_strings()))
                .collect();
            prop_assert_eq!(&sites, &expected_sites, "sites of\n{}", text);
            let untouched = document.render(|_| None);
            prop_assert_eq!(untouched.as_str(), text.as_str());

            let rendered = document.render(lookup);
            let reread = match format {
                Format::Yaml => yaml_to_json(&rendered),
                Format::Json => serde_json::from_str(&rendered).map_err(|error| error.to_string()),
            };
            match reread {
                Ok(value) => prop_assert_eq!(&value, &expected_value, "rendered\n{}", rendered.as_str()),
                Err(error) => panic!("{format:?} output does not parse: {error}\n{}", rendered.as_str()),
            }
        }
    }
}

/// Gives each distinct handle of `tree` a value from `pool` (or none).
fn assign_values(tree: &Node, pool: &[Option<String>]) -> HashMap<String, Option<String>> {
    let mut sites = Vec::new();
    collect_sites(tree, &mut Vec::new(), &mut sites);
    sites
        .into_iter()
        .map(|(handle, _)| {
            let pick = handle.bytes().map(usize::from).sum::<usize>() % pool.len();
            (handle, pool[pick].clone())
        })
        .collect()
}

/// The handles of `tree` with their paths, in document order.
fn collect_sites(node: &Node, path: &mut Vec<String>, sites: &mut Vec<(String, Vec<String>)>) {
    match node {
        Node::Map { entries, .. } => {
            for (key, value) in entries {
                path.push(key.clone());
                collect_sites(value, path, sites);
                path.pop();
            }
        }
        Node::Seq { items, .. } => {
            for (index, item) in items.iter().enumerate() {
                path.push(index.to_string());
                collect_sites(item, path, sites);
                path.pop();
            }
        }
        Node::Handle { value, .. } => {
            if let Some(handle) = parse_handle(value) {
                sites.push((handle.to_owned(), path.clone()));
            }
        }
        Node::Str { .. } | Node::Int(_) | Node::Bool(_) | Node::Null => {}
    }
}

/// The tree as JSON, with resolved handles replaced.
fn expected(node: &Node, values: &HashMap<String, Option<String>>) -> Value {
    match node {
        Node::Map { entries, .. } => Value::Object(
            entries
                .iter()
                .map(|(key, value)| (key.clone(), expected(value, values)))
                .collect(),
        ),
        Node::Seq { items, .. } => {
            Value::Array(items.iter().map(|item| expected(item, values)).collect())
        }
        Node::Str { value, .. } => Value::String(value.clone()),
        Node::Handle { value, .. } => {
            let resolved = parse_handle(value).and_then(|handle| values.get(handle)?.clone());
            Value::String(resolved.unwrap_or_else(|| value.clone()))
        }
        Node::Int(int) => Value::from(*int),
        Node::Bool(bool) => Value::Bool(*bool),
        Node::Null => Value::Null,
    }
}

/// Reads a YAML document (through saphyr) as a JSON value; keys must be strings.
pub(super) fn yaml_to_json(text: &str) -> Result<Value, String> {
    let documents = Yaml::load_from_str(text).map_err(|error| error.to_string())?;
    match documents.as_slice() {
        [document] => yaml_value(document),
        other => Err(format!("{} documents", other.len())),
    }
}

fn yaml_value(node: &Yaml<'_>) -> Result<Value, String> {
    Ok(match node {
        Yaml::Value(Scalar::Null) => Value::Null,
        Yaml::Value(Scalar::Boolean(bool)) => Value::Bool(*bool),
        Yaml::Value(Scalar::Integer(int)) => Value::from(*int),
        Yaml::Value(Scalar::FloatingPoint(float)) => Value::from(float.into_inner()),
        Yaml::Value(Scalar::String(string)) => Value::String(string.to_string()),
        Yaml::Sequence(items) => {
            Value::Array(items.iter().map(yaml_value).collect::<Result<_, _>>()?)
        }
        Yaml::Mapping(entries) => Value::Object(
            entries
                .iter()
                .map(|(key, value)| match key {
                    Yaml::Value(Scalar::String(key)) => Ok((key.to_string(), yaml_value(value)?)),
                    other => Err(format!("non-string key {other:?}")),
                })
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Tagged(_, inner) => yaml_value(inner)?,
        other => return Err(format!("unexpected node {other:?}")),
    })
}

/// The tree as YAML: block collections (flow where asked), scalars in their preferred style.
fn yaml(root: &Node) -> String {
    let mut out = String::new();
    if is_block(root) {
        yaml_block(root, 0, &mut out);
    } else {
        out.push_str(&yaml_flow(root));
        out.push('\n');
    }
    out
}

fn is_block(node: &Node) -> bool {
    match node {
        Node::Map { entries, flow } => !flow && !entries.is_empty(),
        Node::Seq { items, flow } => !flow && !items.is_empty(),
        _ => false,
    }
}

fn yaml_block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Map { entries, .. } => {
            for (key, value) in entries {
                out.push_str(&pad);
                out.push_str(&yaml_key(key));
                out.push(':');
                yaml_entry(value, indent, out);
            }
        }
        Node::Seq { items, .. } => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                yaml_entry(item, indent, out);
            }
        }
        _ => {}
    }
}

/// Writes what follows `key:` or `-`.
fn yaml_entry(node: &Node, indent: usize, out: &mut String) {
    let comment = matches!(node, Node::Handle { comment: true, .. });
    if is_block(node) {
        out.push('\n');
        yaml_block(node, indent + 2, out);
    } else if let Node::Handle {
        value,
        style: Style::Literal,
        ..
    } = node
        && value.starts_with("ENC[")
        && value.ends_with(']')
    {
        out.push_str(if comment { " |- # note\n" } else { " |-\n" });
        out.push_str(&" ".repeat(indent + 2));
        out.push_str(value);
        out.push('\n');
    } else {
        out.push(' ');
        out.push_str(&yaml_flow(node));
        out.push_str(if comment { " # note\n" } else { "\n" });
    }
}

/// A node in flow style (a scalar anywhere, or a flow collection).
fn yaml_flow(node: &Node) -> String {
    match node {
        Node::Map { entries, .. } => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(key, value)| format!("{}: {}", yaml_key(key), yaml_flow_item(value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Node::Seq { items, .. } => format!(
            "[{}]",
            items
                .iter()
                .map(yaml_flow_item)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Node::Str { value, style } => yaml_string(value, *style, false),
        Node::Handle { value, style, .. } => yaml_string(value, *style, false),
        Node::Int(int) => int.to_string(),
        Node::Bool(bool) => bool.to_string(),
        Node::Null => "null".to_owned(),
    }
}

/// A node inside a flow collection: no plain handles there (`[` and `]` are indicators).
fn yaml_flow_item(node: &Node) -> String {
    match node {
        Node::Str { value, style } => yaml_string(value, *style, true),
        Node::Handle { value, style, .. } => yaml_string(value, *style, true),
        other => yaml_flow(other),
    }
}

fn yaml_string(value: &str, style: Style, in_flow: bool) -> String {
    let plain = match style {
        Style::Plain if in_flow => value.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        Style::Plain => {
            value.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                || (value.starts_with("ENC[") && value.ends_with(']'))
        }
        _ => false,
    };
    if plain && !value.is_empty() && !matches!(value, "true" | "false" | "null") {
        return value.to_owned();
    }
    let single = matches!(style, Style::Single | Style::Literal)
        && !value.chars().any(|c| c.is_control() && c != '\t');
    if single {
        return format!("'{}'", value.replace('\'', "''"));
    }
    json_string(value)
}

fn yaml_key(key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        key.to_owned()
    } else {
        json_string(key)
    }
}

fn json_string(value: &str) -> String {
    match serde_json::to_string(value) {
        Ok(quoted) => quoted,
        Err(error) => panic!("cannot quote: {error}"),
    }
}

/// The tree as JSON, compact or spaced.
fn json(node: &Node, spaced: bool) -> String {
    let (comma, colon) = if spaced { (",\n  ", ": ") } else { (",", ":") };
    match node {
        Node::Map { entries, .. } => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(key, value)| format!("{}{colon}{}", json_string(key), json(value, spaced)))
                .collect::<Vec<_>>()
                .join(comma)
        ),
        Node::Seq { items, .. } => format!(
            "[{}]",
            items
                .iter()
                .map(|item| json(item, spaced))
                .collect::<Vec<_>>()
                .join(comma)
        ),
        Node::Str { value, .. } | Node::Handle { value, .. } => json_string(value),
        Node::Int(int) => int.to_string(),
        Node::Bool(bool) => bool.to_string(),
        Node::Null => "null".to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the text, parsing does not panic, and a parsed document renders without
    /// panicking, unchanged when nothing is resolved.
    #[test]
    fn any_text_parses_or_fails_cleanly(
        text in "(ENC\\[|[a-z0-9:#&*!|>?,{}\\[\\]\"'\\\\<%@ \n\t\r-]|é|\u{85}|\u{2028}|\u{feff}){0,40}",
    ) {
        for format in [Format::Yaml, Format::Json] {
            if let Ok(document) = Document::parse(text.clone(), format) {
                let untouched = document.render(|_| None);
                prop_assert_eq!(untouched.as_str(), text.as_str());
                let rendered = document.render(|_| Some("v"));
                if format == Format::Json {
                    prop_assert!(serde_json::from_str::<Value>(&rendered).is_ok(), "{}", rendered.as_str());
                } else {
                    prop_assert!(yaml_to_json(&rendered).is_ok() || yaml_to_json(&text).is_err(), "{}", rendered.as_str());
                }
            }
        }
    }
}
