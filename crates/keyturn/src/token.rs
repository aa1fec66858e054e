//! The API token: the secret clients of the daemon's API present as a bearer token, kept in
//! a file private to the user (created with a random token when missing). Shared by the
//! daemon, which loads it, and the API, which checks requests against it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::Secret;
use crate::trusted_path::{self, NotPrivate};

/// What the token file is called in errors.
const TOKEN_FILE: &str = "API token file";

/// The secret clients present to the API.
pub struct AuthToken(Secret);

/// Why the token file could not be used. Never quotes the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Reading or creating the file failed.
    #[error("cannot {action} API token file {path}: {cause}")]
    Io {
        /// `read` or `create`.
        action: &'static str,
        /// The token file.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// The file holds no token.
    #[error("API token file {path} is empty")]
    Empty {
        /// The token file.
        path: PathBuf,
    },
    /// Someone else could read, write or swap the file (its owner, mode, or a directory or
    /// link on its path).
    #[error(transparent)]
    NotPrivate(#[from] NotPrivate),
}

impl AuthToken {
    /// A token with this value.
    pub fn new(token: impl Into<String>) -> AuthToken {
        AuthToken(Secret::new(token))
    }

    /// A new random token: 32 bytes from the thread's CSPRNG, as 64 hex digits.
    pub fn generate() -> AuthToken {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        AuthToken::new(hex::encode(bytes.as_ref()))
    }

    /// Reads the token at `path` (surrounding whitespace ignored).
    pub fn read(path: &Path) -> Result<AuthToken, TokenError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| TokenError::Io {
            action: "read",
            path: path.to_path_buf(),
            cause: source,
        })?);
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(AuthToken::new(token))
    }

    /// Reads the token at `path`, creating the file (mode 0600, parent directories as needed,
    /// mode 0700) with a [generated](AuthToken::generate) token when it does not exist. The
    /// daemon's side: the file must be private to this user, checked before it is read
    /// ([`trusted_path::check_private_file`]): a token file someone else created, can read, or
    /// can swap through its path is refused.
    pub fn load_or_create(path: &Path) -> Result<AuthToken, TokenError> {
        if trusted_path::check_private_file(TOKEN_FILE, path)?.is_some() {
            return AuthToken::read(path);
        }
        let token = AuthToken::generate();
        let create = || -> io::Result<()> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            let written = file
                .write_all(format!("{}\n", token.expose()).as_bytes())
                .and_then(|()| file.sync_all());
            if written.is_err() {
                let _ = fs::remove_file(path);
            }
            written
        };
        match create() {
            Ok(()) => {
                // The directories on its path, even those that were there before.
                if let Err(error) = trusted_path::check_private_file(TOKEN_FILE, path) {
                    let _ = fs::remove_file(path);
                    return Err(error.into());
                }
                tracing::info!(path = %path.display(), "created the API token file");
                Ok(token)
            }
            // Another process created it first: use theirs, if it is ours to use.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                trusted_path::check_private_file(TOKEN_FILE, path)?;
                AuthToken::read(path)
            }
            Err(source) => Err(TokenError::Io {
                action: "create",
                path: path.to_path_buf(),
                cause: source,
            }),
        }
    }

    /// Checks, creating nothing, what [`AuthToken::load_or_create`] would find: when the file
    /// exists, that it is private to this user and holds a token. A missing file is no problem
    /// (a start creates it).
    pub fn check(path: &Path) -> Result<(), TokenError> {
        if trusted_path::check_private_file(TOKEN_FILE, path)?.is_some() {
            AuthToken::read(path)?;
        }
        Ok(())
    }

    /// The token, to send it. Do not log it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Whether `candidate` is this token. Takes the same time for every candidate of a given
    /// length, and no less for a candidate of another length.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.expose().as_bytes();
        let mut same = (candidate.len() as u64).ct_eq(&(expected.len() as u64));
        for (i, byte) in expected.iter().enumerate() {
            same &= byte.ct_eq(candidate.get(i).unwrap_or(&0));
        }
        same.into()
    }
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matching() {
        let token = AuthToken::new("secret-token");
        assert!(token.matches(b"secret-token"));
        for candidate in [
            &b""[..],
            b"secret-toke",
            b"secret-tokens",
            b"secret-tokeN",
            b"xecret-token",
        ] {
            assert!(!token.matches(candidate), "{candidate:?}");
        }
        assert!(!AuthToken::new("").matches(b"x"));
        assert_eq!(format!("{token:?}"), "AuthToken(<redacted>)");
    }

    #[test]
    fn token_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("auth_token");
        let created = AuthToken::load_or_create(&path).unwrap();
        assert_eq!(created.expose().len(), 64);
        assert!(created.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = AuthToken::load_or_create(&path).unwrap();
        assert_eq!(again.expose(), created.expose());
        assert_ne!(AuthToken::generate().expose(), created.expose());

        fs::write(&path, " \n").unwrap();
        let empty = AuthToken::load_or_create(&path).unwrap_err();
        assert!(
            empty.to_string().ends_with("auth_token is empty"),
            "{empty}"
        );
        // Regression (issue 9, item 9): a token file others can read (or created by another
        // user) was used, with a warning at most.
        fs::write(&path, "pre-created\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            AuthToken::load_or_create(&path).unwrap_err().to_string(),
            format!(
                "API token file {}: is accessible to group or others (mode 0644); chmod 600 it",
                path.display()
            )
        );
        if nix::unistd::geteuid().is_root() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
            assert_eq!(
                AuthToken::load_or_create(&path).unwrap_err().to_string(),
                format!(
                    "API token file {}: is owned by UID 4242, not by root or the user running keyturn (UID 0)",
                    path.display()
                )
            );
        }
        // In a directory anyone may write, even a new token file is refused.
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let error = AuthToken::load_or_create(&open.join("auth_token")).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("is writable by its group and others (mode 0777) and not sticky"),
            "{error}"
        );
        assert!(
            !open.join("auth_token").exists(),
            "the refused token is not left there"
        );
        let missing = AuthToken::read(&dir.path().join("absent")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read API token file"),
            "{missing}"
        );
    }
}
