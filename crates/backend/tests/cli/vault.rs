//! `hashicorp.vault` against a real OpenBao dev server.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Expect, Fixture, backend, backend_env, check, check_env, request};
use crate::servers::{BAO_ROOT, Server, openbao, vault};

/// Policy of the AppRole and userpass logins: read the app's secrets, nothing else.
const READER_POLICY: &str = r#"
path "secret/data/app/*" { capabilities = ["read"] }
path "kv1/app/*" { capabilities = ["read"] }
"#;

/// Seeds `secret/app/db` (KV v2, two versions), `secret/app/api`, `kv1/app/db` (KV v1).
pub(crate) fn seed(server: &Server) {
    vault(
        server,
        "POST",
        "sys/mounts/kv1",
        Some(json!({"type": "kv", "options": {"version": "1"}})),
    );
    vault(
        server,
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "v1-pass"}})),
    );
    vault(
        server,
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "v2-pass", "user": "app", "port": 5432, "none": null}})),
    );
    vault(
        server,
        "POST",
        "secret/data/app/api",
        Some(json!({"data": {"key": "api-key-1"}})),
    );
    vault(
        server,
        "POST",
        "kv1/app/db",
        Some(json!({"password": "kv1-pass"})),
    );
    vault(
        server,
        "POST",
        "sys/policies/acl/reader",
        Some(json!({"policy": READER_POLICY})),
    );
}

