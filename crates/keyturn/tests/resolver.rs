//! Resolver behaviour (the Datadog Agent's resolve, refresh and notification rules) through a
//! real fixture backend.
//!
//! The fixture is a small `/bin/sh` script that answers each requested handle from a "store"
//! directory (`store/<handle>` holds the value, `store/<handle>.error` an error text), appends
//! every request it receives to `calls`, and, while a `gate` file exists, waits for it to be
//! removed before answering. Tests change the store to rotate secrets and count backend runs
//! from `calls`.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn::resolver::{ResolverOptions, Trigger};
use keyturn::settings::{BackendSelection, BuiltinBackend};
use keyturn::{Document, Format, Resolver, Settings};

const FIXTURE: &str = include_str!("fixtures/store-backend.sh");

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("store")).unwrap();
        let script = dir.path().join("backend.sh");
        fs::write(&script, FIXTURE).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
        Fixture { dir }
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("backend.sh")
    }

    fn set(&self, handle: &str, value: &str) -> &Fixture {
        fs::write(self.dir.path().join("store").join(handle), value).unwrap();
        let _ = fs::remove_file(
            self.dir
                .path()
                .join("store")
                .join(format!("{handle}.error")),
        );
        self
    }

    fn fail(&self, handle: &str, error: &str) -> &Fixture {
        fs::write(
            self.dir
                .path()
                .join("store")
                .join(format!("{handle}.error")),
            error,
        )
        .unwrap();
        self
    }

    fn close_gate(&self) {
        fs::write(self.dir.path().join("gate"), "").unwrap();
    }

    fn open_gate(&self) {
        fs::remove_file(self.dir.path().join("gate")).unwrap();
    }

    /// The `secrets` array of every request, in order.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let request: serde_json::Value = serde_json::from_str(line).unwrap();
                request["secrets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect()
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        let text = fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn settings(&self) -> Settings {
        Settings::default().with_backend(BackendSelection::command(self.script()))
    }

    fn resolver(&self) -> Resolver {
        Resolver::new(self.settings())
    }
}

fn yaml(text: &str) -> Document {
    Document::parse(text.to_owned(), Format::Yaml).unwrap()
}

fn tree(text: &str) -> serde_json::Value {
    keyturn::settings::yaml_to_tree(text).unwrap()
}

/// Records every change delivered to a subscriber as `(handle, origin, path, old, new)`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

/// `(handle, origin, path, old, new)` of one change.
type Seen = (String, String, String, String, String);

impl Recorder {
    fn attach(resolver: &Resolver) -> Recorder {
        let recorder = Recorder::default();
        let sink = recorder.0.clone();
        resolver.subscribe(move |change| {
            sink.lock().unwrap().push((
                change.handle.to_owned(),
                change.origin.to_owned(),
                change.path.join("/"),
                change.old.to_owned(),
                change.new.to_owned(),
            ));
        });
        recorder
    }

    fn take(&self) -> Vec<Seen> {
        let mut changes = std::mem::take(&mut *self.0.lock().unwrap());
        changes.sort();
        changes
    }
}

fn change(
    handle: &str,
    origin: &str,
    path: &str,
    old: &str,
    new: &str,
) -> (String, String, String, String, String) {
    (
        handle.into(),
        origin.into(),
        path.into(),
        old.into(),
        new.into(),
    )
}

fn handles(resolver: &Resolver) -> BTreeMap<String, Vec<(String, String)>> {
    resolver.handles()
}

fn places(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(o, p)| ((*o).to_owned(), (*p).to_owned()))
        .collect()
}

#[tokio::test]
async fn no_backend_returns_input_unchanged() {
    let text = "a: ENC[x]\n# comment\n";
    let resolution = Resolver::new(Settings::default())
        .resolve(&yaml(text), "test", true)
        .await;
    assert_eq!(resolution.output.as_str(), text);
    assert!(resolution.failures.is_empty());
}

// Issue 9.14: a timeout too large to add to a clock (settings clamp theirs; these are built
// directly) resolves instead of panicking inside the batch and leaving the resolve hanging.
#[tokio::test]
async fn the_largest_timeout_resolves() {
    let fixture = Fixture::new();
    fixture.set("a", "x");
    let resolver = Resolver::new(fixture.settings().with_timeout(Duration::MAX));
    let resolution = tokio::time::timeout(
        Duration::from_secs(20),
        resolver.resolve(&yaml("a: ENC[a]\n"), "test", false),
    )
    .await
    .expect("the resolve hung");
    assert!(resolution.is_complete(), "{:?}", resolution.failures);
}

#[tokio::test]
async fn resolves_nested_paths_and_fetches_each_handle_once() {
    let fixture = Fixture::new();
    fixture.set("pass1", "password1").set("pass2", "password2");
    let resolver = fixture.resolver();
    let doc = yaml(
        "secret_backend_arguments:\n  - ENC[pass1]\nsome:\n  encoded:\n    - data: ENC[pass2]\n      other: '-'\nagain: ENC[pass1]\n",
    );
    let resolution = resolver.resolve(&doc, "test", false).await;
    assert!(resolution.is_complete(), "{:?}", resolution.failures);
    assert_eq!(
        tree(&resolution.output),
        tree(
            "secret_backend_arguments: [password1]\nsome: {encoded: [{data: password2, other: '-'}]}\nagain: password1\n"
        )
    );
    assert_eq!(fixture.calls(), [["pass1", "pass2"]]);
    assert_eq!(
        handles(&resolver),
        BTreeMap::from([
            (
                "pass1".to_owned(),
                places(&[("test", "secret_backend_arguments/0"), ("test", "again")])
            ),
            (
                "pass2".to_owned(),
                places(&[("test", "some/encoded/0/data")])
            ),
        ])
    );
}

