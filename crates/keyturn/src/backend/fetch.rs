//! One backend run, from payload to classified handles: check, start, feed stdin, read capped
//! stdout and stderr concurrently, all bounded by one deadline; then decide.
//!
//! Invariants:
//! - Everything after the start — writing stdin, reading both streams until EOF, waiting for
//!   the exit — happens under one deadline, so a grandchild that keeps a pipe open cannot hold
//!   a fetch past it. Any early end (timeout, output over the cap, I/O error, the future being
//!   dropped) kills the whole process group.
//! - stdout and stderr are read into buffers that never grow past `output_max_size + 1` bytes
//!   and are zeroized when dropped or regrown (stdout holds values; stderr may echo them).
//! - Logs carry only the command path, the exit label and the elapsed time; error texts carry
//!   a scrubbed, bounded stderr tail, never raw backend output, and only when stdout was read
//!   to its end and was empty or a valid answer (so every value it held is known).
//! - The outcome depends only on the complete stdout and the exit status. stdout may be
//!   classified before EOF (to overlap the backend's exit), but that result is kept only when
//!   EOF comes with no byte more, and the exit status still decides whether it is used.
//!
//! Ordering for speed: the backend is started before the payload is built, so that building
//! it (de-duplicating and encoding up to tens of thousands of handles) overlaps the backend's
//! start-up; the stdin and stdout pipes are widened to fit the payload and the output cap, so
//! a large payload or answer crosses in one turn instead of a dozen context-switch pairs.

use std::io;
use std::process::ExitStatus;
use std::time::Instant;

use keyturn_protocol::{PayloadVersion, RequestRef};
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroize;

use super::permissions::{Checked, PermissionError, interpreter_problem, io_text, resolve_command};
use super::response::{
    Classified, Pending, Requested, answer_values, classify_early, classify_pending,
    classify_without_error_texts, describe_parse_error,
};
use super::spawn::{Program, StartError, Started, start};
use super::{
    BackendSpec, FailureKind, FetchError, FetchOptions, Fetched, PermissionCheck, RunRecord,
};
use crate::DOCS_URL;
use crate::secret::{Buffer, Secret};
use keyturn_protocol::scrub::Scrubber;

/// Runs `spec` once for the distinct `handles` and classifies every one of them, as far as it
/// can without the values the caller holds: what is left is done by [`Ran::finish`], which
/// pairs each result with a clone of the handle as given (an `Arc<str>` shares its text).
pub(crate) async fn fetch<'a, S: AsRef<str> + Clone>(
    spec: &'a BackendSpec,
    options: &FetchOptions,
    handles: &'a [S],
) -> Ran<'a, S> {
    let began = Instant::now();
    let deadline = deadline_after(options.timeout);
    let mut output = Output::new(options.output_max_size);
    let started = checked_start(spec);
    // Built once the backend has started: de-duplicating and encoding 10,000 handles then
    // overlaps the backend's own start-up (exec, dynamic loading).
    let requested = Requested::new(handles);
    let strip = options.remove_trailing_line_break;
    let run = match started {
        Ok(started) => {
            let payload = request(spec, options, &requested.handles).to_json();
            // Classifying as soon as stdout holds a whole answer overlaps the backend's exit
            // (freeing its memory, closing its pipes), which ends before stdout reports EOF.
            let early = |stdout: &[u8]| classify_early(stdout, &requested, strip);
            drive(started, deadline, options, payload, early, &mut output).await
        }
        Err(failure) => Err(failure),
    };
    let (run, early) = match run {
        Ok((status, early)) => (Ok(status), early),
        Err(failure) => (Err(failure), None),
    };
    let count = requested.handles.len();
    let elapsed = began.elapsed();
    let exit = exit_label(&run);
    let mut record = RunRecord {
        exit,
        elapsed,
        unparsable_output: false,
        handle_failures: Vec::new(),
    };
    let exit = &record.exit;
    let command = spec.command.display();
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;

    let failure = match run {
        Ok(status) if status.success() => {
            let answer = match early {
                Some(fetched) => Ok(Some(fetched)),
                None => classify_without_error_texts(&output.stdout, &requested, strip),
            };
            match answer {
                Ok(answer) => {
                    tracing::debug!(%command, %exit, elapsed_ms, "secret backend run");
                    let state = match answer {
                        Some(pending) => Finish::Classified(output.stdout.settle(pending)),
                        None => Finish::Classify {
                            stdout: output.stdout,
                            strip,
                        },
                    };
                    return Ran {
                        spec,
                        record,
                        handles,
                        requested,
                        state,
                    };
                }
                Err(error) => {
                    record.unparsable_output = true;
                    invalid_answer(spec, &error)
                }
            }
        }
        Ok(status) => backend_error(spec, &Failure::Exit(status), options),
        Err(failure) => backend_error(spec, &failure, options),
    };
    // Debug only: the caller reports the failure once, with the handles it affects.
    tracing::debug!(%command, %exit, elapsed_ms, kind = failure.kind.as_str(), "secret backend run failed");
    count_failures(&mut record.handle_failures, failure.kind, count);
    Ran {
        spec,
        record,
        handles,
        requested,
        state: Finish::Failed { failure, output },
    }
}