fn vault_config(server: &Server, extra: Value) -> Value {
    let mut config = json!({"vault_address": server.url});
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

#[test]
fn vault_kv_v1_v2_versions_and_missing() {
    let server = openbao(false);
    seed(&server);
    let config = vault_config(&server, json!({"vault_token": BAO_ROOT}));
    check(
        request(
            "hashicorp.vault",
            &config,
            &[
                "secret/app/db;password",
                "/secret/app/db;user",
                "secret/app/db;port",
                ";secret/app/db;password;1",
                ";secret/app/db;user;1",
                ";secret/app/db;password;9",
                "secret/app/db;none",
                "secret/app/db;absent",
                "kv1/app/db;password",
                ";kv1/app/db;password;1",
                "secret/app/missing;password",
                "nomount/x;y",
                "secret;password",
                "no-key-separator",
            ],
        ),
        &[
            ("secret/app/db;password", Expect::Value("v2-pass")),
            ("/secret/app/db;user", Expect::Value("app")),
            ("secret/app/db;port", Expect::Value("5432")),
            (";secret/app/db;password;1", Expect::Value("v1-pass")),
            (
                ";secret/app/db;user;1",
                Expect::Error("key \"user\" not found in secret/app/db (version 1)"),
            ),
            (
                ";secret/app/db;password;9",
                Expect::Error("no secret at secret/app/db (version 9)"),
            ),
            ("secret/app/db;none", Expect::Error("is null")),
            (
                "secret/app/db;absent",
                Expect::Error("key \"absent\" not found in secret/app/db"),
            ),
            ("kv1/app/db;password", Expect::Value("kv1-pass")),
            (
                ";kv1/app/db;password;1",
                Expect::Error("versions exist only on KV v2 mounts"),
            ),
            (
                "secret/app/missing;password",
                Expect::Error("no secret at secret/app/missing"),
            ),
            ("nomount/x;y", Expect::Error("nomount/x")),
            ("secret;password", Expect::Error("names a mount")),
            ("no-key-separator", Expect::Error("invalid handle")),
        ],
    );
}

/// The handles Datadog's connector also reads mean what they mean there: `path;a;b` is key
/// `a;b`, and `vault://path#pointer` follows an RFC 6901 pointer to a string (anything else is
/// `secret value is not a string`).
#[test]
fn vault_keys_with_semicolons_and_json_pointers() {
    let server = openbao(false);
    seed(&server);
    vault(
        &server,
        "POST",
        "secret/data/app/nested",
        Some(json!({"data": {
            "a;b": "semi",
            "a": "not this one",
            "db": {"replicas": [{"password": "r0"}, {"password": "r1"}], "port": 5432},
            "odd/key": {"til~de": "escaped"},
            "list": ["x", true, null, {"k": "v"}],
        }})),
    );
    vault(
        &server,
        "POST",
        "kv1/app/nested",
        Some(json!({"db": {"password": "kv1-nested"}})),
    );
    let config = vault_config(&server, json!({"vault_token": BAO_ROOT}));
    let not_a_string = "secret value is not a string";
    let cases = [
        ("secret/app/nested;a;b", Expect::Value("semi")),
        (
            "secret/app/db;password;1",
            Expect::Error("key \"password;1\" not found in secret/app/db"),
        ),
        ("vault://secret/app/nested#/a;b", Expect::Value("semi")),
        (
            "vault://secret/app/nested#/db/replicas/1/password",
            Expect::Value("r1"),
        ),
        (
            "vault:///secret/app/nested#/odd~1key/til~0de",
            Expect::Value("escaped"),
        ),
        (
            "vault://kv1/app/nested#/db/password",
            Expect::Value("kv1-nested"),
        ),
        ("vault://secret/app/nested#/list/3/k", Expect::Value("v")),
        (
            "vault://secret/app/nested#/db/port",
            Expect::Error(not_a_string),
        ),
        ("vault://secret/app/nested#/db", Expect::Error(not_a_string)),
        (
            "vault://secret/app/nested#/list/1",
            Expect::Error(not_a_string),
        ),
        (
            "vault://secret/app/nested#/list/2",
            Expect::Error(not_a_string),
        ),
        ("vault://secret/app/nested#", Expect::Error(not_a_string)),
        (
            "vault://secret/app/nested#/db/replicas/01/password",
            Expect::Error(
                "pointer \"/db/replicas/01/password\" in secret/app/nested: no such value",
            ),
        ),
        (
            "vault://secret/app/nested#/absent",
            Expect::Error("no such value"),
        ),
        (
            "vault://secret/app/missing#/a",
            Expect::Error("no secret at secret/app/missing"),
        ),
        ("vault://secret/app/nested", Expect::Error("no `#`")),
    ];
    let handles: Vec<&str> = cases.iter().map(|(handle, _)| *handle).collect();
    let run = check(request("hashicorp.vault", &config, &handles), &cases);
    assert!(
        !run.stdout.contains("5432") && !run.stdout.contains("r0"),
        "an error names no value: {}",
        run.stdout
    );
}

#[test]
fn vault_key_separator_for_vector() {
    let server = openbao(false);
    seed(&server);
    // As Vector's exec backend sends it: no timeout, handles without `;`.
    let input = json!({
        "version": "1.1",
        "secrets": ["secret/app/db.password", "kv1/app/db.password", "secret/app/db"],
        "type": "hashicorp.vault",
        "config": vault_config(&server, json!({"vault_token": BAO_ROOT, "key_separator": "."})),
    });
    check(
        input.to_string().into_bytes(),
        &[
            ("secret/app/db.password", Expect::Value("v2-pass")),
            ("kv1/app/db.password", Expect::Value("kv1-pass")),
            ("secret/app/db", Expect::Error("no separator")),
        ],
    );
}

#[test]
fn vault_reads_each_secret_once_however_many_keys() {
    let server = openbao(false);
    seed(&server);
    let audit = server.dir.path().join("audit.log");
    let mut handles = Vec::new();
    for round in 0..10 {
        handles.push(if round == 0 {
            "secret/app/db;password".to_owned()
        } else {
            ";secret/app/db;password;2".to_owned()
        });
        handles.push(format!("secret/app/api;key#{round}"));
    }
    handles.push("secret/app/db;user".to_owned());
    let handles: Vec<&str> = handles.iter().map(String::as_str).collect();
    let run = backend(&request(
        "hashicorp.vault",
        &vault_config(&server, json!({"vault_token": BAO_ROOT})),
        &handles,
    ));
    assert!(run.status.success());
    assert_eq!(run.response()["secret/app/db;user"]["value"], "app");
    let log = std::fs::read_to_string(&audit).expect("audit log");
    let reads = |path: &str| {
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| {
                entry["type"] == "request"
                    && entry["request"]["operation"] == "read"
                    && entry["request"]["path"] == path
            })
            .count()
    };
    // db latest, db version 2 and api: three reads for 21 handles, plus one mount listing.
    assert_eq!(reads("secret/data/app/db"), 2, "{log}");
    assert_eq!(reads("secret/data/app/api"), 1);
    assert_eq!(reads("sys/internal/ui/mounts"), 1);
    assert!(!log.contains("v2-pass"), "the audit log hashes values");
}

