//! `keyturn check`: everything `serve` would load, validated without running the backend and
//! without creating anything; exit 0, or 2 with every problem on stderr.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Sandbox;

const TEMPLATE: &str = "templates:\n  - {source: app.yaml, destination: out/app.yaml}\n";

/// A sandbox with a backend that leaves a mark when it runs, a template and its destination
/// directory, and `keyturn.yaml`: the backend, then `extra`.
fn setup(extra: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    let mark = sandbox.path("backend-ran");
    sandbox.script(
        "backend.sh",
        &format!("#!/bin/sh\ntouch {}\necho '{{}}'\n", mark.display()),
        0o700,
    );
    sandbox.write("app.yaml", "password: ENC[db]\n");
    fs::create_dir(sandbox.path("out")).unwrap();
    sandbox.write(
        "keyturn.yaml",
        &format!(
            "secret_backend_command: {}\n{extra}",
            sandbox.path("backend.sh").display()
        ),
    );
    sandbox
}

/// Every path under `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(listing(&path));
        }
        paths.push(path.display().to_string());
    }
    paths.sort();
    paths
}

#[test]
fn a_config_serve_would_load_passes_and_nothing_is_run_or_created() {
    let sandbox = setup(&format!("run_path: run\n{TEMPLATE}"));
    let before = listing(&sandbox.path(""));
    let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
    run.expect_code(0);
    assert!(
        run.stdout()
            .contains("the executable has the correct permissions"),
        "{}",
        run.stdout()
    );
    // No run directory, token file, audit file or destination; the backend never ran.
    assert_eq!(listing(&sandbox.path("")), before);
}

/// One failure kind per case: what `keyturn.yaml` adds (or the change made before the check),
/// and what stderr must say.
#[test]
fn every_kind_of_problem_exits_2_and_is_named() {
    type Prepare = fn(&Sandbox);
    let none: Prepare = |_| {};
    let cases: [(&str, &str, Prepare, &str); 9] = [
        (
            "invalid daemon settings",
            "templates:\n  - {source: app.yaml}\n",
            none,
            "templates.0",
        ),
        (
            "a missing template",
            "templates:\n  - {source: missing.yaml, destination: out/app.yaml}\n",
            none,
            "cannot read template",
        ),
        (
            "a template that does not parse",
            "templates:\n  - {source: bad.yaml, destination: out/app.yaml}\n",
            |sandbox| {
                sandbox.write("bad.yaml", "key: [unclosed\n");
            },
            "bad.yaml",
        ),
        (
            "two templates writing one destination",
            "templates:\n  - {source: app.yaml, destination: out/app.yaml}\n  - {source: other.yaml, destination: out/app.yaml}\n",
            |sandbox| {
                sandbox.write("other.yaml", "user: ENC[user]\n");
            },
            "has the same destination",
        ),
        (
            "a destination directory that does not exist",
            "templates:\n  - {source: app.yaml, destination: nowhere/app.yaml}\n",
            none,
            "nowhere does not exist",
        ),
        (
            "a token file others can read",
            TEMPLATE,
            |sandbox| {
                let token = sandbox.write("auth_token", "token\n");
                fs::set_permissions(token, fs::Permissions::from_mode(0o644)).unwrap();
            },
            "API token file",
        ),
        (
            "a run directory others can write",
            "run_path: run\n",
            |sandbox| {
                fs::create_dir(sandbox.path("run")).unwrap();
                fs::set_permissions(sandbox.path("run"), fs::Permissions::from_mode(0o777))
                    .unwrap();
            },
            "run directory",
        ),
        (
            "a backend others can write",
            TEMPLATE,
            |sandbox| {
                fs::set_permissions(
                    sandbox.path("backend.sh"),
                    fs::Permissions::from_mode(0o777),
                )
                .unwrap();
            },
            "fails the permission check",
        ),
        (
            "no backend",
            TEMPLATE,
            |sandbox| {
                sandbox.write("keyturn.yaml", TEMPLATE);
            },
            "no backend is configured",
        ),
    ];
    for (what, extra, prepare, says) in cases {
        let sandbox = setup(extra);
        prepare(&sandbox);
        let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
        run.expect_code(2);
        assert!(run.stderr().contains(says), "{what}: {}", run.stderr());
        assert!(
            !sandbox.path("backend-ran").exists(),
            "{what}: the backend ran"
        );
        assert!(
            !sandbox.path("out/app.yaml").exists(),
            "{what}: a destination was written"
        );
    }
}
