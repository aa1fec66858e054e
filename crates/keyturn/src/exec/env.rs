//! The environment of `keyturn exec`'s child: keyturn's own variables, then those of each env
//! file (dotenv syntax, later files win), the handles among their values, and the environment
//! rendered with resolved values.
//!
//! A variable's value is a handle by the same rule as a string value in a document
//! ([`crate::handle::parse_handle`]). The handle variables are presented to the resolver as a
//! [`Document`] (a JSON object, variable name → `ENC[...]`), so that they are registered,
//! refreshed, reported and audited exactly like the uses in a configuration file: origin
//! [`ORIGIN`], key path `[NAME]`.
//!
//! Invariant: values never leave this module except in the rendered environment handed to the
//! child; `Debug` prints variable names only (any plain variable may hold a credential too).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::document::{Document, DocumentError, Format};
use crate::handle::parse_handle;
use crate::secret::Secret;

/// The origin under which the environment's handles are registered with the resolver.
pub const ORIGIN: &str = "environment";

/// The largest env file keyturn reads.
pub const MAX_ENV_FILE_SIZE: u64 = 1024 * 1024;

/// Environment variables in the order they were first set; setting one again replaces its
/// value in place.
#[derive(Clone, Default)]
pub struct Environment {
    vars: Vec<(OsString, OsString)>,
    index: HashMap<OsString, usize>,
}

/// Why an env file could not be used. Never quotes the file's content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvFileError {
    /// The file could not be read.
    #[error("cannot read env file {path}: {error}")]
    Read {
        /// The env file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_ENV_FILE_SIZE`].
    #[error("env file {path} is larger than {limit} bytes")]
    TooLarge {
        /// The env file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A line is not dotenv syntax.
    #[error("env file {path}: line {line} is not valid dotenv syntax (NAME=value)")]
    Syntax {
        /// The env file.
        path: PathBuf,
        /// 1-based line where the bad entry starts.
        line: usize,
    },
    /// The file is not UTF-8 text, or a `${NAME}` substitution failed.
    #[error("env file {path}: {problem}")]
    Invalid {
        /// The env file.
        path: PathBuf,
        /// What is wrong, without content.
        problem: String,
    },
}

/// One variable whose value is a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandleVar<'a> {
    /// The variable's name.
    pub name: &'a str,
    /// The handle in its value.
    pub handle: &'a str,
}