#[tokio::test]
async fn cache_partial_full_and_origins() {
    let fixture = Fixture::new();
    fixture.set("pass1", "password1").set("pass2", "password2");
    let resolver = fixture.resolver();
    resolver
        .resolve(&yaml("a: ENC[pass1]\n"), "first", false)
        .await;
    let resolution = resolver
        .resolve(&yaml("a: ENC[pass1]\nb: ENC[pass2]\n"), "second", false)
        .await;
    assert!(resolution.is_complete());
    assert_eq!(fixture.calls(), [vec!["pass1"], vec!["pass2"]]);
    let resolution = resolver
        .resolve(
            &yaml("x: [\"ENC[pass2]\", \"ENC[pass1]\"]\n"),
            "third",
            false,
        )
        .await;
    assert_eq!(tree(&resolution.output), tree("x: [password2, password1]"));
    assert_eq!(
        fixture.calls().len(),
        2,
        "a fully cached document runs no backend"
    );
    assert_eq!(
        handles(&resolver)["pass1"],
        places(&[("first", "a"), ("second", "a"), ("third", "x/1")])
    );
}

/// Registering an origin again (issue 9, item 3: registration no longer compares each use with
/// every other use) keeps each use once, in first-registration order, and adds the new ones.
#[tokio::test]
async fn registering_an_origin_again_adds_only_new_uses() {
    let fixture = Fixture::new();
    fixture.set("p", "v");
    let resolver = fixture.resolver();
    let first = yaml("a: ENC[p]\nb: [\"ENC[p]\", \"ENC[p]\"]\n");
    resolver.resolve(&first, "doc", false).await;
    resolver.resolve(&first, "doc", false).await;
    resolver.resolve(&yaml("a: ENC[p]\n"), "other", false).await;
    resolver
        .resolve(&yaml("c: ENC[p]\nb: [\"ENC[p]\"]\n"), "doc", false)
        .await;
    assert_eq!(
        handles(&resolver)["p"],
        places(&[
            ("doc", "a"),
            ("doc", "b/0"),
            ("doc", "b/1"),
            ("doc", "c"),
            ("other", "a"),
        ])
    );
}

