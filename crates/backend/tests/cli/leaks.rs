//! The credential leak test of the cloud identities: every credential the new backends send
//! (service account and pod identity tokens, signed JWTs, client secrets, federated and
//! subject tokens, managed identity headers, access tokens) goes to a server that refuses it
//! and echoes the whole request back in its error message, as a careless proxy or a debug
//! build of a service might. The error must say what failed, show `<redacted>` where the
//! credential was, and no output may hold any credential, whole or cut.

use serde_json::{Value, json};

use crate::fake::{FakeServer, Reply, TestCa};
use crate::harness::{Fixture, backend_env, request};

/// What the echo server hands out when a token endpoint is allowed to succeed.
const ACCESS_TOKEN: &str = "ya29.access-token-that-must-not-leak-0123";

/// A server that echoes every request (method, target, headers, body) in the error fields
/// each provider's error body has; with `grant_tokens`, token endpoints succeed first.
fn echo_server(ca: &TestCa, grant_tokens: bool) -> FakeServer {
    FakeServer::https(ca, move |request| {
        if grant_tokens && request.method == "POST" && request.path().ends_with("/token") {
            return Reply::json(
                200,
                json!({"access_token": ACCESS_TOKEN, "expires_in": 3600}),
            );
        }
        let headers: Vec<String> = request
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        // The body first: form fields then land across the 300-character cut of error texts.
        let dump = format!(
            "{} {} {} {}",
            request.body,
            request.method,
            request.target,
            headers.join(" ")
        );
        Reply::json(
            401,
            json!({"kind": "Status", "error": "echo", "error_description": dump, "message": dump}),
        )
    })
}

fn echo_http() -> FakeServer {
    FakeServer::http(|request| {
        let headers: Vec<String> = request
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        let dump = format!("{} {} {}", request.body, request.target, headers.join(" "));
        Reply::json(
            401,
            json!({"error": "echo", "error_description": dump, "message": dump}),
        )
    })
}

/// Runs the request and checks that it failed with `<redacted>` in place of the credentials,
/// and that no output shows any of `secrets` or a 12-character piece of one.
fn assert_redacted(what: &str, input: Vec<u8>, env: &[(&str, &str)], secrets: &[&str]) {
    let run = backend_env(&[], &input, env);
    assert!(run.status.success(), "{what}: {}", run.stderr);
    let response = run.response();
    let errors: Vec<&str> = response
        .values()
        .map(|entry| entry["error"].as_str().unwrap_or_default())
        .collect();
    assert!(
        errors.iter().all(|error| error.contains("<redacted>")),
        "{what}: {}",
        run.stdout
    );
    for secret in secrets {
        for piece in secret.as_bytes().windows(12) {
            let piece = std::str::from_utf8(piece).expect("ascii");
            assert!(
                !run.stdout.contains(piece) && !run.stderr.contains(piece),
                "{what}: {piece:?} of a credential leaked: {}",
                run.stdout
            );
        }
    }
}

