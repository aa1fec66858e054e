//! The leak audit: every command (`check`, `resolve`, `serve`, `status`, `refresh`, `exec`) and
//! every API route, on success and on every failure path of the fault backend, with secrets
//! drawn from a marker alphabet; then a scan of everything a user or an operator can see.
//!
//! Every value but the API key is `QZXJ-<random>-JXZQ`, so any leak, whole or partial, shows the
//! marker. The API key is 32 random hex digits under `api_key`: only the audit file may show it,
//! masked to its last 5 characters; nothing may show 8 of its characters in a row. The backend
//! repeats its whole answer on stderr in every failure mode, as one tracing itself would, and
//! the echo modes repeat a value keyturn already holds. The rendered destination and the
//! standard output of `keyturn resolve` are the product, and the only places values belong.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::daemon::{Request, ServeOptions, Setup};

/// Everything seen, by where it was seen.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.0.push((place.into(), text.into()));
    }

    fn run(&mut self, place: &str, run: &crate::Run) {
        self.add(format!("{place}: stdout"), run.stdout());
        self.add(format!("{place}: stderr"), run.stderr());
    }
}

/// The values of one generation of secrets.
struct Values {
    pass: String,
    user: String,
    /// 32 hex digits: a likely API key, masked in the audit file.
    api: String,
}

/// A small xorshift generator seeded from the clock: values differ between runs.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Random((nanos as u64) ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut text = String::new();
        while text.len() < digits {
            text.push_str(&format!("{:016x}", self.next()));
        }
        text.truncate(digits);
        text
    }

    fn values(&mut self) -> Values {
        Values {
            pass: format!("QZXJ-{}-JXZQ", self.hex(12)),
            user: format!("QZXJ-{}-JXZQ", self.hex(12)),
            api: self.hex(32),
        }
    }
}

const DOCUMENT: &str = "db:\n  password: ENC[pass]\n  user: ENC[user]\napi_key: ENC[api]\n";

fn store(setup: &Setup, values: &Values) {
    setup
        .set("pass", &values.pass)
        .set("user", &values.user)
        .set("api", &values.api);
}

fn rendered(values: &Values) -> String {
    format!(
        "db:\n  password: \"{}\"\n  user: \"{}\"\napi_key: \"{}\"\n",
        values.pass, values.user, values.api
    )
}

/// Failure modes of the fault backend, and whether the backend also repeats its whole answer
/// on stderr in that mode. It does in every mode that prints the answer on stdout: keyturn then
/// either knows every value (a valid answer) or withholds stderr (an answer it could not read
/// in full). Modes that print no answer repeat only what keyturn already holds (the echo
/// modes): a value keyturn never received cannot be recognised, which is why a backend must
/// never print secrets on stderr.
const FAILURES: &[(&str, bool)] = &[
    ("exit1", true),
    ("partial", true),
    ("sigkill", true),
    ("binary", true),
    ("binary-stderr", false),
    ("flood", true),
    ("stderr-flood", true),
    ("grandchild", true),
];

/// More failure modes, through the daemon only (keyturn holds values there; a one-shot run
/// holds none to scrub).
const DAEMON_FAILURES: &[(&str, bool)] = &[
    ("hang", true),
    ("echo-stderr", false),
    ("echo-error", false),
];

fn echo_answer(setup: &Setup, on: bool) {
    let flag = setup.path("state/echo-answer");
    if on {
        fs::write(flag, "").unwrap();
    } else {
        let _ = fs::remove_file(flag);
    }
}

