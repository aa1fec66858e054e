//! JSON documents: `Document::parse`, then `render` with values derived from the input (see
//! `keyturn_fuzz::values`, hostile characters included).
//!
//! Checks, beyond "no panic" and those of `keyturn_fuzz::parse_and_render` (no `Layout` error,
//! rendering with nothing resolved gives the input byte for byte):
//! - when serde_json reads the input, it reads the output too, and the two trees are equal
//!   except at handles the document reported, where the output holds the resolved value;
//! - every reported site of a resolved handle holds its value in the output tree.

#![no_main]

use std::collections::{HashMap, HashSet};

use keyturn::Format;
use keyturn::handle::parse_handle;
use keyturn_fuzz::{Input, Rendered, parse_and_render, without_bom};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let Some(Rendered {
        document,
        values,
        output: rendered,
    }) = parse_and_render(input, Format::Json)
    else {
        return;
    };

    let Ok(before) = serde_json::from_str::<Value>(without_bom(input.text)) else {
        return;
    };
    let after = match serde_json::from_str::<Value>(without_bom(&rendered)) {
        Ok(after) => after,
        Err(error) => panic!("output does not parse: {error}\n{}", rendered.as_str()),
    };
    let reported: HashSet<&str> = document.handles().into_iter().collect();
    if let Err(error) = same_but_handles(&before, &after, &values, &reported, &mut Vec::new()) {
        panic!("{error}\n--- output\n{}", rendered.as_str());
    }
    for site in document.sites() {
        let Some(value) = values.get(site.handle()) else {
            continue;
        };
        let found = site
            .path()
            .to_strings()
            .iter()
            .try_fold(&after, |node, segment| match node {
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
                Value::Object(entries) => entries.get(segment.as_str()),
                _ => None,
            });
        assert_eq!(
            found.and_then(Value::as_str),
            Some(value.as_str()),
            "site {:?} does not hold its value in the output\n--- output\n{}",
            site.path(),
            rendered.as_str()
        );
    }
});

/// Whether `after` is `before` with only reported, resolved handles replaced.
fn same_but_handles(
    before: &Value,
    after: &Value,
    values: &HashMap<String, String>,
    reported: &HashSet<&str>,
    path: &mut Vec<String>,
) -> Result<(), String> {
    match (before, after) {
        (Value::String(old), Value::String(new)) => {
            if old == new {
                return Ok(());
            }
            let Some(handle) = parse_handle(old) else {
                return Err(format!("a value that is not a handle changed at {path:?}"));
            };
            if !reported.contains(handle) {
                return Err(format!("an unreported handle was replaced at {path:?}"));
            }
            match values.get(handle) {
                Some(value) if value == new => Ok(()),
                Some(_) => Err(format!("the value at {path:?} reads back differently")),
                None => Err(format!("an unresolved handle changed at {path:?}")),
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            if old.len() != new.len() {
                return Err(format!("an array changed length at {path:?}"));
            }
            for (index, (old, new)) in old.iter().zip(new).enumerate() {
                path.push(index.to_string());
                same_but_handles(old, new, values, reported, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Object(old), Value::Object(new)) => {
            if old.len() != new.len() || old.keys().ne(new.keys()) {
                return Err(format!("an object's keys changed at {path:?}"));
            }
            for (key, old) in old {
                path.push(key.clone());
                same_but_handles(old, &new[key], values, reported, path)?;
                path.pop();
            }
            Ok(())
        }
        _ if before == after => Ok(()),
        _ => Err(format!("a value changed kind at {path:?}")),
    }
}
