//! `keyturn serve` as systemd runs it: `Type=notify` readiness, reload and stop messages on a
//! `NOTIFY_SOCKET` listener of the test's own, the bound address when the port is 0, the
//! `startup` and `signal` triggers (SIGUSR1 refreshes), and the metrics an operator scrapes
//! (checked by `promtool` and scraped by a real Prometheus).

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemon::{PATIENCE, Request, ServeOptions, Setup, wait_until};

/// The next notification: its `KEY=value` lines.
fn next(socket: &UnixDatagram) -> Vec<String> {
    let mut buffer = [0u8; 4096];
    let n = socket
        .recv(&mut buffer)
        .expect("no notification within the patience");
    String::from_utf8_lossy(&buffer[..n])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn audit_triggers(setup: &Setup) -> Vec<String> {
    setup
        .read("secret-audit-file.json")
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["trigger"].as_str().unwrap().to_owned()
        })
        .collect()
}

// The daemon tells systemd when it is ready (after the first render, with the address it bound
// on port 0), when a SIGHUP reload starts and ends, and when it stops; SIGUSR1 refreshes with
// the `signal` trigger, the start-up resolution is audited with `startup`.
#[test]
fn notifications_in_order_with_startup_and_signal_triggers() {
    let setup = Setup::new("templates:\n  - {source: app.yaml, destination: out/app.yaml}\n");
    setup.sandbox.write("app.yaml", "a: ENC[a]\n");
    setup.set("a", "a0");
    // Port 0: the system chooses, the daemon says which.
    let settings = setup
        .read("keyturn.yaml")
        .replace(&format!("127.0.0.1:{}", setup.port), "127.0.0.1:0");
    setup.sandbox.write("keyturn.yaml", &settings);
    let socket_path = setup.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let serve = setup.spawn(&ServeOptions {
        notify_socket: Some(socket_path),
        json_logs: true,
        ..ServeOptions::default()
    });

    let ready = next(&socket);
    assert_eq!(ready[0], "READY=1", "{ready:?}");
    let port: u16 = ready[1]
        .strip_prefix("STATUS=serving the API on 127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{ready:?}"));
    assert_ne!(port, 0);
    // Ready means rendered and listening.
    assert_eq!(setup.read("out/app.yaml"), "a: \"a0\"\n");
    Request::new("GET", "/healthz").expect(port, 200);
    assert!(
        serve
            .log_text()
            .contains(&format!("\"address\":\"127.0.0.1:{port}\"")),
        "{}",
        serve.log_text()
    );
    assert_eq!(audit_triggers(&setup), ["startup"]);

    // SIGUSR1: a refresh like `keyturn refresh`, audited with the `signal` trigger.
    setup.set("a", "a1");
    kill(Pid::from_raw(serve.pid), Signal::SIGUSR1).unwrap();
    wait_until("SIGUSR1 refreshed the destination", || {
        setup.read("out/app.yaml") == "a: \"a1\"\n"
    });
    wait_until("the refresh was audited", || {
        audit_triggers(&setup).len() == 2
    });
    assert_eq!(audit_triggers(&setup), ["startup", "signal"]);

    // SIGHUP: RELOADING=1 (with the monotonic time systemd asks for), then READY=1.
    kill(Pid::from_raw(serve.pid), Signal::SIGHUP).unwrap();
    let reloading = next(&socket);
    assert_eq!(reloading[0], "RELOADING=1", "{reloading:?}");
    assert!(reloading[1].starts_with("MONOTONIC_USEC="), "{reloading:?}");
    assert_eq!(next(&socket), ["READY=1"]);

    let metrics = setup.authed("GET", "/metrics").expect(port, 200).body;
    for line in [
        "keyturn_reloads_total{outcome=\"ok\"} 1",
        "keyturn_refreshes_total{trigger=\"startup\",outcome=\"ok\"} 1",
        "keyturn_refreshes_total{trigger=\"signal\",outcome=\"ok\"} 2",
        "keyturn_template_writes_total{outcome=\"ok\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // SIGTERM: STOPPING=1, then a clean exit.
    kill(Pid::from_raw(serve.pid), Signal::SIGTERM).unwrap();
    assert_eq!(next(&socket), ["STOPPING=1"]);
    assert_eq!(serve.stop(Signal::SIGTERM), Some(0));
}