#[tokio::test]
async fn partial_success_reports_every_failure_with_paths() {
    let fixture = Fixture::new();
    fixture
        .set("good", "resolved-good")
        .set("empty", "")
        .fail("bad", "vault said no");
    let resolver = fixture.resolver();
    let doc =
        yaml("password: ENC[bad]\nusername: ENC[good]\nlist:\n  - ENC[missing]\n  - ENC[empty]\n");
    let resolution = resolver.resolve(&doc, "config-id", false).await;
    let failures: Vec<_> = resolution
        .failures
        .iter()
        .map(|f| {
            (
                f.handle.as_str(),
                f.kind.as_str(),
                f.paths.iter().map(|p| p.join("/")).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            ("bad", "error", vec!["password".to_owned()]),
            ("missing", "missing", vec!["list/0".to_owned()]),
            ("empty", "empty", vec!["list/1".to_owned()]),
        ]
    );
    assert_eq!(
        resolution.failures[0].message,
        "an error occurred while resolving 'bad': vault said no"
    );
    assert_eq!(
        tree(&resolution.output),
        tree(
            "password: ENC[bad]\nusername: resolved-good\nlist: [\"ENC[missing]\", \"ENC[empty]\"]\n"
        )
    );
    assert_eq!(
        resolver
            .cached("good")
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("resolved-good")
    );
    assert_eq!(resolver.failures().len(), 3);
}

#[tokio::test]
async fn whole_batch_failure_fails_every_handle() {
    let fixture = Fixture::new();
    let settings = Settings::default()
        .with_backend(BackendSelection::command(fixture.dir.path().join("absent")));
    let resolution = Resolver::new(settings)
        .resolve(&yaml("a: ENC[x]\nb: ENC[y]\n"), "o", false)
        .await;
    assert_eq!(resolution.failures.len(), 2);
    assert!(
        resolution
            .failures
            .iter()
            .all(|f| f.kind.as_str() == "backend_error")
    );
    assert!(
        resolution.failures[0].message.contains("can't stat it"),
        "{}",
        resolution.failures[0].message
    );
}

#[tokio::test]
async fn subscriptions_on_resolve() {
    let fixture = Fixture::new();
    fixture
        .set("pass1", "password1")
        .set("pass2", "password2")
        .set("pass3", "password3");
    let resolver = fixture.resolver();
    resolver
        .resolve(&yaml("x: ENC[pass1]\n"), "warm", false)
        .await;
    let recorder = Recorder::attach(&resolver);

    // notify=false: no callback at all (item 37).
    resolver
        .resolve(&yaml("a: ENC[pass1]\n"), "quiet", false)
        .await;
    assert!(recorder.take().is_empty());

    // One cached and two fetched handles: one call per path (items 22-23).
    resolver
        .resolve(
            &yaml("a: ENC[pass1]\nb: ENC[pass2]\nc: {d: \"ENC[pass3]\"}\n"),
            "doc",
            true,
        )
        .await;
    assert_eq!(
        recorder.take(),
        [
            change("pass1", "doc", "a", "ENC[pass1]", "password1"),
            change("pass2", "doc", "b", "", "password2"),
            change("pass3", "doc", "c/d", "", "password3"),
        ]
    );
}

#[tokio::test]
async fn refresh_notifies_only_changed_paths_and_reports_without_values() {
    let fixture = Fixture::new();
    fixture.set("pass1", "password1").set("pass2", "password2");
    let resolver = fixture.resolver();
    let recorder = Recorder::attach(&resolver);
    resolver
        .resolve(
            &yaml("first: ENC[pass1]\nsome:\n  second_level: ENC[pass2]\n"),
            "origin",
            true,
        )
        .await;
    assert_eq!(recorder.take().len(), 2);

    fixture.set("pass2", "update-second");
    let report = resolver.refresh(Trigger::Api).await;
    assert_eq!(
        recorder.take(),
        [change(
            "pass2",
            "origin",
            "some/second_level",
            "password2",
            "update-second"
        )]
    );
    let text = report.to_text();
    assert!(
        text.contains("'pass2'") && text.contains("'some/second_level'"),
        "{text}"
    );
    assert!(!text.contains("update-second") && !text.contains("password2"));
    assert!(report.is_success());
    assert_eq!(fixture.calls().last().unwrap(), &["pass1", "pass2"]);

    // Nothing changed: the report lists nothing, nobody is notified.
    let report = resolver.refresh(Trigger::Api).await;
    assert!(report.changed.is_empty());
    assert!(recorder.take().is_empty());
}

#[tokio::test]
async fn refresh_heals_a_handle_that_failed_at_startup_and_keeps_last_good_values() {
    let fixture = Fixture::new();
    fixture.set("a", "one");
    let resolver = fixture.resolver();
    let resolution = resolver
        .resolve(&yaml("a: ENC[a]\nb: ENC[b]\n"), "o", false)
        .await;
    assert_eq!(resolution.failures.len(), 1);

    // b appears; a fails: a keeps its last good value.
    fixture.set("b", "two").fail("a", "down");
    let report = resolver.refresh(Trigger::Timer).await;
    assert_eq!(
        report
            .changed
            .iter()
            .map(|c| c.handle.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(report.failures.len(), 1);
    assert!(!report.is_success());
    assert_eq!(resolver.cached("a").unwrap().expose(), "one");
    assert_eq!(
        resolver
            .failures()
            .iter()
            .map(|f| f.handle.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );

    // Healed: the failure is cleared even though the value did not change.
    fixture.set("a", "one");
    let report = resolver.refresh(Trigger::Timer).await;
    assert!(report.is_success() && report.changed.is_empty());
    assert!(resolver.failures().is_empty());
}

#[tokio::test]
async fn refresh_allowlist_is_per_origin_and_whole_segment() {
    let fixture = Fixture::new();
    fixture.set("h1", "v1").set("h2", "v2");
    let resolver = fixture.resolver();
    let recorder = Recorder::attach(&resolver);
    resolver
        .resolve(&yaml("instances:\n  - password: ENC[h1]\nmore_endpoints:\n  http://x:\n    - ENC[h1]\nsetting: ENC[h2]\n"), "main.yaml", false)
        .await;
    resolver
        .resolve(&yaml("db_password: ENC[h2]\n"), "postgres", false)
        .await;
    resolver.set_refresh_allowlist("main.yaml", Some(vec!["instances".into(), "sett".into()]));

    fixture.set("h1", "w1").set("h2", "w2");
    let report = resolver.refresh(Trigger::Api).await;
    assert_eq!(
        recorder.take(),
        [
            change("h1", "main.yaml", "instances/0/password", "v1", "w1"),
            change("h2", "postgres", "db_password", "v2", "w2")
        ]
    );
    assert_eq!(report.changed.len(), 2);
    // Per use: only the allowlisted use of h1 took the new value; the report says so.
    assert_eq!(
        report.to_text(),
        "=== Secret stats ===\nNumber of secrets reloaded: 2\nSecrets handle reloaded:\n\n\
         - 'h1':\n\tused in 'main.yaml' configuration in entry 'instances/0/password'\n\
         - 'h2':\n\tused in 'postgres' configuration in entry 'db_password'\n\n\
         Number of uses held back: 2\nUses held back (not under their origin's \
         refresh_allowlist; they keep their previous value):\n\n\
         - 'h1':\n\tkept in 'main.yaml' configuration in entry 'more_endpoints/http://x/0'\n\
         - 'h2':\n\tkept in 'main.yaml' configuration in entry 'setting'\n"
    );

    // Only segments that match exactly: nothing under main.yaml is refreshable any more.
    resolver.set_refresh_allowlist("main.yaml", Some(vec!["instance".into()]));
    resolver.remove_origin("postgres");
    fixture.set("h1", "x1").set("h2", "x2");
    let report = resolver.refresh(Trigger::Api).await;
    assert_eq!(report.candidates, 0);
    assert_eq!(report.to_text(), "");
    assert!(recorder.take().is_empty());
}

#[tokio::test]
async fn refresh_of_selected_handles() {
    let fixture = Fixture::new();
    fixture.set("a", "1").set("b", "2");
    let resolver = fixture.resolver();
    resolver
        .resolve(&yaml("a: ENC[a]\nb: ENC[b]\n"), "o", false)
        .await;
    fixture.set("a", "10").set("b", "20");
    let report = resolver
        .refresh_handles(&["b".to_owned(), "unknown".to_owned()], Trigger::Cli)
        .await;
    assert_eq!(fixture.calls().last().unwrap(), &["b"]);
    assert_eq!(report.changed.len(), 1);
    assert_eq!(resolver.cached("a").unwrap().expose(), "1");
}

#[tokio::test]
async fn remove_origin() {
    let fixture = Fixture::new();
    fixture
        .set("pass1", "1")
        .set("pass2", "2")
        .set("pass3", "3");
    let resolver = fixture.resolver();
    let doc = yaml("a: ENC[pass1]\nb: ENC[pass2]\n");
    resolver.resolve(&doc, "origin1", false).await;
    resolver.resolve(&doc, "origin2", false).await;
    resolver
        .resolve(&yaml("c: ENC[pass3]\n"), "origin3", false)
        .await;
    resolver.remove_origin("origin2");
    assert_eq!(handles(&resolver)["pass1"], places(&[("origin1", "a")]));
    resolver.remove_origin("unknown");
    assert_eq!(handles(&resolver).len(), 3);
    resolver.remove_origin("origin1");
    assert_eq!(handles(&resolver).keys().collect::<Vec<_>>(), ["pass3"]);
    resolver.remove_origin("origin3");
    assert!(handles(&resolver).is_empty());
    assert!(
        resolver.cached("pass1").is_some(),
        "the cache is not evicted"
    );
}

#[tokio::test]
async fn resolved_value_that_looks_like_a_handle_is_used_literally() {
    let fixture = Fixture::new();
    fixture.set("h", "ENC[literal-value]");
    let resolver = fixture.resolver();
    let resolution = resolver.resolve(&yaml("a: ENC[h]\n"), "o", false).await;
    assert!(resolution.is_complete());
    assert_eq!(tree(&resolution.output)["a"], "ENC[literal-value]");
    assert_eq!(fixture.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_resolve_does_not_wait_for_a_slow_backend() {
    let fixture = Fixture::new();
    fixture.set("cached", "c").set("slow", "s");
    let resolver = fixture.resolver();
    resolver
        .resolve(&yaml("a: ENC[cached]\n"), "o", false)
        .await;

    fixture.close_gate();
    let slow = tokio::spawn({
        let resolver = resolver.clone();
        async move { resolver.resolve(&yaml("b: ENC[slow]\n"), "o", false).await }
    });
    // The cached resolve completes while the other waits on the gated backend; if it blocked,
    // this would time out instead of hanging the suite.
    let fast = tokio::time::timeout(
        Duration::from_secs(60),
        resolver.resolve(&yaml("a: ENC[cached]\n"), "o2", false),
    )
    .await
    .expect("a cached resolve must not wait for a backend run");
    assert_eq!(tree(&fast.output)["a"], "c");
    assert!(!slow.is_finished());
    fixture.open_gate();
    assert!(slow.await.unwrap().is_complete());
}

#[tokio::test]
async fn concurrent_resolves_share_one_backend_run() {
    let fixture = Fixture::new();
    fixture.set("shared", "v").set("own", "w");
    let resolver = fixture.resolver();
    fixture.close_gate();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let resolver = resolver.clone();
        let text = if i == 0 {
            "a: ENC[shared]\nb: ENC[own]\n"
        } else {
            "a: ENC[shared]\n"
        };
        tasks.spawn(async move {
            resolver
                .resolve(&yaml(text), &format!("doc{i}"), false)
                .await
        });
    }
    // Every task registers its need before the gated backend can answer (see the refresh test).
    tokio::task::yield_now().await;
    fixture.open_gate();
    while let Some(resolution) = tasks.join_next().await {
        assert!(resolution.unwrap().is_complete());
    }
    assert_eq!(fixture.calls(), [["shared", "own"]]);
    assert_eq!(handles(&resolver)["shared"].len(), 20);
}

#[tokio::test]
async fn two_hundred_concurrent_refreshes_cause_at_most_two_backend_runs() {
    let fixture = Fixture::new();
    fixture.set("a", "1");
    let resolver = fixture.resolver();
    resolver.resolve(&yaml("a: ENC[a]\n"), "o", false).await;
    fixture.set("a", "2");
    fixture.close_gate();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let resolver = resolver.clone();
        tasks.spawn(async move { resolver.refresh(Trigger::Api).await });
    }
    // On this current-thread runtime every spawned task runs up to its first await (where it
    // has registered its request) before this task is polled again.
    tokio::task::yield_now().await;
    fixture.open_gate();

    let mut changed = 0;
    let mut total = 0;
    while let Some(report) = tasks.join_next().await {
        let report = report.unwrap();
        assert!(report.is_success());
        assert_eq!(report.candidates, 1);
        changed += usize::from(!report.changed.is_empty());
        total += 1;
    }
    assert_eq!(total, 200);
    let runs = fixture.calls().len() - 1;
    assert!(
        runs <= 2,
        "{runs} backend runs for 200 concurrent refreshes"
    );
    assert!(changed >= 1, "the run that saw the new value reported it");
    assert_eq!(resolver.cached("a").unwrap().expose(), "2");
}

#[tokio::test]
async fn a_hundred_concurrent_scoped_refreshes_cause_at_most_two_backend_runs() {
    let fixture = Fixture::new();
    let names: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    let mut document = String::new();
    for name in &names {
        fixture.set(name, "old");
        document.push_str(&format!("{name}: ENC[{name}]\n"));
    }
    let resolver = fixture.resolver();
    resolver.resolve(&yaml(&document), "o", false).await;
    for name in &names {
        fixture.set(name, "new");
    }
    fixture.close_gate();

    // Ten requesters for each handle, all at once: every one must be answered by a run that
    // started after it asked, and the runs must be shared.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let resolver = resolver.clone();
        let name = names[i % names.len()].clone();
        tasks.spawn(async move {
            let report = resolver
                .refresh_handles(std::slice::from_ref(&name), Trigger::Api)
                .await;
            (name, report)
        });
    }
    // Every task registers its request before the gated backend answers (see above).
    tokio::task::yield_now().await;
    fixture.open_gate();

    while let Some(joined) = tasks.join_next().await {
        let (name, report) = joined.unwrap();
        assert!(report.is_success(), "{report:?}");
        // Each requester sees its own handle only, whatever else its run covered.
        assert_eq!(report.candidates, 1, "{name}: {report:?}");
        assert!(
            report.changed.iter().all(|c| c.handle == name),
            "{name}: {report:?}"
        );
    }
    let runs = fixture.calls().len() - 1;
    assert!(
        runs <= 2,
        "{runs} backend runs for 100 concurrent scoped refreshes"
    );
    // The queued run covered the union of what was asked.
    let mut asked: Vec<String> = fixture.calls()[1..].concat();
    asked.sort();
    asked.dedup();
    assert_eq!(asked, names);
    for name in &names {
        assert_eq!(resolver.cached(name).unwrap().expose(), "new");
    }
}

#[tokio::test]
async fn a_full_refresh_asked_during_a_scoped_one_covers_every_handle() {
    let fixture = Fixture::new();
    fixture.set("a", "1").set("b", "1");
    let resolver = fixture.resolver();
    resolver
        .resolve(&yaml("a: ENC[a]\nb: ENC[b]\n"), "o", false)
        .await;
    fixture.set("a", "2").set("b", "2");
    fixture.close_gate();
    let scoped = {
        let resolver = resolver.clone();
        tokio::spawn(async move {
            resolver
                .refresh_handles(&["a".to_owned()], Trigger::Api)
                .await
        })
    };
    tokio::task::yield_now().await;
    let (full, scoped_again) = {
        let (one, two) = (resolver.clone(), resolver.clone());
        (
            tokio::spawn(async move { one.refresh(Trigger::Api).await }),
            tokio::spawn(async move { two.refresh_handles(&["b".to_owned()], Trigger::Api).await }),
        )
    };
    tokio::task::yield_now().await;
    fixture.open_gate();
    let scoped = scoped.await.unwrap();
    assert_eq!(scoped.candidates, 1);
    let full = full.await.unwrap();
    assert_eq!(full.candidates, 2, "{full:?}");
    let scoped_again = scoped_again.await.unwrap();
    assert_eq!(scoped_again.candidates, 1);
    assert_eq!(
        fixture.calls()[1..],
        [vec!["a".to_owned()], vec!["a".to_owned(), "b".to_owned()]]
    );
}

#[tokio::test]
async fn multi_backends_route_by_prefix_and_send_type_and_config() {
    let fixture = Fixture::new();
    fixture.set("key", "v").set("other", "w");
    let config = |file: &str| {
        let mut map = serde_json::Map::new();
        map.insert("file_path".into(), file.into());
        map
    };
    let backends = BackendSelection::multi([
        ("one", BuiltinBackend::new("file.json", config("one-file"))),
        ("Two", BuiltinBackend::new("file.yaml", config("two-file"))),
    ])
    .unwrap();
    let settings = Settings::default().with_backend(backends);
    let options = ResolverOptions::default().builtin_backend(fixture.script());
    let resolver = Resolver::with_options(settings, options);
    let resolution = resolver
        .resolve(
            &yaml("a: ENC[one;key]\nb: ENC[TWO;other]\nc: ENC[nope;x]\nd: ENC[plain]\n"),
            "o",
            false,
        )
        .await;
    assert_eq!(tree(&resolution.output)["a"], "v");
    assert_eq!(tree(&resolution.output)["b"], "w");
    let messages: Vec<_> = resolution
        .failures
        .iter()
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "handle \"nope;x\": unknown backend \"nope\"",
            "handle \"plain\": unknown backend"
        ]
    );
    let mut requests = fixture.requests();
    requests.sort_by_key(|r| r["type"].as_str().unwrap().to_owned());
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["secrets"], serde_json::json!(["key"]));
    assert_eq!(requests[0]["type"], "file.json");
    assert_eq!(requests[0]["config"]["file_path"], "one-file");
    assert_eq!(requests[1]["secrets"], serde_json::json!(["other"]));
    assert_eq!(requests[1]["version"], "1.1");
    assert!(
        resolver.cached("one;key").is_some(),
        "cached under the full handle"
    );
}