#[test]
fn vault_approle_login_and_rotation() {
    let server = openbao(false);
    seed(&server);
    vault(
        &server,
        "POST",
        "sys/auth/approle",
        Some(json!({"type": "approle"})),
    );
    vault(
        &server,
        "POST",
        "auth/approle/role/app",
        Some(json!({"token_policies": "reader"})),
    );
    let role_id = vault(&server, "GET", "auth/approle/role/app/role-id", None)["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let secret_id = vault(
        &server,
        "POST",
        "auth/approle/role/app/secret-id",
        Some(json!({})),
    )["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();
    let fixture = Fixture::new();
    let secret_id_file = fixture.write("secret-id", &format!("{secret_id}\n"));
    let handles = [
        "secret/app/db;password",
        "kv1/app/db;password",
        "secret/other;x",
    ];
    for session in [
        json!({"vault_auth_type": "approle", "vault_role_id": role_id, "vault_secret_id": secret_id}),
        json!({"vault_role_id": role_id, "vault_secret_id_file": secret_id_file}),
    ] {
        let config = vault_config(&server, json!({"vault_session": session}));
        check(
            request("hashicorp.vault", &config, &handles),
            &[
                ("secret/app/db;password", Expect::Value("v2-pass")),
                ("kv1/app/db;password", Expect::Value("kv1-pass")),
                // Outside the policy: the restricted token cannot read it.
                ("secret/other;x", Expect::Error("")),
            ],
        );
    }
    // Rotation: the next run sees the new value.
    vault(
        &server,
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "rotated"}})),
    );
    let config = vault_config(
        &server,
        json!({"vault_session": {"vault_role_id": role_id, "vault_secret_id": secret_id}}),
    );
    check(
        request("hashicorp.vault", &config, &["secret/app/db;password"]),
        &[("secret/app/db;password", Expect::Value("rotated"))],
    );
    // A wrong secret id fails every handle with the login error, and is never echoed.
    let wrong = "wrong-secret-id-5f2b";
    let config = vault_config(
        &server,
        json!({"vault_session": {"vault_role_id": role_id, "vault_secret_id": wrong}}),
    );
    let run = check(
        request("hashicorp.vault", &config, &handles[..2]),
        &[
            (
                "secret/app/db;password",
                Expect::Error("Vault login (approle at auth/approle) failed: HTTP 400"),
            ),
            (
                "kv1/app/db;password",
                Expect::Error("invalid role or secret ID"),
            ),
        ],
    );
    assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
}

#[test]
fn vault_userpass_token_file_and_environment() {
    let server = openbao(false);
    seed(&server);
    vault(
        &server,
        "POST",
        "sys/auth/userpass",
        Some(json!({"type": "userpass"})),
    );
    vault(
        &server,
        "POST",
        "auth/userpass/users/alice",
        Some(json!({"password": "alice-pw-123", "token_policies": "reader"})),
    );
    let expect = [("secret/app/db;password", Expect::Value("v2-pass"))];
    let handles = ["secret/app/db;password"];
    check(
        request(
            "hashicorp.vault",
            &vault_config(
                &server,
                json!({"vault_session": {"vault_username": "alice", "vault_password": "alice-pw-123"}}),
            ),
            &handles,
        ),
        &expect,
    );
    let fixture = Fixture::new();
    let token_file = fixture.write("token", &format!("{BAO_ROOT}\n"));
    check(
        request(
            "hashicorp.vault",
            &vault_config(&server, json!({"vault_token_file": token_file})),
            &handles,
        ),
        &expect,
    );
    check_env(
        request("hashicorp.vault", &json!({}), &handles),
        &[("VAULT_ADDR", &server.url), ("VAULT_TOKEN", BAO_ROOT)],
        &expect,
    );
    check_env(
        request("hashicorp.vault", &json!({}), &handles),
        &[("VAULT_ADDR", ""), ("VAULT_TOKEN", "")],
        &[(
            "secret/app/db;password",
            Expect::Error("config key `vault_address` is required"),
        )],
    );
    check_env(
        request(
            "hashicorp.vault",
            &vault_config(&server, json!({})),
            &handles,
        ),
        &[("VAULT_TOKEN", "")],
        &[(
            "secret/app/db;password",
            Expect::Error("config key `vault_token` is required"),
        )],
    );
    check(
        request(
            "hashicorp.vault",
            &vault_config(
                &server,
                json!({"vault_session": {"vault_auth_type": "aws"}}),
            ),
            &handles,
        ),
        &[(
            "secret/app/db;password",
            Expect::Error("config key `vault_session.vault_aws_role` is required (AWS IAM login)"),
        )],
    );
}

