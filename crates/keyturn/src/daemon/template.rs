//! One template: its parsed source, the values its handles currently render to, and what
//! happened the last time it was written.
//!
//! The source is read and parsed once (per start or reload) and kept; every later render
//! splices values into that cached [`Document`]. Values are held per use (handle and key path)
//! and only arrive through resolver change notifications (`Template::record`), which is also
//! what marks the template dirty, so a refresh re-renders exactly the templates whose values
//! changed, and a use the refresh allowlist held back keeps the value it was last rendered
//! with, even when another use of the same handle in the same template changed.
//!
//! Invariants:
//! - A destination is written only when every handle of the template has a value, and only
//!   when its bytes or mode differ from what is on disk; writes are atomic.
//! - A template stays dirty until a write of its latest values succeeded: a failed or
//!   interrupted write, or a value that arrived during the write, leaves it dirty, so the next
//!   refresh (or retry) writes it again.
//! - A template whose destination changed keeps its `on_change` command due until a run of it
//!   succeeds.
//! - The destination is read before a write only as a regular file, without following a link
//!   or waiting on a FIFO, and at most one byte past the rendered size
//!   ([`read_existing`]).
//! - Its first render removes the temporary files an interrupted write of its destination left
//!   (a crash mid-write, see [`remove_stale_temps`]): they may hold part of a secret.
//! - Values live in [`Secret`]s; statuses and errors name handles and paths only.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use super::config::TemplateConfig;
use crate::atomic_file::{read_existing, remove_stale_temps, write_atomic};
use crate::document::{Document, DocumentError, HandleSite, KeyPath};
use crate::resolver::Change;
use crate::secret::Secret;

/// Why a template's source could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The source could not be read.
    #[error("cannot read template {path}: {cause}")]
    Read {
        /// The source.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// The source is not a valid document of its format.
    #[error("template {path}: {cause}")]
    Parse {
        /// The source.
        path: PathBuf,
        /// What is wrong (never quotes the text).
        cause: DocumentError,
    },
}

/// A template as the daemon holds it.
pub(crate) struct Template {
    pub(crate) config: TemplateConfig,
    /// The origin of its handles in the resolver: the source path.
    pub(crate) origin: String,
    document: Document,
    state: Mutex<State>,
}

struct State {
    /// handle -> key path -> the value the next render uses there.
    values: HashMap<String, HashMap<KeyPath, Secret>>,
    /// Whether `values` changed since the destination was last written with them.
    dirty: bool,
    /// Counts the changes to `values`, so that a write clears `dirty` only if no value
    /// arrived while it was writing.
    version: u64,
    /// Whether the leftovers of interrupted writes were looked for.
    swept: bool,
    outcome: Outcome,
    /// Why the last `on_change` run failed.
    on_change_error: Option<String>,
    /// The destination changed and its `on_change` command has not completed since.
    on_change_pending: bool,
}

/// What the last render of a template did.
// Exhaustive on purpose: whoever starts a program once its files are written (`keyturn exec`)
// must decide for every outcome whether the file is there, so a new one must not compile
// unnoticed into a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Not rendered yet.
    Pending,
    /// The destination holds the current render (written now or already identical).
    Written,
    /// Some handles have no value: the destination was not written.
    Unresolved {
        /// The handles without a value, sorted.
        handles: Vec<String>,
    },
    /// Writing the destination failed; it is retried on the next refresh.
    WriteFailed {
        /// Why.
        error: String,
    },
}

/// What [`Template::render_and_write`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Nothing changed since the last render.
    Clean,
    /// Rendered; the destination already held these bytes and mode.
    Unchanged,
    /// Rendered and written: the destination's content changed.
    Changed,
    /// Not written: handles without a value.
    Unresolved(Vec<String>),
    /// Writing failed.
    Failed(String),
}

/// A template's status, for `/secrets` and `keyturn status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TemplateStatus {
    /// The source path (the origin of its handles).
    pub source: String,
    /// The destination path.
    pub destination: String,
    /// What the last render did.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Why the last `on_change` run failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_change_error: Option<String>,
    /// Whether the destination changed and its `on_change` command has not completed since:
    /// it runs again on the next refresh.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub on_change_pending: bool,
}

