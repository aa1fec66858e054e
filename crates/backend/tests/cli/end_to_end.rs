//! The Vault and AWS backends end to end through `keyturn`: `keyturn resolve` with
//! `secret_backend_type`, and a `keyturn serve` refresh that picks up a value rotated in the
//! store. `keyturn` runs `keyturn-backend` from its own directory, as installed.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::aws::{SEED_ACTIONS, aws_config, json_call};
use crate::servers::{BAO_ROOT, insecure_agent, moto, openbao, vault};

/// The `keyturn` binary beside `keyturn-backend` (both are built by `cargo test --workspace`).
fn keyturn() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_keyturn-backend")).with_file_name("keyturn");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

fn run_keyturn(dir: &Path, args: &[&str]) -> Output {
    Command::new(keyturn())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keyturn")
}

/// Writes `settings` (a JSON object: YAML accepts it) plus `extra` YAML lines.
fn write_settings(dir: &Path, settings: &Value, extra: &str) {
    let mut text = String::new();
    for (key, value) in settings.as_object().expect("settings object") {
        text.push_str(&format!("{key}: {value}\n"));
    }
    text.push_str(extra);
    fs::write(dir.join("keyturn.yaml"), text).expect("write settings");
}

/// A running `keyturn serve`, killed on drop.
struct Serve {
    child: Child,
    port: u16,
    token: String,
}

impl Serve {
    fn start(dir: &Path, port: u16) -> Serve {
        let child = Command::new(keyturn())
            .args(["serve", "--config", "keyturn.yaml"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("serve.log")).expect("log"))
            .spawn()
            .expect("start keyturn serve");
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{port}/healthz");
        while !insecure_agent()
            .get(&url)
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                Instant::now() < deadline,
                "keyturn serve did not become healthy: {}",
                fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let token = fs::read_to_string(dir.join("auth_token")).expect("token");
        Serve {
            child,
            port,
            token: token.trim().to_owned(),
        }
    }

    /// `POST /secret/refresh`: status and body.
    fn refresh(&self) -> (u16, String) {
        let mut response = insecure_agent()
            .post(format!("http://127.0.0.1:{}/secret/refresh", self.port))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_empty()
            .expect("refresh");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Resolves `app.yaml` with `settings`, then serves it as a template, rotates a value with
/// `rotate`, refreshes through the API and checks the destination.
fn resolve_then_refresh(
    settings: Value,
    handle: &str,
    before: &str,
    after: &str,
    rotate: impl FnOnce(),
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = format!("# app\ndb:\n  password: ENC[{handle}]\n  port: 5432\n");
    fs::write(dir.path().join("app.yaml"), &app).expect("app");
    write_settings(dir.path(), &settings, "");

    let output = run_keyturn(
        dir.path(),
        &["resolve", "--config", "keyturn.yaml", "app.yaml"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        format!("# app\ndb:\n  password: \"{before}\"\n  port: 5432\n")
    );

    let port = free_port();
    write_settings(
        dir.path(),
        &settings,
        &format!(
            "api:\n  listen: 127.0.0.1:{port}\ntemplates:\n  - source: app.yaml\n    destination: out.yaml\n"
        ),
    );
    let serve = Serve::start(dir.path(), port);
    let rendered = || fs::read_to_string(dir.path().join("out.yaml")).unwrap_or_default();
    assert!(
        rendered().contains(&format!("password: \"{before}\"")),
        "{}",
        rendered()
    );

    rotate();
    let (status, body) = serve.refresh();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("- '{handle}':")), "{body}");
    assert!(!body.contains(after) && !body.contains(before), "{body}");
    assert!(
        rendered().contains(&format!("password: \"{after}\"")),
        "{}",
        rendered()
    );
    let log = fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(!log.contains(before) && !log.contains(after), "{log}");
}

#[test]
fn vault_through_keyturn_resolve_and_a_serve_refresh() {
    let server = openbao(false);
    vault(
        &server,
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "first-pass"}})),
    );
    let settings = json!({
        "secret_backend_type": "hashicorp.vault",
        "secret_backend_config": {"vault_address": server.url, "vault_token": BAO_ROOT},
    });
    resolve_then_refresh(
        settings,
        "secret/app/db;password",
        "first-pass",
        "rotated-pass",
        || {
            vault(
                &server,
                "POST",
                "secret/data/app/db",
                Some(json!({"data": {"password": "rotated-pass"}})),
            );
        },
    );
}

