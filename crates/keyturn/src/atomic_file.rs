//! Writing a file so that readers see either the old content or the new, never a mix.
//!
//! [`write_atomic`] writes to a temporary file in the destination's directory (so the final
//! rename stays on one file system), sets its mode, fsyncs it, renames it over the destination
//! and fsyncs the directory. A crash at any point leaves the destination as it was or complete.
//!
//! A crash can leave the temporary file behind (`.<name>.keyturn-<pid>-<n>.tmp`, holding part
//! of what was being written); [`remove_stale_temps`] removes such leftovers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `contents`, created with permission bits `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut attempt = 0u32;
    let (tmp_path, mut file) = loop {
        let tmp_path = dir.join(format!(
            "{}{}-{attempt}{TEMP_SUFFIX}",
            temp_prefix(name),
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&tmp_path)
        {
            Ok(file) => break (tmp_path, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        // The umask may have removed bits the caller asked for.
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        file.write_all(contents)?;
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
            .filter(|(_, attempt)| attempt.bytes().all(|b| b.is_ascii_digit()))
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
            format!(".out.yaml.keyturn-{}-3.tmp", std::process::id()),
            // A running process (PID 1) and names that are not ours are kept.
            ".out.yaml.keyturn-1-0.tmp".to_owned(),
            format!(".other.yaml.keyturn-{dead}-0.tmp"),
            format!(".out.yaml.keyturn-{dead}-x.tmp"),
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
