//! The audit trail: one line appended to `<run_path>/secret-audit-file.json` after each refresh
//! that changed at least one value. Start reading at [`AuditWriter::append`].
//!
//! # File format
//!
//! Newline-delimited JSON, the record format of the Datadog Agent, so tools written for its
//! audit file read keyturn's:
//!
//! ```text
//! {"time":"2014-02-04T10:30:00Z","data":[{"handle":"a"},{"handle":"k","value":"***…f00d1"}],"trigger":"timer","failed":[{"handle":"b","reason":"missing"}]}
//! ```
//!
//! - `time`: RFC 3339 in UTC, fractional seconds only when non-zero (the clock is injected:
//!   every decision takes `now` from the caller).
//! - `data`: every handle of the refresh response, sorted by handle. `value` is present only for
//!   a likely API/application key, masked (see [`masked_key`]); no other value is ever written.
//! - `trigger` and `failed` are keyturn's additions (Datadog readers ignore unknown fields):
//!   what started the refresh, and the handles that failed with their [`FailureKind`] name.
//!
//! Existing lines are never re-encoded: a line keyturn keeps is kept byte for byte, foreign
//! fields included. [`scan`] reads a file back tolerantly.
//!
//! # Rotation and retention
//!
//! Before each append, in this order (the Datadog Agent's order, so pruning can spare a
//! rotation):
//! 1. If the first line of the file is older than the retention (90 days by default), or is not
//!    a record at all, the file is rewritten without its leading lines up to the first record
//!    within the retention; the rest is copied verbatim. The rewrite goes through a temporary
//!    file in the same directory, fsynced and renamed over the file, with mode 0600.
//! 2. Rotated files (`secret-audit-file.NNNNNN.json`) are deleted in index order while their
//!    modification time is older than the retention; the first younger one stops the deletion.
//! 3. If the file is not empty and the new line would take it past `max_size` (default 1 MiB,
//!    honoured, unlike the Agent), it is renamed to the next rotated name: the highest existing
//!    index plus one, six digits. If that name is taken the file is not rotated.
//!
//! A failure in these steps is logged (path and error only) and does not lose the record: the
//! append still happens, and the steps are retried an hour later (by the injected clock).
//!
//! # Crash safety
//!
//! - A record is one `write` of a whole line on a descriptor opened with `O_APPEND`, followed by
//!   an fsync (one per refresh). A crash can at worst cut the last line short; it never leaves a
//!   partial record between two whole ones.
//! - If that single write fails or is short (disk full), the file is truncated back to its
//!   previous length before the error is returned.
//! - A last line without its `\n` (torn by a crash, or written by another tool) is never touched:
//!   the next record is written with a leading `\n` in the same single write, so the fragment
//!   becomes a line of its own, which [`scan`] counts as invalid and a later prune drops. This
//!   keeps a complete record that merely lacks its newline valid, which truncating would not.
//! - The file is created with mode 0600 and opened with `O_NOFOLLOW`: a symbolic link, a
//!   directory or any other non-regular file at the path is an error, not a target, and so is
//!   a file of another user or one that group or others may access (checked on the open
//!   descriptor before every append: someone else could read the trail).
//! - One writer per file: rotation and truncation assume no other process appends.
//!
//! # Cost
//!
//! An append costs the same whatever the file's size: a `stat`, an open and `fstat`, a one-byte
//! read of the last byte (the torn-tail check, done on every append rather than remembered, so
//! it holds even if the file changed behind the writer's back), one write, one fsync. The file
//! is read only on the first append (its first line) and when a prune is due (the remembered
//! time of the first record has passed the retention, at most about once a retention period),
//! after which the remembered time is that of the new first line. The directory is listed only
//! on the first append, at rotation and when a rotated file is due for deletion.
//!
//! The caller decides when to append: the resolver appends once per refresh that changed a
//! value or failed, never for the initial resolution.

mod record;

