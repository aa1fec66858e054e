//! YAML documents: `Document::parse`, then `render` with values derived from the input (see
//! `keyturn_fuzz::values`, hostile characters included).
//!
//! Checks, beyond "no panic" and those of `keyturn_fuzz::parse_and_render` (no `Layout` error,
//! rendering with nothing resolved gives the input byte for byte):
//! - when saphyr reads the input, it reads the output too, and the two trees are equal except
//!   at handles the document reported: there the output holds the resolved value, as a
//!   double-quoted scalar with the same tag (a lone `!` tag is dropped);
//! - every reported site of a resolved handle holds its value in the output tree (following
//!   `<<` merges the way the walker does).
//!
//! Both trees are read with saphyr without resolving scalars (`early_parse(false)`), so keys
//! and values compare by their text, style and tag.

#![no_main]

use std::collections::{HashMap, HashSet};

use keyturn::Format;
use keyturn::handle::parse_handle;
use keyturn_fuzz::{Input, Rendered, parse_and_render};
use libfuzzer_sys::fuzz_target;
use saphyr::{ScalarStyle, Tag, Yaml, YamlLoader};
use saphyr_parser::Parser;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let Some(Rendered {
        document,
        values,
        output: rendered,
    }) = parse_and_render(input, Format::Yaml)
    else {
        return;
    };

    let Ok(before) = load(input.text) else {
        return;
    };
    let after = match load(&rendered) {
        Ok(after) => after,
        Err(error) => panic!("output does not parse: {error}\n{}", rendered.as_str()),
    };
    let ([before], [after]) = (before.as_slice(), after.as_slice()) else {
        panic!("document counts differ or are not one");
    };
    let reported: HashSet<&str> = document.handles().into_iter().collect();
    let check = Check {
        values: &values,
        reported: &reported,
        before,
    };
    if let Err(error) = check.same_but_handles(before, after, &mut Vec::new()) {
        panic!("{error}\n--- output\n{}", rendered.as_str());
    }
    for site in document.sites() {
        let Some(value) = values.get(site.handle()) else {
            continue;
        };
        match node_at(after, &site.path().to_strings()) {
            Some(Yaml::Representation(text, ScalarStyle::DoubleQuoted, _)) if text == value => {}
            other => panic!(
                "site {:?} does not hold its value in the output: {other:?}\n--- output\n{}",
                site.path(),
                rendered.as_str()
            ),
        }
    }
});

/// Every document of `text`, scalars left unresolved.
fn load(text: &str) -> Result<Vec<Yaml<'_>>, String> {
    let mut loader = YamlLoader::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut loader, true)
        .map_err(|error| error.to_string())?;
    if let Some(error) = loader.error() {
        return Err(error.to_string());
    }
    Ok(loader.into_documents())
}

struct Check<'a> {
    values: &'a HashMap<String, String>,
    reported: &'a HashSet<&'a str>,
    /// The input's tree.
    before: &'a Yaml<'a>,
}

impl Check<'_> {
    /// Whether `after` is `before` with only reported, resolved handles replaced.
    fn same_but_handles(
        &self,
        before: &Yaml<'_>,
        after: &Yaml<'_>,
        path: &mut Vec<String>,
    ) -> Result<(), String> {
        match (before, after) {
            (Yaml::Representation(old, _, old_tag), Yaml::Representation(new, style, new_tag)) => {
                if before == after {
                    return Ok(());
                }
                let Some(handle) = parse_handle(old) else {
                    return Err(format!("a value that is not a handle changed at {path:?}"));
                };
                if !self.reported.contains(handle) {
                    return Err(format!("an unreported handle was replaced at {path:?}"));
                }
                match self.values.get(handle) {
                    Some(value)
                        if new == value
                            && *style == ScalarStyle::DoubleQuoted
                            && (old_tag == new_tag
                                || (new_tag.is_none()
                                    && (old_tag.as_deref().is_some_and(is_non_specific)
                                        || in_a_key(self.before, before)))) =>
                    {
                        Ok(())
                    }
                    Some(_) => Err(format!("the value at {path:?} reads back differently")),
                    None => Err(format!("an unresolved handle changed at {path:?}")),
                }
            }
            (Yaml::Sequence(old), Yaml::Sequence(new)) => {
                if old.len() != new.len() {
                    return Err(format!("a sequence changed length at {path:?}"));
                }
                for (index, (old, new)) in old.iter().zip(new).enumerate() {
                    path.push(index.to_string());
                    self.same_but_handles(old, new, path)?;
                    path.pop();
                }
                Ok(())
            }
            (Yaml::Mapping(old), Yaml::Mapping(new)) => {
                if old.len() != new.len() {
                    return Err(format!("a mapping changed size at {path:?}"));
                }
                for ((old_key, old), (new_key, new)) in old.iter().zip(new) {
                    if old_key != new_key {
                        return Err(format!("a key changed at {path:?}: {old_key:?}"));
                    }
                    path.push(key_text(old_key).unwrap_or("<collection>").to_owned());
                    self.same_but_handles(old, new, path)?;
                    path.pop();
                }
                Ok(())
            }
            (Yaml::Tagged(old_tag, old), Yaml::Tagged(new_tag, new)) if old_tag == new_tag => {
                self.same_but_handles(old, new, path)
            }
            _ if before == after => Ok(()),
            _ => Err(format!("a node changed kind at {path:?}")),
        }
    }
}