/// A backend run that has ended, whose texts may still have to be scrubbed of the values the
/// caller holds (a failing backend may repeat an old value): ask [`Ran::scrubs_held`] whether
/// they are needed, then [`Ran::finish`] with them.
pub(crate) struct Ran<'a, S> {
    spec: &'a BackendSpec,
    record: RunRecord,
    /// The handles as the caller named them, and the distinct ones that were asked for.
    handles: &'a [S],
    requested: Requested<'a>,
    state: Finish,
}

/// What is left to do once the held values are known.
enum Finish {
    /// Classified: nothing held can show in the result.
    Classified(Classified),
    /// A valid answer with per-handle error texts, to classify with the held values.
    Classify { stdout: Capture, strip: bool },
    /// The run failed: its stderr tail, if shown, is scrubbed of the held values.
    Failed { failure: FetchError, output: Output },
}

impl<S: Clone> Ran<'_, S> {
    /// Whether [`Ran::finish`] scrubs anything with the values it is given: the answer has
    /// per-handle error texts, or the run failed and its stderr may be shown.
    pub(crate) fn scrubs_held(&self) -> bool {
        match &self.state {
            Finish::Classified(_) => false,
            Finish::Classify { .. } => true,
            Finish::Failed { output, .. } => !output.stderr.is_empty() && output.stdout_complete,
        }
    }

    /// The run's record and result, every backend text scrubbed of the run's values and of
    /// `held` (every value the caller holds; it may be empty when
    /// [`scrubs_held`](Ran::scrubs_held) says no). The record counts the handles that failed.
    pub(crate) fn finish(self, held: &[Secret]) -> (RunRecord, Result<Fetched<S>, FetchError>) {
        let Ran {
            spec,
            mut record,
            handles,
            requested,
            state,
        } = self;
        let result = match state {
            Finish::Classified(classified) => Ok(classified),
            Finish::Classify { stdout, strip } => {
                classify_pending(&stdout, &requested, strip, held)
                    .map(|pending| stdout.settle(pending))
                    .map_err(|error| {
                        // Not reached: the answer was decoded already; kept as the same failure.
                        record.unparsable_output = true;
                        let failure = invalid_answer(spec, &error);
                        count_failures(
                            &mut record.handle_failures,
                            failure.kind,
                            requested.handles.len(),
                        );
                        failure
                    })
            }
            Finish::Failed { failure, output } => {
                return (
                    record,
                    Err(with_stderr(failure, &output, held, spec.protocol)),
                );
            }
        };
        if let Ok(classified) = &result {
            for result in classified {
                if let Err(error) = result {
                    count_failures(&mut record.handle_failures, error.kind, 1);
                }
            }
        }
        let result = result.map(|classified| requested.named(handles, classified));
        (record, result)
    }
}

/// The failure of a run whose stdout is not a valid answer.
fn invalid_answer(spec: &BackendSpec, error: &serde_json::Error) -> FetchError {
    FetchError {
        kind: FailureKind::InvalidResponse,
        message: format!(
            "'{}' returned invalid JSON: '{}'. See docs for expected format: {DOCS_URL}",
            spec.command.display(),
            describe_parse_error(error)
        ),
    }
}

/// Adds `count` failures of `kind` to `counts` (one entry per kind).
fn count_failures(counts: &mut Vec<(FailureKind, usize)>, kind: FailureKind, count: usize) {
    if count == 0 {
        return;
    }
    match counts.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += count,
        None => counts.push((kind, count)),
    }
}

/// What a run wrote, as far as it was read.
struct Output {
    stdout: Capture,
    stderr: Capture,
    /// stdout was read to EOF: every value the run returned is in `stdout`.
    stdout_complete: bool,
}

