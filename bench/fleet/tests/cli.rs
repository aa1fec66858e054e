//! The documented interface: `--scenario NAME --json` prints one JSON object per policy.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]
// Tests run the built binary; nothing here spawns a backend.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyturn-fleet"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_lines_one_per_policy_with_the_documented_keys() {
    for scenario in ["steady", "restart", "outage", "triggers"] {
        let out = run(&["--scenario", scenario, "--json", "--daemons", "60"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let policies: Vec<&str> = lines
            .iter()
            .map(|l| l["policy"].as_str().unwrap())
            .collect();
        assert_eq!(policies, ["keyturn", "agent", "naive"], "{scenario}");
        for line in &lines {
            assert_eq!(line["scenario"], scenario);
            for key in ["peak_per_s", "mean_per_s", "refused"] {
                assert!(line[key].is_number(), "{scenario}: {key} in {line}");
            }
            assert_eq!(
                line["recovery_s"].is_null(),
                scenario != "outage" || line["unrecovered"] != 0,
                "{line}"
            );
        }
    }
}

#[test]
fn same_seed_same_figures() {
    let args = [
        "--scenario",
        "outage",
        "--json",
        "--daemons",
        "40",
        "--seed",
        "7",
    ];
    assert_eq!(run(&args).stdout, run(&args).stdout);
}

#[test]
fn keyturn_recovers_every_daemon_within_an_interval_after_an_outage() {
    let out = run(&["--scenario", "outage", "--json", "--daemons", "300"]);
    let keyturn: serde_json::Value = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|line| line["policy"] == "keyturn")
        .unwrap();
    assert_eq!(keyturn["unrecovered"], 0);
    let recovery = keyturn["recovery_s"].as_f64().unwrap();
    assert!(recovery <= 3600.0, "{recovery}");
}

#[test]
fn plots_are_written_as_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let out = run(&["--scenario", "restart", "--daemons", "30", "--plots", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(dir.path().join("restart.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn unknown_scenario_is_an_error() {
    let out = run(&["--scenario", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));
}
