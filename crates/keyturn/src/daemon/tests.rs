//! Daemon behaviour through a real fixture backend: start, refresh, re-render, `on_change`,
//! reload, and the API's refresh route.
//!
//! The fixture is a `/bin/sh` backend answering from a store directory (`store/<handle>` holds
//! the value, `store/<handle>.error` an error text) and appending each request to `calls`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::settings::yaml_to_tree;

/// The store-backed fixture backend shared with the resolver tests (see its comments).
const BACKEND: &str = include_str!("../../tests/fixtures/store-backend.sh");

/// A temp directory with the fixture backend, a token, templates and a settings file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("store")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        let script = dir.path().join("backend.sh");
        fs::write(&script, BACKEND).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
        let token = dir.path().join("auth_token");
        fs::write(&token, "token\n").unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> &Setup {
        fs::write(self.path(name), text).unwrap();
        self
    }

    fn set(&self, handle: &str, value: &str) -> &Setup {
        let _ = fs::remove_file(self.path(&format!("store/{handle}.error")));
        self.write(&format!("store/{handle}"), value)
    }

    fn fail(&self, handle: &str, error: &str) -> &Setup {
        self.write(&format!("store/{handle}.error"), error)
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap()
    }

    fn tree(&self, name: &str) -> serde_json::Value {
        yaml_to_tree(&self.read(name)).unwrap()
    }

    fn backend_runs(&self) -> usize {
        fs::read_to_string(self.path("calls"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Writes `keyturn.yaml`: the fixture backend plus `rest` (templates etc.).
    fn settings(&self, rest: &str) -> PathBuf {
        let text = format!(
            "secret_backend_command: {}\n{rest}",
            self.path("backend.sh").display()
        );
        self.write("keyturn.yaml", &text);
        self.path("keyturn.yaml")
    }

    async fn start(&self, rest: &str) -> Daemon {
        Daemon::load(self.settings(rest)).await.unwrap()
    }
}

fn hook(log: &str, line: &str) -> String {
    format!("[/bin/sh, -c, 'echo {line} >> {log}']")
}

fn changed(report: &RefreshReport) -> Vec<&str> {
    report.changed.iter().map(|c| c.handle.as_str()).collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn start_writes_resolved_templates_and_skips_unresolved_ones() {
    let setup = Setup::new();
    setup.set("db", "hunter2");
    setup
        .write("app.yaml", "# app\npassword: ENC[db]\nport: 5432\n")
        .write("broken.yaml", "a: ENC[db]\nb: ENC[missing]\n");
    let daemon = setup
        .start(
            "templates:\n\
             \x20 - {source: app.yaml, destination: out/app.yaml, mode: 0640}\n\
             \x20 - {source: broken.yaml, destination: out/broken.yaml}\n",
        )
        .await;
    assert_eq!(
        setup.tree("out/app.yaml"),
        serde_json::json!({"password": "hunter2", "port": 5432})
    );
    assert!(setup.read("out/app.yaml").starts_with("# app\n"));
    assert_eq!(mode(&setup.path("out/app.yaml")), 0o640);
    assert!(!setup.path("out/broken.yaml").exists());

    let statuses = daemon.templates();
    assert_eq!(statuses[0].outcome, Outcome::Written);
    assert_eq!(
        statuses[1].outcome,
        Outcome::Unresolved {
            handles: vec!["missing".into()]
        }
    );
    let text = daemon.status_text().await;
    assert!(
        text.contains("broken.yaml: not written, unresolved handles: 'missing'"),
        "{text}"
    );
    // The Agent's text is kept whole (it ends with two newlines after the unresolved
    // handles), then the templates follow.
    assert!(
        text.contains("'missing' (missing) at ")
            && text.contains("\n\n=== Templates ===\n")
            && !text.contains("\n\n\n=== Templates"),
        "{text:?}"
    );
    let json = serde_json::to_string(&daemon.status().await).unwrap();
    assert!(
        json.contains(r#""state":"unresolved","handles":["missing"]"#),
        "{json}"
    );
    assert!(!text.contains("hunter2") && !json.contains("hunter2"));
}

#[tokio::test]
async fn refresh_rewrites_only_changed_templates_and_runs_their_on_change() {
    let setup = Setup::new();
    setup.set("a", "one").set("b", "two");
    setup
        .write("a.yaml", "a: ENC[a]\n")
        .write("b.yaml", "b: ENC[b]\n");
    let log = setup.path("hooks.log").display().to_string();
    let daemon = setup
        .start(&format!(
            "templates:\n\
             \x20 - {{source: a.yaml, destination: out/a.yaml, on_change: {}}}\n\
             \x20 - {{source: b.yaml, destination: out/b.yaml, on_change: {}}}\n",
            hook(&log, "A"),
            hook(&log, "B")
        ))
        .await;
    assert_eq!(setup.read("hooks.log"), "A\nB\n");
    let b_inode = fs::metadata(setup.path("out/b.yaml")).unwrap().ino();

    setup.set("a", "uno");
    let report = daemon.refresh(Trigger::Api, None).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(changed(&report), ["a"]);
    assert_eq!(setup.tree("out/a.yaml")["a"], "uno");
    assert_eq!(setup.read("hooks.log"), "A\nB\nA\n");
    assert_eq!(
        fs::metadata(setup.path("out/b.yaml")).unwrap().ino(),
        b_inode
    );
    assert!(!report.to_text().contains("uno"));

    // Nothing changed: nothing written, no hook.
    let report = daemon.refresh(Trigger::Api, None).await;
    assert!(report.changed.is_empty() && report.is_success());
    assert_eq!(setup.read("hooks.log"), "A\nB\nA\n");
}

#[tokio::test]
async fn a_template_is_written_once_its_failed_handle_heals() {
    let setup = Setup::new();
    setup.set("a", "one").fail("b", "vault is sealed");
    setup.write("t.yaml", "a: ENC[a]\nb: ENC[b]\n");
    let daemon = setup
        .start("templates:\n  - {source: t.yaml, destination: out/t.yaml}\n")
        .await;
    assert!(!setup.path("out/t.yaml").exists());

    let report = daemon.refresh(Trigger::Api, None).await;
    assert_eq!(
        report.error_text().as_deref(),
        Some("'b' (error) at b: an error occurred while resolving 'b': vault is sealed")
    );
    assert!(!setup.path("out/t.yaml").exists());

    setup.set("b", "two");
    let report = daemon.refresh(Trigger::Api, None).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(
        setup.tree("out/t.yaml"),
        serde_json::json!({"a": "one", "b": "two"})
    );
    assert_eq!(daemon.templates()[0].outcome, Outcome::Written);
}

#[tokio::test]
async fn refresh_allowlist_keeps_other_uses_at_their_old_value() {
    let setup = Setup::new();
    setup.set("h1", "v1").set("h2", "v2");
    setup.write(
        "t.yaml",
        "instances:\n  - password: ENC[h1]\nother: ENC[h2]\n",
    );
    let daemon = setup
        .start(
            "templates:\n  - {source: t.yaml, destination: out/t.yaml, refresh_allowlist: [instances]}\n",
        )
        .await;
    setup.set("h1", "w1").set("h2", "w2");
    daemon.refresh(Trigger::Api, None).await;
    assert_eq!(
        setup.tree("out/t.yaml"),
        serde_json::json!({"instances": [{"password": "w1"}], "other": "v2"})
    );
}

#[tokio::test]
async fn refresh_allowlist_applies_per_use_within_one_template() {
    let setup = Setup::new();
    setup.set("pass1", "v1");
    setup.write(
        "t.yaml",
        "instances:\n  - password: ENC[pass1]\nother:\n  endpoint: ENC[pass1]\n",
    );
    let daemon = setup
        .start(
            "templates:\n  - {source: t.yaml, destination: out/t.yaml, refresh_allowlist: [instances]}\n",
        )
        .await;
    setup.set("pass1", "w1");
    let report = daemon.refresh(Trigger::Api, None).await;
    assert_eq!(
        setup.tree("out/t.yaml"),
        serde_json::json!({"instances": [{"password": "w1"}], "other": {"endpoint": "v1"}}),
        "only the allowlisted use changes"
    );
    let origin = setup.path("t.yaml").display().to_string();
    assert_eq!(
        report.to_text(),
        format!(
            "=== Secret stats ===\nNumber of secrets reloaded: 1\nSecrets handle reloaded:\n\n\
             - 'pass1':\n\tused in '{origin}' configuration in entry 'instances/0/password'\n\n\
             Number of uses held back: 1\nUses held back (not under their origin's \
             refresh_allowlist; they keep their previous value):\n\n\
             - 'pass1':\n\tkept in '{origin}' configuration in entry 'other/endpoint'\n"
        )
    );
    // After the start-up record, this refresh's.
    let audit = setup.read("secret-audit-file.json");
    let record: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(record["trigger"], "api");
    assert_eq!(record["data"], serde_json::json!([{"handle": "pass1"}]));
    assert_eq!(
        record["held_back"],
        serde_json::json!([{"handle": "pass1", "origin": origin, "path": "other/endpoint"}])
    );

    // A later refresh that changes nothing leaves the held-back use alone.
    let report = daemon.refresh(Trigger::Api, None).await;
    assert!(report.changed.is_empty() && report.held_back.is_empty());
    assert_eq!(setup.tree("out/t.yaml")["other"]["endpoint"], "v1");

    // A reload is a restart: every use gets the current value.
    assert_eq!(daemon.current().held_back_uses(), 1);
    daemon.reload().await.unwrap();
    assert_eq!(
        setup.tree("out/t.yaml"),
        serde_json::json!({"instances": [{"password": "w1"}], "other": {"endpoint": "w1"}})
    );
    assert_eq!(daemon.current().held_back_uses(), 0);
}

#[tokio::test]
async fn api_refresh_of_selected_handles_and_failures() {
    let setup = Setup::new();
    setup.set("a", "a-1").set("b", "b-1");
    setup.write("t.yaml", "a: ENC[a]\nb: ENC[b]\n");
    let daemon = setup
        .start("templates:\n  - {source: t.yaml, destination: out/t.yaml}\n")
        .await;
    let runs = setup.backend_runs();
    setup.set("a", "a-2").set("b", "b-2");
    let post = |uri: &str, json: bool| {
        let mut request = Request::post(uri).header("authorization", "Bearer token");
        if json {
            request = request.header("accept", "application/json");
        }
        request.body(Body::empty()).unwrap()
    };
    let response = api::router(daemon.clone())
        .oneshot(post("/secret/refresh?handle=b", false))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8(body.to_vec()).unwrap(),
        format!(
            "=== Secret stats ===\nNumber of secrets reloaded: 1\nSecrets handle reloaded:\n\n- 'b':\n\tused in '{}' configuration in entry 'b'\n",
            setup.path("t.yaml").display()
        )
    );
    assert_eq!(setup.backend_runs(), runs + 1);
    assert_eq!(
        setup.tree("out/t.yaml"),
        serde_json::json!({"a": "a-1", "b": "b-2"})
    );

    setup.fail("a", "denied");
    let response = api::router(daemon.clone())
        .oneshot(post("/secret/refresh", true))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["error"],
        "'a' (error) at a: an error occurred while resolving 'a': denied"
    );
    assert_eq!(json["report"]["failures"][0]["handle"], "a");
    assert!(!String::from_utf8_lossy(&body).contains("b-2"));
}

#[tokio::test]
async fn on_change_failure_is_reported_not_fatal() {
    let setup = Setup::new();
    setup.write("t.yaml", "plain: 1\n");
    let daemon = setup
        .start(
            "templates:\n  - {source: t.yaml, destination: out/t.yaml, on_change: [/bin/sh, -c, 'exit 4']}\n",
        )
        .await;
    assert_eq!(setup.read("out/t.yaml"), "plain: 1\n");
    let status = &daemon.templates()[0];
    assert_eq!(status.outcome, Outcome::Written);
    assert_eq!(
        status.on_change_error.as_deref(),
        Some(
            format!(
                "{}: on_change command '/bin/sh' exited with status 4 (0 bytes on stderr, not logged: it may contain secrets)",
                setup.path("out/t.yaml").display()
            )
            .as_str()
        )
    );
    assert!(daemon.status_text().await.contains("  on_change failed: "));
}

#[tokio::test]
async fn a_failed_write_is_reported_and_retried_by_the_next_refresh() {
    let setup = Setup::new();
    setup.write("t.yaml", "plain: 1\n");
    let daemon = setup
        .start("templates:\n  - {source: t.yaml, destination: later/t.yaml}\n")
        .await;
    assert!(matches!(
        daemon.templates()[0].outcome,
        Outcome::WriteFailed { .. }
    ));
    let report = daemon.refresh(Trigger::Api, None).await;
    let error = report.error_text().unwrap();
    assert!(
        error.starts_with("cannot write ") && error.contains("later/t.yaml"),
        "{error}"
    );

    fs::create_dir(setup.path("later")).unwrap();
    let report = daemon.refresh(Trigger::Api, None).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(setup.read("later/t.yaml"), "plain: 1\n");
    assert_eq!(setup.backend_runs(), 0, "no handles: the backend never ran");
}

#[tokio::test]
async fn start_fails_on_an_unreadable_template() {
    let setup = Setup::new();
    let path = setup.settings("templates:\n  - {source: absent.yaml, destination: out/t.yaml}\n");
    let err = Daemon::load(path).await.unwrap_err();
    assert!(
        matches!(err, DaemonError::Template(_)) && err.to_string().contains("absent.yaml"),
        "{err}"
    );
}

#[tokio::test]
async fn reload_swaps_in_new_templates_and_survives_a_bad_file() {
    let setup = Setup::new();
    setup.write("a.yaml", "a: 1\n").write("b.yaml", "b: 1\n");
    let daemon = setup
        .start("templates:\n  - {source: a.yaml, destination: out/a.yaml}\n")
        .await;
    assert_eq!(setup.read("out/a.yaml"), "a: 1\n");

    setup.write("a.yaml", "a: 2\n");
    setup.settings(
        "templates:\n  - {source: a.yaml, destination: out/a.yaml}\n  - {source: b.yaml, destination: out/b.yaml, mode: 0644}\n",
    );
    daemon.reload().await.unwrap();
    assert_eq!(setup.read("out/a.yaml"), "a: 2\n");
    assert_eq!(setup.read("out/b.yaml"), "b: 1\n");
    assert_eq!(mode(&setup.path("out/b.yaml")), 0o644);
    assert_eq!(daemon.templates().len(), 2);

    for bad in [
        "templates: [1]\n",
        "templates:\n  - {source: absent.yaml, destination: out/c.yaml}\n",
    ] {
        setup.settings(bad);
        assert!(daemon.reload().await.is_err(), "{bad}");
        assert_eq!(
            daemon.templates().len(),
            2,
            "still serving the old generation"
        );
    }
}

/// Waits (bounded) until `path` exists.
async fn wait_for_file(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

// Issue 9, item 7: a client that disconnects mid-refresh (its request future is dropped) does
// not cancel the on_change command; the program is told.
#[tokio::test]
async fn a_caller_that_goes_away_does_not_cancel_on_change() {
    let setup = Setup::new();
    setup.set("a", "one");
    setup.write("t.yaml", "a: ENC[a]\n");
    let (started, gate, log) = (
        setup.path("started"),
        setup.path("hook-gate"),
        setup.path("hooks.log"),
    );
    let script = format!(
        "touch {started}; while [ -f {gate} ]; do sleep 0.01; done; echo done >> {log}",
        started = started.display(),
        gate = gate.display(),
        log = log.display()
    );
    let daemon = setup
        .start(&format!(
            "templates:\n  - {{source: t.yaml, destination: out/t.yaml, on_change: [/bin/sh, -c, '{script}']}}\n"
        ))
        .await;
    assert_eq!(setup.read("hooks.log"), "done\n");

    setup.set("a", "two");
    fs::remove_file(&started).unwrap();
    setup.write("hook-gate", "");
    let request = api::router(daemon.clone()).oneshot(
        Request::post("/secret/refresh")
            .header("authorization", "Bearer token")
            .body(Body::empty())
            .unwrap(),
    );
    // The client goes away once the command runs: its request future is dropped.
    tokio::select! {
        answer = request => panic!("answered while on_change was held: {answer:?}"),
        () = wait_for_file(&started) => {}
    }
    fs::remove_file(&gate).unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while setup.read("hooks.log") != "done\ndone\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "on_change never completed: {:?}",
            setup.read("hooks.log")
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(setup.tree("out/t.yaml")["a"], "two");
    // The work was not cut short: the status records a completed run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while daemon.templates()[0].on_change_error.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            daemon.templates()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!daemon.templates()[0].on_change_pending);
}

// Issue 9, item 7: an on_change command that did not complete (failed, or dropped half way)
// is reported and runs again on the next refresh, even when nothing changed since.
#[tokio::test]
async fn an_on_change_that_did_not_complete_is_reported_and_retried() {
    let setup = Setup::new();
    setup.set("a", "one");
    setup.write("t.yaml", "a: ENC[a]\n").write("broken", "");
    let (log, broken, gate) = (
        setup.path("hooks.log"),
        setup.path("broken"),
        setup.path("hook-gate"),
    );
    let script = format!(
        "echo run >> {log}; while [ -f {gate} ]; do sleep 0.01; done; [ ! -f {broken} ]",
        log = log.display(),
        gate = gate.display(),
        broken = broken.display()
    );
    let daemon = setup
        .start(&format!(
            "templates:\n  - {{source: t.yaml, destination: out/t.yaml, on_change: [/bin/sh, -c, '{script}']}}\n"
        ))
        .await;
    let status = &daemon.templates()[0];
    assert!(status.on_change_pending, "{status:?}");
    assert!(
        status
            .on_change_error
            .as_deref()
            .is_some_and(|e| e.contains("exited with status 1")),
        "{status:?}"
    );
    assert!(
        daemon
            .status_text()
            .await
            .contains("  on_change runs again on the next refresh\n")
    );

    // Nothing changed, but the command is still due: it runs again (and fails again).
    let report = daemon.refresh(Trigger::Api, None).await;
    assert!(report.changed.is_empty());
    assert!(
        report
            .error_text()
            .is_some_and(|e| e.contains("on_change command")),
        "{report:?}"
    );
    assert_eq!(setup.read("hooks.log"), "run\nrun\n");

    // A run dropped half way (the daemon shutting down) is reported as interrupted.
    setup.write("hook-gate", "");
    let refresh = daemon.refresh_and_render(Trigger::Timer, None);
    tokio::select! {
        _ = refresh => panic!("the held on_change command completed"),
        () = async {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while setup.read("hooks.log") != "run\nrun\nrun\n" {
                assert!(std::time::Instant::now() < deadline, "the command never started");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        } => {}
    }
    fs::remove_file(&gate).unwrap();
    let status = &daemon.templates()[0];
    assert!(status.on_change_pending, "{status:?}");
    assert!(
        status
            .on_change_error
            .as_deref()
            .is_some_and(|e| e.ends_with("on_change command was interrupted before it completed")),
        "{status:?}"
    );

    // Once it succeeds, it is done.
    fs::remove_file(&broken).unwrap();
    let report = daemon.refresh(Trigger::Api, None).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(setup.read("hooks.log"), "run\nrun\nrun\nrun\n");
    let status = &daemon.templates()[0];
    assert!(
        !status.on_change_pending && status.on_change_error.is_none(),
        "{status:?}"
    );
    daemon.refresh(Trigger::Api, None).await;
    assert_eq!(setup.read("hooks.log"), "run\nrun\nrun\nrun\n");
}

/// Regression (issue 9, item 9): a token or audit file another user put in `run_path` (or
/// one others can read), or a `run_path` others may write, was accepted: that user knew the
/// API token and read the audit trail. Each is refused, naming the file and what is wrong; a
/// reload with such a `run_path` fails and the old configuration keeps serving.
#[tokio::test]
async fn run_path_token_and_audit_file_must_be_private() {
    let setup = Setup::new();
    let daemon = setup.start("run_path: run\n").await;
    let run = setup.path("run");
    assert_eq!(mode(&run), 0o700, "created private");

    let start = |rest: &'static str| {
        let settings = setup.settings(rest);
        async move { Daemon::load(settings).await.unwrap_err().to_string() }
    };
    let token = setup.path("auth_token");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        start("").await,
        format!(
            "API token file {}: is accessible to group or others (mode 0644); chmod 600 it",
            token.display()
        )
    );
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();

    fs::set_permissions(&run, fs::Permissions::from_mode(0o1777)).unwrap();
    let refused = format!(
        "run directory {}: is writable by group or others (mode 1777); chmod 700 it",
        run.display()
    );
    assert_eq!(start("run_path: run\n").await, refused);
    assert_eq!(
        daemon.reload().await.unwrap_err().to_string(),
        refused,
        "a reload is refused too"
    );
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();

    let audit = run.join(crate::audit::FILE_NAME);
    fs::write(&audit, "").unwrap();
    fs::set_permissions(&audit, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        start("run_path: run\n").await,
        format!(
            "audit file {}: is accessible to group or others (mode 0644); chmod 600 it",
            audit.display()
        )
    );
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(&audit, fs::Permissions::from_mode(0o600)).unwrap();
        nix::unistd::chown(&audit, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        assert_eq!(
            start("run_path: run\n").await,
            format!(
                "audit file {}: is owned by UID 4242, not by root or the user running keyturn (UID 0)",
                audit.display()
            )
        );
        nix::unistd::chown(&token, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        assert!(start("").await.contains("is owned by UID 4242"));
    }
}