impl Output {
    fn new(limit: usize) -> Output {
        Output {
            stdout: Capture::new(limit, RESERVED),
            // Backends rarely write much on stderr; a full reservation for it would double
            // the address space a run takes for nothing.
            stderr: Capture::new(limit, STDERR_RESERVED),
            stdout_complete: false,
        }
    }
}

/// Why a run ended without a usable exit status.
#[derive(Debug)]
enum Failure {
    /// The permission check refused the executable.
    Permission(PermissionError),
    /// The process could not be started.
    Start(io::Error),
    /// The deadline passed.
    Timeout,
    /// stdout or stderr went over the cap.
    TooLong,
    /// Reading the pipes or waiting failed.
    Io(io::Error),
    /// The process ended unsuccessfully.
    Exit(ExitStatus),
}

/// Drives a started backend under `deadline`: writes `payload`, reads stdout and stderr
/// (filling `output` as far as it got), waits for the exit. Whenever stdout may hold a whole
/// answer, `early` is given it; what `early` made of stdout as it was at EOF is returned with
/// the exit status (the exit status still decides whether it is used).
async fn drive<T>(
    started: Started,
    deadline: tokio::time::Instant,
    options: &FetchOptions,
    payload: Vec<u8>,
    early: impl FnMut(&[u8]) -> Option<T>,
    output: &mut Output,
) -> Result<(ExitStatus, Option<T>), Failure> {
    let Started {
        mut child,
        mut group,
    } = started;
    let stdin = child.stdin.take();
    let out = child.stdout.take();
    let err = child.stderr.take();
    let limit = options.output_max_size;
    widen_pipe(stdin.as_ref(), payload.len());
    widen_pipe(out.as_ref(), limit.saturating_add(1));
    let io = async {
        let ((), early, ()) = tokio::try_join!(
            write_stdin(stdin, payload),
            async {
                let early = read_watching(out, limit, &mut output.stdout, early).await?;
                output.stdout_complete = true;
                Ok(early)
            },
            read_capped(err, limit, &mut output.stderr),
        )?;
        let status = child.wait().await.map_err(Failure::Io)?;
        Ok((status, early))
    };
    match tokio::time::timeout_at(deadline, io).await {
        Ok(Ok(finished)) => {
            // The leader was reaped: its group ID may be reused from now on.
            group.disarm();
            Ok(finished)
        }
        Ok(Err(failure)) => {
            group.kill();
            Err(failure)
        }
        Err(_) => {
            group.kill();
            Err(Failure::Timeout)
        }
    }
}

/// The permission check (unless [`PermissionCheck::Skip`]) and the start. The checked
/// descriptor is closed once the child has started.
fn checked_start(spec: &BackendSpec) -> Result<Started, Failure> {
    let path = resolve_command(&spec.command).map_err(|reason| {
        Failure::Permission(PermissionError::Stat {
            path: spec.command.clone(),
            reason,
        })
    })?;
    let checked;
    let program = match spec.check {
        PermissionCheck::Skip => Program::Unchecked(&path),
        check => {
            checked = Checked::open(&path, check).map_err(Failure::Permission)?;
            Program::Checked(&checked)
        }
    };
    start(
        program,
        &spec.command,
        &spec.args,
        spec.working_dir.as_deref(),
    )
    .map_err(|error| match error {
        StartError::Changed(error) => Failure::Permission(error),
        StartError::Io(error) => Failure::Start(error),
    })
}

/// A pipe holds 64 KiB by default.
const PIPE_DEFAULT: usize = 64 * 1024;

/// The largest pipe an unprivileged process may ask for by default (`/proc/sys/fs/pipe-max-size`).
const PIPE_MAX: usize = 1024 * 1024;

/// Widens `pipe` to hold `wanted` bytes (at most [`PIPE_MAX`]). Through a default pipe, a
/// 10,000-handle payload or answer crosses in a dozen turns, each a pair of context switches
/// between keyturn and the backend; through a wide one, in one write and one read. The kernel
/// allocates a pipe's pages only as data arrives, so the width costs nothing unused. Failure
/// (the user's pipe quota is reached) only costs those turns.
fn widen_pipe(pipe: Option<&impl std::os::fd::AsFd>, wanted: usize) {
    let Some(pipe) = pipe else {
        return;
    };
    if wanted <= PIPE_DEFAULT {
        return;
    }
    let size = i32::try_from(wanted.min(PIPE_MAX)).unwrap_or(i32::MAX);
    let _ = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size));
}

