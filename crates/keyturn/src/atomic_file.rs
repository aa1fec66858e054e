//! Writing a file so that readers see either the old content or the new, never a mix, and
//! reading what is there before replacing it, without trusting what is there.
//!
//! [`write_atomic`] writes to a temporary file in the destination's directory (so the final
//! rename stays on one file system), sets its mode, fsyncs it, renames it over the destination
//! and fsyncs the directory. A crash at any point leaves the destination as it was or complete.
//!
//! The destination's directory may be shared with others, and its entry may be anything:
//! - the destination must be absent or a regular file: a symbolic link, FIFO, device, socket or
//!   directory there is refused, never followed, opened or replaced;
//! - [`read_existing`] opens it with `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot hang the reader,
//!   a link to `/dev/zero` is not followed), checks the open file is regular, and reads at most
//!   a bound the caller gives;
//! - the temporary file's name carries 64 random bits and is created with `O_EXCL` (never
//!   through a link), so no one can take or redirect it in advance.
//!
//! A crash can leave the temporary file behind (`.<name>.keyturn-<pid>-<random>.tmp`, holding
//! part of what was being written); [`remove_stale_temps`] removes such leftovers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use zeroize::Zeroizing;

/// Replaces `path` with `contents`, created with permission bits `mode`. Fails, leaving
/// everything as it was, when `path` exists and is not a regular file.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |file| file.write_all(contents))
}

