//! `k8s.secrets` against a loopback API server written from the Kubernetes REST reference
//! (`GET /api/v1/namespaces/{namespace}/secrets/{name}`, `Status` error bodies): no Kubernetes
//! API server installs from the package registries reachable here. It serves HTTPS with a test
//! CA that the backend gets as the cluster CA, and checks what a real API server checks.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::fake::{FakeServer, Reply, TestCa};
use crate::harness::{Expect, Fixture, check_env, request};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.service-account-token.sig0123";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn status(code: u16, reason: &str, message: &str) -> Reply {
    Reply::json(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// The API server: bearer token authentication (401 otherwise, as with an invalid or expired
/// service account token), RBAC (403 with the authorizer's message for a secret the account may
/// not read), 404 for secrets that do not exist, base64 `data` as the API encodes it.
fn api_server(ca: &TestCa) -> FakeServer {
    FakeServer::https(ca, |request| {
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return status(401, "Unauthorized", "Unauthorized");
        }
        match (request.method.as_str(), request.path()) {
            ("GET", "/api/v1/namespaces/prod/secrets/db-creds") => Reply::json(
                200,
                json!({"kind": "Secret", "apiVersion": "v1",
                       "metadata": {"name": "db-creds", "namespace": "prod"},
                       "type": "Opaque",
                       "data": {"password": b64(b"s3cr3t-k8s"), "user": b64(b"app"),
                                "binary": b64(&[0xff, 0xfe, 0x00])}}),
            ),
            ("GET", "/api/v1/namespaces/kube-system/secrets/forbidden") => status(
                403,
                "Forbidden",
                "secrets \"forbidden\" is forbidden: User \"system:serviceaccount:prod:keyturn\" \
                 cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\"",
            ),
            ("GET", path) => status(404, "NotFound", &format!("{path} not found")),
            _ => status(405, "MethodNotAllowed", "method not allowed"),
        }
    })
}

fn handles_and_expectations() -> (Vec<&'static str>, Vec<(&'static str, Expect<'static>)>) {
    let expected = vec![
        ("prod/db-creds;password", Expect::Value("s3cr3t-k8s")),
        ("prod/db-creds;user", Expect::Value("app")),
        ("prod/db-creds;binary", Expect::Error("is not UTF-8 text")),
        (
            "prod/db-creds;missing",
            Expect::Error("key \"missing\" not found in secret prod/db-creds"),
        ),
        (
            "kube-system/forbidden;x",
            Expect::Error(
                "secret kube-system/forbidden: forbidden by RBAC (HTTP 403: secrets \"forbidden\" \
                 is forbidden: User \"system:serviceaccount:prod:keyturn\" cannot get resource",
            ),
        ),
        (
            "prod/absent;x",
            Expect::Error("secret prod/absent not found"),
        ),
        (
            "no-key",
            Expect::Error("invalid handle \"no-key\": no `;key`"),
        ),
    ];
    (
        expected.iter().map(|(handle, _)| *handle).collect(),
        expected,
    )
}

#[test]
fn k8s_secrets_in_cluster() {
    let ca = TestCa::new();
    let server = api_server(&ca);
    let fixture = Fixture::new();
    let token = fixture.write("token", &format!("{TOKEN}\n"));
    let ca_path = fixture.write("ca.crt", &ca.ca_pem);
    let port = server.address.rsplit(':').next().expect("port");
    let in_cluster = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", port),
    ];
    let config = json!({"token_path": token, "ca_path": ca_path});
    let (handles, expected) = handles_and_expectations();
    let run = check_env(
        request("k8s.secrets", &config, &handles),
        &in_cluster,
        &expected,
    );
    assert!(!run.stdout.contains(TOKEN));
    // One request per distinct secret.
    assert_eq!(server.requests().len(), 3);

    // A token the API server refuses, never echoed.
    let wrong = fixture.write("wrong", "wrong-token-0123456789");
    let run = check_env(
        request(
            "k8s.secrets",
            &json!({"token_path": wrong, "ca_path": ca_path}),
            &["prod/db-creds;password"],
        ),
        &in_cluster,
        &[(
            "prod/db-creds;password",
            Expect::Error("the API server refused the credentials (HTTP 401: Unauthorized)"),
        )],
    );
    assert!(!run.stdout.contains("wrong-token-0123456789"));
    // A server whose certificate the configured CA did not issue: TLS verification is on.
    let other = Fixture::new();
    let other_ca = other.write("other.crt", &TestCa::new().ca_pem);
    check_env(
        request(
            "k8s.secrets",
            &json!({"token_path": token, "ca_path": other_ca}),
            &["prod/db-creds;password"],
        ),
        &in_cluster,
        &[(
            "prod/db-creds;password",
            Expect::Error(&format!("request to {} failed", server.url)),
        )],
    );
    // Not in a cluster, nothing configured.
    check_env(
        request("k8s.secrets", &json!({}), &["prod/db-creds;password"]),
        &[("KUBERNETES_SERVICE_HOST", "")],
        &[(
            "prod/db-creds;password",
            Expect::Error("no Kubernetes API server: not in a cluster"),
        )],
    );
}

