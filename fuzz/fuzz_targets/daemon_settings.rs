//! `keyturn::daemon::DaemonConfig::from_yaml_str` on any text: never panics, reads the same text
//! the same way twice, and never accepts a template whose destination mode lets group or
//! others write (or is past 0777), nor a destination that is, as text with `.` and `..` folded,
//! its own or another template's source; an `on_change` has a command and a timeout of at most
//! `MAX_DURATION`.

#![no_main]

use std::path::{Component, Path, PathBuf};

use keyturn::daemon::DaemonConfig;
use keyturn::settings::MAX_DURATION;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/etc/keyturn");
    let Ok(config) = DaemonConfig::from_yaml_str(text, base) else {
        return;
    };
    assert_eq!(
        DaemonConfig::from_yaml_str(text, base).ok(),
        Some(config.clone())
    );
    for template in &config.templates {
        assert!(template.mode <= 0o777, "mode {:o}", template.mode);
        assert_eq!(template.mode & 0o022, 0, "mode {:o}", template.mode);
        if let Some(on_change) = &template.on_change {
            assert!(!on_change.argv.is_empty());
            assert!(on_change.timeout <= MAX_DURATION);
        }
        let destination = folded(&template.destination);
        for other in &config.templates {
            assert_ne!(destination, folded(&other.source));
        }
    }
});

/// `path` with `.` and `..` folded away as text.
fn folded(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
