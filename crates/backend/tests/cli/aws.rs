//! `aws.secrets` and `aws.ssm` against a moto server that checks SigV4 signatures.
//!
//! moto lets the first N requests through unsigned (N = the number of fixture requests below);
//! every later request must carry a valid signature by an IAM user's key. Each test checks
//! that an unsigned request is refused before it relies on the server.

use serde_json::{Value, json};

use crate::fake::{FakeServer, Reply};
use crate::harness::{Expect, Fixture, backend_env, check, check_env, request};
use crate::servers::{Server, moto};

/// Requests [`seed`] makes before signature checking starts.
pub(crate) const SEED_ACTIONS: usize = 4 + 2 + 3 + 13;

/// The role [`seed`] creates, which the IAM user may assume.
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/keyturn-reader";

/// URL-encoded allow-all policy and trust policy documents.
const ALLOW_ALL: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A\
                         %22Allow%22%2C%22Action%22%3A%22*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D";
const TRUST_ALL: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A\
                         %22Allow%22%2C%22Principal%22%3A%7B%22AWS%22%3A%22*%22%7D%2C%22Action%22%3A\
                         %22sts%3AAssumeRole%22%7D%5D%7D";

/// The IAM user's key, created in moto.
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) secret: String,
}

/// An unsigned call of the JSON protocol (accepted only while moto's free actions last).
pub(crate) fn json_call(
    server: &Server,
    service: &str,
    target: &str,
    body: Value,
) -> (u16, String) {
    let agent = crate::servers::insecure_agent();
    let mut response = agent
        .post(format!("{}/", server.url))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", target)
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIASEED/20240101/us-east-1/{service}/aws4_request, \
                 SignedHeaders=host, Signature=00"
            ),
        )
        .send(body.to_string())
        .expect("moto call");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// An unsigned IAM query call; returns the XML answer.
fn iam(server: &Server, form: &str) -> String {
    let agent = crate::servers::insecure_agent();
    let mut response = agent
        .post(format!("{}/", server.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIASEED/20240101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=00",
        )
        .send(format!("{form}&Version=2010-05-08"))
        .expect("moto IAM call");
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(response.status().as_u16(), 200, "{form}: {text}");
    text
}

fn xml_tag(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).expect(tag) + open.len();
    let end = xml[start..].find('<').expect(tag) + start;
    xml[start..end].to_owned()
}

