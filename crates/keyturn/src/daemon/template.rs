//! One template: its parsed source, the values its handles currently render to, and what
//! happened the last time it was written.
//!
//! The source is read and parsed once (per start or reload) and kept; every later render
//! splices values into that cached [`Document`]. Values only arrive through resolver change
//! notifications (`Template::record`), which is also what marks the template dirty, so a
//! refresh re-renders exactly the templates whose values changed, and a refresh allowlist that
//! keeps a use from being notified keeps its old value in the output.
//!
//! Invariants:
//! - A destination is written only when every handle of the template has a value, and only
//!   when its bytes or mode differ from what is on disk; writes are atomic.
//! - A template whose write failed stays dirty, so the next refresh (or retry) writes it again.
//! - Its first render removes the temporary files an interrupted write of its destination left
//!   (a crash mid-write, see [`remove_stale_temps`]): they may hold part of a secret.
//! - Values live in [`Secret`]s; statuses and errors name handles and paths only.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use zeroize::Zeroizing;

use super::config::TemplateConfig;
use crate::atomic_file::{remove_stale_temps, write_atomic};
use crate::document::{Document, DocumentError};
use crate::resolver::Change;
use crate::secret::Secret;

/// Why a template's source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The source could not be read.
    #[error("cannot read template {path}: {source}")]
    Read {
        /// The source.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The source is not a valid document of its format.
    #[error("template {path}: {source}")]
    Parse {
        /// The source.
        path: PathBuf,
        /// What is wrong (never quotes the text).
        source: DocumentError,
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
    /// handle -> the value the next render uses.
    values: HashMap<String, Secret>,
    dirty: bool,
    /// Whether the leftovers of interrupted writes were looked for.
    swept: bool,
    outcome: Outcome,
    /// Why the last `on_change` run failed.
    on_change_error: Option<String>,
}

/// What the last render of a template did.
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
}

impl Template {
    /// Reads and parses the source of `config`.
    pub(crate) fn load(config: TemplateConfig) -> Result<Template, TemplateError> {
        let path = &config.source;
        let text = fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.clone(),
            source,
        })?;
        let document =
            Document::parse(text, config.format).map_err(|source| TemplateError::Parse {
                path: path.clone(),
                source,
            })?;
        Ok(Template {
            origin: path.display().to_string(),
            config,
            document,
            state: Mutex::new(State {
                values: HashMap::new(),
                // The first render writes even a template without handles.
                dirty: true,
                swept: false,
                outcome: Outcome::Pending,
                on_change_error: None,
            }),
        })
    }

    /// The parsed source.
    pub(crate) fn document(&self) -> &Document {
        &self.document
    }

    /// Takes a changed value (a resolver notification for this template's origin).
    pub(crate) fn record(&self, change: &Change<'_>) {
        let mut state = self.lock();
        state
            .values
            .insert(change.handle.to_owned(), Secret::new(change.new));
        state.dirty = true;
    }

    /// When dirty: renders from the current values and writes the destination if every handle
    /// has a value and the result differs from what is on disk. Blocking file I/O. The daemon
    /// calls it for one template at a time, so no write of the destination is in flight.
    pub(crate) fn render_and_write(&self) -> Written {
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
        let rendered = {
            let mut state = self.lock();
            if !state.dirty {
                return Written::Clean;
            }
            state.dirty = false;
            let mut missing: Vec<String> = self
                .document
                .handles()
                .into_iter()
                .filter(|handle| !state.values.contains_key(*handle))
                .map(str::to_owned)
                .collect();
            if !missing.is_empty() {
                missing.sort();
                missing.dedup();
                state.outcome = Outcome::Unresolved {
                    handles: missing.clone(),
                };
                return Written::Unresolved(missing);
            }
            let values = &state.values;
            self.document
                .render(|handle| values.get(handle).map(Secret::expose))
        };
        let result = write_if_different(&self.config.destination, &rendered, self.config.mode);
        let mut state = self.lock();
        match result {
            Ok(changed) => {
                state.outcome = Outcome::Written;
                if changed {
                    Written::Changed
                } else {
                    Written::Unchanged
                }
            }
            Err(e) => {
                let error = format!("cannot write {}: {e}", self.config.destination.display());
                state.dirty = true;
                state.outcome = Outcome::WriteFailed {
                    error: error.clone(),
                };
                Written::Failed(error)
            }
        }
    }

    /// Records the outcome of an `on_change` run.
    pub(crate) fn set_on_change_error(&self, error: Option<String>) {
        self.lock().on_change_error = error;
    }

    /// The current status.
    pub(crate) fn status(&self) -> TemplateStatus {
        let state = self.lock();
        TemplateStatus {
            source: self.origin.clone(),
            destination: self.config.destination.display().to_string(),
            outcome: state.outcome.clone(),
            on_change_error: state.on_change_error.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writes `contents` to `path` with `mode` unless the file already has both. Returns whether the
/// content changed (a mode-only fix is not a change).
fn write_if_different(path: &Path, contents: &str, mode: u32) -> io::Result<bool> {
    let current = match fs::read(path) {
        Ok(bytes) => Some(Zeroizing::new(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let same_content = current
        .as_ref()
        .is_some_and(|bytes| bytes.as_slice() == contents.as_bytes());
    if same_content {
        let current_mode = fs::metadata(path)?.permissions().mode() & 0o7777;
        if current_mode == mode {
            return Ok(false);
        }
    }
    write_atomic(path, contents.as_bytes(), mode)?;
    Ok(!same_content)
}

#[cfg(test)]
mod tests {
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
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"source": "/s.yaml", "destination": "/d.yaml", "state": "unresolved", "handles": ["db"]})
        );
    }
}