impl Environment {
    /// An environment of `vars`, in order; a later duplicate replaces an earlier one.
    pub fn new(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Environment {
        let mut environment = Environment::default();
        for (name, value) in vars {
            environment.set(name, value);
        }
        environment
    }

    /// Sets `name` to `value`, replacing a previous value in place.
    pub fn set(&mut self, name: OsString, value: OsString) {
        match self.index.get(&name).and_then(|&i| self.vars.get_mut(i)) {
            Some(var) => var.1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    /// Reads the env file at `path` (at most [`MAX_ENV_FILE_SIZE`] bytes) and sets every
    /// variable it defines, in file order.
    pub fn merge_env_file(&mut self, path: &Path) -> Result<(), EnvFileError> {
        let read = |error| EnvFileError::Read {
            path: path.to_owned(),
            error,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut bytes = Vec::new();
        file.take(MAX_ENV_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > MAX_ENV_FILE_SIZE {
            return Err(EnvFileError::TooLarge {
                path: path.to_owned(),
                limit: MAX_ENV_FILE_SIZE,
            });
        }
        let bytes = zeroize::Zeroizing::new(bytes);
        self.merge_env_text(&bytes, path)
    }

    /// Sets every variable that the env file text `bytes` defines, in order; `path` names the
    /// file in errors. Nothing is set when the text is invalid.
    pub fn merge_env_text(&mut self, bytes: &[u8], path: &Path) -> Result<(), EnvFileError> {
        for (name, value) in parse_env_file(bytes, path)? {
            self.set(name.into(), value.into());
        }
        Ok(())
    }

    /// Every variable whose name is UTF-8 and whose value is a handle, in order.
    pub fn handle_vars(&self) -> Vec<HandleVar<'_>> {
        self.vars
            .iter()
            .filter_map(|(name, value)| {
                Some(HandleVar {
                    name: name.to_str()?,
                    handle: parse_handle(value.to_str()?)?,
                })
            })
            .collect()
    }

    /// The handle variables as a document for the resolver: a JSON object from each name to
    /// its value as written. (A JSON object of strings made by serde_json always parses; the
    /// error is that of [`Document::parse`].)
    pub fn document(&self) -> Result<Document, DocumentError> {
        let object: serde_json::Map<String, serde_json::Value> = self
            .vars
            .iter()
            .filter_map(|(name, value)| {
                let value = value.to_str()?;
                parse_handle(value)?;
                Some((name.to_str()?.to_owned(), value.into()))
            })
            .collect();
        let text = serde_json::Value::Object(object).to_string();
        Document::parse(text, Format::Json)
    }

    /// The environment with each handle that `lookup` resolves replaced by its value; the
    /// others are left as written.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<Secret>) -> Rendered {
        let vars = self
            .vars
            .iter()
            .map(|(name, value)| {
                let resolved = value
                    .to_str()
                    .and_then(parse_handle)
                    .filter(|_| name.to_str().is_some())
                    .and_then(&mut lookup);
                match resolved {
                    Some(secret) => (name.clone(), OsString::from(secret.expose())),
                    None => (name.clone(), value.clone()),
                }
            })
            .collect();
        Rendered(vars)
    }

    /// The names of the variables, in order.
    pub fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.vars.iter().map(|(name, _)| name.as_os_str())
    }
}

/// An environment with values in it, for the child. `Debug` prints names only, and every value
/// is wiped from memory when it is dropped.
pub struct Rendered(Vec<(OsString, OsString)>);

impl Rendered {
    /// The variables, in order.
    pub fn vars(&self) -> &[(OsString, OsString)] {
        &self.0
    }
}

impl Drop for Rendered {
    fn drop(&mut self) {
        for (_, value) in &mut self.0 {
            drop(zeroize::Zeroizing::new(std::mem::take(value).into_vec()));
        }
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&OsStr> = self.0.iter().map(|(name, _)| name.as_os_str()).collect();
        f.debug_struct("Rendered")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Parses dotenv text (`NAME=value`, `export NAME=value`, quotes, comments, `${NAME}`
/// substitution) with `dotenvy`. Errors name the file and the line, never its text.
fn parse_env_file(bytes: &[u8], path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(bytes) {
        match item {
            Ok(pair) => vars.push(pair),
            Err(dotenvy::Error::LineParse(text, _)) => {
                // dotenvy hands back the offending entry's text: find where it starts, and
                // drop the text (it may hold a secret).
                let text = zeroize::Zeroizing::new(text);
                let start = find(bytes, text.as_bytes()).unwrap_or(0);
                let before = bytes.get(..start).unwrap_or(bytes);
                let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
                return Err(EnvFileError::Syntax {
                    path: path.to_owned(),
                    line,
                });
            }
            Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(EnvFileError::Invalid {
                    path: path.to_owned(),
                    problem: "is not UTF-8 text".into(),
                });
            }
            Err(e) => {
                return Err(EnvFileError::Invalid {
                    path: path.to_owned(),
                    problem: match e {
                        dotenvy::Error::EnvVar(_) => "a ${NAME} substitution failed".into(),
                        _ => "cannot be read".into(),
                    },
                });
            }
        }
    }
    Ok(vars)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// keyturn's own environment.
pub fn current() -> Environment {
    Environment::new(std::env::vars_os())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::new(pairs.iter().map(|(n, v)| (n.into(), v.into())))
    }

    #[test]
    fn later_values_replace_earlier_ones_in_place() {
        let mut e = env(&[("A", "1"), ("B", "2")]);
        e.set("A".into(), "3".into());
        let rendered = e.render(|_| None);
        assert_eq!(
            rendered.vars(),
            [("A".into(), "3".into()), ("B".into(), "2".into())]
        );
    }

    #[test]
    fn handles_follow_the_document_rule() {
        let e = env(&[
            ("KEY", "ENC[api_key]"),
            ("SPACED", " ENC[ a ]\t"),
            ("PLAIN", "value"),
            ("EMBEDDED", "db-ENC[x]"),
        ]);
        assert_eq!(
            e.handle_vars(),
            [
                HandleVar {
                    name: "KEY",
                    handle: "api_key"
                },
                HandleVar {
                    name: "SPACED",
                    handle: " a "
                },
            ]
        );
        let document = e.document().unwrap();
        let sites: Vec<(String, Vec<String>)> = document
            .sites()
            .map(|s| (s.handle().to_owned(), s.path().to_strings()))
            .collect();
        assert_eq!(
            sites,
            [
                ("api_key".to_owned(), vec!["KEY".to_owned()]),
                (" a ".to_owned(), vec!["SPACED".to_owned()]),
            ]
        );
    }

    #[test]
    fn render_replaces_resolved_handles_only() {
        let e = env(&[("KEY", "ENC[k]"), ("OTHER", "ENC[missing]"), ("P", "v")]);
        let rendered = e.render(|h| (h == "k").then(|| Secret::new("s3cr3t".to_owned())));
        assert!(!format!("{rendered:?}").contains("s3cr3t"));
        assert_eq!(
            rendered.vars(),
            [
                ("KEY".into(), "s3cr3t".into()),
                ("OTHER".into(), "ENC[missing]".into()),
                ("P".into(), "v".into()),
            ]
        );
    }

    #[test]
    fn env_files_in_dotenv_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        std::fs::write(
            &path,
            "# comment\nexport A=ENC[a]\nB='single $A'\nC=\"x=${A}\"\n\nD=plain # trailing\n",
        )
        .unwrap();
        let mut e = env(&[("A", "old"), ("Z", "z")]);
        e.merge_env_file(&path).unwrap();
        let rendered = e.render(|_| None);
        assert_eq!(
            rendered.vars(),
            [
                ("A".into(), "ENC[a]".into()),
                ("Z".into(), "z".into()),
                ("B".into(), "single $A".into()),
                ("C".into(), "x=ENC[a]".into()),
                ("D".into(), "plain".into()),
            ]
        );
    }

    #[test]
    fn env_file_errors_name_the_line_not_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.env");
        std::fs::write(&path, "A=1\n\nB C=hunter2\n").unwrap();
        let error = env(&[]).merge_env_file(&path).unwrap_err();
        let text = error.to_string();
        assert_eq!(
            text,
            format!(
                "env file {}: line 3 is not valid dotenv syntax (NAME=value)",
                path.display()
            )
        );
        std::fs::write(&path, b"A=\xff\n").unwrap();
        let error = env(&[]).merge_env_file(&path).unwrap_err();
        assert!(error.to_string().ends_with("is not UTF-8 text"), "{error}");
        let big = vec![b'#'; MAX_ENV_FILE_SIZE as usize + 1];
        std::fs::write(&path, big).unwrap();
        let error = env(&[]).merge_env_file(&path).unwrap_err();
        assert!(matches!(error, EnvFileError::TooLarge { .. }), "{error}");
        let missing = env(&[])
            .merge_env_file(&dir.path().join("absent.env"))
            .unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot read env file"),
            "{missing}"
        );
    }

    #[test]
    fn debug_prints_names_only() {
        let e = env(&[("TOKEN", "hunter2")]);
        let printed = format!("{e:?}");
        assert!(
            printed.contains("TOKEN") && !printed.contains("hunter2"),
            "{printed}"
        );
    }
}