/// [`write_atomic`] with the contents written by `write` into the temporary file (in as many
/// pieces as it likes): the destination is replaced only once `write` succeeded.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => return Err(not_regular(meta.file_type())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let (tmp_path, mut file) = create_temp(dir, name)?;
    let result = (|| {
        write(&mut file)?;
        // Created 0600; the umask may also have removed bits the caller asked for.
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

/// What [`read_existing`] found at a path.
pub struct Existing {
    /// The file's first bytes: all of them when it holds at most the `limit` asked for,
    /// otherwise `limit + 1` (enough to know it differs from anything of `limit` bytes).
    pub head: Zeroizing<Vec<u8>>,
    /// Its permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Reads the regular file at `path` before it is replaced: `None` when nothing is there, an
/// error when something other than a regular file is (a symbolic link is not followed, a FIFO
/// is not waited on). At most `limit + 1` bytes are read, into a buffer zeroed on drop (the
/// file may hold secrets).
pub fn read_existing(path: &Path, limit: usize) -> io::Result<Option<Existing>> {
    // A first look, so that nothing but a regular file is ever opened (opening a device can
    // have effects of its own); the open below checks again what it got.
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => return Err(not_regular(meta.file_type())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Swapped for a link since the first look.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not_regular(fs::symlink_metadata(path)?.file_type()));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let cap = limit.saturating_add(1);
    // Sized once: the buffer never reallocates, so no copy of the content is left unzeroed.
    let mut head = Zeroizing::new(Vec::with_capacity(cap));
    file.take(cap as u64).read_to_end(&mut head)?;
    Ok(Some(Existing {
        head,
        mode: meta.permissions().mode() & 0o7777,
    }))
}

/// Creates `.<name>.keyturn-<pid>-<random>.tmp` in `dir`, mode 0600, with `O_EXCL` (which also
/// refuses a symbolic link at that name).
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    let mut attempt = 0;
    loop {
        let tmp_path = dir.join(format!(
            "{}{}-{:016x}{TEMP_SUFFIX}",
            temp_prefix(name),
            std::process::id(),
            rand::rng().next_u64()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)
        {
            Ok(file) => return Ok((tmp_path, file)),
            // 64 random bits: a collision means the name space is being played with.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The error for a path that holds something other than a regular file.
fn not_regular(kind: fs::FileType) -> io::Error {
    let what = if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file; only a regular file is replaced"),
    )
}

/// Removes the temporary files that interrupted [`write_atomic`]s of `path` left behind: those
/// of processes that no longer run and those of this process, so call it only when this
/// process is not writing `path`. Temporary files of other running processes are left alone.
/// Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> io::Result<usize> {
    let (dir, Some(name)) = (parent(path), path.file_name()) else {
        return Ok(0);
    };
    let prefix = temp_prefix(name);
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix)?.strip_suffix(TEMP_SUFFIX))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, random)| {
                !random.is_empty() && random.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = u32::try_from(pid).is_ok_and(|pid| pid == std::process::id());
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if (ours || gone) && entry.file_type()?.is_file() {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

const TEMP_SUFFIX: &str = ".tmp";

/// `.<name>.keyturn-`: what every temporary file of `name` starts with.
fn temp_prefix(name: &std::ffi::OsStr) -> String {
    format!(".{}.keyturn-", name.to_string_lossy())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_with_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.yaml");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&path, b"newer", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    /// Regression: temporary names were `<pid>-0`, `<pid>-1`, ...: a neighbour who created
    /// the first hundred in advance stopped every write.
    #[test]
    fn temporary_names_cannot_be_taken_in_advance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.yaml");
        let victim = dir.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        for attempt in 0..=100 {
            let name = format!(".out.yaml.keyturn-{}-{attempt}.tmp", std::process::id());
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "victim");
    }

    /// Regression: a link, a FIFO or a directory at the destination was read through (without
    /// a bound, or forever) or replaced.
    #[test]
    fn only_regular_files_are_read_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let subdir = dir.path().join("dir");
        fs::create_dir(&subdir).unwrap();
        for (path, what) in [
            (&link, "a symbolic link"),
            (&zero, "a symbolic link"),
            (&fifo, "a FIFO"),
            (&subdir, "a directory"),
        ] {
            let expected =
                format!("it is {what}, not a regular file; only a regular file is replaced");
            let read = read_existing(path, 16).err().map(|e| e.to_string());
            assert_eq!(read.as_deref(), Some(expected.as_str()), "{path:?}");
            let write = write_atomic(path, b"new", 0o600).unwrap_err();
            assert_eq!(write.to_string(), expected, "{path:?}");
        }
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "victim");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            5,
            "no temporary file left"
        );
    }

    #[test]
    fn existing_files_are_read_up_to_one_byte_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        assert!(read_existing(&path, 4).unwrap().is_none());
        fs::write(&path, "abcdef").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let existing = read_existing(&path, 4).unwrap().unwrap();
        assert_eq!(existing.head.as_slice(), b"abcde");
        assert_eq!(existing.mode, 0o640);
        assert_eq!(
            read_existing(&path, 6).unwrap().unwrap().head.as_slice(),
            b"abcdef"
        );
        // A huge (sparse) file costs the bound, not its size.
        let huge = File::create(&path).unwrap();
        huge.set_len(1 << 36).unwrap();
        assert_eq!(read_existing(&path, 2).unwrap().unwrap().head.len(), 3);
    }

    #[test]
    fn failure_leaves_destination_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("out");
        assert!(write_atomic(&path, b"x", 0o600).is_err());
        let target = dir.path().join("is-a-dir");
        fs::create_dir(&target).unwrap();
        assert!(write_atomic(&target, b"x", 0o600).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.yaml");
        let dead = {
            // A process that ran and was reaped: its PID is free (barring reuse).
            #[allow(clippy::disallowed_methods)]
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        let names = [
            format!(".out.yaml.keyturn-{dead}-0.tmp"),
            format!(
                ".out.yaml.keyturn-{}-00ff3a9c0b1d2e47.tmp",
                std::process::id()
            ),
            // A running process (PID 1) and names that are not ours are kept.
            ".out.yaml.keyturn-1-0.tmp".to_owned(),
            format!(".other.yaml.keyturn-{dead}-0.tmp"),
            format!(".out.yaml.keyturn-{dead}-x_y.tmp"),
            "out.yaml".to_owned(),
        ];
        for name in &names {
            fs::write(dir.path().join(name), "partial").unwrap();
        }
        assert_eq!(remove_stale_temps(&path).unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = names[2..].to_vec();
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(remove_stale_temps(&dir.path().join("missing")).unwrap(), 0);
    }
}
