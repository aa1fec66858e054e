//! Issue 9, item 2: memory is bounded by the input. `keyturn resolve` runs under an address-space
//! limit (`prlimit --as`) of [`BASE`] + [`PER_INPUT_BYTE`] × the size of its input, on documents
//! that used to multiply their size: aliases of a big anchor read as settings, a long key on
//! the path of many aliased uses, a long JSON key over many handles. Over the limit an
//! allocation fails and the process aborts, so each test also checks the output.

use std::process::Command;

use super::{Sandbox, table_backend};

/// Address space any run may use, whatever its input (the binary, its libraries, the runtime).
const BASE: u64 = 64 * 1024 * 1024;
/// Address space per byte of input (the documented bound is 64 MiB + 20 × S).
const PER_INPUT_BYTE: u64 = 20;

/// Runs `keyturn ARGS` in the sandbox under the bound for `input_size` bytes of input.
fn keyturn_bounded(sandbox: &Sandbox, input_size: usize, args: &[&str]) -> super::Run {
    let limit = BASE + PER_INPUT_BYTE * u64::try_from(input_size).unwrap();
    let output = Command::new("prlimit")
        .arg(format!("--as={limit}"))
        .arg(env!("CARGO_BIN_EXE_keyturn"))
        .args(args)
        .current_dir(sandbox.path(""))
        .env_remove("KEYTURN_LOG")
        .output()
        .unwrap();
    super::Run(output)
}

/// A document read for its own settings (no `--config`) whose 1 MiB anchor is aliased 2,000
/// times under an unrelated key: reading the settings used to copy the anchor for each alias
/// (2 GB).
#[test]
fn aliases_of_a_big_anchor_in_a_document_read_for_settings() {
    super::require_prlimit();
    let sandbox = Sandbox::new();
    let backend = table_backend(&sandbox, &[("pw", "resolved")]);
    let head = format!(
        "secret_backend_command: {}\npassword: ENC[pw]\n",
        backend.display()
    );
    let mut text = head.clone();
    text.push_str(&format!("big: &big \"{}\"\n", "x".repeat(1024 * 1024)));
    text.push_str("copies: [");
    text.push_str(&"*big, ".repeat(2_000));
    text.push_str("*big]\n");
    sandbox.write("app.yaml", &text);
    let run = keyturn_bounded(&sandbox, text.len(), &["resolve", "app.yaml"]);
    run.expect_code(0);
    let expected = head.replace("ENC[pw]", "\"resolved\"");
    assert!(
        run.stdout().starts_with(&expected),
        "{}",
        &run.stdout()[..200]
    );
}

/// The settings of such a document may still alias an anchor written elsewhere, and an alias
/// bomb inside the settings keys is refused with an error naming the limit.
#[test]
fn settings_aliases_are_budgeted() {
    let sandbox = Sandbox::new();
    let backend = table_backend(&sandbox, &[("pw", "resolved")]);
    sandbox.write(
        "app.yaml",
        &format!(
            "defaults: &command {}\nsecret_backend_command: *command\npassword: ENC[pw]\n",
            backend.display()
        ),
    );
    sandbox.keyturn(&["resolve", "app.yaml"]).expect_code(0);

    let mut text = format!("a0: &a0 \"{}\"\n", "x".repeat(1024));
    for level in 1..12 {
        let previous = level - 1;
        text.push_str(&format!(
            "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
        ));
    }
    text.push_str("secret_backend_config: {bomb: *a11}\nsecret_backend_type: file.json\n");
    sandbox.write("bomb.yaml", &text);
    let run = sandbox.keyturn(&["resolve", "bomb.yaml"]);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("aliases expand into more than 16777216 bytes"),
        "{}",
        run.stderr()
    );
}

/// A 100 KiB key above 30,000 aliased uses of one handle: each use's key path used to copy
/// the key (3 GB).
#[test]
fn a_long_key_above_many_aliased_uses() {
    super::require_prlimit();
    let sandbox = Sandbox::new();
    let backend = table_backend(&sandbox, &[("pw", "resolved")]);
    let settings = format!("secret_backend_command: {}\n", backend.display());
    sandbox.write("keyturn.yaml", &settings);
    let key = "k".repeat(100 * 1024);
    // An explicit key: YAML limits implicit ones to 1,024 characters.
    let mut text = format!("? {key}\n:\n  a: &a ENC[pw]\n  list:\n");
    text.push_str(&"    - *a\n".repeat(30_000));
    sandbox.write("app.yaml", &text);
    let run = keyturn_bounded(
        &sandbox,
        text.len(),
        &["resolve", "--config", "keyturn.yaml", "app.yaml"],
    );
    run.expect_code(0);
    assert!(
        run.stdout()
            .contains("\n:\n  a: &a \"resolved\"\n  list:\n    - *a\n")
    );

    // When the handle fails, every use is reported but at most 10 paths are listed.
    table_backend(&sandbox, &[]);
    let run = keyturn_bounded(
        &sandbox,
        text.len(),
        &["resolve", "--config", "keyturn.yaml", "app.yaml"],
    );
    run.expect_code(1);
    assert!(
        run.stderr().contains(" and 29991 more: "),
        "{}",
        &run.stderr()[run.stderr().len().saturating_sub(300)..]
    );
    assert!(
        run.stderr().len() < 20 * key.len(),
        "{} bytes on stderr",
        run.stderr().len()
    );
}

/// A JSON document with one 100 KiB key over 40,000 handles: each handle's key path used to
/// copy the key (4 GB).
#[test]
fn a_long_json_key_over_many_handles() {
    super::require_prlimit();
    let sandbox = Sandbox::new();
    let backend = table_backend(&sandbox, &[("pw", "resolved")]);
    let settings = format!("secret_backend_command: {}\n", backend.display());
    sandbox.write("keyturn.yaml", &settings);
    let key = "k".repeat(100 * 1024);
    let entries: Vec<String> = (0..40_000)
        .map(|i| format!("\"h{i}\":\"ENC[pw]\""))
        .collect();
    let text = format!("{{\"{key}\":{{{}}}}}", entries.join(","));
    sandbox.write("app.json", &text);
    let run = keyturn_bounded(
        &sandbox,
        text.len(),
        &["resolve", "--config", "keyturn.yaml", "app.json"],
    );
    run.expect_code(0);
    assert!(run.stdout().ends_with("\"h39999\":\"resolved\"}}"));
}