/// Writes the payload, frees it (before the answer, read meanwhile, is classified) and closes
/// stdin. Errors are ignored like the reference does: a backend that exits without reading
/// (`EPIPE`) is judged by its exit status and output.
async fn write_stdin(
    stdin: Option<tokio::process::ChildStdin>,
    payload: Vec<u8>,
) -> Result<(), Failure> {
    if let Some(mut stdin) = stdin {
        let _ = stdin.write_all(&payload).await;
    }
    drop(payload);
    Ok(())
}

/// Reads `stream` to EOF into `buf`, failing as soon as it holds more than `limit` bytes.
async fn read_capped(
    stream: Option<impl AsyncRead + Unpin>,
    limit: usize,
    buf: &mut Capture,
) -> Result<(), Failure> {
    read_watching(stream, limit, buf, |_| None::<()>).await?;
    Ok(())
}

/// [`read_capped`], handing `early` what was read so far whenever it ends like a JSON object,
/// and returning what `early` made of the complete stream, if it was given exactly that.
///
/// `early` is given the stream again only once it has at least doubled, so a backend that
/// writes many object-like prefixes costs at most twice the work of its whole output.
async fn read_watching<T>(
    stream: Option<impl AsyncRead + Unpin>,
    limit: usize,
    buf: &mut Capture,
    mut early: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Option<T>, Failure> {
    let Some(mut stream) = stream else {
        return Ok(None);
    };
    let mut guess: Option<(usize, T)> = None;
    let mut tried: usize = 0;
    // The last byte that is not whitespace, kept from each read's new bytes alone: trimming the
    // whole tail on every read would cost quadratic time against a backend that writes blanks
    // a byte at a time.
    let mut last = None;
    loop {
        buf.make_room(limit);
        let read = stream.read_buf(&mut buf.0).await.map_err(Failure::Io)?;
        if buf.0.len() > limit {
            return Err(Failure::TooLong);
        }
        if read == 0 {
            let complete = buf.0.len();
            return Ok(guess.and_then(|(len, value)| (len == complete).then_some(value)));
        }
        let len = buf.0.len();
        let fresh = len.saturating_sub(read);
        if let Some(&byte) = buf
            .0
            .get(fresh..)
            .unwrap_or_default()
            .iter()
            .rfind(|byte| !byte.is_ascii_whitespace())
        {
            last = Some(byte);
        }
        if len >= tried.saturating_mul(2) && last == Some(b'}') {
            tried = len;
            // A guess from fewer bytes is dropped (a `Fetched` zeroizes its values).
            guess = early(&buf.0).map(|value| (len, value));
        }
    }
}

/// The capture of one output stream: never more than `limit + 1` bytes of capacity, and what
/// it held is wiped when it is dropped or regrown (stdout holds values; stderr may echo them).
struct Capture(Vec<u8>);

/// Capacity reserved up front for stdout. Untouched capacity costs no memory, and a buffer
/// that never moves leaves no stale copy behind and costs no copy: the default 1 MiB cap fits.
const RESERVED: usize = 16 * 1024 * 1024;

/// Capacity reserved up front for stderr; it grows from there when a backend says more.
const STDERR_RESERVED: usize = 64 * 1024;

impl Capture {
    /// A capture for at most `limit` bytes, with up to `reserve` bytes of capacity up front.
    fn new(limit: usize, reserve: usize) -> Capture {
        Capture(Vec::with_capacity(limit.saturating_add(1).min(reserve)))
    }

    /// Ensures some spare capacity, up to `limit + 1` in all.
    fn make_room(&mut self, limit: usize) {
        if self.0.len() < self.0.capacity() {
            return;
        }
        let target = self
            .0
            .capacity()
            .saturating_mul(2)
            .max(8192)
            .min(limit.saturating_add(1));
        let mut bigger = Vec::with_capacity(target);
        bigger.extend_from_slice(&self.0);
        let mut old = std::mem::replace(&mut self.0, bigger);
        old.as_mut_slice().zeroize();
    }
}

impl Capture {
    /// The values of `pending` (classified from this capture) as ranges of it: the captured
    /// bytes become their shared buffer, wiped when the last value goes, instead of being copied.
    fn settle(mut self, pending: Pending) -> Classified {
        match String::from_utf8(std::mem::take(&mut self.0)) {
            Ok(text) => pending.settle(Buffer::captured(text)),
            // Not reached (a classified answer is UTF-8): copied out instead, then wiped.
            Err(error) => {
                let mut bytes = error.into_bytes();
                let classified = pending.copied(&bytes);
                bytes.as_mut_slice().zeroize();
                classified
            }
        }
    }
}

impl std::ops::Deref for Capture {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Only `..len` was ever written; zeroizing the whole capacity would touch every page.
        self.0.as_mut_slice().zeroize();
    }
}