fn audited(fixture: &Fixture, audit_file: PathBuf) -> Resolver {
    let options = ResolverOptions::default().audit_file(audit_file);
    Resolver::with_options(fixture.settings(), options)
}

#[tokio::test]
async fn refreshes_that_change_a_value_append_one_audit_record_each() {
    let fixture = Fixture::new();
    let key = "0123456789abcdef0123456789abcdef";
    fixture
        .set("pass", "password1")
        .set("api", key)
        .set("gone", "x");
    let audit_file = fixture.dir.path().join("secret-audit-file.json");
    let resolver = audited(&fixture, audit_file.clone());
    resolver
        .resolve(
            &yaml("db:\n  password: ENC[pass]\napi_key: ENC[api]\nold: ENC[gone]\n"),
            "o",
            false,
        )
        .await;
    assert!(
        !audit_file.exists(),
        "the initial resolve writes no audit record"
    );

    resolver.refresh(Trigger::Timer).await;
    assert!(
        !audit_file.exists(),
        "a refresh that changed nothing writes no record"
    );

    fixture.set("pass", "password2");
    fs::remove_file(fixture.dir.path().join("store/gone")).unwrap();
    let report = resolver.refresh(Trigger::Api).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let text = fs::read_to_string(&audit_file).unwrap();
    assert_eq!(text.lines().count(), 1);
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        record["data"],
        serde_json::json!([{"handle": "api", "value": "***************************bcdef"}, {"handle": "pass"}])
    );
    assert_eq!(record["trigger"], "api");
    assert_eq!(
        record["failed"],
        serde_json::json!([{"handle": "gone", "reason": "missing"}])
    );
    assert!(!text.contains("password"), "{text}");
    assert_eq!(
        fs::metadata(&audit_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    fixture.set("pass", "password3");
    resolver.refresh(Trigger::Timer).await;
    assert_eq!(fs::read_to_string(&audit_file).unwrap().lines().count(), 2);
}

#[tokio::test]
async fn a_refresh_that_fails_is_audited_even_when_nothing_changed() {
    let fixture = Fixture::new();
    fixture.set("a", "1").set("b", "2");
    let audit_file = fixture.dir.path().join("secret-audit-file.json");
    let resolver = audited(&fixture, audit_file.clone());
    resolver
        .resolve(&yaml("x: ENC[a]\ny: ENC[b]\n"), "o", false)
        .await;
    resolver.refresh(Trigger::Timer).await;
    assert!(!audit_file.exists(), "nothing changed, nothing failed");

    fixture.fail("b", "denied");
    let report = resolver.refresh(Trigger::Timer).await;
    assert!(report.changed.is_empty() && !report.is_success());
    let text = fs::read_to_string(&audit_file).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["data"], serde_json::json!([{"handle": "a"}]));
    assert_eq!(
        record["failed"],
        serde_json::json!([{"handle": "b", "reason": "error"}])
    );
    assert_eq!(record["trigger"], "timer");
    assert!(record.get("held_back").is_none(), "{record}");
}

