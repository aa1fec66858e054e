//! What an embedder writes: only `keyturn::` root items, no daemon.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use keyturn::{Document, Format, Resolver, Settings};

/// A backend that answers every request with the same two values.
const BACKEND: &str = r#"#!/bin/sh
cat >/dev/null
printf '{"db_password":{"value":"s3cr3t","error":null},"api_key":{"value":"k-1","error":null}}'
"#;

#[tokio::test]
async fn resolves_a_document_through_the_root_api() {
    let dir = tempfile::tempdir().unwrap();
    let backend = dir.path().join("backend");
    fs::write(&backend, BACKEND).unwrap();
    fs::set_permissions(&backend, fs::Permissions::from_mode(0o700)).unwrap();
    let settings =
        Settings::from_yaml_str(&format!("secret_backend_command: {}\n", backend.display()))
            .unwrap();
    let resolver = Resolver::new(settings);

    let text = "db:\n  password: ENC[db_password]\napi_key: ENC[api_key]\nport: 5432\n";
    let document = Document::parse(text.to_owned(), Format::Yaml).unwrap();
    let resolution = resolver.resolve(&document, "app.yaml", false).await;

    assert!(resolution.is_complete(), "{:?}", resolution.failures);
    assert_eq!(
        resolution.output.as_str(),
        "db:\n  password: \"s3cr3t\"\napi_key: \"k-1\"\nport: 5432\n"
    );
    assert_eq!(
        resolver
            .cached("db_password")
            .map(|secret| secret.expose().to_owned()),
        Some("s3cr3t".to_owned())
    );
}
