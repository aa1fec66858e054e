//! Tabs after a mapping's `:` (`key:<TAB>value`): YAML 1.2 allows them as separation white
//! space, and Go's yaml.v3 and yaml.v2, libyaml and the JavaScript parsers accept them, but
//! saphyr-parser's scanner refuses a tab-only separation before a plain scalar that starts with
//! a letter, a digit, `_` or `-` ("':' must be followed by a valid YAML whitespace").
//!
//! [`readable`] gives saphyr a copy of the text in which such tabs are spaces. A tab and a space
//! are one byte and one character each, so every position (saphyr's character indexes, byte
//! offsets, lines and columns) is the same in both texts: sites and splices found in the copy
//! apply to the original, which is what is rendered, byte for byte.
//!
//! Why the copy reads like the original: a tab is replaced only in a run of spaces and tabs
//! that follows a `:` and ends, on the same line, where the parser of the copy starts a node
//! (a scalar, an alias, a flow collection, or the anchor or tag before one). Nothing between a
//! `:` and the node after it can be content: a plain scalar cannot hold `:` followed by white
//! space, and a quoted or block scalar or a comment holding the run would also hold the node's
//! first character. There the run is separation, where YAML 1.2 gives a tab and a space the
//! same meaning. Runs before a block indicator (`- `, `? `, `: `) are left alone: a tab there
//! would be indentation, which YAML forbids. Every replaced run is checked against the final
//! copy's own parse; when one does not hold, the original text is parsed as it is (and refused
//! as before).

use std::borrow::Cow;
use std::collections::HashSet;

use saphyr_parser::{Event, Parser};

/// A run of spaces and tabs after a `:`, holding a tab, with content after it on its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Byte range of the run.
    start: usize,
    end: usize,
    /// Character index of the content after it (saphyr's positions count characters).
    content: usize,
}

/// The text saphyr should parse for `text`: `text` itself, or a copy in which the tabs of
/// `key:<TAB>value` separations are spaces (see the module documentation).
pub(crate) fn readable(text: &str) -> Cow<'_, str> {
    if !text.as_bytes().contains(&b'\t') {
        return Cow::Borrowed(text);
    }
    let runs = runs(text);
    if runs.is_empty() {
        return Cow::Borrowed(text);
    }
    let all = with_spaces(text, &runs);
    let starts = node_starts(&all);
    let held: Vec<Run> = runs
        .iter()
        .copied()
        .filter(|run| starts.contains(&run.content))
        .collect();
    if held.len() == runs.len() {
        return Cow::Owned(all);
    }
    if held.is_empty() {
        return Cow::Borrowed(text);
    }
    // Some runs were not separation (inside a quoted or block scalar, say): replace only the
    // others, and check them again in the text that is parsed.
    let some = with_spaces(text, &held);
    let starts = node_starts(&some);
    if held.iter().all(|run| starts.contains(&run.content)) {
        Cow::Owned(some)
    } else {
        Cow::Borrowed(text)
    }
}

/// Every run of spaces and tabs after a `:` that holds a tab and is followed on its line by
/// something other than a comment or a block indicator. Runs found inside scalars and comments
/// too: [`readable`] sorts them out with the parser.
fn runs(text: &str) -> Vec<Run> {
    let bytes = text.as_bytes();
    let blank = |b: Option<&u8>| matches!(b, None | Some(b' ' | b'\t' | b'\r' | b'\n'));
    let mut runs = Vec::new();
    let mut chars = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte & 0xc0 != 0x80 {
            chars += 1;
        }
        at += 1;
        if byte != b':' {
            continue;
        }
        let rest = bytes.get(at..).unwrap_or_default();
        let len = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let content = rest.get(len);
        let usable = rest.get(..len).unwrap_or_default().contains(&b'\t')
            && !blank(content)
            && content != Some(&b'#')
            && !(matches!(content, Some(b'-' | b'?' | b':')) && blank(rest.get(len + 1)));
        if usable {
            // The run is ASCII: one character per byte.
            runs.push(Run {
                start: at,
                end: at + len,
                content: chars + len,
            });
        }
        chars += len;
        at += len;
    }
    runs
}

/// `text` with the tabs of `runs` replaced by spaces.
fn with_spaces(text: &str, runs: &[Run]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for run in runs {
        for byte in bytes.get_mut(run.start..run.end).into_iter().flatten() {
            *byte = b' ';
        }
    }
    // Only ASCII tabs became ASCII spaces.
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned())
}

/// The character index where each node of `text` starts, as far as it parses.
fn node_starts(text: &str) -> HashSet<usize> {
    let mut starts = HashSet::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        if matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(_)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
        ) {
            starts.insert(span.start.index());
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &str) {
        assert_eq!(readable(text), expected, "{text:?}");
    }

    #[test]
    fn separation_tabs_after_a_colon_become_spaces() {
        check("a:\tb\n", "a: b\n");
        check("a:\t\tENC[x]\n", "a:  ENC[x]\n");
        check("a: \tb\n", "a:  b\n");
        check("a:\t1\nb:\t-1\n", "a: 1\nb: -1\n");
        check("- k:\tv\n  l:\tw\n", "- k: v\n  l: w\n");
        check("a:\t&x b\nc:\t*x\n", "a: &x b\nc: *x\n");
        check("a:\t!t b\n", "a: !t b\n");
        check("a:\t[1,\t2]\n", "a: [1,\t2]\n");
        check("? a\n:\tb\n", "? a\n: b\n");
        // Positions stay: characters before the run are counted, multi-byte ones too.
        check("é:\tü\nß:\tb\n", "é: ü\nß: b\n");
    }

    #[test]
    fn tabs_anywhere_else_stay() {
        for text in [
            "a: \"x:\ty\"\n",
            "a: 'x:\ty'\n",
            "a: |\n  x:\ty\n",
            "a: >\n  x:\ty\n",
            "a: b # c:\td\n",
            "# c:\td\na: b\n",
            "a:\t# comment\n  b\n",
            "a:\t\n",
            "a: \"multi\n  line:\tx\"\n",
            "- \"a:\tb\"\n",
            "a: \"x\"\t# c:\ty\n",
        ] {
            check(text, text);
        }
    }

    #[test]
    fn tabs_before_block_indicators_stay() {
        for text in ["? a\n:\t- b\n", "a:\t- b\n", "a:\t? b\n", "a:\t: b\n"] {
            check(text, text);
        }
    }

    #[test]
    fn a_run_inside_a_scalar_is_left_beside_one_that_is_replaced() {
        check(
            "a:\tb\nc: \"d:\te\"\nf: |\n  g:\th\ni:\tj\n",
            "a: b\nc: \"d:\te\"\nf: |\n  g:\th\ni: j\n",
        );
    }
}