/// Creates the IAM user with an allow-all policy, the secrets and the parameters; then checks
/// that signature checking is on.
pub(crate) fn seed(server: &Server) -> Key {
    iam(server, "Action=CreateUser&UserName=keyturn");
    let key_xml = iam(server, "Action=CreateAccessKey&UserName=keyturn");
    let policy_xml = iam(
        server,
        &format!("Action=CreatePolicy&PolicyName=all&PolicyDocument={ALLOW_ALL}"),
    );
    let arn = xml_tag(&policy_xml, "Arn");
    iam(
        server,
        &format!("Action=AttachUserPolicy&UserName=keyturn&PolicyArn={arn}"),
    );
    seed_role(server, &arn);
    for (name, value) in [
        (
            "app/db",
            r#"{"user":"app","password":"db-pass","port":5432,"nested":{"a":1}}"#,
        ),
        ("plain", "just-a-string"),
        ("not-json-object", "[1,2]"),
    ] {
        let (status, text) = json_call(
            server,
            "secretsmanager",
            "secretsmanager.CreateSecret",
            json!({"Name": name, "SecretString": value}),
        );
        assert_eq!(status, 200, "{text}");
    }
    let mut parameters = vec![
        ("/app/secure", "SecureString", "secure-value".to_owned()),
        ("/app/plain", "String", "plain-value".to_owned()),
    ];
    let batch: Vec<String> = (0..11).map(|index| format!("/batch/p{index}")).collect();
    for (index, name) in batch.iter().enumerate() {
        parameters.push((name.as_str(), "String", format!("value-{index}")));
    }
    for (name, kind, value) in &parameters {
        let (status, text) = json_call(
            server,
            "ssm",
            "AmazonSSM.PutParameter",
            json!({"Name": name, "Type": kind, "Value": value}),
        );
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = json_call(
        server,
        "secretsmanager",
        "secretsmanager.GetSecretValue",
        json!({"SecretId": "plain"}),
    );
    assert_eq!(status, 403, "moto must check signatures now: {text}");
    Key {
        id: xml_tag(&key_xml, "AccessKeyId"),
        secret: xml_tag(&key_xml, "SecretAccessKey"),
    }
}

/// The role of [`ROLE_ARN`] with the policy `policy_arn` (two requests).
fn seed_role(server: &Server, policy_arn: &str) {
    iam(
        server,
        &format!("Action=CreateRole&RoleName=keyturn-reader&AssumeRolePolicyDocument={TRUST_ALL}"),
    );
    iam(
        server,
        &format!("Action=AttachRolePolicy&RoleName=keyturn-reader&PolicyArn={policy_arn}"),
    );
}

pub(crate) fn aws_config(server: &Server, key: &Key, extra: Value) -> Value {
    let mut config = json!({
        "endpoint_url": server.url,
        "aws_session": {
            "aws_region": "us-east-1",
            "aws_access_key_id": key.id,
            "aws_secret_access_key": key.secret,
        },
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

#[test]
fn aws_secrets_manager() {
    let server = moto(Some(SEED_ACTIONS));
    let key = seed(&server);
    check(
        request(
            "aws.secrets",
            &aws_config(&server, &key, json!({})),
            &[
                "app/db;user",
                "app/db;password",
                "app/db;port",
                "app/db;nested",
                "app/db;absent",
                "app/db",
                "plain",
                "plain;key",
                "not-json-object;0",
                "missing;key",
                ";key",
            ],
        ),
        &[
            ("app/db;user", Expect::Value("app")),
            ("app/db;password", Expect::Value("db-pass")),
            ("app/db;port", Expect::Value("5432")),
            ("app/db;nested", Expect::Value(r#"{"a":1}"#)),
            (
                "app/db;absent",
                Expect::Error("key \"absent\" not found in secret \"app/db\""),
            ),
            (
                "app/db",
                Expect::Value(
                    r#"{"user":"app","password":"db-pass","port":5432,"nested":{"a":1}}"#,
                ),
            ),
            ("plain", Expect::Value("just-a-string")),
            ("plain;key", Expect::Error("is not a JSON object")),
            ("not-json-object;0", Expect::Error("is not a JSON object")),
            ("missing;key", Expect::Error("secret \"missing\" not found")),
            (";key", Expect::Error("empty secret id")),
        ],
    );
    check(
        request(
            "aws.secrets",
            &aws_config(&server, &key, json!({"force_string": true})),
            &["plain;anything"],
        ),
        &[("plain;anything", Expect::Value("just-a-string"))],
    );
    check(
        request(
            "aws.secrets",
            &aws_config(&server, &key, json!({"key_separator": "."})),
            &["app/db.password", "plain"],
        ),
        &[
            ("app/db.password", Expect::Value("db-pass")),
            ("plain", Expect::Value("just-a-string")),
        ],
    );
}

#[test]
fn aws_parameter_store() {
    let server = moto(Some(SEED_ACTIONS));
    let key = seed(&server);
    let mut handles = vec!["/app/secure", "/app/plain", "/app/missing"];
    let batch: Vec<String> = (0..11).map(|index| format!("/batch/p{index}")).collect();
    handles.extend(batch.iter().map(String::as_str));
    let values: Vec<String> = (0..11).map(|index| format!("value-{index}")).collect();
    let mut expected = vec![
        ("/app/secure", Expect::Value("secure-value")),
        ("/app/plain", Expect::Value("plain-value")),
        (
            "/app/missing",
            Expect::Error("parameter \"/app/missing\" not found"),
        ),
    ];
    for (name, value) in batch.iter().zip(&values) {
        expected.push((name.as_str(), Expect::Value(value.as_str())));
    }
    check(
        request("aws.ssm", &aws_config(&server, &key, json!({})), &handles),
        &expected,
    );
}

#[test]
fn aws_credentials_sources_and_wrong_credentials() {
    let server = moto(Some(SEED_ACTIONS));
    let key = seed(&server);
    let handles = ["plain"];
    let ok = [("plain", Expect::Value("just-a-string"))];
    let no_session = json!({"endpoint_url": server.url});
    // Environment variables.
    check_env(
        request("aws.secrets", &no_session, &handles),
        &[
            ("AWS_ACCESS_KEY_ID", &key.id),
            ("AWS_SECRET_ACCESS_KEY", &key.secret),
            ("AWS_REGION", "us-east-1"),
        ],
        &ok,
    );
    // A named profile of the shared files.
    let fixture = Fixture::new();
    let credentials = fixture.write(
        "credentials",
        &format!(
            "[other]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.id, key.secret
        ),
    );
    let profile_config = fixture.write("config", "[profile other]\nregion = us-east-1\n");
    check_env(
        request(
            "aws.secrets",
            &json!({"endpoint_url": server.url, "aws_session": {"aws_profile": "other"}}),
            &handles,
        ),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &credentials),
            ("AWS_CONFIG_FILE", &profile_config),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", ""),
        ],
        &ok,
    );
    // No credentials anywhere.
    check_env(
        request("aws.secrets", &no_session, &handles),
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        &[("plain", Expect::Error("no AWS credentials"))],
    );
    // A wrong secret key is refused by the signature check, and never echoed.
    let wrong = Key {
        id: key.id.clone(),
        secret: "wrongSecretKey/abcdefghijklmnopqrstuvwx".to_owned(),
    };
    for backend_type in ["aws.secrets", "aws.ssm"] {
        let run = check(
            request(
                backend_type,
                &aws_config(&server, &wrong, json!({})),
                &["plain", "/app/plain"],
            ),
            &[
                ("plain", Expect::Error("check the AWS credentials")),
                ("/app/plain", Expect::Error("HTTP 403")),
            ],
        );
        assert!(!run.stdout.contains(&wrong.secret) && !run.stderr.contains(&wrong.secret));
        assert!(!run.stdout.contains(&key.secret));
    }
    // An unknown access key id.
    let unknown = Key {
        id: "AKIAUNKNOWN000000000".to_owned(),
        secret: key.secret.clone(),
    };
    let run = check(
        request(
            "aws.secrets",
            &aws_config(&server, &unknown, json!({})),
            &["plain"],
        ),
        &[("plain", Expect::Error("HTTP 403"))],
    );
    assert!(!run.stdout.contains(&key.secret));
}

#[test]
fn aws_assume_role() {
    let server = moto(Some(SEED_ACTIONS));
    let key = seed(&server);
    let mut config = aws_config(&server, &key, json!({"sts_endpoint_url": server.url}));
    config["aws_session"]["aws_role_arn"] = json!(ROLE_ARN);
    config["aws_session"]["aws_external_id"] = json!("ext-1");
    // Signature checking is on: the assumed role's key and session token must sign correctly.
    let run = check(
        request("aws.secrets", &config, &["plain", "app/db;user"]),
        &[
            ("plain", Expect::Value("just-a-string")),
            ("app/db;user", Expect::Value("app")),
        ],
    );
    assert!(!run.stdout.contains(&key.secret));
}

#[test]
fn aws_web_identity() {
    // moto cannot serve AssumeRoleWithWebIdentity while it checks signatures, so this server
    // checks none: the test shows the exchange is made and its credentials used.
    let server = moto(None);
    iam(&server, "Action=CreateUser&UserName=keyturn");
    let policy_xml = iam(
        &server,
        &format!("Action=CreatePolicy&PolicyName=all&PolicyDocument={ALLOW_ALL}"),
    );
    seed_role(&server, &xml_tag(&policy_xml, "Arn"));
    create_plain_secret(&server);
    let fixture = Fixture::new();
    let token = fixture.write("token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2ln\n");
    let config = json!({"endpoint_url": server.url, "aws_session": {"aws_region": "us-east-1"}});
    for (token_file, expected) in [
        (token.as_str(), Expect::Value("just-a-string")),
        (
            "/nonexistent/token",
            Expect::Error(
                "cannot assume the role arn:aws:iam::123456789012:role/keyturn-reader with the \
                 web identity token: AWS_WEB_IDENTITY_TOKEN_FILE: /nonexistent/token: no such file",
            ),
        ),
    ] {
        check_env(
            request("aws.secrets", &config, &["plain"]),
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file),
                ("AWS_ROLE_ARN", ROLE_ARN),
                ("AWS_ENDPOINT_URL_STS", &server.url),
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
                ("AWS_CONFIG_FILE", "/nonexistent"),
            ],
            &[("plain", expected)],
        );
    }
}

/// Environment that turns off every credential source a developer's machine may have, so a
/// test selects exactly one.
const NO_AMBIENT_CREDENTIALS: [(&str, &str); 9] = [
    ("AWS_ACCESS_KEY_ID", ""),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ("AWS_CONFIG_FILE", "/nonexistent"),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", ""),
    ("AWS_EC2_METADATA_DISABLED", ""),
    ("AWS_REGION", "us-east-1"),
];

fn env_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> = NO_AMBIENT_CREDENTIALS.to_vec();
    env.extend_from_slice(extra);
    env
}

/// The secret `plain` on a server that checks no signatures.
fn create_plain_secret(server: &Server) {
    let (status, text) = json_call(
        server,
        "secretsmanager",
        "secretsmanager.CreateSecret",
        json!({"Name": "plain", "SecretString": "just-a-string"}),
    );
    assert_eq!(status, 200, "{text}");
}

/// RFC 3339 time `seconds` from now, as the credential endpoints write `Expiration`.
fn expiration_in(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format time")
}

fn credentials_document(key: &Key, token: Option<&str>, expires_in: i64) -> Value {
    let mut document = json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": key.id,
        "SecretAccessKey": key.secret,
        "Expiration": expiration_in(expires_in),
    });
    if let Some(token) = token {
        document["Token"] = json!(token);
    }
    document
}

