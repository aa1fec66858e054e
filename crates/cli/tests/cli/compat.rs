//! Drop-in compatibility: backend programs written for the Datadog Agent and Vector, reproduced
//! as small `/bin/sh` fixtures with the observable behaviour of the originals, each through
//! `keyturn resolve` and `keyturn serve`.

use std::fs;

use crate::serve::{Daemon, free_port};
use crate::{Run, Sandbox};

/// Datadog's own test backend program (`test_command` of the Agent's secrets tests): reads
/// stdin up to a newline or EOF, refuses any `version` but `"1.0"`, answers only the first
/// handle, with `value` and no `error` key.
const DATADOG_TEST_COMMAND: &str = r#"#!/bin/sh
IFS= read -r line || true
case "$line" in
  *'"version":"1.0"'*) ;;
  *) echo 'invalid version, expected 1.0' >&2; exit 1 ;;
esac
first=$(printf '%s' "$line" | sed -e 's/.*"secrets":\["\([^"]*\)".*/\1/')
printf '{"%s":{"value":"arg_password"}}' "$first"
"#;

/// Vector's exec-backend test program: accepts exactly `{version:"1.0", secrets}` or
/// `{version:"1.1", secrets, type, config}`; any other key set fails (exit 1).
const VECTOR_EXEC: &str = r#"#!/bin/sh
input=$(cat)
case "$input" in
  '{"version":"1.0","secrets":['*']}') ;;
  '{"version":"1.1","secrets":['*'],"type":"'*'","config":{'*'}}') ;;
  *) echo 'unexpected request' >&2; exit 1 ;;
esac
list=$(printf '%s' "$input" | sed -e 's/.*"secrets":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | tr -d '"')
printf '{'
sep=''
for h in $list; do
  printf '%s"%s":{"value":"vector-%s","error":null}' "$sep" "$h" "$h"
  sep=','
done
printf '}'
"#;

/// Datadog's `secret-generic-connector`: ignores `version`, requires `type` (without it every
/// handle gets `unsupported backend type: `, exit 0); every answer has `value` and `error`.
/// Answers `<type>:<handle>` so that the tests see the type it was sent.
const CONNECTOR: &str = r#"#!/bin/sh
input=$(cat)
type=$(printf '%s' "$input" | sed -n -e 's/.*"type":"\([^"]*\)".*/\1/p')
list=$(printf '%s' "$input" | sed -e 's/.*"secrets":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | tr -d '"')
printf '{'
sep=''
for h in $list; do
  case "$type" in
    '') printf '%s"%s":{"value":null,"error":"unsupported backend type: %s"}' "$sep" "$h" "$type" ;;
    *) printf '%s"%s":{"value":"%s:%s","error":null}' "$sep" "$h" "$type" "$h" ;;
  esac
  sep=','
done
printf '}'
"#;

/// One outside program, the settings it needs, a document and its resolved form.
struct Case {
    name: &'static str,
    program: &'static str,
    /// Settings after `secret_backend_command`.
    settings: &'static str,
    document: &'static str,
    resolved: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "datadog-test-command",
        program: DATADOG_TEST_COMMAND,
        settings: "secret_backend_protocol_version: \"1.0\"\n",
        document: "# db\npassword: ENC[db_password]\n",
        resolved: "# db\npassword: \"arg_password\"\n",
    },
    Case {
        name: "vector-exec",
        program: VECTOR_EXEC,
        settings: "secret_backend_protocol_version: 1.0\n",
        document: "user: ENC[db_user]\npassword: ENC[db_password]\n",
        resolved: "user: \"vector-db_user\"\npassword: \"vector-db_password\"\n",
    },
    Case {
        name: "connector",
        program: CONNECTOR,
        settings: "secret_backend_type: file.text\nsecret_backend_config: {secrets_path: /run/secrets}\n",
        document: "user: ENC[db_user]\npassword: ENC[db_password]\n",
        resolved: "user: \"file.text:db_user\"\npassword: \"file.text:db_password\"\n",
    },
];

impl Case {
    /// Writes the program and a `keyturn.yaml` with nothing but `secret_backend_command`.
    fn setup_bare(&self, sandbox: &Sandbox) {
        let program = sandbox.script(self.name, self.program, 0o700);
        sandbox.write(
            "keyturn.yaml",
            &format!("secret_backend_command: {}\n", program.display()),
        );
    }

    /// Writes the program and `keyturn.yaml` (with `extra` settings appended).
    fn setup(&self, sandbox: &Sandbox, extra: &str) {
        let program = sandbox.script(self.name, self.program, 0o700);
        sandbox.write(
            "keyturn.yaml",
            &format!(
                "secret_backend_command: {}\n{}{extra}",
                program.display(),
                self.settings
            ),
        );
    }

    fn resolve(&self, sandbox: &Sandbox) -> Run {
        sandbox.write("app.yaml", self.document);
        sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"])
    }
}

#[test]
fn outside_programs_work_through_resolve() {
    for case in CASES {
        let sandbox = Sandbox::new();
        case.setup(&sandbox, "");
        let run = case.resolve(&sandbox);
        run.expect_code(0);
        assert_eq!(run.stdout(), case.resolved, "{}", case.name);
    }
}

#[test]
fn outside_programs_work_through_serve() {
    for case in CASES {
        let sandbox = Sandbox::new();
        let port = free_port();
        sandbox.write("app.yaml", case.document);
        fs::create_dir(sandbox.path("out")).unwrap();
        case.setup(
            &sandbox,
            &format!(
                "api:\n  listen: 127.0.0.1:{port}\ntemplates:\n  - {{source: app.yaml, destination: out/app.yaml}}\n"
            ),
        );
        let daemon = Daemon::start(&sandbox, port);
        assert_eq!(
            fs::read_to_string(sandbox.path("out/app.yaml")).unwrap(),
            case.resolved,
            "{}",
            case.name
        );
        let refresh = sandbox.keyturn(&["refresh", "--config", "keyturn.yaml"]);
        refresh.expect_code(0);
        assert_eq!(daemon.terminate(), Some(0), "{}", case.name);
    }
}