#[test]
fn cloud_credentials_echoed_by_servers_never_leak() {
    let ca = TestCa::new();
    let echo = echo_server(&ca, false);
    let granting = echo_server(&ca, true);
    let plain = echo_http();
    let fixture = Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let home = fixture.dir("home");

    // Kubernetes: the service account token in `Authorization`.
    let k8s_token = "k8s-service-account-token-abcdefghijklmnop";
    let token_path = fixture.write("k8s-token", k8s_token);
    assert_redacted(
        "k8s.secrets",
        request(
            "k8s.secrets",
            &json!({"api_server": echo.url, "token_path": token_path, "ca_path": ca_cert}),
            &["ns/s;k"],
        ),
        &[],
        &[k8s_token],
    );

    // GCP: the signed JWT in the token request, then the access token in `Authorization`.
    let gcp_key = fixture.write(
        "sa.json",
        &json!({"type": "service_account", "project_id": "p", "private_key": crate::gcp::KEY_PEM,
                "client_email": crate::gcp::EMAIL, "token_uri": format!("{}/token", echo.url)})
        .to_string(),
    );
    let gcp_env = [
        ("GOOGLE_APPLICATION_CREDENTIALS", ""),
        ("HOME", home.as_str()),
    ];
    let gcp_config = |server: &FakeServer, file: &str| {
        json!({"endpoint_url": server.url, "ca_cert": ca_cert,
               "gcp_session": {"project_id": "p", "credentials_file": file}})
    };
    assert_redacted(
        "gcp.secretmanager service account JWT",
        request("gcp.secretmanager", &gcp_config(&echo, &gcp_key), &["s"]),
        &gcp_env,
        &[
            "-----BEGIN PRIVATE KEY-----",
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9",
        ],
    );
    let gcp_granted = fixture.write(
        "sa-granted.json",
        &json!({"type": "service_account", "project_id": "p", "private_key": crate::gcp::KEY_PEM,
                "client_email": crate::gcp::EMAIL,
                "token_uri": format!("{}/token", granting.url)})
        .to_string(),
    );
    assert_redacted(
        "gcp.secretmanager access token",
        request(
            "gcp.secretmanager",
            &gcp_config(&granting, &gcp_granted),
            &["s"],
        ),
        &gcp_env,
        &[ACCESS_TOKEN],
    );
    // GCP workload identity federation: the subject token (with characters a form encodes)
    // and a user's refresh token.
    let subject = "oidc+subject/token=abcdefghijklmnopqrstuvwxyz";
    let subject_file = fixture.write("subject", subject);
    let federation = fixture.write(
        "federation.json",
        &json!({"type": "external_account", "audience": "//iam/x",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": format!("{}/token", echo.url),
                "credential_source": {"file": subject_file}})
        .to_string(),
    );
    let refresh = "1//0gRefresh-token+with/slashes=abcdefghijkl";
    let user = fixture.write(
        "user.json",
        &json!({"type": "authorized_user", "client_id": "id.apps.googleusercontent.com",
                "client_secret": "GOCSPX-client-secret-abcdefgh", "refresh_token": refresh,
                "token_uri": format!("{}/token", echo.url)})
        .to_string(),
    );
    for (what, file, secrets) in [
        ("gcp federation", &federation, vec![subject]),
        (
            "gcp authorized user",
            &user,
            vec![refresh, "GOCSPX-client-secret-abcdefgh"],
        ),
    ] {
        assert_redacted(
            what,
            request("gcp.secretmanager", &gcp_config(&echo, file), &["s"]),
            &gcp_env,
            &secrets,
        );
    }

    // Azure: client secret, federated assertion, App Service identity header, access token.
    let tenant = "tenant-0000";
    let client_secret = "azure~client.secret_with-unreserved0123";
    let azure_config = |server: &FakeServer, session: Value| {
        let mut session = session;
        session["azure_authority_host"] = json!(server.url);
        json!({"keyvaulturl": server.url, "ca_cert": ca_cert, "azure_session": session})
    };
    let no_azure_env = [
        ("AZURE_CLIENT_SECRET", ""),
        ("AZURE_FEDERATED_TOKEN_FILE", ""),
        ("IDENTITY_ENDPOINT", ""),
        ("AZURE_TENANT_ID", ""),
        ("AZURE_CLIENT_ID", ""),
    ];
    let with_secret = json!({"azure_tenant_id": tenant, "azure_client_id": "c",
                             "azure_client_secret": client_secret});
    assert_redacted(
        "azure client secret",
        request(
            "azure.keyvault",
            &azure_config(&echo, with_secret.clone()),
            &["s"],
        ),
        &no_azure_env,
        &[client_secret],
    );
    assert_redacted(
        "azure access token",
        request(
            "azure.keyvault",
            &azure_config(&granting, with_secret),
            &["s"],
        ),
        &no_azure_env,
        &[ACCESS_TOKEN],
    );
    let assertion = "eyJhbGciOiJSUzI1NiJ9.aks-federated.signature-abcdef";
    let assertion_file = fixture.write("azure-token", assertion);
    let mut env = no_azure_env.to_vec();
    env.extend([
        ("AZURE_FEDERATED_TOKEN_FILE", assertion_file.as_str()),
        ("AZURE_TENANT_ID", tenant),
        ("AZURE_CLIENT_ID", "c"),
    ]);
    assert_redacted(
        "azure workload identity",
        request("azure.keyvault", &azure_config(&echo, json!({})), &["s"]),
        &env,
        &[assertion],
    );
    let identity_header = "appsvc-hdr-7f3a9c2e1b5d4f60";
    let identity_endpoint = format!("{}/msi/token", plain.url);
    let mut env = no_azure_env.to_vec();
    env.extend([
        ("IDENTITY_ENDPOINT", identity_endpoint.as_str()),
        ("IDENTITY_HEADER", identity_header),
    ]);
    assert_redacted(
        "azure app service identity",
        request("azure.keyvault", &azure_config(&echo, json!({})), &["s"]),
        &env,
        &[identity_header],
    );

    // AWS container credentials: the authorization token.
    let container_token = "ctr-tok-5e8d2a9c7b1f3e4d6a0b";
    let full_uri = format!("{}/v2/credentials", plain.url);
    assert_redacted(
        "aws container credentials",
        request(
            "aws.secrets",
            &json!({"aws_session": {"aws_region": "us-east-1"}}),
            &["s"],
        ),
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", container_token),
        ],
        &[container_token],
    );
}