#[test]
fn aws_instance_metadata_from_moto() {
    // moto's server mode serves the instance metadata endpoints; its IMDS credentials are not
    // IAM keys it knows, so this server checks no signatures.
    let server = moto(None);
    create_plain_secret(&server);
    let served = crate::servers::insecure_agent()
        .get(format!(
            "{}/latest/meta-data/iam/security-credentials/default-role",
            server.url
        ))
        .call()
        .expect("moto IMDS")
        .body_mut()
        .read_to_string()
        .expect("IMDS body");
    let served: Value = serde_json::from_str(&served).expect("IMDS JSON");
    let config = json!({"endpoint_url": server.url});
    let run = check_env(
        request("aws.secrets", &config, &["plain"]),
        &env_with(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url)]),
        &[("plain", Expect::Value("just-a-string"))],
    );
    for secret in ["SecretAccessKey", "Token"] {
        let secret = served[secret].as_str().expect(secret);
        assert!(!run.stdout.contains(secret));
    }
    // Nothing listening: the chain ends with a "no credentials" error naming the endpoint.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    check_env(
        request("aws.secrets", &config, &["plain"]),
        &env_with(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed)]),
        &[(
            "plain",
            Expect::Error(&format!(
                "or an instance role; the EC2 instance metadata service at {closed} gave none: \
                 request to {closed} failed"
            )),
        )],
    );
    check_env(
        request("aws.secrets", &config, &["plain"]),
        &env_with(&[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]),
        &[("plain", Expect::Error("AWS_EC2_METADATA_DISABLED is set"))],
    );
}

