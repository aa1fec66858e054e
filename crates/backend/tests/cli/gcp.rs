//! `gcp.secretmanager` against loopback servers written from Google's published references: no
//! Secret Manager, OAuth or metadata server emulator installs from the package registries
//! reachable here. Each check stands for one the real service makes:
//! - the OAuth token endpoint verifies the service account's RS256 JWT against the account's
//!   public key, and its `iss`, `aud`, `scope` and `exp` claims ("Using OAuth 2.0 for Server to
//!   Server Applications");
//! - Google's STS checks the subject token and audience of a token exchange (workload identity
//!   federation), and IAM Credentials' `generateAccessToken` the federated token;
//! - Secret Manager's `versions/V:access` accepts only tokens from those exchanges and answers
//!   403 `PERMISSION_DENIED` / 404 `NOT_FOUND` with Google's error body;
//! - the metadata server answers only requests with `Metadata-Flavor: Google`.
//!
//! The service account key is a test-only RSA key in `fixtures/`.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ring::signature::{self, KeyPair as _};
use serde_json::{Value, json};

use crate::fake::{FakeServer, Reply, Request, TestCa};
use crate::harness::{Expect, Fixture, check_env, request};

pub(crate) const KEY_PEM: &str = include_str!("fixtures/gcp-service-account-key.pem");
const OTHER_KEY_PEM: &str = include_str!("fixtures/gcp-other-key.pem");
pub(crate) const EMAIL: &str = "keyturn@test-project.iam.gserviceaccount.com";
const SA_TOKEN: &str = "ya29.service-account-access-token";
const FEDERATED_TOKEN: &str = "ya29.federated-access-token";
const IMPERSONATED_TOKEN: &str = "ya29.impersonated-access-token";
const METADATA_TOKEN: &str = "ya29.metadata-access-token";
const SUBJECT_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.oidc-subject-token.sig";
const AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k";

/// Form fields of a request body, percent-decoded.
fn form(request: &Request) -> Vec<(String, String)> {
    form_fields(&request.body)
}

/// Fields of an `application/x-www-form-urlencoded` text (a body or a query), percent-decoded.
pub(crate) fn form_fields(text: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'%' if index + 2 < bytes.len() + 1 => {
                    let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    index += 3;
                }
                b'+' => {
                    out.push(b' ');
                    index += 1;
                }
                byte => {
                    out.push(byte);
                    index += 1;
                }
            }
        }
        String::from_utf8(out).expect("utf-8")
    };
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (decode(name), decode(value)))
        .collect()
}

pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Whether `jwt` is an RS256 JWT signed by the fixture key with the claims Google checks.
fn valid_assertion(jwt: &str, audience: &str) -> bool {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature_part] = parts[..] else {
        return false;
    };
    let decode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part);
    let (Ok(header_bytes), Ok(claims_bytes), Ok(signature_bytes)) =
        (decode(header), decode(claims), decode(signature_part))
    else {
        return false;
    };
    let der = ureq::tls::PrivateKey::from_pem(KEY_PEM.as_bytes()).expect("fixture key");
    let pair = signature::RsaKeyPair::from_pkcs8(der.der()).expect("fixture RSA key");
    let public = signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref(),
    );
    if public
        .verify(format!("{header}.{claims}").as_bytes(), &signature_bytes)
        .is_err()
    {
        return false;
    }
    let header: Value = serde_json::from_slice(&header_bytes).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&claims_bytes).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    header["alg"] == "RS256"
        && claims["iss"] == EMAIL
        && claims["aud"] == audience
        && claims["scope"]
            .as_str()
            .is_some_and(|scope| scope.contains("https://www.googleapis.com/auth/cloud-platform"))
        && claims["exp"].as_i64().is_some_and(|exp| exp > now)
}

fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// OAuth, STS, IAM Credentials and Secret Manager on one HTTPS server; `db` holds `password`.
pub(crate) fn google(ca: &TestCa, password: Arc<Mutex<String>>) -> FakeServer {
    let url = Arc::new(Mutex::new(String::new()));
    let own_url = Arc::clone(&url);
    let server = FakeServer::https(ca, move |request| {
        let base = own_url.lock().expect("url").clone();
        let bearer = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        match (request.method.as_str(), request.path()) {
            ("POST", "/token") => {
                let fields = form(request);
                match field(&fields, "grant_type") {
                    Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                        if field(&fields, "assertion")
                            .is_some_and(|jwt| valid_assertion(jwt, &format!("{base}/token"))) =>
                    {
                        Reply::json(
                            200,
                            json!({"access_token": SA_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
                        )
                    }
                    Some("urn:ietf:params:oauth:grant-type:token-exchange")
                        if field(&fields, "subject_token") == Some(SUBJECT_TOKEN)
                            && field(&fields, "audience") == Some(AUDIENCE) =>
                    {
                        Reply::json(
                            200,
                            json!({"access_token": FEDERATED_TOKEN, "expires_in": 3600,
                                   "token_type": "Bearer",
                                   "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
                        )
                    }
                    _ => Reply::json(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                    ),
                }
            }
            ("POST", path) if path.ends_with(":generateAccessToken") => {
                if bearer == FEDERATED_TOKEN {
                    Reply::json(
                        200,
                        json!({"accessToken": IMPERSONATED_TOKEN, "expireTime": "2099-01-01T00:00:00Z"}),
                    )
                } else {
                    google_error(
                        401,
                        "UNAUTHENTICATED",
                        "Request had invalid authentication credentials.",
                    )
                }
            }
            ("GET", path) => {
                if ![
                    SA_TOKEN,
                    FEDERATED_TOKEN,
                    IMPERSONATED_TOKEN,
                    METADATA_TOKEN,
                ]
                .contains(&bearer)
                {
                    return google_error(
                        401,
                        "UNAUTHENTICATED",
                        "Request had invalid authentication credentials.",
                    );
                }
                let data = |text: &str| {
                    Reply::json(
                        200,
                        json!({"name": path, "payload": {
                            "data": base64::engine::general_purpose::STANDARD.encode(text)}}),
                    )
                };
                let prefix = "/v1/projects/test-project/secrets/";
                match path.strip_prefix(prefix) {
                    Some("api-key/versions/latest:access") => data("gcp-api-key-value"),
                    Some("db/versions/latest:access") => data(
                        &json!({"user": "app", "password": *password.lock().expect("password")})
                            .to_string(),
                    ),
                    Some("db/versions/1:access") => data(r#"{"password":"old-pass"}"#),
                    Some("forbidden/versions/latest:access") => google_error(
                        403,
                        "PERMISSION_DENIED",
                        "Permission 'secretmanager.versions.access' denied for resource \
                         'projects/test-project/secrets/forbidden/versions/latest'",
                    ),
                    _ => google_error(404, "NOT_FOUND", "Secret [x] not found or has no versions."),
                }
            }
            _ => google_error(405, "METHOD_NOT_ALLOWED", "method not allowed"),
        }
    });
    *url.lock().expect("url") = server.url.clone();
    server
}

/// A service account key file as the IAM console issues it, pointing at the test server.
pub(crate) fn service_account_file(
    fixture: &Fixture,
    name: &str,
    server: &FakeServer,
    key: &str,
) -> String {
    fixture.write(
        name,
        &json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "0123456789abcdef",
            "private_key": key,
            "client_email": EMAIL,
            "client_id": "1234567890",
            "token_uri": format!("{}/token", server.url),
        })
        .to_string(),
    )
}

/// Environment with no ambient Google credentials.
fn clean_env(home: &str) -> Vec<(&str, &str)> {
    vec![("GOOGLE_APPLICATION_CREDENTIALS", ""), ("HOME", home)]
}

#[test]
fn gcp_service_account_key() {
    let ca = TestCa::new();
    let server = google(&ca, Arc::new(Mutex::new("gcp-db-pass".to_owned())));
    let fixture = Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let key_file = service_account_file(&fixture, "sa.json", &server, KEY_PEM);
    let home = fixture.dir("home");
    let config = json!({"endpoint_url": server.url, "ca_cert": ca_cert,
                        "gcp_session": {"project_id": "test-project", "credentials_file": key_file}});
    let run = check_env(
        request(
            "gcp.secretmanager",
            &config,
            &[
                "api-key",
                "db;password",
                "db;user",
                "db;password;1",
                "db@1;password",
                "api-key@latest",
                "db;missing",
                "forbidden",
                "absent",
                "projects/test-project/secrets/api-key;;latest",
                "bad/id",
            ],
        ),
        &clean_env(&home),
        &[
            ("api-key", Expect::Value("gcp-api-key-value")),
            ("db;password", Expect::Value("gcp-db-pass")),
            ("db;user", Expect::Value("app")),
            ("db;password;1", Expect::Value("old-pass")),
            ("db@1;password", Expect::Value("old-pass")),
            ("api-key@latest", Expect::Value("gcp-api-key-value")),
            (
                "db;missing",
                Expect::Error("key \"missing\" not found in secret \"db\""),
            ),
            (
                "forbidden",
                Expect::Error(
                    "secret projects/test-project/secrets/forbidden/versions/latest: permission \
                     denied (HTTP 403: PERMISSION_DENIED: Permission",
                ),
            ),
            (
                "absent",
                Expect::Error(
                    "secret projects/test-project/secrets/absent/versions/latest not found",
                ),
            ),
            (
                "projects/test-project/secrets/api-key;;latest",
                Expect::Value("gcp-api-key-value"),
            ),
            ("bad/id", Expect::Error("invalid handle \"bad/id\"")),
        ],
    );
    for secret in [SA_TOKEN, "PRIVATE KEY"] {
        assert!(!run.stdout.contains(secret), "{}", run.stdout);
    }
    let token_requests = server
        .requests()
        .iter()
        .filter(|request| request.path() == "/token")
        .count();
    assert_eq!(token_requests, 1);
    // The same account with another key: the JWT signature is refused, and said so.
    let wrong = service_account_file(&fixture, "wrong.json", &server, OTHER_KEY_PEM);
    let mut config = config;
    config["gcp_session"]["credentials_file"] = json!(wrong);
    check_env(
        request("gcp.secretmanager", &config, &["api-key"]),
        &clean_env(&home),
        &[(
            "api-key",
            Expect::Error(&format!(
                "cannot get a GCP access token from {}/token: HTTP 400: invalid_grant: Invalid JWT \
                 Signature.",
                server.url
            )),
        )],
    );
}

#[test]
fn gcp_metadata_server() {
    let ca = TestCa::new();
    let server = google(&ca, Arc::new(Mutex::new("gcp-db-pass".to_owned())));
    let metadata = FakeServer::http(|request| {
        if request.header("metadata-flavor") != Some("Google") {
            return Reply::text(403, "Missing Metadata-Flavor:Google header.");
        }
        match request.path() {
            "/computeMetadata/v1/instance/service-accounts/default/token" => Reply::json(
                200,
                json!({"access_token": METADATA_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
            ),
            "/computeMetadata/v1/project/project-id" => Reply::text(200, "test-project"),
            _ => Reply::text(404, ""),
        }
    });
    let fixture = Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let home = fixture.dir("home");
    // No project configured: the metadata server's is used.
    let config = json!({"endpoint_url": server.url, "ca_cert": ca_cert});
    let mut env = clean_env(&home);
    env.push(("GCE_METADATA_HOST", &metadata.address));
    let run = check_env(
        request("gcp.secretmanager", &config, &["db;password"]),
        &env,
        &[("db;password", Expect::Value("gcp-db-pass"))],
    );
    assert!(!run.stdout.contains(METADATA_TOKEN));
    // Off GCP: nothing answers at the metadata address.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let mut env = clean_env(&home);
    env.push(("GCE_METADATA_HOST", &closed));
    check_env(
        request("gcp.secretmanager", &config, &["db;password"]),
        &env,
        &[(
            "db;password",
            Expect::Error(&format!(
                "no GCP credentials: set gcp_session.credentials_file or GOOGLE_APPLICATION_CREDENTIALS, or run on GCP; the metadata server at {closed} gave none"
            )),
        )],
    );
}

#[test]
fn gcp_workload_identity_federation() {
    let ca = TestCa::new();
    let server = google(&ca, Arc::new(Mutex::new("gcp-db-pass".to_owned())));
    let fixture = Fixture::new();
    let ca_cert = fixture.write("ca.pem", &ca.ca_pem);
    let home = fixture.dir("home");
    let subject = fixture.write("oidc-token", &format!("{SUBJECT_TOKEN}\n"));
    let federation = |impersonate: bool| {
        let mut file = json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/token", server.url),
            "credential_source": {"file": subject, "format": {"type": "text"}},
        });
        if impersonate {
            file["service_account_impersonation_url"] = json!(format!(
                "{}/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken",
                server.url
            ));
        }
        file.to_string()
    };
    for (name, impersonate) in [("direct.json", false), ("impersonate.json", true)] {
        let file = fixture.write(name, &federation(impersonate));
        let config = json!({"endpoint_url": server.url, "ca_cert": ca_cert,
                            "gcp_session": {"project_id": "test-project"}});
        let mut env = clean_env(&home);
        env[0] = ("GOOGLE_APPLICATION_CREDENTIALS", &file);
        let run = check_env(
            request("gcp.secretmanager", &config, &["api-key"]),
            &env,
            &[("api-key", Expect::Value("gcp-api-key-value"))],
        );
        let impersonated = server
            .requests()
            .iter()
            .filter(|request| request.path().ends_with(":generateAccessToken"))
            .count();
        assert_eq!(impersonated, usize::from(impersonate));
        for secret in [SUBJECT_TOKEN, FEDERATED_TOKEN, IMPERSONATED_TOKEN] {
            assert!(!run.stdout.contains(secret), "{}", run.stdout);
        }
    }
}