#[tokio::test]
async fn an_audit_error_is_reported_but_values_still_apply() {
    let fixture = Fixture::new();
    fixture.set("a", "1");
    let audit_dir = fixture.dir.path().join("audit-is-a-directory");
    fs::create_dir(&audit_dir).unwrap();
    let resolver = audited(&fixture, audit_dir);
    resolver.resolve(&yaml("a: ENC[a]\n"), "o", false).await;
    fixture.set("a", "2");
    let report = resolver.refresh(Trigger::Api).await;
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("audit"),
        "{:?}",
        report.error
    );
    assert!(!report.is_success());
    assert!(
        report.failures.is_empty(),
        "an audit error is not a handle failure"
    );
    assert_eq!(resolver.cached("a").unwrap().expose(), "2");
}

mod status {
    use super::*;
    use keyturn::resolver::status::{self, DebugInfo};

    fn info(resolver: &Resolver) -> serde_json::Value {
        serde_json::to_value(DebugInfo::collect(resolver)).unwrap()
    }

    #[tokio::test]
    async fn debug_info_and_text_after_two_documents() {
        let fixture = Fixture::new();
        fixture
            .set("pass1", "1")
            .set("pass2", "2")
            .set("pass3", "3");
        let resolver = fixture.resolver();
        resolver
            .resolve(
                &yaml("instances:\n  - password: ENC[pass1]\n  - password: ENC[pass2]\n"),
                "test",
                false,
            )
            .await;
        resolver
            .resolve(
                &yaml("instances:\n  - password: ENC[pass3]\n  - password: ENC[pass2]\n"),
                "test2",
                false,
            )
            .await;
        let json = info(&resolver);
        assert_eq!(
            json["handles"],
            serde_json::json!({
                "pass1": [["test", "instances/0/password"]],
                "pass2": [["test", "instances/1/password"], ["test2", "instances/1/password"]],
                "pass3": [["test2", "instances/0/password"]],
            })
        );
        assert_eq!(json["backendCommandSet"], true);
        assert_eq!(
            json["executablePermissions"],
            "OK, the executable has the correct permissions"
        );
        assert_eq!(json["executablePermissionsOK"], true);
        assert_eq!(json["refreshIntervalEnabled"], false);
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name;
        let group = nix::unistd::Group::from_gid(nix::unistd::getgid())
            .unwrap()
            .unwrap()
            .name;
        assert_eq!(
            json["executablePermissionsDetails"],
            serde_json::json!({"FileMode": "100700", "Owner": user, "Group": group, "IsWindows": false})
        );
        // The Agent's template, byte for byte: it starts with a newline, its owner and group
        // lines carry two tabs, and it ends without a newline after the refresh line.
        assert_eq!(
            status::status_text(&resolver),
            format!(
                "\n=== Checking executable permissions ===\n\
                 Executable path: {path}\n\
                 Executable permissions: OK, the executable has the correct permissions\n\
                 Permissions Detail:\n\
                 File mode: 100700\n\t\tOwner: {user}\n\t\tGroup: {group}\n\
                 \n\
                 === Secrets stats ===\n\
                 Number of secrets resolved: 3\n\
                 Secrets handle resolved:\n\
                 \n\
                 - 'pass1':\n\
                 \x20 - used in 'test' configuration in entry 'instances/0/password'\n\
                 - 'pass2':\n\
                 \x20 - used in 'test' configuration in entry 'instances/1/password'\n\
                 \x20 - used in 'test2' configuration in entry 'instances/1/password'\n\
                 - 'pass3':\n\
                 \x20 - used in 'test2' configuration in entry 'instances/0/password'\n\
                 \n\
                 'secret_refresh_interval' is disabled",
                path = fixture.script().display()
            )
        );
    }