fn kubeconfig(server: &FakeServer, ca: &TestCa, user: Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "contexts": [{"name": "test", "context": {"cluster": "loopback", "user": "keyturn"}}],
        "clusters": [{"name": "loopback", "cluster": {
            "server": server.url,
            "certificate-authority-data": b64(ca.ca_pem.as_bytes()),
        }}],
        "users": [{"name": "keyturn", "user": user}],
    })
    .to_string()
}

#[test]
fn k8s_secrets_from_a_kubeconfig() {
    let ca = TestCa::new();
    let server = api_server(&ca);
    let fixture = Fixture::new();
    // JSON is YAML: the kubeconfig is written as JSON for brevity.
    let path = fixture.write(
        "kubeconfig",
        &kubeconfig(&server, &ca, json!({"token": TOKEN})),
    );
    let (handles, expected) = handles_and_expectations();
    let run = check_env(
        request("k8s.secrets", &json!({"kubeconfig_path": path}), &handles),
        &[("KUBERNETES_SERVICE_HOST", "")],
        &expected,
    );
    assert!(!run.stdout.contains(TOKEN));
    // A token file relative to the kubeconfig, and a plain YAML kubeconfig.
    fixture.write("token", TOKEN);
    let yaml = fixture.write(
        "kubeconfig.yaml",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\ncontexts:\n- name: test\n  \
             context:\n    cluster: loopback\n    user: keyturn\nclusters:\n- name: loopback\n  \
             cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n\
             - name: keyturn\n  user:\n    tokenFile: token\n",
            server.url,
            b64(ca.ca_pem.as_bytes())
        ),
    );
    check_env(
        request(
            "k8s.secrets",
            &json!({"kubeconfig_path": yaml, "namespace": "prod"}),
            &["db-creds;password"],
        ),
        &[],
        &[("db-creds;password", Expect::Value("s3cr3t-k8s"))],
    );
    // Exec plugins would run programs: refused, naming the kubeconfig.
    let exec = fixture.write(
        "exec",
        &kubeconfig(
            &server,
            &ca,
            json!({"exec": {"command": "aws", "args": ["eks", "get-token"]}}),
        ),
    );
    check_env(
        request(
            "k8s.secrets",
            &json!({"kubeconfig_path": exec}),
            &["prod/db-creds;user"],
        ),
        &[],
        &[(
            "prod/db-creds;user",
            Expect::Error(&format!(
                "kubeconfig {exec}: the user authenticates with an exec plugin"
            )),
        )],
    );
}

#[test]
fn k8s_secrets_never_skips_tls_verification() {
    let ca = TestCa::new();
    let server = api_server(&ca);
    let fixture = Fixture::new();
    let mut config: Value =
        serde_json::from_str(&kubeconfig(&server, &ca, json!({"token": TOKEN}))).expect("json");
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = json!(true);
    let path = fixture.write("kubeconfig", &config.to_string());
    check_env(
        request(
            "k8s.secrets",
            &json!({"kubeconfig_path": path}),
            &["prod/db-creds;user"],
        ),
        &[],
        &[(
            "prod/db-creds;user",
            Expect::Error("insecure-skip-tls-verify is not supported"),
        )],
    );
    assert!(server.requests().is_empty());
}

#[test]
fn k8s_secrets_kubeconfig_client_certificate() {
    // An API server authenticating clients by certificate (the kubeconfig of a cluster admin):
    // the TLS handshake fails without a certificate the cluster CA issued.
    let ca = TestCa::new();
    let server = FakeServer::https_mutual(&ca, |request| {
        match (request.header("authorization"), request.path()) {
            (None, "/api/v1/namespaces/prod/secrets/db-creds") => Reply::json(
                200,
                json!({"kind": "Secret", "data": {"user": b64(b"cert-user")}}),
            ),
            _ => status(404, "NotFound", "not found"),
        }
    });
    let fixture = Fixture::new();
    let (cert, key) = &ca.client;
    let user = json!({"client-certificate-data": b64(cert.as_bytes()),
                      "client-key-data": b64(key.as_bytes())});
    let path = fixture.write("kubeconfig", &kubeconfig(&server, &ca, user));
    let run = check_env(
        request(
            "k8s.secrets",
            &json!({"kubeconfig_path": path}),
            &["prod/db-creds;user"],
        ),
        &[],
        &[("prod/db-creds;user", Expect::Value("cert-user"))],
    );
    assert!(!run.stdout.contains("PRIVATE KEY"));
    // Without the client certificate the handshake is refused.
    let bare = fixture.write("bare", &kubeconfig(&server, &ca, json!({})));
    check_env(
        request(
            "k8s.secrets",
            &json!({"kubeconfig_path": bare}),
            &["prod/db-creds;user"],
        ),
        &[],
        &[(
            "prod/db-creds;user",
            Expect::Error(&format!("request to {} failed", server.url)),
        )],
    );
}