#[test]
fn aws_instance_metadata_v2_session_token() {
    let server = moto(Some(SEED_ACTIONS));
    let key = seed(&server);
    let document = credentials_document(&key, None, 3600);
    // IMDSv2 as EC2 serves it: a PUT with a TTL header gives a session token; the credential
    // paths answer 401 without that token (an instance with IMDSv1 disabled).
    let imds = FakeServer::http(move |request| {
        const SESSION: &str = "imds-session-token-0123456789";
        match (request.method.as_str(), request.path()) {
            ("PUT", "/latest/api/token") if request.body.is_empty() => {
                match request.header("x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(_) => Reply::text(200, SESSION),
                    None => Reply::text(400, ""),
                }
            }
            (_, _) if request.header("x-aws-ec2-metadata-token") != Some(SESSION) => {
                Reply::text(401, "")
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                Reply::text(200, "keyturn-instance-role\n")
            }
            ("GET", "/latest/meta-data/iam/security-credentials/keyturn-instance-role") => {
                Reply::json(200, document.clone())
            }
            ("GET", "/latest/meta-data/placement/region") => Reply::text(200, "us-east-1"),
            _ => Reply::text(404, ""),
        }
    });
    let config = json!({"endpoint_url": server.url});
    // No region configured either: the instance's own is used, as the SDKs do.
    let run = check_env(
        request("aws.secrets", &config, &["plain", "app/db;user"]),
        &env_with(&[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", ""),
        ]),
        &[
            ("plain", Expect::Value("just-a-string")),
            ("app/db;user", Expect::Value("app")),
        ],
    );
    assert!(!run.stdout.contains(&key.secret));
    let paths: Vec<String> = imds
        .requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.path()))
        .collect();
    assert_eq!(
        paths,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/placement/region",
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/keyturn-instance-role",
        ]
    );
}