/// The node at a site's key path: map keys by text, sequence indexes, and keys merged with `<<`
/// (explicit keys first, then merge sources in order).
fn node_at<'y, 'i>(node: &'y Yaml<'i>, path: &[String]) -> Option<&'y Yaml<'i>> {
    let node = untagged(node);
    let Some((segment, rest)) = path.split_first() else {
        return Some(node);
    };
    match node {
        Yaml::Sequence(items) => node_at(items.get(segment.parse::<usize>().ok()?)?, rest),
        Yaml::Mapping(entries) => {
            if let Some((_, value)) = entries
                .iter()
                .find(|(key, _)| key_text(key) == Some(segment.as_str()))
            {
                return node_at(value, rest);
            }
            entries
                .iter()
                .filter(|(key, _)| is_merge_key(key))
                .flat_map(|(_, source)| match untagged(source) {
                    Yaml::Sequence(sources) => sources.iter().collect(),
                    _ => vec![source],
                })
                .find_map(|source| node_at(source, path))
        }
        _ => None,
    }
}

/// Whether `node` appears inside a mapping key of `tree`. A handle anchored inside a key is
/// never replaced there; an alias to it used as a value is replaced at the alias by the
/// double-quoted value alone, without the anchor's tag (yaml v3 reads the same string).
fn in_a_key(tree: &Yaml<'_>, node: &Yaml<'_>) -> bool {
    seen_below(tree, node, false)
}

/// Whether `node` is `tree` or below it, counting only places inside a mapping key unless
/// `in_key` (`tree` itself is inside one).
fn seen_below(tree: &Yaml<'_>, node: &Yaml<'_>, in_key: bool) -> bool {
    (in_key && tree == node)
        || match tree {
            Yaml::Sequence(items) => items.iter().any(|item| seen_below(item, node, in_key)),
            Yaml::Mapping(entries) => entries
                .iter()
                .any(|(key, value)| seen_below(key, node, true) || seen_below(value, node, in_key)),
            Yaml::Tagged(_, inner) => seen_below(inner, node, in_key),
            _ => false,
        }
}

/// The lone `!` (the non-specific tag), which rendering drops from a replaced value: some
/// YAML 1.1 readers would otherwise resolve the double-quoted value as a bool or a number.
fn is_non_specific(tag: &Tag) -> bool {
    matches!(
        (tag.handle.as_str(), tag.suffix.as_str()),
        ("!", "") | ("", "!")
    )
}

fn untagged<'y, 'i>(node: &'y Yaml<'i>) -> &'y Yaml<'i> {
    match node {
        Yaml::Tagged(_, inner) => untagged(inner),
        other => other,
    }
}

fn key_text<'y>(key: &'y Yaml<'_>) -> Option<&'y str> {
    match key {
        Yaml::Representation(text, _, _) => Some(text),
        _ => None,
    }
}

/// A merge key as yaml v3 (and so the walker) reads it: a plain `<<`, untagged or with the lone
/// `!` tag (which yaml v3 resolves like no tag), or any scalar tagged `!!merge`.
fn is_merge_key(key: &Yaml<'_>) -> bool {
    match key {
        Yaml::Representation(text, ScalarStyle::Plain, tag)
            if tag.as_deref().is_none_or(is_non_specific) =>
        {
            text == "<<"
        }
        Yaml::Representation(_, _, Some(tag)) => tag.is_yaml_core_schema() && tag.suffix == "merge",
        _ => false,
    }
}
