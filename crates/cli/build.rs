//! Puts the git revision into `keyturn --version`: `KEYTURN_VERSION` is the package version,
//! followed by the short commit hash when the source is a git checkout with `git` available.
//! Anywhere else (a source tarball, a crate from the registry) it is the package version alone.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KEYTURN_GIT_REVISION");
    let revision = std::env::var("KEYTURN_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision);
    match revision {
        Some(revision) => println!("cargo:rustc-env=KEYTURN_VERSION={version} ({revision})"),
        None => println!("cargo:rustc-env=KEYTURN_VERSION={version}"),
    }
}

/// The short hash of `HEAD`, and the files whose change means a new one (`HEAD` itself and the
/// branch it points to), or `None` when git is missing or this is not a checkout.
fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    for name in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", name]));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    Some(revision)
}

/// Reruns this script when `path` changes; a path that does not exist is not watched (cargo
/// would rerun the script on every build).
fn watch(path: Option<String>) {
    if let Some(path) = path.map(PathBuf::from).filter(|p| p.exists())
        && let Ok(path) = path.canonicalize()
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Runs git in the package directory; its trimmed stdout when it succeeds.
// The workspace bans `Command::new` so that only the library spawns backends; a build script
// running git is outside that rule.
#[allow(clippy::disallowed_methods)]
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