#[test]
fn aws_container_credentials_token_file_and_refresh_before_expiry() {
    let server = moto(Some(SEED_ACTIONS));
    let key = seed(&server);
    let fixture = Fixture::new();
    let token = "pod-identity-token-0123456789";
    let token_file = fixture.write("token", &format!("{token}\n"));
    // The first answer expires within the refresh margin and holds a key moto refuses: the
    // values below resolve only if the backend fetches again before signing with it.
    let expiring = credentials_document(
        &Key {
            id: key.id.clone(),
            secret: "expiringSecretKey/abcdefghijklmnopqrstu".to_owned(),
        },
        None,
        30,
    );
    let fresh = credentials_document(&key, None, 3600);
    let served = std::sync::atomic::AtomicUsize::new(0);
    // The ECS agent / EKS pod identity agent: the token, as it is, in `Authorization`.
    let agent = FakeServer::http(move |request| {
        if request.header("authorization") != Some(token) {
            return Reply::json(401, json!({"code": "AccessDenied", "message": "bad token"}));
        }
        match served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Reply::json(200, expiring.clone()),
            _ => Reply::json(200, fresh.clone()),
        }
    });
    let full_uri = format!("{}/v1/credentials", agent.url);
    let config = json!({"endpoint_url": server.url});
    let run = check_env(
        request("aws.secrets", &config, &["plain", "app/db;user"]),
        &env_with(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file),
        ]),
        &[
            ("plain", Expect::Value("just-a-string")),
            ("app/db;user", Expect::Value("app")),
        ],
    );
    assert!(!run.stdout.contains(&key.secret));
    assert_eq!(agent.requests().len(), 2, "one fetch, one refresh");
    // A wrong token: the error names the source, never the token or a key.
    let wrong = fixture.write("wrong", "wrong-token-abcdefghij");
    let run = check_env(
        request("aws.secrets", &config, &["plain"]),
        &env_with(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &wrong),
        ]),
        &[(
            "plain",
            Expect::Error(&format!(
                "cannot get AWS credentials from the container credentials endpoint \
                 {full_uri}: HTTP 401"
            )),
        )],
    );
    assert!(!run.stdout.contains("wrong-token-abcdefghij"));
    // Plain HTTP to another host would carry the token in clear: refused before any request.
    let run = backend_env(
        &[],
        &request("aws.secrets", &config, &["plain"]),
        &env_with(&[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://credentials.example/v1",
        )]),
    );
    assert!(
        run.error("plain")
            .contains("plain http is allowed only to a loopback address"),
        "{}",
        run.stdout
    );
}