impl Template {
    /// Reads and parses the source of `config`.
    pub(crate) fn load(config: TemplateConfig) -> Result<Template, TemplateError> {
        let path = &config.source;
        let text = fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.clone(),
            cause: source,
        })?;
        let document =
            Document::parse(text, config.format).map_err(|source| TemplateError::Parse {
                path: path.clone(),
                cause: source,
            })?;
        Ok(Template {
            origin: path.display().to_string(),
            config,
            document,
            state: Mutex::new(State {
                values: HashMap::new(),
                // The first render writes even a template without handles.
                dirty: true,
                version: 0,
                swept: false,
                outcome: Outcome::Pending,
                on_change_error: None,
                on_change_pending: false,
            }),
        })
    }

    /// The parsed source.
    pub(crate) fn document(&self) -> &Document {
        &self.document
    }

    /// Takes a changed value for one use (a resolver notification for this template's origin).
    pub(crate) fn record(&self, change: &Change<'_>) {
        let mut state = self.lock();
        state
            .values
            .entry(change.handle.to_owned())
            .or_default()
            .insert(change.path.clone(), Secret::new(change.new));
        state.dirty = true;
        state.version += 1;
    }

    /// How many uses hold a value other than `current` gives for their handle (uses a refresh
    /// allowlist held back).
    pub(crate) fn stale_uses(&self, current: impl Fn(&str) -> Option<Secret>) -> usize {
        let state = self.lock();
        state
            .values
            .iter()
            .map(|(handle, uses)| match current(handle) {
                Some(value) => uses
                    .values()
                    .filter(|used| used.expose() != value.expose())
                    .count(),
                None => 0,
            })
            .sum()
    }

    /// When dirty: renders from the current values and writes the destination if every handle
    /// has a value and the result differs from what is on disk. Blocking file I/O. The daemon
    /// calls it for one template at a time, so no write of the destination is in flight.
    pub(crate) fn render_and_write(&self) -> Written {
        self.render_and_write_with(write_if_different)
    }

    /// [`Template::render_and_write`] with the write step given (tests interrupt it).
    fn render_and_write_with(
        &self,
        write: impl FnOnce(&Path, &str, u32) -> io::Result<bool>,
    ) -> Written {
        if !std::mem::replace(&mut self.lock().swept, true) {
            let destination = self.config.destination.display();
            match remove_stale_temps(&self.config.destination) {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    %destination,
                    removed,
                    "removed temporary files left by an interrupted write"
                ),
                Err(e) => tracing::warn!(
                    %destination,
                    "could not look for temporary files left by an interrupted write: {e}"
                ),
            }
        }
        let (rendered, version) = {
            let mut state = self.lock();
            if !state.dirty {
                return Written::Clean;
            }
            let mut missing: Vec<String> = self
                .document
                .sites()
                .filter(|site| value_at(&state.values, site).is_none())
                .map(|site| site.handle())
                .collect::<HashSet<&str>>()
                .into_iter()
                .map(str::to_owned)
                .collect();
            if !missing.is_empty() {
                // Nothing to write until a value arrives, which makes it dirty again.
                state.dirty = false;
                missing.sort();
                missing.dedup();
                state.outcome = Outcome::Unresolved {
                    handles: missing.clone(),
                };
                return Written::Unresolved(missing);
            }
            let values = &state.values;
            let rendered = self
                .document
                .render_sites(|site| value_at(values, site).map(Secret::expose));
            (rendered, state.version)
        };
        let result = write(&self.config.destination, &rendered, self.config.mode);
        let mut state = self.lock();
        match result {
            Ok(changed) => {
                // A value that arrived meanwhile is not in this write: still dirty, and the
                // destination not yet current.
                if state.version == version {
                    state.dirty = false;
                    state.outcome = Outcome::Written;
                }
                if changed {
                    Written::Changed
                } else {
                    Written::Unchanged
                }
            }
            Err(e) => {
                let error = format!("cannot write {}: {e}", self.config.destination.display());
                state.outcome = Outcome::WriteFailed {
                    error: error.clone(),
                };
                Written::Failed(error)
            }
        }
    }

    /// The destination changed: its `on_change` command must run (and complete).
    pub(crate) fn on_change_due(&self) {
        self.lock().on_change_pending = true;
    }

    /// Whether the `on_change` command must run now. If so, until [`Template::end_on_change`]
    /// the status says it was interrupted: a run that is dropped (shutdown) is reported as
    /// such, and stays due.
    pub(crate) fn begin_on_change(&self) -> bool {
        let mut state = self.lock();
        if state.on_change_pending {
            state.on_change_error = Some(format!(
                "{}: on_change command was interrupted before it completed",
                self.config.destination.display()
            ));
        }
        state.on_change_pending
    }

    /// Records the outcome of an `on_change` run: done on success, still due otherwise.
    pub(crate) fn end_on_change(&self, error: Option<String>) {
        let mut state = self.lock();
        state.on_change_pending = error.is_some();
        state.on_change_error = error;
    }

    /// The current status.
    pub(crate) fn status(&self) -> TemplateStatus {
        let state = self.lock();
        TemplateStatus {
            source: self.origin.clone(),
            destination: self.config.destination.display().to_string(),
            outcome: state.outcome.clone(),
            on_change_error: state.on_change_error.clone(),
            on_change_pending: state.on_change_pending,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The value recorded for the use at `site`.
fn value_at<'a>(
    values: &'a HashMap<String, HashMap<KeyPath, Secret>>,
    site: &HandleSite<'_>,
) -> Option<&'a Secret> {
    values.get(site.handle())?.get(site.path())
}