    #[tokio::test]
    async fn status_counts_and_lists_resolved_and_unresolved_handles_apart() {
        let fixture = Fixture::new();
        fixture.set("good", "1").fail("bad", "denied");
        let resolver = fixture.resolver();
        resolver
            .resolve(&yaml("a: ENC[good]\nb: ENC[bad]\n"), "o", false)
            .await;
        let json = info(&resolver);
        assert_eq!(
            json["handles"],
            serde_json::json!({"good": [["o", "a"]]}),
            "a failed handle is not listed as resolved"
        );
        assert_eq!(
            json["unresolvedSecrets"],
            serde_json::json!([
                "'bad' (error) at b: an error occurred while resolving 'bad': denied"
            ])
        );
        let text = status::status_text(&resolver);
        let stats = &text[text.find("=== Secrets stats ===").unwrap()..];
        assert_eq!(
            stats,
            "=== Secrets stats ===\n\
             Number of secrets resolved: 1\n\
             Secrets handle resolved:\n\
             \n\
             - 'good':\n\
             \x20 - used in 'o' configuration in entry 'a'\n\
             \n\
             'secret_refresh_interval' is disabled\n\
             \n\
             Secrets not resolved:\n\
             \x20 - 'bad' (error) at b: an error occurred while resolving 'bad': denied\n\
             \n"
        );
    }