// The leak audit (see the module documentation).
#[test]
fn no_resolved_value_reaches_anything_users_or_operators_see() {
    let mut random = Random::new();
    let setup = Setup::new(
        "templates:\n\
         \x20 - source: app.yaml\n\
         \x20   destination: out/app.yaml\n\
         \x20   on_change: [/bin/sh, -c, 'cat out/app.yaml; cat out/app.yaml >&2']\n",
    );
    setup.sandbox.write("app.yaml", DOCUMENT);
    let mut generations = vec![random.values()];
    store(&setup, &generations[0]);
    let mut seen = Seen::default();
    let keyturn = |args: &[&str]| setup.sandbox.keyturn_with_log(args, "trace");

    // One-shot commands.
    seen.run(
        "check",
        keyturn(&["check", "--config", "keyturn.yaml"]).expect_code(0),
    );
    let resolved = keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
    resolved.expect_code(0);
    assert_eq!(resolved.stdout(), rendered(&generations[0]), "the product");
    seen.add("resolve: stderr", resolved.stderr());
    seen.run(
        "resolve -o",
        keyturn(&[
            "resolve",
            "--config",
            "keyturn.yaml",
            "-o",
            "out/resolved.yaml",
            "app.yaml",
        ])
        .expect_code(0),
    );
    for &(mode, echo) in FAILURES {
        setup.mode(mode);
        echo_answer(&setup, echo);
        let run = keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
        run.expect_code(1);
        seen.run(&format!("resolve ({mode})"), &run);
    }
    setup.mode("");
    echo_answer(&setup, false);

    // The daemon: JSON logs at trace level.
    let mut serve = setup.serve(&ServeOptions {
        log_filter: "trace",
        json_logs: true,
        ..ServeOptions::default()
    });
    let token = setup.token();
    let port = setup.port;
    let api = |seen: &mut Seen, what: &str| {
        let requests = [
            Request::new("GET", "/healthz"),
            setup.authed("GET", "/secrets"),
            setup.authed("GET", "/secrets").json(),
            setup.authed("POST", "/secret/refresh"),
            setup.authed("POST", "/secret/refresh").json(),
            setup.authed("GET", "/secret/refresh?handle=pass&handle=api"),
            setup.authed("POST", "/secret/refresh?handle=pass").json(),
            setup.authed("GET", "/metrics"),
            setup.authed("POST", "/secret/trigger"),
            Request::new("GET", "/secrets"),
            setup.authed("GET", "/no-such-route"),
            setup.authed("DELETE", "/secrets"),
            setup.authed("GET", "/secret/refresh?nope=1"),
        ];
        let mut statuses = Vec::new();
        for request in requests {
            let answer = request.send(port).unwrap();
            statuses.push(answer.status);
            seen.add(
                format!("{what}: answer"),
                format!("{}\n\n{}", answer.head, answer.body),
            );
        }
        for args in [
            &["status", "--config", "keyturn.yaml"][..],
            &["status", "--config", "keyturn.yaml", "--json"],
            &["refresh", "--config", "keyturn.yaml"],
            &["refresh", "--config", "keyturn.yaml", "--handle", "user"],
        ] {
            seen.run(&format!("{what}: keyturn {}", args[0]), &keyturn(args));
        }
        statuses
    };
    let statuses = api(&mut seen, "serving");
    assert_eq!(
        statuses,
        [
            200, 200, 200, 200, 200, 200, 200, 200, 409, 401, 404, 405, 400
        ]
    );

    // Every failure path through the daemon, each with new values in the store (present in
    // the backend's answer and its stderr) while keyturn holds generation 0 (repeated by the
    // echo modes).
    let held = &generations[0];
    setup.echo(&format!("{} {} {}", held.pass, held.user, held.api));
    for &(mode, echo) in FAILURES.iter().chain(DAEMON_FAILURES) {
        let next = random.values();
        store(&setup, &next);
        generations.push(next);
        setup.mode(mode);
        echo_answer(&setup, echo);
        let statuses = api(&mut seen, mode);
        assert_eq!(statuses[3], 500, "{mode}: the refresh fails");
        serve.assert_up();
    }
    echo_answer(&setup, false);
    // Per-handle errors that repeat the held value, and a refused executable.
    setup.mode("");
    let held_pass = generations[0].pass.clone();
    setup.fail("pass", &format!("denied: {held_pass} is revoked"));
    api(&mut seen, "per-handle errors");
    setup.set("pass", &generations.last().unwrap().pass);
    fs::set_permissions(
        setup.path("backend.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    api(&mut seen, "world-writable backend");
    seen.run(
        "check (world-writable backend)",
        keyturn(&["check", "--config", "keyturn.yaml"]).expect_code(2),
    );
    fs::set_permissions(
        setup.path("backend.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();

    // Heal with new values (an audit record with the masked key), then stop.
    let last = random.values();
    store(&setup, &last);
    generations.push(last);
    api(&mut seen, "healed");
    assert_eq!(
        setup.read("out/app.yaml"),
        rendered(generations.last().unwrap())
    );
    assert_eq!(serve.stop(Signal::SIGTERM), Some(0));
    seen.add("serve log (JSON, trace)", setup.read("serve.log"));
    let audit = setup.read("secret-audit-file.json");
    seen.add("audit file", audit.clone());

    // The audit file shows the API key masked, and nothing else of any value.
    let mut masked = 0;
    for line in audit.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        for entry in record["data"].as_array().unwrap() {
            if let Some(value) = entry.get("value") {
                assert_eq!(entry["handle"], "api", "{line}");
                let value = value.as_str().unwrap();
                assert!(
                    generations
                        .iter()
                        .any(|g| *value == format!("{}{}", "*".repeat(27), &g.api[27..])),
                    "{line}"
                );
                masked += 1;
            }
        }
    }
    assert!(masked > 0, "the audit file shows no masked key:\n{audit}");

    // The scan.
    let mut leaks = Vec::new();
    for (place, text) in &seen.0 {
        for marker in ["QZXJ", "JXZQ"] {
            if text.contains(marker) {
                leaks.push(format!("{place}: {marker}"));
            }
        }
        for generation in &generations {
            for window in generation.api.as_bytes().windows(8) {
                let window = std::str::from_utf8(window).unwrap();
                if text.contains(window) {
                    leaks.push(format!("{place}: 8 characters of an API key ({window})"));
                }
            }
        }
        if text.contains(&token[..16]) {
            leaks.push(format!("{place}: the API token"));
        }
    }
    let texts: usize = seen.0.iter().map(|(_, text)| text.len()).sum();
    println!(
        "leak audit: {} outputs, {texts} bytes scanned, {} generations of values",
        seen.0.len(),
        generations.len()
    );
    if !leaks.is_empty() {
        // One line per place, with the first leak in context.
        let mut places: Vec<&str> = leaks
            .iter()
            .map(|l| l.split(": ").next().unwrap())
            .collect();
        places.dedup();
        let mut report = String::new();
        for place in places {
            let text = seen
                .0
                .iter()
                .filter(|(p, _)| p.starts_with(place))
                .map(|(_, t)| t.as_str())
                .find(|t| t.contains("QZXJ") || t.contains("JXZQ"))
                .unwrap_or_default();
            let at = ["QZXJ", "JXZQ"]
                .iter()
                .filter_map(|m| text.find(m))
                .min()
                .unwrap_or(0);
            let context = String::from_utf8_lossy(
                &text.as_bytes()[at.saturating_sub(150)..(at + 60).min(text.len())],
            );
            report.push_str(&format!("- {place}: {context:?}\n"));
        }
        panic!("{} leaks:\n{report}", leaks.len());
    }
}

// The leak audit of `keyturn exec`: its logs at trace level, the API and `keyturn refresh` /
// `status` while it runs, its own environment and command line (which backends and hooks
// inherit), the environment of an `on_change` hook, and the program's command line, on a
// start, a restart with new values, a failed refresh and a refused start. The program's own
// environment is the product.
#[test]
fn no_value_reaches_exec_logs_hooks_or_command_lines() {
    use crate::exec::{Running, exec_sandbox, free_port, read, wait_until};

    let mut random = Random::new();
    let first = random.values();
    let sandbox = exec_sandbox(
        &[("pass", &first.pass), ("user", &first.user)],
        &format!(
            "api:\n  listen: 127.0.0.1:{}\n\
             templates:\n\
             \x20 - source: app.yaml\n\
             \x20   destination: out/app.yaml\n\
             \x20   on_change: [/bin/sh, -c, 'env >> hook.env; cat out/app.yaml; cat out/app.yaml >&2']\n",
            free_port()
        ),
    );
    fs::create_dir(sandbox.path("out")).unwrap();
    sandbox.write("app.yaml", "password: ENC[pass]\n");
    sandbox.write("app.env", "USER_NAME=ENC[user]\n");
    // The program records its parent's (keyturn's) environment and command line and its own
    // command line at each start, and its own environment apart (the product).
    sandbox.script(
        "child.sh",
        "#!/bin/sh\n\
         trap 'exit 0' TERM\n\
         tr '\\0' '\\n' < /proc/$PPID/environ >> keyturn.environ\n\
         tr '\\0' ' ' < /proc/$PPID/cmdline >> keyturn.cmdline\n\
         tr '\\0' ' ' < /proc/$$/cmdline >> child.cmdline\n\
         echo \"$PASS $USER_NAME\" >> product\n\
         while :; do sleep 1 & wait $!; done\n",
        0o700,
    );
    let args = [
        "--config",
        "keyturn.yaml",
        "--env-file",
        "app.env",
        "--",
        "./child.sh",
        "--flag",
    ];
    let env = [("PASS", "ENC[pass]"), ("KEYTURN_LOG", "trace")];
    let mut seen = Seen::default();

    let keyturn = |args: &[&str], code: i32| {
        let run = sandbox.keyturn_with_log(args, "trace");
        run.expect_code(code);
        run
    };

    let running = Running::start(&sandbox, &args, &env);
    let product = |values: &Values| format!("{} {}\n", values.pass, values.user);
    wait_until("the first start", || {
        read(&sandbox, "product") == product(&first)
    });
    seen.run(
        "status",
        &keyturn(&["status", "--config", "keyturn.yaml"], 0),
    );
    // A restart with new values (the hook runs: the template changed).
    let second = random.values();
    sandbox.write("store/pass", &second.pass);
    sandbox.write("store/user", &second.user);
    seen.run(
        "refresh",
        &keyturn(&["refresh", "--config", "keyturn.yaml"], 0),
    );
    wait_until("the restart", || {
        read(&sandbox, "product") == product(&first) + &product(&second)
    });
    // A failed refresh: one value is missing, the other changed.
    let third = random.values();
    fs::remove_file(sandbox.path("store/pass")).unwrap();
    sandbox.write("store/user", &third.user);
    seen.run(
        "failed refresh",
        &keyturn(&["refresh", "--config", "keyturn.yaml"], 1),
    );
    // The changed value restarts the program (the missing one keeps its last value). Stop it
    // only once it runs again: a SIGTERM before its `trap` would end it by the signal.
    let restarted = format!("{} {}\n", second.pass, third.user);
    wait_until("the restart after the failed refresh", || {
        read(&sandbox, "product") == product(&first) + &product(&second) + &restarted
    });
    seen.run(
        "status after a failure",
        &keyturn(&["status", "--config", "keyturn.yaml", "--json"], 0),
    );
    assert_eq!(running.stop(Signal::SIGTERM), Some(0));
    // A refused start: `pass` is missing.
    let refused = crate::exec::exec(&sandbox, &args, &env);
    assert_eq!(refused.status.code(), Some(1));
    seen.add(
        "refused start: stderr",
        String::from_utf8_lossy(&refused.stderr),
    );
    seen.add(
        "refused start: stdout",
        String::from_utf8_lossy(&refused.stdout),
    );

    // What is scanned was captured: the hook ran, keyturn's environment holds the handles as
    // written, and the log is at trace level.
    assert!(
        read(&sandbox, "hook.env").contains("PASS=ENC[pass]"),
        "the hook ran"
    );
    assert!(read(&sandbox, "keyturn.environ").contains("PASS=ENC[pass]"));
    assert!(read(&sandbox, "exec.log").contains("the program started"));
    for file in [
        "exec.log",
        "hook.env",
        "keyturn.environ",
        "keyturn.cmdline",
        "child.cmdline",
    ] {
        seen.add(file, read(&sandbox, file));
    }
    let leaks: Vec<String> = seen
        .0
        .iter()
        .filter(|(_, text)| text.contains("QZXJ") || text.contains("JXZQ"))
        .map(|(place, text)| format!("- {place}: {text:?}"))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