#[test]
fn aws_profile_role_chain_over_credential_process() {
    let server = moto(Some(SEED_ACTIONS));
    let key = seed(&server);
    let fixture = Fixture::new();
    let document = fixture.write(
        "process-output.json",
        &json!({"Version": 1, "AccessKeyId": key.id, "SecretAccessKey": key.secret,
                "Expiration": expiration_in(3600)})
        .to_string(),
    );
    // `chained` assumes the role with the credentials of `base`, which runs a helper; the
    // assumed role's credentials then sign the Secrets Manager calls (moto checks them).
    let profiles = fixture.write(
        "config",
        &format!(
            "[profile base]\ncredential_process = cat '{document}'\n\n\
             [profile chained]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n\
             role_session_name = chained\nregion = us-east-1\n"
        ),
    );
    let config = json!({"endpoint_url": server.url, "sts_endpoint_url": server.url,
                        "aws_session": {"aws_profile": "chained"}});
    let run = check_env(
        request("aws.secrets", &config, &["plain"]),
        &env_with(&[("AWS_CONFIG_FILE", &profiles), ("AWS_REGION", "")]),
        &[("plain", Expect::Value("just-a-string"))],
    );
    assert!(!run.stdout.contains(&key.secret));
    // A failing helper is named by its profile; its output is never quoted.
    let failing = fixture.write(
        "failing",
        "[profile base]\ncredential_process = sh -c 'echo hunter2-output; exit 4'\n\
         [profile chained]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = base\n",
    );
    let run = check_env(
        request("aws.secrets", &config, &["plain"]),
        &env_with(&[("AWS_CONFIG_FILE", &failing)]),
        &[(
            "plain",
            Expect::Error(
                "cannot get AWS credentials from the credential_process of profile \"base\": \
                 it exited with exit status: 4",
            ),
        )],
    );
    assert!(!run.stdout.contains("hunter2"));
}