/// The Agent's request for the distinct `handles`, in the spec's payload version.
fn request<'a>(
    spec: &'a BackendSpec,
    options: &FetchOptions,
    handles: &'a [&'a str],
) -> RequestRef<'a> {
    RequestRef::new(
        spec.protocol,
        handles,
        timeout_secs(options),
        spec.backend_type.as_deref(),
        spec.config.as_ref(),
    )
}

/// The timeout in whole seconds, rounded up (a sub-second timeout is sent as 1).
fn timeout_secs(options: &FetchOptions) -> u64 {
    let timeout = options.timeout;
    timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0))
}

/// The metrics label of a run: `0`, the exit code, `signal`, `timeout`, or `error` (it could
/// not be started, or its output could not be read or was over the cap).
fn exit_label(run: &Result<ExitStatus, Failure>) -> String {
    match run {
        Ok(status) | Err(Failure::Exit(status)) => match status.code() {
            Some(code) => code.to_string(),
            None => "signal".to_owned(),
        },
        Err(Failure::Timeout) => "timeout".to_owned(),
        Err(_) => "error".to_owned(),
    }
}

/// The Agent's text of a whole-run failure.
fn backend_error(spec: &BackendSpec, failure: &Failure, options: &FetchOptions) -> FetchError {
    let command = spec.command.display();
    let other = |reason: String| {
        format!(
            "error while running '{command}': {reason}. See docs for FAQ and troubleshooting methods: {DOCS_URL}"
        )
    };
    let interpreter = match failure {
        Failure::Start(error) => missing_interpreter(spec, error),
        _ => None,
    };
    if let Some(text) = interpreter {
        return FetchError {
            kind: FailureKind::BackendError,
            message: other(text),
        };
    }
    let message = match failure {
        Failure::Permission(error) => error.to_string(),
        Failure::Start(error)
            if matches!(error.raw_os_error(), Some(libc::EACCES | libc::EPERM)) =>
        {
            format!("permission denied executing secret command '{command}'")
        }
        Failure::Start(error) | Failure::Io(error) => other(io_text(error)),
        Failure::Timeout => format!(
            "'{command}' timed out after {} seconds. You can increase secret_backend_timeout in your settings. Docs: {DOCS_URL}",
            timeout_secs(options)
        ),
        Failure::TooLong => other(format!(
            "command output was too long: exceeded {} bytes",
            options.output_max_size
        )),
        Failure::Exit(status) => other(exit_text(*status)),
    };
    FetchError {
        kind: FailureKind::BackendError,
        message,
    }
}

/// When starting a `#!` script failed and the interpreter named on its first line is missing
/// or not executable, says so with its path: the kernel's "no such file or directory" names
/// neither, for a script that exists.
fn missing_interpreter(spec: &BackendSpec, error: &io::Error) -> Option<String> {
    tracing::debug!(error = %io_text(error), "backend did not start");
    let path = resolve_command(&spec.command).ok()?;
    interpreter_problem(&path)
}

fn exit_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("killed by signal {}", signal.as_str()),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// `timeout` from now; a timeout too large to add (settings clamp theirs, but `FetchOptions` is
/// public) waits as long as [`crate::settings::MAX_DURATION`].
fn deadline_after(timeout: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(crate::settings::MAX_DURATION))
        .unwrap_or(now)
}

/// Why a stderr tail is withheld after an answer that could not be read.
const NOT_AN_ANSWER: &str =
    "; stderr not shown: stdout was not a valid answer, so values could not be scrubbed from it";

/// Added to a failed run's error when stderr says the backend wants payload version 1.0.
const VERSION_HINT: &str = " (keyturn sent payload version 1.1 and the backend seems to expect 1.0: set secret_backend_protocol_version: \"1.0\" in your settings to send exactly {\"version\":\"1.0\",\"secrets\":[...]})";

