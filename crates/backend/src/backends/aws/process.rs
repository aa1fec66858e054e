//! A profile's `credential_process`: run the command (through `sh -c`, as the AWS SDKs for Go
//! and Rust do), read the credentials document it prints.
//!
//! The command gets no stdin, its stderr is discarded (a helper may print anything there), its
//! stdout is capped at [`MAX_OUTPUT`], and it must finish before the run's deadline or it is
//! killed. Its output is expected as the AWS CLI documents it:
//! `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken"?, "Expiration"?}`.
//!
//! Invariant: the output is never quoted in an error; the secret key and token reach the
//! redactor through the chain before any use.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::Credentials;
use crate::schedule::Deadline;

/// Largest output read from the command.
const MAX_OUTPUT: u64 = 64 * 1024;

#[derive(Deserialize)]
struct Output {
    #[serde(rename = "Version")]
    version: u32,
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Zeroizing<String>,
    #[serde(rename = "SessionToken", default)]
    session_token: Option<Zeroizing<String>>,
    #[serde(rename = "Expiration", default)]
    expiration: Option<String>,
}

/// Runs `command` and parses its credentials.
pub(super) fn run(command: &str, deadline: Deadline) -> Result<Credentials, String> {
    let left = deadline
        .remaining()
        .ok_or_else(|| "the secret_backend_timeout passed before it could run".to_owned())?;
    // keyturn's own rule (one spawner for backends) is about the library; this is the user's
    // configured credential helper, run the way the AWS SDKs run it.
    #[allow(clippy::disallowed_methods)]
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start sh: {error}"))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no stdout pipe".to_owned());
    };
    let (sender, receiver) = mpsc::channel();
    // The reader may outlive this call when a grandchild keeps the pipe open: it is detached,
    // and stops at the cap or when the pipe closes.
    std::thread::spawn(move || {
        let mut bytes = Zeroizing::new(Vec::new());
        let read = stdout.take(MAX_OUTPUT + 1).read_to_end(&mut bytes);
        let _ = sender.send(read.map(|_| bytes));
    });
    let output = match receiver.recv_timeout(left) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot read its output: {error}"));
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "no answer within the {}s secret_backend_timeout",
                deadline.timeout().as_secs()
            ));
        }
    };
    let status = wait(&mut child, deadline)?;
    if !status.success() {
        return Err(format!("it exited with {status}"));
    }
    if output.len() as u64 > MAX_OUTPUT {
        return Err(format!("its output is larger than {MAX_OUTPUT} bytes"));
    }
    parse(&output)
}

/// Waits for the command to exit after its stdout closed, until the deadline.
fn wait(
    child: &mut std::process::Child,
    deadline: Deadline,
) -> Result<std::process::ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if deadline.remaining().is_some() => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within the {}s secret_backend_timeout",
                    deadline.timeout().as_secs()
                ));
            }
            Err(error) => return Err(format!("cannot wait for it: {error}")),
        }
    }
}

fn parse(output: &[u8]) -> Result<Credentials, String> {
    let output: Output = serde_json::from_slice(output).map_err(|_| {
        "its output is not a credentials document ({\"Version\": 1, \"AccessKeyId\": ..., \
         \"SecretAccessKey\": ...})"
            .to_owned()
    })?;
    if output.version != 1 {
        return Err(format!(
            "its output has Version {}, only 1 is supported",
            output.version
        ));
    }
    let expires = output
        .expiration
        .as_deref()
        .map(super::parse_time)
        .transpose()
        .map_err(|_| "its output has an unreadable Expiration".to_owned())?;
    Ok(Credentials {
        access_key_id: output.access_key_id,
        secret_access_key: output.secret_access_key,
        session_token: output.session_token.filter(|token| !token.is_empty()),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn deadline(secs: u64) -> Deadline {
        Deadline::for_request(Instant::now(), Some(secs))
    }

    #[test]
    fn runs_the_command_and_reads_its_document() {
        let credentials = run(
            r#"echo '{"Version":1,"AccessKeyId":"AKIAP","SecretAccessKey":"sk-proc","SessionToken":"","Expiration":"2031-05-06T07:08:09Z"}'"#,
            deadline(10),
        )
        .unwrap();
        assert_eq!(credentials.access_key_id, "AKIAP");
        assert_eq!(credentials.secret_access_key.as_str(), "sk-proc");
        assert!(credentials.session_token.is_none());
        assert!(credentials.expires.is_some());
    }

    #[test]
    fn failures_never_quote_the_output() {
        for (command, expected) in [
            (
                "echo 'hunter2-secret'; exit 3",
                "exited with exit status: 3",
            ),
            ("echo 'hunter2-secret'", "not a credentials document"),
            (
                r#"echo '{"Version":2,"AccessKeyId":"A","SecretAccessKey":"hunter2-secret"}'"#,
                "Version 2",
            ),
            (
                "exec sleep 30",
                "no answer within the 1s secret_backend_timeout",
            ),
        ] {
            let error = match run(command, deadline(1)) {
                Ok(_) => panic!("{command} succeeded"),
                Err(error) => error,
            };
            assert!(error.contains(expected), "{command}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