#[test]
fn vault_wrong_token_never_leaks() {
    let server = openbao(false);
    seed(&server);
    let wrong = "s.wrong-token-7a1c9";
    let run = check(
        request(
            "hashicorp.vault",
            &vault_config(&server, json!({"vault_token": wrong})),
            &["secret/app/db;password", "kv1/app/db;password"],
        ),
        &[
            ("secret/app/db;password", Expect::Error("permission denied")),
            ("kv1/app/db;password", Expect::Error("permission denied")),
        ],
    );
    assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
}

#[test]
fn vault_tls_is_verified_by_default() {
    let server = openbao(true);
    seed(&server);
    let ca = server.dir.path().join("vault-ca.pem");
    let handles = ["secret/app/db;password"];
    check(
        request(
            "hashicorp.vault",
            &vault_config(&server, json!({"vault_token": BAO_ROOT})),
            &handles,
        ),
        &[(
            "secret/app/db;password",
            Expect::Error("invalid peer certificate"),
        )],
    );
    for tls in [json!({"ca_cert": ca}), json!({"insecure": true})] {
        check(
            request(
                "hashicorp.vault",
                &vault_config(
                    &server,
                    json!({"vault_token": BAO_ROOT, "vault_tls_config": tls}),
                ),
                &handles,
            ),
            &[("secret/app/db;password", Expect::Value("v2-pass"))],
        );
    }
}

// Issue 9.17: user info in the address, from the config or `VAULT_ADDR`, is never echoed.
#[test]
fn address_user_info_is_never_echoed() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let address = format!("http://admin:pa/ss-4d9e@127.0.0.1:{port}");
    let from_config = json!({"vault_address": address, "vault_token": "t-123456"});
    let input = request("hashicorp.vault", &from_config, &["secret/a;b"]);
    for run in [
        backend(&input),
        backend_env(
            &[],
            &request(
                "hashicorp.vault",
                &json!({"vault_token": "t-123456"}),
                &["secret/a;b"],
            ),
            &[("VAULT_ADDR", address.as_str())],
        ),
    ] {
        let error = run.error("secret/a;b");
        assert!(
            error.contains(&format!("http://<redacted>@127.0.0.1:{port}")),
            "{error}"
        );
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains("admin") && !text.contains("4d9e"), "{text}");
        }
    }
}

#[test]
fn a_silent_server_costs_at_most_the_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let config = json!({"vault_address": url, "vault_token": "t-123456"});
    let mut from_config = config.clone();
    from_config["secret_backend_timeout"] = json!(1);
    for input in [
        // The Agent sends its timeout in the payload.
        json!({"version": "1.1", "secrets": ["secret/a;b", "secret/c;d"],
               "secret_backend_timeout": 1, "type": "hashicorp.vault", "config": config}),
        // Vector's exec backend sends none; its users put it in the config.
        json!({"version": "1.1", "secrets": ["secret/a;b", "secret/c;d"],
               "type": "hashicorp.vault", "config": from_config}),
    ] {
        let started = Instant::now();
        check(
            input.to_string().into_bytes(),
            &[
                (
                    "secret/a;b",
                    Expect::Error("no answer within the 1s secret_backend_timeout"),
                ),
                (
                    "secret/c;d",
                    Expect::Error("no answer within the 1s secret_backend_timeout"),
                ),
            ],
        );
        // The answer is due at 90% of the timeout after the process started; allow a second
        // for starting it on a busy shared machine.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    drop(listener);
}