/// Appends the stderr tail, scrubbed of the answer's values and of every value in `held`, and
/// the payload-version hint when stderr asks for it.
///
/// The tail is shown only when every value the backend may repeat there is one keyturn read in
/// full: stdout was read to its end and is empty or a valid answer. It is left out when stdout
/// was not read to its end (timeout, output cap), or is not a valid answer (cut short by a
/// crash or a kill, malformed, not UTF-8): a value cut in half, or never parsed, cannot be
/// recognised, and scrubbing its prefix would show the rest.
fn with_stderr(
    mut error: FetchError,
    output: &Output,
    held: &[Secret],
    protocol: PayloadVersion,
) -> FetchError {
    if output.stderr.is_empty() {
        return error;
    }
    if !output.stdout_complete {
        error
            .message
            .push_str("; stderr not shown: stdout was not read to its end");
        return error;
    }
    let values = if output.stdout.trim_ascii().is_empty() {
        Vec::new()
    } else if let Some(values) = answer_values(&output.stdout) {
        values
    } else {
        error.message.push_str(NOT_AN_ANSWER);
        return error;
    };
    let scrubber = Scrubber::new(
        values
            .iter()
            .map(|value| value.as_str())
            .chain(held.iter().map(|value| value.expose())),
    );
    let tail = scrubber.stderr_tail(&output.stderr);
    if tail.is_empty() {
        return error;
    }
    if protocol == PayloadVersion::V1_1
        && (tail.contains("invalid version") || tail.contains("expected 1.0"))
    {
        error.message.push_str(VERSION_HINT);
    }
    error.message.push_str("; stderr: ");
    error.message.push_str(&tail);
    error
}

/// Runs `<command> --version` (as the Agent does) with the run's checks and caps and a deadline of
/// `min(timeout, 1 s)`; the answer is stdout, trimmed.
pub(crate) async fn version(spec: &BackendSpec, options: &FetchOptions) -> Result<String, String> {
    if spec.backend_type.is_none() {
        return Err(
            "version only supported when secret_backend_type or multi_secret_backends is configured"
                .to_owned(),
        );
    }
    let probe = BackendSpec {
        args: vec!["--version".to_owned()],
        ..spec.clone()
    };
    let options = FetchOptions {
        timeout: options.timeout.min(std::time::Duration::from_secs(1)),
        ..options.clone()
    };
    let mut output = Output::new(options.output_max_size);
    let deadline = deadline_after(options.timeout);
    let run = match checked_start(&probe) {
        Ok(started) => drive(
            started,
            deadline,
            &options,
            Vec::new(),
            |_| None::<()>,
            &mut output,
        )
        .await
        .map(|(status, _)| status),
        Err(failure) => Err(failure),
    };
    match run {
        Ok(status) if status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        Ok(status) => Err(format!("version command failed: {}", exit_text(status))),
        Err(Failure::Timeout) => Err("version command timeout".to_owned()),
        Err(failure) => Err(format!(
            "version command failed: {}",
            backend_error(&probe, &failure, &options).message
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// A stream that hands out one chunk per read, then EOF.
    struct Chunks(VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(chunk) = self.0.pop_front() {
                buf.put_slice(&chunk);
            }
            Poll::Ready(Ok(()))
        }
    }

    /// What `read_watching` returns for `chunks`, and the lengths it gave `early`.
    async fn watch(chunks: &[&str]) -> (Option<usize>, Vec<usize>) {
        let stream = Chunks(chunks.iter().map(|c| c.as_bytes().to_vec()).collect());
        let mut capture = Capture::new(4096, RESERVED);
        let mut given = Vec::new();
        let early = |stdout: &[u8]| {
            given.push(stdout.len());
            Some(stdout.len())
        };
        let kept = read_watching(Some(stream), 4096, &mut capture, early)
            .await
            .unwrap();
        (kept, given)
    }

    #[tokio::test]
    async fn an_early_result_is_kept_only_for_the_whole_stream() {
        // Given as soon as the stream ends like an object, kept when nothing follows.
        assert_eq!(watch(&["{\"a\"", ":1}"]).await, (Some(7), vec![7]));
        // Blanks after the brace still end like an object, but make the stream longer.
        assert_eq!(watch(&["{\"a\":1}", "  "]).await, (None, vec![7]));
        assert_eq!(watch(&["{\"a\":1}\n"]).await, (Some(8), vec![8]));
        // A brace read before later reads of blanks is still the last byte.
        assert_eq!(watch(&["{", "}", " ", "\t"]).await, (Some(4), vec![2, 4]));
        assert_eq!(watch(&["{}", " x"]).await, (None, vec![2]));
    }

    #[tokio::test]
    async fn early_is_given_the_stream_again_only_once_it_has_doubled() {
        let (kept, given) = watch(&["}"; 64]).await;
        assert_eq!(given, [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(kept, Some(64));
    }
}
