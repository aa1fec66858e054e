//! Running a template's `on_change` command after its destination changed.
//!
//! The command runs in its own process group with stdin closed; stdout and stderr are drained
//! concurrently and only counted, never logged or stored (a reload command may print the
//! configuration it just read). After `timeout` the whole group is killed. If the future is
//! dropped (daemon shutdown), the group is killed too.
//!
//! This is the only process keyturn starts besides secret backends; both are started by
//! `backend::spawn`, the one module allowed to.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::config::OnChange;
use crate::backend::spawn::Started;
use crate::backend::start_command;

/// How long output is still read after the command exited (a background grandchild may keep
/// the pipes open).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Why an `on_change` command did not succeed. Carries no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The command could not be started.
    #[error("on_change command '{program}' could not be started: {message}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The operating system's reason.
        message: String,
    },
    /// The command exited unsuccessfully.
    #[error(
        "on_change command '{program}' {status} ({stderr_bytes} bytes on stderr, not logged: it may contain secrets)"
    )]
    Failed {
        /// `argv[0]`.
        program: String,
        /// `exited with status N` or `was killed by signal N`.
        status: String,
        /// How much it wrote to stderr.
        stderr_bytes: u64,
    },
    /// The command ran longer than its timeout; its process group was killed.
    #[error("on_change command '{program}' timed out after {timeout:?} and was killed")]
    Timeout {
        /// `argv[0]`.
        program: String,
        /// The timeout.
        timeout: Duration,
    },
}

/// Runs `hook` to completion or timeout.
pub async fn run(hook: &OnChange) -> Result<(), HookError> {
    // `OnChange` says its argv is never empty; an empty one fails to start, never panics.
    let program = hook.argv.first().cloned().unwrap_or_default();
    let Started {
        mut child,
        mut group,
    } = start_command(&hook.argv).map_err(|e| HookError::Spawn {
        program: program.clone(),
        message: e.to_string(),
    })?;
    let stdout = tokio::spawn(count(child.stdout.take()));
    let stderr = tokio::spawn(count(child.stderr.take()));
    let status = match tokio::time::timeout(hook.timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            stdout.abort();
            stderr.abort();
            return Err(HookError::Timeout {
                program,
                timeout: hook.timeout,
            });
        }
    };
    // The command exited: its group may hold background processes it meant to start.
    group.disarm();
    let status = status.map_err(|e| HookError::Spawn {
        program: program.clone(),
        message: e.to_string(),
    })?;
    let stdout_bytes = drain(stdout).await;
    let stderr_bytes = drain(stderr).await;
    tracing::debug!(
        program,
        stdout_bytes,
        stderr_bytes,
        "on_change command finished"
    );
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Failed {
            program,
            status: describe(status),
            stderr_bytes,
        })
    }
}

/// Reads a stream to its end, discarding it, and returns how many bytes it held.
async fn count(stream: Option<impl AsyncRead + Unpin>) -> u64 {
    let Some(mut stream) = stream else {
        return 0;
    };
    let mut buffer = [0u8; 4096];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total = total.saturating_add(n as u64),
        }
    }
}

async fn drain(task: tokio::task::JoinHandle<u64>) -> u64 {
    let abort = task.abort_handle();
    match tokio::time::timeout(DRAIN_GRACE, task).await {
        Ok(Ok(n)) => n,
        _ => {
            abort.abort();
            0
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended abnormally".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout: Duration) -> OnChange {
        OnChange {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout,
        }
    }

    #[tokio::test]
    async fn success_and_failure_without_output_in_the_error() {
        assert_eq!(
            run(&hook("echo out; echo err >&2", Duration::from_secs(30))).await,
            Ok(())
        );
        let err = run(&hook("echo hunter2 >&2; exit 3", Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            HookError::Failed {
                program: "/bin/sh".into(),
                status: "exited with status 3".into(),
                stderr_bytes: 8,
            }
        );
        assert!(!err.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn spawn_failure() {
        let err = run(&OnChange {
            argv: vec!["/nonexistent/reload".into()],
            timeout: Duration::from_secs(1),
        })
        .await
        .unwrap_err();
        assert!(
            matches!(&err, HookError::Spawn { program, .. } if program == "/nonexistent/reload"),
            "{err:?}"
        );
    }

    // Issue 9.14: an empty argv (possible through the public fields) fails, never panics.
    #[tokio::test]
    async fn an_empty_command_fails_to_start() {
        let err = run(&OnChange {
            argv: Vec::new(),
            timeout: Duration::from_secs(1),
        })
        .await
        .unwrap_err();
        assert!(matches!(&err, HookError::Spawn { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let err = run(&hook(&script, Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::Timeout { .. }), "{err:?}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was killed with the group. SIGKILL takes effect asynchronously: wait
        // (bounded) until it is gone or a zombie.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild still alive: {state}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn background_child_holding_the_pipes_does_not_block() {
        let started = std::time::Instant::now();
        let result = run(&hook(
            "sleep 5 >/dev/null 2>&1 & sleep 5 & exit 0",
            Duration::from_secs(30),
        ))
        .await;
        assert_eq!(result, Ok(()));
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