/// Vault's `aws` auth method, IAM type, in front of a real OpenBao: OpenBao 2.x ships no
/// `aws` auth plugin and none installs from the registries reachable here, so this loopback
/// server does what Vault's `pathLoginUpdate` does with an IAM login, written from Vault's
/// documentation and source: decode `iam_request_url` / `_body` / `_headers`, check the request
/// is `sts:GetCallerIdentity`, submit it to its configured STS endpoint (moto, which checks the
/// signature as STS does), and bind the returned ARN to the role. A bound login gets a real
/// OpenBao token (created with the root token for the role's policy); every other request is
/// passed to OpenBao as it is.
fn vault_with_aws_auth(bao: &Server, sts: &Server, bound_arn: &'static str) -> FakeServer {
    use base64::Engine as _;
    let (bao_url, sts_url) = (bao.url.clone(), sts.url.clone());
    FakeServer::http(move |request| {
        let agent = crate::servers::insecure_agent();
        if request.method == "POST" && request.path() == "/v1/auth/aws/login" {
            let refuse = |why: &str| Reply::json(400, json!({"errors": [why]}));
            let login: Value = serde_json::from_str(&request.body).unwrap_or_default();
            let decode = |field: &str| {
                login[field]
                    .as_str()
                    .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .unwrap_or_default()
            };
            let (url, body, headers) = (
                decode("iam_request_url"),
                decode("iam_request_body"),
                decode("iam_request_headers"),
            );
            if login["role"] != "keyturn"
                || login["iam_http_request_method"] != "POST"
                || body != "Action=GetCallerIdentity&Version=2011-06-15"
                || !url.starts_with(&sts_url)
            {
                return refuse("invalid login request");
            }
            let headers: serde_json::Map<String, Value> =
                serde_json::from_str(&headers).unwrap_or_default();
            let mut forwarded = agent.post(&url);
            for (name, values) in &headers {
                if let Some(value) = values[0].as_str() {
                    forwarded = forwarded.header(name.as_str(), value);
                }
            }
            let mut answer = match forwarded.send(body) {
                Ok(answer) => answer,
                Err(error) => return refuse(&format!("error making upstream request: {error}")),
            };
            let status = answer.status().as_u16();
            let xml = answer.body_mut().read_to_string().unwrap_or_default();
            if status != 200 {
                return refuse(&format!(
                    "error making upstream request: received error code {status} from STS"
                ));
            }
            if xml_tag(&xml, "Arn") != bound_arn {
                return Reply::json(403, json!({"errors": ["permission denied"]}));
            }
            let created = crate::servers::vault_at(
                &bao_url,
                "POST",
                "auth/token/create",
                Some(json!({"policies": ["reader"]})),
            );
            return Reply::json(
                200,
                json!({"auth": {"client_token": created["auth"]["client_token"]}}),
            );
        }
        let mut forwarded = agent.get(format!("{bao_url}{}", request.target));
        if let Some(token) = request.header("x-vault-token") {
            forwarded = forwarded.header("X-Vault-Token", token);
        }
        match forwarded.call() {
            Ok(mut answer) => Reply {
                status: answer.status().as_u16(),
                body: answer.body_mut().read_to_string().unwrap_or_default(),
            },
            Err(error) => Reply::json(502, json!({"errors": [error.to_string()]})),
        }
    })
}

#[test]
fn vault_aws_iam_login_verified_against_moto_sts() {
    let sts = moto(Some(SEED_ACTIONS));
    let key = seed(&sts);
    let bao = crate::servers::openbao(false);
    crate::servers::vault(
        &bao,
        "POST",
        "sys/policies/acl/reader",
        Some(json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"})),
    );
    crate::servers::vault(
        &bao,
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "bao-aws-pass"}})),
    );
    let vault = vault_with_aws_auth(&bao, &sts, "arn:aws:iam::123456789012:user/keyturn");
    let config = |secret: &str| {
        json!({"vault_address": vault.url,
               "vault_session": {"vault_auth_type": "aws", "vault_aws_role": "keyturn",
                                 "aws_region": "us-east-1", "aws_access_key_id": key.id,
                                 "aws_secret_access_key": secret,
                                 "aws_sts_endpoint_url": sts.url}})
    };
    let run = check_env(
        request(
            "hashicorp.vault",
            &config(&key.secret),
            &["secret/app/db;password"],
        ),
        &env_with(&[]),
        &[("secret/app/db;password", Expect::Value("bao-aws-pass"))],
    );
    assert!(!run.stdout.contains(&key.secret));
    // A wrong key: STS refuses the signature, so Vault refuses the login.
    let wrong = "wrongSecretKey/abcdefghijklmnopqrstuvwx";
    let run = check_env(
        request(
            "hashicorp.vault",
            &config(wrong),
            &["secret/app/db;password"],
        ),
        &env_with(&[]),
        &[(
            "secret/app/db;password",
            Expect::Error(
                "Vault login (aws at auth/aws) failed: HTTP 400: error making upstream request: \
                 received error code 403 from STS",
            ),
        )],
    );
    assert!(!run.stdout.contains(wrong) && !run.stdout.contains(&key.secret));
}