#[test]
fn version_1_0_programs_fail_on_1_1_with_a_hint_naming_the_setting() {
    for case in &CASES[..2] {
        let sandbox = Sandbox::new();
        case.setup_bare(&sandbox);
        let run = case.resolve(&sandbox);
        run.expect_code(1);
        assert_eq!(run.stdout(), "", "{}", case.name);
        if case.name == "datadog-test-command" {
            assert!(
                run.stderr()
                    .contains("set secret_backend_protocol_version: \"1.0\" in your settings"),
                "{}",
                run.stderr()
            );
        }
    }
}

#[test]
fn the_connector_as_a_command_needs_the_type_and_is_told_why_it_is_sent() {
    let sandbox = Sandbox::new();
    let connector = &CASES[2];
    // Without a type, the connector answers every handle with an error.
    connector.setup_bare(&sandbox);
    let run = connector.resolve(&sandbox);
    run.expect_code(1);
    assert!(
        run.stderr().contains("unsupported backend type: "),
        "{}",
        run.stderr()
    );
    // With it, the precedence warning says the type is still sent.
    connector.setup(&sandbox, "");
    let run = connector.resolve(&sandbox);
    run.expect_code(0);
    assert!(
        run.stderr().contains(
            "secret_backend_type and secret_backend_config are still sent to it as the payload's type and config"
        ),
        "{}",
        run.stderr()
    );
    // With protocol 1.0, nothing but version and secrets is sent: the connector fails again.
    connector.setup(&sandbox, "secret_backend_protocol_version: '1.0'\n");
    connector.resolve(&sandbox).expect_code(1);
}

#[test]
fn check_and_status_show_the_payload_version() {
    let sandbox = Sandbox::new();
    CASES[0].setup(&sandbox, "");
    let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("Payload version: 1.0\n"),
        "{}",
        run.stdout()
    );
    sandbox.write(
        "keyturn.yaml",
        "secret_backend_command: /bin/true\nsecret_backend_protocol_version: '2'\n",
    );
    let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains(
            "invalid setting 'secret_backend_protocol_version': expected \"1.0\" or \"1.1\""
        ),
        "{}",
        run.stderr()
    );
}

/// A `#!` script whose interpreter is missing (the Agent docs' `#!/usr/bin/python` example on a
/// machine without it) or not executable: `keyturn check` names the interpreter with the words
/// a run uses, and exits 2.
#[test]
fn check_names_a_missing_or_non_executable_interpreter() {
    let sandbox = Sandbox::new();
    let not_executable = sandbox.script("not-executable", "", 0o600);
    let not_executable = not_executable.display().to_string();
    for (interpreter, problem) in [
        ("/nonexistent/python", "is missing"),
        (not_executable.as_str(), "is not an executable file"),
    ] {
        let script = sandbox.script(
            "backend.py",
            &format!("#!{interpreter} -u\nprint('{{}}')\n"),
            0o700,
        );
        sandbox.write(
            "keyturn.yaml",
            &format!("secret_backend_command: {}\n", script.display()),
        );
        let wording = format!(
            "the interpreter '{interpreter}' named on the first line (#!) of the script {problem}"
        );
        let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
        run.expect_code(2);
        assert!(
            run.stdout()
                .contains(&format!("Interpreter error: {wording}\n")),
            "{}",
            run.stdout()
        );
        assert!(
            run.stderr()
                .contains(&format!("{}: {wording}", script.display())),
            "{}",
            run.stderr()
        );
        // A run says the same.
        sandbox.write("app.yaml", "password: ENC[db]\n");
        let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
        assert!(run.stderr().contains(&wording), "{}", run.stderr());
    }
    // A script whose interpreter exists passes.
    let script = sandbox.script("backend.sh", "#!/bin/sh\necho '{}'\n", 0o700);
    sandbox.write(
        "keyturn.yaml",
        &format!("secret_backend_command: {}\n", script.display()),
    );
    let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
    run.expect_code(0);
    assert!(
        !run.stdout().contains("Interpreter error"),
        "{}",
        run.stdout()
    );
}

/// Documents as yaml.v3 reads them, end to end: `key:<TAB>value` (in the settings file too) is
/// resolved with every other byte kept, a lone `!` before a value is dropped, and a byte order
/// mark after the start is refused with exit 2.
#[test]
fn yaml_tabs_lone_tags_and_byte_order_marks_through_resolve() {
    let sandbox = Sandbox::new();
    let backend = crate::table_backend(&sandbox, &[("db", "hunter2"), ("flag", "yes")]);
    sandbox.write(
        "keyturn.yaml",
        &format!("secret_backend_command:\t{}\n", backend.display()),
    );
    sandbox.write(
        "app.yaml",
        "db:\tENC[db]\t# note:\tkept\nquoted: \"a:\tENC[db]\"\nflag: ! ENC[flag]\n",
    );
    let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout(),
        "db:\t\"hunter2\"\t# note:\tkept\nquoted: \"a:\tENC[db]\"\nflag: \"yes\"\n"
    );
    sandbox.write("app.yaml", "a: 1\n\u{feff}db: ENC[db]\n");
    let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("a byte order mark (U+FEFF) at line 2, column 1"),
        "{}",
        run.stderr()
    );
}