/// What started a refresh: the `trigger` field of a [`Record`].
pub use crate::resolver::Trigger;
pub use record::{
    AuditEntry, FailedHandle, HeldBackUse, Record, Scan, ScannedEntry, ScannedFailure,
    ScannedRecord, masked_key, scan,
};

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use time::{OffsetDateTime, PrimitiveDateTime};

#[cfg(doc)]
use crate::backend::FailureKind;

/// The audit file's name inside the run directory.
pub const FILE_NAME: &str = "secret-audit-file.json";
/// Default of `secret_audit_file_max_size`: the size past which the file is rotated.
pub const DEFAULT_MAX_SIZE: u64 = 1_048_576;
/// How long records and rotated files are kept by default: 90 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Digits of the counter in rotated file names.
pub const ROTATION_WIDTH: usize = 6;

/// Mode of the audit file and of the prune's temporary file.
const FILE_MODE: u32 = 0o600;
/// Longest line read back; a longer one is treated as not a record. keyturn's own records are
/// bounded by the backend output cap, far below this.
const LINE_CAP: usize = 64 << 20;
/// How long housekeeping waits after a failure before trying again.
const HOUSEKEEPING_RETRY: time::Duration = time::Duration::HOUR;

/// The audit file of a run directory: `<run_path>/secret-audit-file.json`, or just the file name
/// (relative to the working directory) when `run_path` is empty.
pub fn audit_path(run_path: &Path) -> PathBuf {
    run_path.join(FILE_NAME)
}

/// The name of rotated file number `index`: the counter, zero-padded to `width` digits, goes
/// between the stem and the extension (`/tmp/file.txt`, 4, 7 gives `/tmp/file.0007.txt`;
/// `/tmp/file`, 4, 121 gives `/tmp/file.0121`).
pub fn rotated_path(path: &Path, width: usize, index: u64) -> PathBuf {
    let (stem, extension) = split_name(path);
    let mut name = stem.to_owned();
    name.push(format!(".{index:0width$}"));
    if let Some(extension) = extension {
        name.push(".");
        name.push(extension);
    }
    path.with_file_name(name)
}

/// The index of `name` if it is a rotated name of `path` (at least `width` digits).
pub fn rotated_index(path: &Path, width: usize, name: &OsStr) -> Option<u64> {
    let (stem, extension) = split_name(path);
    let rest = name
        .as_encoded_bytes()
        .strip_prefix(stem.as_encoded_bytes())?
        .strip_prefix(b".")?;
    let digits = match extension {
        Some(extension) => rest
            .strip_suffix(extension.as_encoded_bytes())?
            .strip_suffix(b".")?,
        None => rest,
    };
    if digits.len() < width || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Limits of one audit file: [`AuditLimits::default`] (the Agent's defaults) or
/// [`AuditLimits::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditLimits {
    /// `secret_audit_file_max_size`: a non-empty file is rotated before an append that would
    /// take it past this many bytes.
    pub max_size: u64,
    /// How long records and rotated files are kept.
    pub retention: Duration,
}

impl AuditLimits {
    /// A rotation size in bytes and a retention (at most
    /// [`MAX_DURATION`](crate::settings::MAX_DURATION); a longer one is shortened to it).
    pub fn new(max_size: u64, retention: Duration) -> AuditLimits {
        AuditLimits {
            max_size,
            retention: retention.min(crate::settings::MAX_DURATION),
        }
    }
}

impl Default for AuditLimits {
    fn default() -> AuditLimits {
        AuditLimits {
            max_size: DEFAULT_MAX_SIZE,
            retention: DEFAULT_RETENTION,
        }
    }
}

/// Why a record could not be appended. Names the file and the operation; never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file-system operation failed.
    #[error("could not {operation} audit file {}", path.display())]
    Io {
        /// What was being done.
        operation: Operation,
        /// The file (or directory) concerned.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
    /// The path exists and is not a regular file (a directory, a symbolic link, ...).
    #[error("audit file {} is not a regular file", path.display())]
    NotAFile {
        /// The audit file's path.
        path: PathBuf,
    },
    /// The file belongs to another user, or group or others may access it: they could read
    /// the trail (or it was created for them to).
    #[error("audit file {}: {problem}", path.display())]
    NotPrivate {
        /// The audit file's path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The single write of the record wrote only part of it (the file was truncated back).
    #[error("could not write a whole record to audit file {}: wrote {written} of {len} bytes", path.display())]
    ShortWrite {
        /// The audit file's path.
        path: PathBuf,
        /// Bytes the write reported.
        written: usize,
        /// Bytes of the line.
        len: usize,
    },
    /// The record could not be encoded (its time is outside the years 0 to 9999).
    #[error("could not encode a record for audit file {}: {reason}", path.display())]
    Encode {
        /// The audit file's path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// The file-system operation an [`AuditError::Io`] failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `stat` of the file.
    Inspect,
    /// Opening the file.
    Open,
    /// Reading the file.
    Read,
    /// Appending the record.
    Write,
    /// Flushing the file or its directory to disk.
    Sync,
    /// Listing the directory for rotated files.
    List,
    /// Renaming the file to its rotated name.
    Rotate,
    /// Rewriting the file without its expired head.
    Prune,
    /// Deleting an expired rotated file.
    RemoveRotated,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Inspect => "inspect",
            Operation::Open => "open",
            Operation::Read => "read",
            Operation::Write => "append to",
            Operation::Sync => "sync",
            Operation::List => "list rotated files of",
            Operation::Rotate => "rotate",
            Operation::Prune => "prune",
            Operation::RemoveRotated => "remove expired rotated file of",
        })
    }
}