    #[tokio::test]
    async fn missing_command_and_unresolved_handles() {
        let settings = Settings::default().with_backend(BackendSelection::command("some_command"));
        let resolver = Resolver::new(settings);
        resolver.resolve(&yaml("a: ENC[x]\n"), "o", false).await;
        let json = info(&resolver);
        assert_eq!(
            json["executablePermissions"],
            "error: the executable does not have the correct permissions"
        );
        assert_eq!(json["executablePermissionsOK"], false);
        let details = json["executablePermissionsDetailsError"].as_str().unwrap();
        assert!(details.contains("no such file or directory"), "{details}");
        assert!(
            json["executablePermissionsError"]
                .as_str()
                .unwrap()
                .contains("some_command")
        );
        assert_eq!(json["unresolvedSecrets"].as_array().unwrap().len(), 1);
        let text = status::status_text(&resolver);
        assert!(
            text.contains("error: the executable does not have the correct permissions"),
            "{text}"
        );
        assert!(
            text.contains("Secrets not resolved:\n  - 'x' (backend_error) at a: "),
            "{text}"
        );
    }

    #[test]
    fn builtin_type_and_refresh_interval() {
        let settings = Settings::from_yaml_str(
            "secret_backend_type: aws.secrets\nsecret_refresh_interval: 15\nsecret_refresh_scatter: false\n",
        )
        .unwrap();
        let resolver = Resolver::new(settings);
        let json = info(&resolver);
        assert_eq!(
            json["executablePermissions"],
            "OK, native secret generic connector used"
        );
        // With a refresh interval the Agent's template ends with one newline.
        let text = status::status_text(&resolver);
        assert!(
            text.ends_with("\n\n'secret_refresh_interval' is enabled: the first refresh will happen 15.00s after startup and then every 15s\n"),
            "{text:?}"
        );
        assert_eq!(json["executablePermissionsOK"], true);
        assert_eq!(json["embeddedSecretBackend"], true);
        assert_eq!(json["backendType"], "aws.secrets");
        assert_eq!(json["refreshIntervalEnabled"], true);
        assert_eq!(json["refreshInterval"], "15s");
        assert_eq!(json["scatterDuration"], "15.00s");
        let multi = Settings::from_yaml_str(
            "multi_secret_backends:\n  b: {type: file.json}\n  a: {type: file.yaml}\n",
        )
        .unwrap();
        let resolver = Resolver::new(multi);
        assert_eq!(info(&resolver)["multiBackendNames"], "a, b");
        assert!(status::status_text(&resolver).contains("Backends: a, b"));
    }

    #[tokio::test]
    async fn version_probe() {
        let fixture = Fixture::new();
        let script = fixture.dir.path().join("versioned.sh");
        fs::write(&script, "#!/bin/sh\nif [ \"$1\" = --version ]; then [ -f \"$(dirname \"$0\")/hang\" ] && sleep 30; echo ' v1.2.3 '; fi\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
        let typed = Settings::from_yaml_str("secret_backend_type: file.json\n").unwrap();
        let options = ResolverOptions::default().builtin_backend(script.clone());
        let resolver = Resolver::with_options(typed, options.clone());
        let report = status::executable_report_with_version(&resolver)
            .await
            .unwrap();
        assert_eq!(report.version.as_deref(), Some("v1.2.3"));
        assert!(report.to_text().contains("Executable version: v1.2.3"));

        fs::write(fixture.dir.path().join("hang"), "").unwrap();
        let started = std::time::Instant::now();
        let report = status::executable_report_with_version(&resolver)
            .await
            .unwrap();
        assert_eq!(report.version, None);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the probe is bounded by one second"
        );

        // A plain command is never asked for its version.
        let command = Settings::default().with_backend(BackendSelection::command(script));
        let report = status::executable_report_with_version(&Resolver::new(command))
            .await
            .unwrap();
        assert_eq!(report.version, None);
    }