/// Writes `contents` to `path` with `mode` unless the file already has both. Returns whether the
/// content changed (a mode-only fix is not a change). Anything but a regular file at `path` is
/// an error.
fn write_if_different(path: &Path, contents: &str, mode: u32) -> io::Result<bool> {
    let existing = read_existing(path, contents.len())?;
    let same_content = existing
        .as_ref()
        .is_some_and(|existing| existing.head.as_slice() == contents.as_bytes());
    if same_content && existing.is_some_and(|existing| existing.mode == mode) {
        return Ok(false);
    }
    write_atomic(path, contents.as_bytes(), mode)?;
    Ok(!same_content)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use crate::document::Format;

    fn template(dir: &Path, source: &str, mode: u32) -> Template {
        let path = dir.join("source.yaml");
        fs::write(&path, source).unwrap();
        Template::load(TemplateConfig {
            source: path,
            destination: dir.join("out.yaml"),
            mode,
            format: Format::Yaml,
            refresh_allowlist: None,
            on_change: None,
        })
        .unwrap()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_once_then_only_when_different() {
        let dir = tempfile::tempdir().unwrap();
        let t = template(dir.path(), "plain: value\n", 0o640);
        let out = dir.path().join("out.yaml");
        assert_eq!(t.render_and_write(), Written::Changed);
        assert_eq!(fs::read_to_string(&out).unwrap(), "plain: value\n");
        assert_eq!(mode_of(&out), 0o640);
        assert_eq!(t.status().outcome, Outcome::Written);
        assert_eq!(t.render_and_write(), Written::Clean);

        // Dirty again with the same bytes on disk: nothing to write.
        t.lock().dirty = true;
        assert_eq!(t.render_and_write(), Written::Unchanged);
        // A wrong mode is fixed without counting as a change.
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
        t.lock().dirty = true;
        assert_eq!(t.render_and_write(), Written::Unchanged);
        assert_eq!(mode_of(&out), 0o640);
        // Different bytes on disk: rewritten.
        fs::write(&out, "tampered\n").unwrap();
        t.lock().dirty = true;
        assert_eq!(t.render_and_write(), Written::Changed);
        assert_eq!(fs::read_to_string(&out).unwrap(), "plain: value\n");
    }

    /// Renders `t` on another thread; fails the test if that takes more than a minute (it used
    /// to hang for ever on a FIFO).
    fn render_in_time(t: Template) -> (Template, Written) {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let written = t.render_and_write();
            let _ = done.send((t, written));
        });
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("rendering hung")
    }

    /// Regression: a FIFO at the destination hung the render for ever, and a link to
    /// `/dev/zero` was read without limit.
    #[test]
    fn a_destination_that_is_not_a_regular_file_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.yaml");
        nix::unistd::mkfifo(&out, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (t, written) = render_in_time(template(dir.path(), "plain: value\n", 0o600));
        let expected = format!(
            "cannot write {}: it is a FIFO, not a regular file; only a regular file is replaced",
            out.display()
        );
        assert_eq!(written, Written::Failed(expected.clone()));
        assert_eq!(t.status().outcome, Outcome::WriteFailed { error: expected });

        fs::remove_file(&out).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &out).unwrap();
        let (t, written) = render_in_time(t);
        assert!(
            matches!(&written, Written::Failed(e) if e.ends_with("it is a symbolic link, not a regular file; only a regular file is replaced")),
            "{written:?}"
        );
        // Still dirty: once the way is clear, the next render writes.
        fs::remove_file(&out).unwrap();
        assert_eq!(t.render_and_write(), Written::Changed);
        assert_eq!(fs::read_to_string(&out).unwrap(), "plain: value\n");
    }

    /// A write that did not finish (here a panic in it) leaves the template dirty; so does a
    /// value that arrived while the write was in progress.
    #[test]
    fn dirty_until_a_write_of_the_latest_values_succeeded() {
        let dir = tempfile::tempdir().unwrap();
        let t = template(dir.path(), "plain: value\n", 0o600);
        let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.render_and_write_with(|_, _, _| panic!("interrupted"))
        }));
        assert!(interrupted.is_err());
        assert_eq!(t.render_and_write(), Written::Changed, "still dirty");

        t.lock().dirty = true;
        let written = t.render_and_write_with(|path, contents, mode| {
            t.record(&Change {
                origin: &t.origin,
                handle: "h",
                path: &crate::document::KeyPath::root(),
                old: "",
                new: "v",
            });
            write_if_different(path, contents, mode)
        });
        assert_eq!(written, Written::Unchanged);
        assert_ne!(
            t.render_and_write(),
            Written::Clean,
            "the new value is not written yet"
        );
    }

    #[test]
    fn failed_write_stays_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.yaml");
        fs::write(&path, "a: 1\n").unwrap();
        let t = Template::load(TemplateConfig {
            source: path,
            destination: dir.path().join("missing-dir").join("out.yaml"),
            mode: 0o600,
            format: Format::Yaml,
            refresh_allowlist: None,
            on_change: None,
        })
        .unwrap();
        let Written::Failed(error) = t.render_and_write() else {
            panic!("expected a failure")
        };
        assert!(error.starts_with("cannot write "), "{error}");
        assert!(matches!(t.status().outcome, Outcome::WriteFailed { .. }));
        assert!(
            matches!(t.render_and_write(), Written::Failed(_)),
            "retried"
        );
        fs::create_dir(dir.path().join("missing-dir")).unwrap();
        assert_eq!(t.render_and_write(), Written::Changed);
        assert_eq!(t.render_and_write(), Written::Clean);
    }

    #[test]
    fn load_errors_name_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let err = Template::load(TemplateConfig {
            source: dir.path().join("absent.yaml"),
            destination: dir.path().join("out.yaml"),
            mode: 0o600,
            format: Format::Yaml,
            refresh_allowlist: None,
            on_change: None,
        })
        .err()
        .unwrap();
        assert!(
            err.to_string().starts_with("cannot read template ")
                && err.to_string().contains("absent.yaml"),
            "{err}"
        );
    }

    #[test]
    fn status_serializes_flat() {
        let status = TemplateStatus {
            source: "/s.yaml".into(),
            destination: "/d.yaml".into(),
            outcome: Outcome::Unresolved {
                handles: vec!["db".into()],
            },
            on_change_error: None,
            on_change_pending: false,
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"source": "/s.yaml", "destination": "/d.yaml", "state": "unresolved", "handles": ["db"]})
        );
    }
}