/// Appends records to one audit file, rotating and pruning it. Holds only what it remembers
/// between appends (the time of the first record, the age of the oldest rotated file); the
/// file itself is opened for each append.
#[derive(Debug)]
pub struct AuditWriter {
    path: PathBuf,
    limits: AuditLimits,
    /// `None` until the first append, and again after an append failed (so the next one looks
    /// at the file afresh).
    state: Option<State>,
    /// After a housekeeping failure: no housekeeping before this time.
    retry_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    head: Head,
    rotated: Rotated,
}

/// What the file starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nothing: the file is missing or empty.
    Empty,
    /// A record of this time.
    Record(OffsetDateTime),
    /// A line that is not a record: pruned on the next append.
    Invalid,
}

/// What is known of the rotated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotated {
    /// Not listed yet (or a housekeeping step failed).
    Unknown,
    /// There are none.
    None,
    /// The lowest-index one was last modified at this time.
    Oldest(OffsetDateTime),
}

impl AuditWriter {
    /// A writer for the file at `path` (see [`audit_path`]). Nothing is touched before the first
    /// [`append`](AuditWriter::append).
    pub fn new(path: PathBuf, limits: AuditLimits) -> AuditWriter {
        AuditWriter {
            path,
            limits,
            state: None,
            retry_at: None,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record`, stamped `now`, as one line; prunes and rotates first (see the module
    /// documentation). `now` is also the clock against which file modification times are
    /// compared. On error nothing of the record remains in the file.
    pub fn append(&mut self, record: &Record, now: OffsetDateTime) -> Result<(), AuditError> {
        let line = record.encode(now).map_err(|reason| AuditError::Encode {
            path: self.path.clone(),
            reason,
        })?;
        let mut state = match self.state.take() {
            Some(state) => state,
            None => self.load()?,
        };
        self.housekeep(&mut state, now, line.len());
        self.write_line(&line)?;
        if state.head == Head::Empty {
            state.head = Head::Record(now);
        }
        self.state = Some(state);
        Ok(())
    }

    /// First use: what the file starts with. Reads the first line only.
    fn load(&self) -> Result<State, AuditError> {
        let head = match fs::symlink_metadata(&self.path) {
            Ok(meta) if !meta.is_file() => return Err(self.not_a_file()),
            Ok(_) => {
                let file = open_read(&self.path).map_err(|err| self.io(Operation::Open, err))?;
                let mut reader = BufReader::new(file);
                let mut line = Vec::new();
                match read_line(&mut reader, &mut line, LINE_CAP)
                    .map_err(|err| self.io(Operation::Read, err))?
                {
                    None => Head::Empty,
                    Some(LineRead::Overlong) => Head::Invalid,
                    Some(LineRead::Line) => {
                        record::record_time(&line).map_or(Head::Invalid, Head::Record)
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Head::Empty,
            Err(err) => return Err(self.io(Operation::Inspect, err)),
        };
        Ok(State {
            head,
            rotated: Rotated::Unknown,
        })
    }

    /// Prune, remove expired rotated files, rotate; failures are logged, never fatal.
    fn housekeep(&mut self, state: &mut State, now: OffsetDateTime, line_len: usize) {
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.retry_at = None;
        if let Err(err) = self.try_housekeep(state, now, line_len) {
            tracing::error!(
                path = %self.path.display(),
                error = &err as &dyn std::error::Error,
                "audit file housekeeping failed; appending anyway, retrying in an hour"
            );
            state.rotated = Rotated::Unknown;
            self.retry_at = now.checked_add(HOUSEKEEPING_RETRY);
        }
    }

    fn try_housekeep(
        &self,
        state: &mut State,
        now: OffsetDateTime,
        line_len: usize,
    ) -> Result<(), AuditError> {
        let cutoff = time::Duration::try_from(self.limits.retention)
            .ok()
            .and_then(|retention| now.checked_sub(retention));
        let expired = |time: OffsetDateTime| cutoff.is_some_and(|cutoff| time < cutoff);
        let prune_due = match state.head {
            Head::Empty => false,
            Head::Record(time) => expired(time),
            Head::Invalid => true,
        };
        if prune_due {
            state.head = self.prune(cutoff)?;
        }
        if state.rotated == Rotated::Unknown {
            state.rotated = match self.list_rotated()?.first() {
                Some((_, path)) => Rotated::Oldest(self.modified(path)?),
                None => Rotated::None,
            };
        }
        if let Rotated::Oldest(oldest) = state.rotated
            && expired(oldest)
        {
            state.rotated = self.remove_expired_rotated(&expired)?;
        }
        let size = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta.len(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
            Err(err) => return Err(self.io(Operation::Inspect, err)),
        };
        let len = u64::try_from(line_len).unwrap_or(u64::MAX);
        if size > 0 && size.saturating_add(len) > self.limits.max_size {
            self.rotate(state, now)?;
        }
        Ok(())
    }

    /// Rewrites the file without its leading lines up to the first record within the
    /// retention, which is kept verbatim with everything after it. Returns the new head.
    fn prune(&self, cutoff: Option<OffsetDateTime>) -> Result<Head, AuditError> {
        let prune_err = |err| self.io(Operation::Prune, err);
        let source = match open_read(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Head::Empty),
            Err(err) => return Err(prune_err(err)),
        };
        let mut reader = BufReader::with_capacity(1 << 16, source);
        let mut line = Vec::new();
        let kept = loop {
            match read_line(&mut reader, &mut line, LINE_CAP).map_err(prune_err)? {
                None => break None,
                Some(LineRead::Overlong) => {}
                Some(LineRead::Line) => {
                    let time = record::record_time(&line);
                    if let Some(time) = time.filter(|&t| cutoff.is_none_or(|cutoff| t >= cutoff)) {
                        break Some(time);
                    }
                }
            }
        };
        let temp = temp_path(&self.path);
        let written = (|| {
            let mut out = create_temp(&temp)?;
            if kept.is_some() {
                out.write_all(&line)?;
                io::copy(&mut reader, &mut out)?;
            }
            out.sync_all()?;
            fs::rename(&temp, &self.path)
        })();
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(prune_err(err));
        }
        sync_dir(&self.path).map_err(|err| self.io(Operation::Sync, err))?;
        Ok(kept.map_or(Head::Empty, Head::Record))
    }

    /// Deletes rotated files in index order while they are expired. Returns what remains.
    fn remove_expired_rotated(
        &self,
        expired: &impl Fn(OffsetDateTime) -> bool,
    ) -> Result<Rotated, AuditError> {
        for (_, path) in self.list_rotated()? {
            let modified = self.modified(&path)?;
            if !expired(modified) {
                return Ok(Rotated::Oldest(modified));
            }
            fs::remove_file(&path).map_err(|err| self.io(Operation::RemoveRotated, err))?;
        }
        Ok(Rotated::None)
    }

    /// Renames the file to the next rotated name, unless that name is taken.
    fn rotate(&self, state: &mut State, now: OffsetDateTime) -> Result<(), AuditError> {
        let next = self
            .list_rotated()?
            .last()
            .map_or(0, |(index, _)| index.saturating_add(1));
        let target = rotated_path(&self.path, ROTATION_WIDTH, next);
        if fs::symlink_metadata(&target).is_ok() {
            tracing::warn!(
                path = %self.path.display(),
                target = %target.display(),
                "audit file not rotated: the rotated name is taken"
            );
            return Ok(());
        }
        fs::rename(&self.path, &target).map_err(|err| self.io(Operation::Rotate, err))?;
        state.head = Head::Empty;
        sync_dir(&self.path).map_err(|err| self.io(Operation::Sync, err))?;
        if state.rotated == Rotated::None {
            // The file was last written no later than `now`; the earlier of the two keeps
            // retention exact with a real clock and meaningful with an injected one.
            state.rotated = Rotated::Oldest(self.modified(&target)?.min(now));
        }
        Ok(())
    }

    /// Opens (creating with mode 0600), writes the line in one `write`, fsyncs.
    fn write_line(&self, line: &[u8]) -> Result<(), AuditError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|err| self.io(Operation::Open, err))?;
        let meta = file
            .metadata()
            .map_err(|err| self.io(Operation::Inspect, err))?;
        if !meta.is_file() {
            return Err(self.not_a_file());
        }
        let current = nix::unistd::geteuid().as_raw();
        if let Some(problem) = crate::trusted_path::private_file_problem(&meta, current) {
            return Err(AuditError::NotPrivate {
                path: self.path.clone(),
                problem,
            });
        }
        let size = meta.len();
        let torn = if size == 0 {
            false
        } else {
            let mut last = [0u8];
            let read = file
                .read_at(&mut last, size - 1)
                .map_err(|err| self.io(Operation::Read, err))?;
            read == 1 && last[0] != b'\n'
        };
        let bytes: Cow<'_, [u8]> = if torn {
            Cow::Owned([b"\n", line].concat())
        } else {
            Cow::Borrowed(line)
        };
        append_once(&mut file, &bytes, size).map_err(|failure| match failure {
            AppendFailure::Io(err) => self.io(Operation::Write, err),
            AppendFailure::Short(written) => AuditError::ShortWrite {
                path: self.path.clone(),
                written,
                len: bytes.len(),
            },
        })?;
        if let Err(err) = file.sync_data() {
            let _ = file.set_len(size);
            return Err(self.io(Operation::Sync, err));
        }
        if size == 0 {
            // The file may be new: make its directory entry durable too.
            sync_dir(&self.path).map_err(|err| self.io(Operation::Sync, err))?;
        }
        Ok(())
    }

    /// Rotated files of this path, by index.
    fn list_rotated(&self) -> Result<Vec<(u64, PathBuf)>, AuditError> {
        let dir = parent_dir(&self.path);
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(self.io(Operation::List, err)),
        };
        let mut rotated = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| self.io(Operation::List, err))?;
            let Some(index) = rotated_index(&self.path, ROTATION_WIDTH, &entry.file_name()) else {
                continue;
            };
            if entry.file_type().is_ok_and(|kind| kind.is_file()) {
                rotated.push((index, entry.path()));
            }
        }
        rotated.sort();
        Ok(rotated)
    }

    /// Modification time of `path`; a time `time` cannot hold reads as the latest it can (never
    /// expired).
    fn modified(&self, path: &Path) -> Result<OffsetDateTime, AuditError> {
        let modified = fs::symlink_metadata(path)
            .and_then(|meta| meta.modified())
            .map_err(|err| self.io(Operation::Inspect, err))?;
        Ok(offset_date_time(modified).unwrap_or(PrimitiveDateTime::MAX.assume_utc()))
    }

    fn io(&self, operation: Operation, source: io::Error) -> AuditError {
        AuditError::Io {
            operation,
            path: self.path.clone(),
            source,
        }
    }

    fn not_a_file(&self) -> AuditError {
        AuditError::NotAFile {
            path: self.path.clone(),
        }
    }
}

/// Where a single write may go: a real file, or a fake in tests.
trait AppendTarget {
    /// One `write` call.
    fn write_once(&mut self, bytes: &[u8]) -> io::Result<usize>;
    /// Cut the file back to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl AppendTarget for File {
    fn write_once(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write(bytes)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

enum AppendFailure {
    Io(io::Error),
    Short(usize),
}

/// Writes `bytes` in one call (retried only when interrupted before writing anything); on
/// failure or a short write, truncates the target back to `size_before` (best effort).
fn append_once(
    target: &mut impl AppendTarget,
    bytes: &[u8],
    size_before: u64,
) -> Result<(), AppendFailure> {
    let result = loop {
        match target.write_once(bytes) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let failure = match result {
        Ok(written) if written == bytes.len() => return Ok(()),
        Ok(written) => AppendFailure::Short(written),
        Err(err) => AppendFailure::Io(err),
    };
    // If this fails too, the next append's leading `\n` still isolates the fragment.
    let _ = target.truncate(size_before);
    Err(failure)
}

enum LineRead {
    /// `line` holds the line, with its `\n` if it had one.
    Line,
    /// The line was longer than the cap; it was skipped and `line` is empty.
    Overlong,
}

/// Reads the next line into `line` (cleared first), holding at most `cap` bytes of it.
/// `None` at end of input.
fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<LineRead>> {
    line.clear();
    let mut read_any = false;
    let mut overlong = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            break;
        }
        read_any = true;
        // Up to and including the first newline, or all of it.
        let chunk = available
            .split_inclusive(|&byte| byte == b'\n')
            .next()
            .unwrap_or_default();
        let (take, ends_line) = (chunk.len(), chunk.ends_with(b"\n"));
        if !overlong {
            if line.len() + take > cap {
                overlong = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(take);
        if ends_line {
            break;
        }
    }
    Ok(match (read_any, overlong) {
        (false, _) => None,
        (true, true) => Some(LineRead::Overlong),
        (true, false) => Some(LineRead::Line),
    })
}

fn split_name(path: &Path) -> (&OsStr, Option<&OsStr>) {
    (path.file_stem().unwrap_or_default(), path.extension())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `.<name>.tmp` next to the file: same directory, so the rename is atomic; hidden, so it never
/// looks like a rotated file.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    path.with_file_name(name)
}

/// Creates the prune's temporary file with mode 0600, replacing one left by a crash.
fn create_temp(temp: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(temp)
    };
    match open() {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(temp)?;
            open()
        }
        other => other,
    }
}

fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Flushes the directory holding `path`, so a create or rename in it survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

/// `SystemTime` to `OffsetDateTime` without the panic of the `From` impl on out-of-range times.
fn offset_date_time(time: SystemTime) -> Option<OffsetDateTime> {
    let epoch = OffsetDateTime::UNIX_EPOCH;
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => epoch.checked_add(time::Duration::try_from(after).ok()?),
        Err(before) => epoch.checked_sub(time::Duration::try_from(before.duration()).ok()?),
    }
}

#[cfg(test)]
mod tests;