    #[tokio::test]
    async fn version_errors() {
        use keyturn::backend::{self, BackendSpec, FetchOptions, PermissionCheck};
        let fixture = Fixture::new();
        let script = fixture.dir.path().join("slow.sh");
        fs::write(&script, "#!/bin/sh\nsleep 30\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
        let options = FetchOptions::new(Duration::from_secs(30), 1024);
        let spec = BackendSpec::new(script).with_check(PermissionCheck::Skip);
        let error = backend::version(&spec, &options).await.unwrap_err();
        assert!(error.contains("secret_backend_type"), "{error}");
        let spec = spec.with_backend_type(Some("file.json".into()));
        assert_eq!(
            backend::version(&spec, &options).await.unwrap_err(),
            "version command timeout"
        );
    }
}

/// Failures as `(handle, kind, message, paths)`, to compare two resolutions.
fn failure_list(resolution: &keyturn::Resolution) -> Vec<(String, String, String, Vec<String>)> {
    resolution
        .failures
        .iter()
        .map(|f| {
            (
                f.handle.clone(),
                f.kind.as_str().to_owned(),
                f.message.clone(),
                f.paths.iter().map(|p| p.join("/")).collect(),
            )
        })
        .collect()
}

/// `resolve_once` gives what `resolve` gives (output, failures with every path, in first-seen
/// order), with handles used out of text order, repeated, aliased and failing; one backend run
/// asks for each distinct handle once; nothing is registered or cached.
#[tokio::test]
async fn resolve_once_gives_what_resolve_gives_and_keeps_nothing() {
    let fixture = Fixture::new();
    fixture
        .set("p1", "one")
        .set("p2", "two")
        .set("p3", "three")
        .fail("bad", "vault said no");
    let text = "base: &base\n  m: ENC[p3]\n  n: ENC[bad]\nmerged:\n  <<: *base\n  z: ENC[p1]\n\
                a: ENC[p2]\nb:\n  - ENC[p1]\n  - ENC[p2]\n  - ENC[missing]\nc: &x ENC[p3]\nd: *x\n\
                e: ENC[bad]\nf: *base\n";
    let once = fixture.resolver();
    let resolution = once.resolve_once(&yaml(text)).await;
    assert_eq!(fixture.calls(), [["p3", "bad", "p1", "p2", "missing"]]);
    let reference = fixture.resolver().resolve(&yaml(text), "o", false).await;
    assert_eq!(*resolution.output, *reference.output);
    assert_eq!(tree(&resolution.output)["d"], "three");
    assert_eq!(tree(&resolution.output)["b"][2], "ENC[missing]");
    assert_eq!(failure_list(&resolution), failure_list(&reference));
    assert_eq!(
        failure_list(&resolution)
            .iter()
            .map(|(handle, _, _, paths)| (handle.as_str(), paths.len()))
            .collect::<Vec<_>>(),
        [("bad", 4), ("missing", 1)]
    );
    assert!(handles(&once).is_empty(), "nothing registered");
    assert!(once.cached("p1").is_none(), "nothing cached");
    assert!(once.failures().is_empty());
}

/// A run that fails as a whole fails each distinct handle once, with all its paths; multi
/// backends route as in `resolve`.
#[tokio::test]
async fn resolve_once_reports_a_failed_run_once_per_handle_and_routes_multi_backends() {
    let fixture = Fixture::new();
    let settings = Settings::default()
        .with_backend(BackendSelection::command(fixture.dir.path().join("absent")));
    let resolution = Resolver::new(settings)
        .resolve_once(&yaml("a: ENC[x]\nb: ENC[y]\nc: ENC[x]\n"))
        .await;
    let failures = failure_list(&resolution);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(failures[0].0, "x");
    assert_eq!(failures[0].3, ["a", "c"]);
    assert!(failures[0].2.contains("can't stat it"), "{}", failures[0].2);

    fixture.set("key", "v");
    let mut config = serde_json::Map::new();
    config.insert("file_path".into(), "one-file".into());
    let backends =
        BackendSelection::multi([("one", BuiltinBackend::new("file.json", config))]).unwrap();
    let options = ResolverOptions::default().builtin_backend(fixture.script());
    let resolver = Resolver::with_options(Settings::default().with_backend(backends), options);
    let resolution = resolver
        .resolve_once(&yaml("a: ENC[one;key]\nb: ENC[nope;x]\nc: ENC[one;key]\n"))
        .await;
    assert_eq!(tree(&resolution.output)["a"], "v");
    assert_eq!(tree(&resolution.output)["c"], "v");
    assert_eq!(
        failure_list(&resolution),
        [(
            "nope;x".to_owned(),
            "backend_error".to_owned(),
            "handle \"nope;x\": unknown backend \"nope\"".to_owned(),
            vec!["b".to_owned()]
        )]
    );
    assert_eq!(fixture.calls(), [["key"]]);
}
