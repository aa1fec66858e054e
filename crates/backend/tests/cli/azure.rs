//! `azure.keyvault` against loopback servers written from Microsoft's published references:
//! no Key Vault, Entra ID or managed identity emulator installs from the package registries
//! reachable here. Each check stands for one the real service makes:
//! - Entra ID's v2.0 token endpoint checks the tenant, the client id with its secret or its
//!   federated assertion (`client_assertion_type` jwt-bearer), and the `.default` scope;
//! - Key Vault refuses requests without `api-version` (400 `BadParameter`), without a token it
//!   issued (401), and answers `SecretNotFound` / `Forbidden` with its error body;
//! - the instance metadata service answers only with `Metadata: true`, `api-version` and
//!   `resource`; the App Service identity endpoint only with its `X-IDENTITY-HEADER`.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::fake::{FakeServer, Reply, Request, TestCa};
use crate::gcp::{field, form_fields};
use crate::harness::{Expect, Fixture, check_env, request};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0b4e1d1e-7a4c-4c5e-9f1d-keyturn";
pub(crate) const CLIENT_SECRET: &str = "client-secret-value~0123456789";
const FEDERATED: &str = "eyJhbGciOiJSUzI1NiJ9.aks-federated-token.sig";
const ENTRA_TOKEN: &str = "eyJ0eXAiOiJKV1Qi.entra-access-token.sig";
const MANAGED_TOKEN: &str = "eyJ0eXAiOiJKV1Qi.managed-identity-token.sig";
const IDENTITY_HEADER: &str = "app-service-identity-header-0123";

fn query(request: &Request) -> Vec<(String, String)> {
    form_fields(
        request
            .target
            .split_once('?')
            .map_or("", |(_, query)| query),
    )
}

fn vault_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

/// Entra ID and Key Vault on one HTTPS server; the secret `db` holds `password`.
pub(crate) fn azure(ca: &TestCa, password: Arc<Mutex<String>>) -> FakeServer {
    FakeServer::https(ca, move |request| {
        let path = request.path();
        if request.method == "POST" && path == format!("/{TENANT}/oauth2/v2.0/token") {
            let fields = form_fields(&request.body);
            let secret_ok = field(&fields, "client_secret") == Some(CLIENT_SECRET);
            let assertion_ok = field(&fields, "client_assertion_type")
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && field(&fields, "client_assertion") == Some(FEDERATED);
            return if field(&fields, "grant_type") == Some("client_credentials")
                && field(&fields, "client_id") == Some(CLIENT_ID)
                && field(&fields, "scope") == Some("https://vault.azure.net/.default")
                && (secret_ok || assertion_ok)
            {
                Reply::json(
                    200,
                    json!({"token_type": "Bearer", "expires_in": 3599, "access_token": ENTRA_TOKEN}),
                )
            } else {
                Reply::json(
                    401,
                    json!({"error": "invalid_client",
                           "error_description": "AADSTS7000215: Invalid client secret provided."}),
                )
            };
        }
        let Some(secret) = path.strip_prefix("/secrets/") else {
            return vault_error(404, "NotFound", "no such route");
        };
        if field(&query(request), "api-version").is_none() {
            return vault_error(
                400,
                "BadParameter",
                "The 'api-version' query parameter is missing",
            );
        }
        let bearer = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "));
        if !matches!(bearer, Some(ENTRA_TOKEN | MANAGED_TOKEN)) {
            return vault_error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer token.",
            );
        }
        let bundle = |value: &str| {
            Reply::json(
                200,
                json!({"value": value, "id": path, "attributes": {"enabled": true}}),
            )
        };
        match secret.trim_end_matches('/') {
            "api-key" => bundle("azure-api-key-value"),
            "db" => bundle(
                &json!({"user": "app", "password": *password.lock().expect("password")})
                    .to_string(),
            ),
            "db/0123456789abcdef0123456789abcdef" => bundle(r#"{"password":"old-pass"}"#),
            "forbidden" => vault_error(
                403,
                "Forbidden",
                "The user, group or application does not have secrets get permission on key vault",
            ),
            _ => vault_error(
                404,
                "SecretNotFound",
                "A secret with (name/id) absent was not found in this key vault.",
            ),
        }
    })
}

/// Environment with no ambient Azure credentials; managed identity goes to `imds`.
fn clean_env(imds: &str) -> Vec<(&str, &str)> {
    vec![
        ("AZURE_CLIENT_SECRET", ""),
        ("AZURE_FEDERATED_TOKEN_FILE", ""),
        ("AZURE_TENANT_ID", ""),
        ("AZURE_CLIENT_ID", ""),
        ("IDENTITY_ENDPOINT", ""),
        ("IDENTITY_HEADER", ""),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds),
    ]
}

fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().expect("addr"))
}