/// The path of `name` on PATH. Fails the test when it is missing: these tests prove that
/// real tools accept what keyturn produces, so they must never pass by skipping
/// (`.ci/install-test-deps.sh` installs `package`).
#[track_caller]
fn required(name: &str, package: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!("this test needs {name} (Debian: apt-get install {package}, as .ci/install-test-deps.sh does)")
        })
}

/// A daemon that resolved and refreshed once, so that every labelled family has samples.
fn scraped_daemon() -> (Setup, crate::daemon::Serve) {
    let setup = Setup::new("templates:\n  - {source: app.yaml, destination: out/app.yaml}\n");
    setup.sandbox.write("app.yaml", "a: ENC[a]\n");
    setup.set("a", "a0");
    let serve = setup.serve(&ServeOptions::default());
    setup.set("a", "a1");
    setup
        .authed("POST", "/secret/refresh")
        .expect(setup.port, 200);
    (setup, serve)
}

// `promtool check metrics` accepts what a scraper that does not ask for OpenMetrics gets (it
// failed on OpenMetrics served as plain text: `keyturn_backend_runs_total no help text`).
#[test]
fn promtool_accepts_the_classic_format() {
    let promtool = required("promtool", "prometheus");
    let (setup, _serve) = scraped_daemon();
    let metrics = setup.authed("GET", "/metrics").expect(setup.port, 200);
    assert!(
        metrics
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), metrics.body.as_bytes()).unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        metrics.body
    );
}

// A real Prometheus, configured with the daemon's token file, scrapes it (in OpenMetrics, which
// it asks for) and stores its samples.
#[test]
fn a_real_prometheus_scrapes_the_daemon_with_its_token() {
    let prometheus = required("prometheus", "prometheus");
    let (setup, _serve) = scraped_daemon();
    let web = crate::daemon::free_port();
    setup.sandbox.write(
        "prometheus.yml",
        &format!(
            "global: {{scrape_interval: 1s}}\n\
             scrape_configs:\n\
             \x20 - job_name: keyturn\n\
             \x20   authorization: {{credentials_file: {token}}}\n\
             \x20   static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            token = setup.path("auth_token").display(),
            port = setup.port
        ),
    );
    let log = std::fs::File::create(setup.path("prometheus.log")).unwrap();
    let mut server = Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            setup.path("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            setup.path("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let query = |expr: &str| {
        Request::new("GET", &format!("/api/v1/query?query={expr}"))
            .send(web)
            .map(|answer| answer.body)
            .unwrap_or_default()
    };
    let mut scraped = false;
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        let up = query("up");
        let build = query("keyturn_build_info");
        if up.contains(r#""value":["#) && build.contains(r#""version":""#) {
            assert!(up.contains(r#""1"]"#), "{up}");
            scraped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        scraped,
        "prometheus never stored a scrape:\n{}",
        setup.read("prometheus.log")
    );
}

// The unit file under contrib/ is one systemd accepts (with the built binary as ExecStart).
#[test]
fn the_contrib_unit_file_verifies() {
    let analyze = required("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(crate::repo_root().join("contrib/keyturn.service"))
        .unwrap()
        .replace("/usr/local/bin/keyturn", env!("CARGO_BIN_EXE_keyturn"));
    assert!(
        unit.contains("Type=notify\n") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID\n")
    );
    let sandbox = crate::Sandbox::new();
    let path = sandbox.write("keyturn.service", &unit);
    let output = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
