//! `keyturn-backend`: built-in secret backends behind the Datadog secret backend protocol.
//!
//! The binary reads one [`Request`] as JSON on stdin, resolves its handles with the backend named
//! by the payload's `type`, and writes one JSON object `{handle: {"value", "error"}}` on stdout.
//! It works unchanged as the `secret_backend_command` of a Datadog Agent, of Vector's `exec`
//! secret backend, or of `keyturn`.
//!
//! Where to start reading: [`backends::resolve`] dispatches on the type; each backend lives in
//! its own module under `backends/`.
//!
//! Invariants (the contract callers rely on):
//! - Whatever goes wrong with a handle, its backend or its configuration becomes that handle's
//!   `error`; the process then exits 0 with a valid JSON answer for every requested handle.
//! - The process exits non-zero only when it cannot read or parse its input, or when its
//!   arguments are wrong; the reason goes to stderr.
//! - No secret value, token or credential is ever written to stderr or into an `error` text.
//!   Error texts are additionally scrubbed of every credential the backend handled
//!   ([`redact::Redactor`]).
//!
//! Exit codes: 0 answered (possibly with per-handle errors), 1 unreadable input or stdout,
//! 2 bad usage ([`preset`] parses the arguments).

mod backends;
mod http;
mod preset;
mod redact;
mod schedule;
mod settings;
mod value;

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use keyturn_protocol::{Request, encode_response};

use crate::preset::Command;

/// Largest request accepted on stdin. The Agent's own payloads are a few kilobytes; 16 MiB leaves
/// room for hundreds of thousands of handles and stops a runaway writer.
const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;

const USAGE: &str = "\
keyturn-backend: built-in secret backends speaking the Datadog secret backend protocol

USAGE:
    keyturn-backend [--type TYPE [--config JSON | --config-file PATH]] < request.json
    keyturn-backend --version
    keyturn-backend --help

Reads one JSON request on stdin, for example
    {\"version\":\"1.1\",\"secrets\":[\"db;password\"],\"secret_backend_timeout\":30,
     \"type\":\"hashicorp.vault\",\"config\":{\"vault_address\":\"https://vault:8200\"}}
and writes {\"<handle>\":{\"value\":\"...\",\"error\":null},...} on stdout.

When the request names no `type` (the Datadog Agent's secret_backend_command, Vector's exec
backend with protocol v1), the backend comes from --type and its config from --config (a JSON
object) or --config-file (a file holding one; use it for credentials).

Backend types: file.json, file.yaml, file.text, k8s.file, docker.secrets,
               hashicorp.vault, aws.secrets, aws.ssm, k8s.secrets,
               gcp.secretmanager, azure.keyvault

Exit status: 0 answered (failed handles carry an \"error\"), 1 unreadable input, 2 bad usage.
";

fn main() -> ExitCode {
    // `args_os`: an argument that is not UTF-8 is bad usage, not a panic.
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.into_string())
        .collect();
    let Ok(args) = args else {
        eprintln!("keyturn-backend: an argument is not valid UTF-8; see `keyturn-backend --help`");
        return ExitCode::from(2);
    };
    let preset = match preset::parse_args(&args) {
        Ok(Command::Version) => {
            return print_stdout(&format!("keyturn-backend {}\n", env!("CARGO_PKG_VERSION")));
        }
        Ok(Command::Help) => return print_stdout(USAGE),
        Ok(Command::Answer(preset)) => preset,
        Err(message) => {
            eprintln!("keyturn-backend: {message}; see `keyturn-backend --help`");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut request = match read_request(io::stdin().lock()) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("keyturn-backend: {message}");
            return ExitCode::from(1);
        }
    };
    let response = match preset.apply(&mut request) {
        Ok(()) => backends::resolve(&request, started),
        Err(error) => backends::fail_request(&request, &error),
    };
    let mut bytes = encode_response(&response);
    bytes.push(b'\n');
    let written = io::stdout().lock().write_all(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keyturn-backend: cannot write the answer to stdout: {error}");
            ExitCode::from(1)
        }
    }
}

fn print_stdout(text: &str) -> ExitCode {
    match io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

/// Reads and decodes the request. The error text never quotes the input: the payload may carry
/// credentials in its `config`.
fn read_request(input: impl Read) -> Result<Request, String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read the request on stdin: {error}"))?;
    if bytes.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request on stdin is larger than {MAX_REQUEST_BYTES} bytes"
        ));
    }
    let parsed = Request::from_json(&bytes).map_err(|error| {
        let what = match error.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Eof => {
                "is truncated or empty"
            }
            serde_json::error::Category::Syntax => "is not valid JSON",
            serde_json::error::Category::Data => {
                "is not a secret backend request (expected {\"version\":\"1.1\",\"secrets\":[...],...})"
            }
        };
        format!(
            "the request on stdin {what} (line {}, column {})",
            error.line(),
            error.column()
        )
    });
    zeroize::Zeroize::zeroize(&mut bytes);
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_request_never_quotes_the_input() {
        for (input, expected) in [
            (&b""[..], "is truncated or empty"),
            (b"{\"version\":", "is truncated or empty"),
            (b"not json", "is not valid JSON"),
            (
                br#"{"version":"1.1","secrets":"hunter2-token"}"#,
                "is not a secret backend request",
            ),
            (
                br#"{"version":"1.1","secrets":[],"config":"hunter2-token"}"#,
                "is not a secret backend request",
            ),
        ] {
            let error = read_request(input).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn read_request_accepts_both_payload_versions() {
        for input in [
            &br#"{"version":"1.0","secrets":["a"]}"#[..],
            br#"{"version":"1.1","secrets":["a"],"secret_backend_timeout":5,"type":"file.json","config":{"file_path":"x"}}"#,
        ] {
            let request = read_request(input).unwrap();
            assert_eq!(request.secrets, ["a"]);
        }
    }
}