#[test]
fn azure_keyvault_client_secret() {
    let ca = TestCa::new();
    let server = azure(&ca, Arc::new(Mutex::new("azure-db-pass".to_owned())));
    let fixture = Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let closed = closed_url();
    let mut env = clean_env(&closed);
    env.push(("AZURE_AUTHORITY_HOST", &server.url));
    let config = |secret: &str| {
        json!({"keyvaulturl": server.url, "ca_cert": ca_cert,
               "azure_session": {"azure_tenant_id": TENANT, "azure_client_id": CLIENT_ID,
                                 "azure_client_secret": secret}})
    };
    let run = check_env(
        request(
            "azure.keyvault",
            &config(CLIENT_SECRET),
            &[
                "api-key",
                "db;password",
                "db;user",
                "db;password;0123456789abcdef0123456789abcdef",
                "db;missing",
                "forbidden",
                "absent",
                "bad_name",
            ],
        ),
        &env,
        &[
            ("api-key", Expect::Value("azure-api-key-value")),
            ("db;password", Expect::Value("azure-db-pass")),
            ("db;user", Expect::Value("app")),
            (
                "db;password;0123456789abcdef0123456789abcdef",
                Expect::Value("old-pass"),
            ),
            (
                "db;missing",
                Expect::Error("key \"missing\" not found in secret \"db\""),
            ),
            (
                "forbidden",
                Expect::Error(
                    "secret \"forbidden\": forbidden (HTTP 403: Forbidden: The user, group or application does not have secrets get permission",
                ),
            ),
            (
                "absent",
                Expect::Error("secret \"absent\" not found: SecretNotFound"),
            ),
            ("bad_name", Expect::Error("invalid handle \"bad_name\"")),
        ],
    );
    for secret in [CLIENT_SECRET, ENTRA_TOKEN] {
        assert!(!run.stdout.contains(secret), "{}", run.stdout);
    }
    let logins = server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(logins, 1);
    let run = check_env(
        request(
            "azure.keyvault",
            &config("wrong-secret-0123456789"),
            &["api-key"],
        ),
        &env,
        &[(
            "api-key",
            Expect::Error(&format!(
                "cannot get an Azure access token from {}/{TENANT}/oauth2/v2.0/token: HTTP 401: \
                 invalid_client: AADSTS7000215: Invalid client secret provided.",
                server.url
            )),
        )],
    );
    assert!(!run.stdout.contains("wrong-secret-0123456789"));
}

#[test]
fn azure_keyvault_workload_identity() {
    let ca = TestCa::new();
    let server = azure(&ca, Arc::new(Mutex::new("azure-db-pass".to_owned())));
    let fixture = Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let token_file = fixture.write("azure-identity-token", FEDERATED);
    let closed = closed_url();
    let mut env = clean_env(&closed);
    env.extend([
        ("AZURE_AUTHORITY_HOST", server.url.as_str()),
        ("AZURE_FEDERATED_TOKEN_FILE", &token_file),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT_ID),
    ]);
    let run = check_env(
        request(
            "azure.keyvault",
            &json!({"keyvaulturl": server.url, "ca_cert": ca_cert}),
            &["db;password"],
        ),
        &env,
        &[("db;password", Expect::Value("azure-db-pass"))],
    );
    for secret in [FEDERATED, ENTRA_TOKEN] {
        assert!(!run.stdout.contains(secret), "{}", run.stdout);
    }
}

#[test]
fn azure_keyvault_managed_identity() {
    let ca = TestCa::new();
    let server = azure(&ca, Arc::new(Mutex::new("azure-db-pass".to_owned())));
    let fixture = Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let managed_token = || {
        Reply::json(
            200,
            json!({"access_token": MANAGED_TOKEN, "expires_in": "3599",
                   "resource": "https://vault.azure.net", "token_type": "Bearer"}),
        )
    };
    let imds = FakeServer::http(move |request| {
        let query = query(request);
        if request.path() == "/metadata/identity/oauth2/token"
            && request.header("metadata") == Some("true")
            && field(&query, "api-version").is_some()
            && field(&query, "resource") == Some("https://vault.azure.net")
        {
            managed_token()
        } else {
            Reply::json(
                400,
                json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            )
        }
    });
    let app_service = FakeServer::http(move |request| {
        let query = query(request);
        if request.header("x-identity-header") == Some(IDENTITY_HEADER)
            && field(&query, "api-version") == Some("2019-08-01")
            && field(&query, "resource") == Some("https://vault.azure.net")
        {
            managed_token()
        } else {
            Reply::json(400, json!({"error": "invalid_request"}))
        }
    });
    let config = json!({"keyvaulturl": server.url, "ca_cert": ca_cert});
    let identity_endpoint = format!("{}/msi/token", app_service.url);
    let mut app_env = clean_env(&imds.url);
    app_env.extend([
        ("IDENTITY_ENDPOINT", identity_endpoint.as_str()),
        ("IDENTITY_HEADER", IDENTITY_HEADER),
    ]);
    for env in [clean_env(&imds.url), app_env] {
        let run = check_env(
            request("azure.keyvault", &config, &["api-key"]),
            &env,
            &[("api-key", Expect::Value("azure-api-key-value"))],
        );
        assert!(!run.stdout.contains(MANAGED_TOKEN) && !run.stdout.contains(IDENTITY_HEADER));
    }
    assert_eq!(imds.requests().len(), 1);
    assert_eq!(app_service.requests().len(), 1);
    let closed = closed_url();
    check_env(
        request("azure.keyvault", &config, &["api-key"]),
        &clean_env(&closed),
        &[(
            "api-key",
            Expect::Error(&format!(
                "no Azure credentials: set azure_session (azure_tenant_id, azure_client_id, azure_client_secret), AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, or run with a managed identity; the instance metadata service at {closed} gave none"
            )),
        )],
    );
}
