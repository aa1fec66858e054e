//! Differential test: keyturn's handle sites against a YAML 1.1 reading (PyYAML) of documents
//! carrying the characters YAML 1.1 and 1.2 treat differently: U+0085, U+2028 and U+2029 (line
//! breaks for 1.1 only), tabs and a byte order mark in the middle of the text.
//!
//! For every generated document, either keyturn refuses it, or PyYAML refuses it (it refuses
//! tabs in places YAML 1.2, Go's yaml.v3 and keyturn accept them: a reader that refuses a
//! document sees no handle), or both find exactly the same (key path, handle) pairs. A handle
//! a YAML 1.1 consumer sees is never invisible to keyturn.
//!
//! Needs `python3` with PyYAML on `PATH` (`.ci/install-test-deps.sh` installs it into
//! `.ci/venv`); the test fails, naming what is missing, when it is not there.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]
// The test starts python; only the library's spawner is restricted.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use keyturn::document::{Document, Format};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};

/// Documents generated per run (all read by one python process).
const CASES: usize = 3000;

/// Valid documents the special characters are inserted into: comments, plain, quoted and block
/// scalars, sequences, flow collections, anchors and aliases, tags, tabs already in place.
const BASES: &[&str] = &[
    "# config\npw: ENC[db]\nuser: ENC[user]\n",
    "a: 1\nk: ENC[h]\n# c pw: ENC[hidden]\nz: plain\n",
    "outer:\n  inner: ENC[a]\n  list:\n    - ENC[b]\n    - \"ENC[c]\"\n    - 'ENC[d]'\n",
    "k: \"quoted ENC[no] text\"\nh: ENC[x]\nb: |-\n  ENC[in-block]\nf: >-\n  folded\n",
    "flow: {a: \"ENC[f1]\", b: [\"ENC[f2]\", 3]}\nafter: ENC[f3]\n",
    "base: &anchor ENC[anc]\ncopy: *anchor\ntagged: !!str ENC[t]\nbang: ! ENC[u]\n",
    "- ENC[s0]\n- key: ENC[s1]\n  other: ENC[s2]\n- [1, 2]\n",
    "a: x # trailing ENC[no]\nb: ENC[y] # note\nc: \"ENC[z]\" # more\n",
    "k:\tENC[tab]\nl: v\n",
];

/// The characters YAML 1.1 and 1.2 read differently, tabs and byte order marks more often
/// (keyturn refuses every raw U+0085, U+2028 and U+2029, so those documents compare nothing).
const SPECIALS: &[char] = &[
    '\u{85}', '\u{2028}', '\u{2029}', '\t', '\t', '\t', '\t', '\t', '\t', '\u{feff}', '\u{feff}',
];

/// Walks a PyYAML reading as the Agent's walker walks yaml.v3's: string values at any depth in
/// string-keyed maps and lists, handles by the Agent's rule. Prints one JSON line per document:
/// `null` when PyYAML refuses it, else its `[path, handle]` pairs.
const READER: &str = r#"
import json, sys
try:
    import yaml
except ImportError:
    sys.stderr.write("PyYAML is not installed\n")
    sys.exit(3)

def walk(node, path, out):
    if isinstance(node, dict):
        if all(isinstance(k, str) for k in node):
            for k, v in node.items():
                walk(v, path + [k], out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, path + [str(i)], out)
    elif isinstance(node, str):
        s = node.strip(" \t")
        if s.startswith("ENC[") and s.endswith("]"):
            out.append(["/".join(path), s[4:-1]])

for doc in json.load(sys.stdin):
    try:
        tree = yaml.load(doc, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        print("null")
        continue
    out = []
    if isinstance(tree, (dict, list)):
        walk(tree, [], out)
    print(json.dumps(out))
"#;

type Sites = BTreeSet<(String, String)>;

#[test]
fn handle_sites_match_a_yaml_1_1_reading_or_the_document_is_refused() {
    let documents = generate();
    let yaml_1_1 = read_with_pyyaml(&documents);
    let (mut compared, mut keyturn_refused, mut pyyaml_refused) = (0, 0, 0);
    let mut with_tabs = 0;
    for (document, theirs) in documents.iter().zip(yaml_1_1) {
        let Ok(ours) = Document::parse(document.clone(), Format::Yaml) else {
            keyturn_refused += 1;
            continue;
        };
        let Some(theirs) = theirs else {
            pyyaml_refused += 1;
            continue;
        };
        let ours: Sites = ours
            .sites()
            .map(|site| (site.path().join("/"), site.handle().to_owned()))
            .collect();
        assert_eq!(
            ours, theirs,
            "keyturn and a YAML 1.1 reading see different handles in {document:?}"
        );
        compared += 1;
        with_tabs += usize::from(document.contains('\t'));
    }
    // The comparison is not vacuous: many documents are read by both, tabs in some of them,
    // and many are refused by keyturn.
    assert!(
        compared >= CASES / 20 && with_tabs >= CASES / 100,
        "only {compared} of {CASES} documents compared, {with_tabs} of them with tabs \
         ({keyturn_refused} refused by keyturn, {pyyaml_refused} by PyYAML)"
    );
    assert!(keyturn_refused >= CASES / 10, "{keyturn_refused}");
}

/// The base documents, each with one to three special characters inserted at random character
/// positions, from a fixed seed.
fn generate() -> Vec<String> {
    let strategy = (
        0..BASES.len(),
        proptest::collection::vec((0..SPECIALS.len(), 0..1000_usize), 1..=2),
    )
        .prop_map(|(base, inserts)| {
            let mut chars: Vec<char> = BASES[base].chars().collect();
            for (special, at) in inserts {
                let at = at % (chars.len() + 1);
                chars.insert(at, SPECIALS[special]);
            }
            chars.into_iter().collect::<String>()
        });
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    (0..CASES)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("a generated document")
                .current()
        })
        .collect()
}

/// Each document's sites as PyYAML reads it, `None` when it refuses it.
fn read_with_pyyaml(documents: &[String]) -> Vec<Option<Sites>> {
    let spawned = Command::new("python3")
        .args(["-c", READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot start python3 ({error}): this test needs python3 with PyYAML; run \
             .ci/install-test-deps.sh and put .ci/venv/bin on PATH"
        ),
    };
    let input = serde_json::to_vec(documents).expect("documents as JSON");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("python3 output");
    writer
        .join()
        .expect("writer thread")
        .expect("write the documents");
    assert!(
        output.status.success(),
        "python3 failed ({}): {}; this test needs PyYAML: run .ci/install-test-deps.sh and put \
         .ci/venv/bin on PATH",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Option<Sites>> = String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| {
            let pairs: Option<Vec<(String, String)>> =
                serde_json::from_str(line).expect("a JSON line");
            pairs.map(|pairs| pairs.into_iter().collect())
        })
        .collect();
    assert_eq!(lines.len(), documents.len(), "one answer per document");
    lines
}
