//! `aws.secrets` and `aws.ssm` against a moto server that checks SigV4 signatures.
//!
//! moto lets the first N requests through unsigned (N = the number of fixture requests below);
//! every later request must carry a valid signature by an IAM user's key. Each test checks
//! that an unsigned request is refused before it relies on the server.

use serde_json::{Value, json};

use crate::harness::{Expect, Fixture, check, check_env, request};
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
    let (status, text) = json_call(
        &server,
        "secretsmanager",
        "secretsmanager.CreateSecret",
        json!({"Name": "plain", "SecretString": "just-a-string"}),
    );
    assert_eq!(status, 200, "{text}");
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