#[test]
fn vault_failures_through_keyturn_resolve() {
    let server = openbao(false);
    vault(
        &server,
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "p"}})),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("app.yaml"),
        "a: ENC[secret/app/db;password]\nb: ENC[secret/app/db;nope]\n",
    )
    .expect("app");
    write_settings(
        dir.path(),
        &json!({
            "secret_backend_type": "hashicorp.vault",
            "secret_backend_config": {"vault_address": server.url, "vault_token": "wrong-token-value"},
        }),
        "",
    );
    let output = run_keyturn(
        dir.path(),
        &["resolve", "--config", "keyturn.yaml", "app.yaml"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // One cause (the token is refused), said once for both handles.
    assert!(
        stderr.contains(
            "(error); affects 2 handles: 'secret/app/db;password' at a; 'secret/app/db;nope' at b"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("HTTP 403").count(), 1, "{stderr}");
    assert!(!stderr.contains("wrong-token-value"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn aws_secrets_through_keyturn_resolve_with_signatures_checked() {
    let server = moto(Some(SEED_ACTIONS));
    let key = crate::aws::seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("app.yaml"),
        "db:\n  password: ENC[app/db;password]\nplain: ENC[plain]\nmissing: ENC[nope;x]\n",
    )
    .expect("app");
    write_settings(
        dir.path(),
        &json!({"secret_backend_type": "aws.secrets", "secret_backend_config": aws_config(&server, &key, json!({}))}),
        "",
    );
    let output = run_keyturn(
        dir.path(),
        &[
            "resolve",
            "--config",
            "keyturn.yaml",
            "--allow-partial",
            "app.yaml",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout,
        "db:\n  password: \"db-pass\"\nplain: \"just-a-string\"\nmissing: ENC[nope;x]\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("'nope;x' (error) at missing: "), "{stderr}");
    assert!(!stderr.contains(&key.secret), "{stderr}");
}

#[test]
fn aws_secrets_through_a_serve_refresh() {
    // Signature checking is proven by the test above and the contract tests; here the store is
    // rotated between runs with plain calls, which moto accepts only without checking.
    let server = moto(None);
    let put = |value: &str, create: bool| {
        let (target, body) = if create {
            (
                "secretsmanager.CreateSecret",
                json!({"Name": "svc/db", "SecretString": value}),
            )
        } else {
            (
                "secretsmanager.PutSecretValue",
                json!({"SecretId": "svc/db", "SecretString": value}),
            )
        };
        let (status, text) = json_call(&server, "secretsmanager", target, body);
        assert_eq!(status, 200, "{text}");
    };
    put(r#"{"password":"aws-one"}"#, true);
    let settings = json!({
        "secret_backend_type": "aws.secrets",
        "secret_backend_config": {
            "endpoint_url": server.url,
            "aws_session": {"aws_region": "us-east-1", "aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "example-secret"},
        },
    });
    resolve_then_refresh(settings, "svc/db;password", "aws-one", "aws-two", || {
        put(r#"{"password":"aws-two"}"#, false);
    });
}

#[test]
fn k8s_secrets_through_keyturn_resolve_and_a_serve_refresh() {
    use base64::Engine as _;
    use std::sync::{Arc, Mutex};

    let ca = crate::fake::TestCa::new();
    let value = Arc::new(Mutex::new("k8s-one".to_owned()));
    let served = Arc::clone(&value);
    let server = crate::fake::FakeServer::https(&ca, move |request| {
        if request.header("authorization") != Some("Bearer k8s-e2e-token-0123456789") {
            return crate::fake::Reply::text(401, "{}");
        }
        if request.path() != "/api/v1/namespaces/apps/secrets/db" {
            return crate::fake::Reply::text(404, "{}");
        }
        let current = served.lock().expect("value").clone();
        crate::fake::Reply::json(
            200,
            json!({"kind": "Secret", "data": {
                "password": base64::engine::general_purpose::STANDARD.encode(current)}}),
        )
    });
    let files = tempfile::tempdir().expect("tempdir");
    let token = files.path().join("token");
    let ca_path = files.path().join("ca.crt");
    fs::write(&token, "k8s-e2e-token-0123456789\n").expect("token");
    fs::write(&ca_path, &ca.ca_pem).expect("ca");
    let settings = json!({
        "secret_backend_type": "k8s.secrets",
        "secret_backend_config": {"api_server": server.url, "token_path": token, "ca_path": ca_path},
    });
    resolve_then_refresh(settings, "apps/db;password", "k8s-one", "k8s-two", || {
        *value.lock().expect("value") = "k8s-two".to_owned();
    });
}

#[test]
fn gcp_secretmanager_through_keyturn_resolve_and_a_serve_refresh() {
    use std::sync::{Arc, Mutex};

    let ca = crate::fake::TestCa::new();
    let password = Arc::new(Mutex::new("gcp-one".to_owned()));
    let server = crate::gcp::google(&ca, Arc::clone(&password));
    let fixture = crate::harness::Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let key_file =
        crate::gcp::service_account_file(&fixture, "sa.json", &server, crate::gcp::KEY_PEM);
    let settings = json!({
        "secret_backend_type": "gcp.secretmanager",
        "secret_backend_config": {
            "endpoint_url": server.url,
            "ca_cert": ca_cert,
            "gcp_session": {"project_id": "test-project", "credentials_file": key_file},
        },
    });
    resolve_then_refresh(settings, "db;password", "gcp-one", "gcp-two", || {
        *password.lock().expect("password") = "gcp-two".to_owned();
    });
}

#[test]
fn azure_keyvault_through_keyturn_resolve_and_a_serve_refresh() {
    use std::sync::{Arc, Mutex};

    let ca = crate::fake::TestCa::new();
    let password = Arc::new(Mutex::new("azure-one".to_owned()));
    let server = crate::azure::azure(&ca, Arc::clone(&password));
    let fixture = crate::harness::Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let settings = json!({
        "secret_backend_type": "azure.keyvault",
        "secret_backend_config": {
            "keyvaulturl": server.url,
            "ca_cert": ca_cert,
            "azure_session": {"azure_tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                              "azure_client_id": "0b4e1d1e-7a4c-4c5e-9f1d-keyturn",
                              "azure_client_secret": crate::azure::CLIENT_SECRET,
                              "azure_authority_host": server.url},
        },
    });
    resolve_then_refresh(settings, "db;password", "azure-one", "azure-two", || {
        *password.lock().expect("password") = "azure-two".to_owned();
    });
}
