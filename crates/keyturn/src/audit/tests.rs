//! Writer tests: conformance items 67-79 and 87 of the Datadog reference (clock at
//! 2014-02-04T10:30:00Z, file `records.ndjson`), plus keyturn's own crash-safety rules.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use tempfile::TempDir;
use time::macros::datetime;

use super::*;
use crate::Secret;

const BASE: OffsetDateTime = datetime!(2014-02-04 10:30:00 UTC);
const NAME: &str = "records.ndjson";
const DAY: i64 = 24 * 60 * 60;

// Lines as the Datadog Agent writes them (no `trigger`, no `failed`).
const L00: &str = "{\"time\":\"2014-02-04T10:30:00Z\",\"data\":[{\"handle\":\"apple\"}]}\n";
const L10: &str = "{\"time\":\"2014-02-04T10:30:10Z\",\"data\":[{\"handle\":\"banana\"}]}\n";
const L20: &str = "{\"time\":\"2014-02-04T10:30:20Z\",\"data\":[{\"handle\":\"cherry\"}]}\n";
// The record keyturn appends in most cases, at BASE + 30 s.
const NEW30: &str = "{\"time\":\"2014-02-04T10:30:30Z\",\"data\":[{\"handle\":\"date\"}],\"trigger\":\"timer\",\"failed\":[]}\n";

const HEX32: &str = "0123456789abcdef0123456789abcdef";

fn at(seconds: i64) -> OffsetDateTime {
    BASE + time::Duration::seconds(seconds)
}

/// A refresh of `handles`, none of whose values is a key.
fn record(handles: &[&str]) -> Record {
    Record {
        trigger: Trigger::Timer,
        entries: handles
            .iter()
            .map(|handle| AuditEntry::new(*handle, &Secret::new("s3cr3t-value"), ["password"]))
            .collect(),
        failed: Vec::new(),
        held_back: Vec::new(),
    }
}

fn limits(max_size: u64, retention_seconds: u64) -> AuditLimits {
    AuditLimits {
        max_size,
        retention: Duration::from_secs(retention_seconds),
    }
}

struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// A directory holding `files`: name, content, and modification time in seconds from BASE
    /// (`None`: left as created).
    fn new(files: &[(&str, &str, Option<i64>)]) -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for &(name, content, modified) in files {
            fs::write(fixture.path(name), content).unwrap();
            fs::set_permissions(fixture.path(name), fs::Permissions::from_mode(0o600)).unwrap();
            if let Some(seconds) = modified {
                fixture.set_modified(name, seconds);
            }
        }
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn set_modified(&self, name: &str, seconds: i64) {
        let file = File::options().write(true).open(self.path(name)).unwrap();
        file.set_modified(SystemTime::from(at(seconds))).unwrap();
    }

    fn writer(&self, limits: AuditLimits) -> AuditWriter {
        AuditWriter::new(self.path(NAME), limits)
    }

    /// Every file in the directory and its content.
    fn contents(&self) -> BTreeMap<String, String> {
        fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let content = fs::read_to_string(entry.path()).unwrap_or_else(|_| "<dir>".into());
                (entry.file_name().into_string().unwrap(), content)
            })
            .collect()
    }

    fn mode(&self, name: &str) -> u32 {
        fs::metadata(self.path(name)).unwrap().permissions().mode() & 0o777
    }
}

struct Case<'a> {
    /// Files before: name, content, modification time in seconds from BASE.
    before: &'a [(&'a str, &'a str, Option<i64>)],
    limits: AuditLimits,
    /// Appends: seconds from BASE, record.
    appends: Vec<(i64, Record)>,
    /// Every file after, with its content.
    after: &'a [(&'a str, &'a str)],
}

#[track_caller]
fn check(case: Case<'_>) {
    let fixture = Fixture::new(case.before);
    let mut writer = fixture.writer(case.limits);
    for (seconds, record) in &case.appends {
        writer.append(record, at(*seconds)).unwrap();
    }
    let expected: BTreeMap<String, String> = case
        .after
        .iter()
        .map(|&(name, content)| (name.to_owned(), content.to_owned()))
        .collect();
    assert_eq!(fixture.contents(), expected);
}

#[test]
fn item_67_two_appends_to_a_new_file() {
    check(Case {
        before: &[],
        limits: AuditLimits::default(),
        appends: vec![(0, record(&["apple"])), (10, record(&["banana"]))],
        after: &[(
            NAME,
            concat!(
                "{\"time\":\"2014-02-04T10:30:00Z\",\"data\":[{\"handle\":\"apple\"}],\"trigger\":\"timer\",\"failed\":[]}\n",
                "{\"time\":\"2014-02-04T10:30:10Z\",\"data\":[{\"handle\":\"banana\"}],\"trigger\":\"timer\",\"failed\":[]}\n",
            ),
        )],
    });
}

#[test]
fn item_68_existing_lines_are_kept_verbatim() {
    let foreign = "{\"time\":\"2014-02-04T10:30:00Z\",\"payload\":{\"x\":[1, 2]},  \"data\":[]}\n";
    check(Case {
        before: &[(NAME, foreign, None)],
        limits: AuditLimits::default(),
        appends: vec![(30, record(&["date"]))],
        after: &[(NAME, &format!("{foreign}{NEW30}"))],
    });
}

#[test]
fn items_69_70_masked_key_values_and_several_handles_in_one_line() {
    let record = Record {
        trigger: Trigger::Api,
        entries: vec![
            AuditEntry::new("pear", &Secret::new("green"), ["colour"]),
            AuditEntry::new("apple", &Secret::new(HEX32), ["apiKey"]),
        ],
        failed: vec![FailedHandle {
            handle: "plum".into(),
            reason: crate::backend::FailureKind::BackendError,
        }],
        held_back: vec![HeldBackUse {
            handle: "pear".into(),
            origin: "app.yaml".into(),
            path: "other/colour".into(),
        }],
    };
    check(Case {
        before: &[],
        limits: AuditLimits::default(),
        appends: vec![(0, record)],
        after: &[(
            NAME,
            "{\"time\":\"2014-02-04T10:30:00Z\",\"data\":[{\"handle\":\"apple\",\"value\":\
             \"***************************bcdef\"},{\"handle\":\"pear\"}],\"trigger\":\"api\",\
             \"failed\":[{\"handle\":\"plum\",\"reason\":\"backend_error\"}],\
             \"held_back\":[{\"handle\":\"pear\",\"origin\":\"app.yaml\",\"path\":\"other/colour\"}]}\n",
        )],
    });
}

#[test]
fn items_71_to_73_pruning_at_the_head() {
    let three = format!("{L00}{L10}{L20}");
    // 71: retention 15 s at +30 s: :00 and :10 go, :20 stays.
    check(Case {
        before: &[(NAME, &three, None)],
        limits: limits(DEFAULT_MAX_SIZE, 15),
        appends: vec![(30, record(&["date"]))],
        after: &[(NAME, &format!("{L20}{NEW30}"))],
    });
    // 72: an unparsable line and a line without `time` at the head go with the old entries.
    check(Case {
        before: &[(NAME, &format!("not json\n{{\"data\":[]}}\n{three}"), None)],
        limits: limits(DEFAULT_MAX_SIZE, 15),
        appends: vec![(30, record(&["date"]))],
        after: &[(NAME, &format!("{L20}{NEW30}"))],
    });
    // keyturn: a head that is not a record is pruned even when every record is young.
    check(Case {
        before: &[(NAME, &format!("not json\n{three}"), None)],
        limits: AuditLimits::default(),
        appends: vec![(30, record(&["date"]))],
        after: &[(NAME, &format!("{three}{NEW30}"))],
    });
    // 73: everything old: only the new line remains.
    check(Case {
        before: &[(NAME, &three, None)],
        limits: limits(DEFAULT_MAX_SIZE, 15),
        appends: vec![(60, record(&["date"]))],
        after: &[(
            NAME,
            "{\"time\":\"2014-02-04T10:31:00Z\",\"data\":[{\"handle\":\"date\"}],\"trigger\":\"timer\",\"failed\":[]}\n",
        )],
    });
}

#[test]
fn items_74_to_76_rotation() {
    let three = format!("{L00}{L10}{L20}");
    // 74: size limit 150 and a 3-line file: rotated, the file holds only the new line.
    check(Case {
        before: &[(NAME, &three, None)],
        limits: limits(150, DEFAULT_RETENTION.as_secs()),
        appends: vec![(30, record(&["date"]))],
        after: &[("records.000000.ndjson", &three), (NAME, NEW30)],
    });
    // 75: pruning first avoids the rotation (61 + 89 bytes is not past 150).
    check(Case {
        before: &[(NAME, &three, None)],
        limits: limits(150, 15),
        appends: vec![(30, record(&["date"]))],
        after: &[(NAME, &format!("{L20}{NEW30}"))],
    });
    // 76: rotated files 0 to 2 exist: the new one is 3.
    check(Case {
        before: &[
            (NAME, &three, None),
            ("records.000000.ndjson", "r0\n", None),
            ("records.000001.ndjson", "r1\n", None),
            ("records.000002.ndjson", "r2\n", None),
        ],
        limits: limits(150, DEFAULT_RETENTION.as_secs()),
        appends: vec![(30, record(&["date"]))],
        after: &[
            ("records.000000.ndjson", "r0\n"),
            ("records.000001.ndjson", "r1\n"),
            ("records.000002.ndjson", "r2\n"),
            ("records.000003.ndjson", &three),
            (NAME, NEW30),
        ],
    });
    // keyturn: the next index follows the highest, gaps and foreign names aside.
    check(Case {
        before: &[
            (NAME, &three, None),
            ("records.000007.ndjson", "r7\n", None),
            ("records.7.ndjson", "short\n", None),
            ("records.000009.json", "other extension\n", None),
        ],
        limits: limits(150, DEFAULT_RETENTION.as_secs()),
        appends: vec![(30, record(&["date"]))],
        after: &[
            ("records.000007.ndjson", "r7\n"),
            ("records.000008.ndjson", &three),
            ("records.000009.json", "other extension\n"),
            ("records.7.ndjson", "short\n"),
            (NAME, NEW30),
        ],
    });
    // keyturn: an empty file is never rotated, even for a record longer than the limit.
    check(Case {
        before: &[(NAME, "", None)],
        limits: limits(10, DEFAULT_RETENTION.as_secs()),
        appends: vec![(30, record(&["date"]))],
        after: &[(NAME, NEW30)],
    });
}

#[test]
fn item_77_expired_rotated_files_are_deleted_oldest_first() {
    check(Case {
        before: &[
            ("records.000000.ndjson", "r0\n", Some(-100 * DAY)),
            ("records.000001.ndjson", "r1\n", Some(-95 * DAY)),
            ("records.000002.ndjson", "r2\n", Some(-10 * DAY)),
            // Expired, but after a younger one: deletion stops at the first younger file.
            ("records.000003.ndjson", "r3\n", Some(-91 * DAY)),
            ("records.000004.ndjson", "r4\n", Some(-DAY)),
        ],
        limits: AuditLimits::default(),
        appends: vec![(30, record(&["date"]))],
        after: &[
            ("records.000002.ndjson", "r2\n"),
            ("records.000003.ndjson", "r3\n"),
            ("records.000004.ndjson", "r4\n"),
            (NAME, NEW30),
        ],
    });
}

#[test]
fn item_78_a_file_rotated_earlier_is_deleted_once_expired() {
    let fixture = Fixture::new(&[(NAME, &format!("{L00}{L10}{L20}"), None)]);
    let mut writer = fixture.writer(limits(200, 60));
    let rotated = "records.000000.ndjson";
    writer.append(&record(&["date"]), at(30)).unwrap();
    fixture.set_modified(rotated, 30);
    writer.append(&record(&["elder"]), at(60)).unwrap();
    assert!(fixture.contents().contains_key(rotated));
    writer.append(&record(&["fig"]), at(100)).unwrap();
    let contents = fixture.contents();
    assert_eq!(contents.keys().collect::<Vec<_>>(), [NAME]);
    let scanned = scan(contents[NAME].as_bytes());
    let times: Vec<_> = scanned.records.iter().map(|record| record.time).collect();
    assert_eq!(times, [at(60), at(100)]);
}

#[test]
fn item_79_rotated_names() {
    #[track_caller]
    fn check_name(path: &str, width: usize, index: u64, expected: &str) {
        let rotated = rotated_path(Path::new(path), width, index);
        assert_eq!(rotated, Path::new(expected));
        let name = rotated.file_name().unwrap();
        assert_eq!(rotated_index(Path::new(path), width, name), Some(index));
    }
    check_name("/tmp/file.txt", 4, 7, "/tmp/file.0007.txt");
    check_name("/tmp/file.txt", 8, 19, "/tmp/file.00000019.txt");
    check_name("/tmp/file", 4, 121, "/tmp/file.0121");
    check_name("/tmp/file", 4, 12345, "/tmp/file.12345");
    check_name(
        "run/secret-audit-file.json",
        ROTATION_WIDTH,
        0,
        "run/secret-audit-file.000000.json",
    );
    check_name("a.b.json", 2, 3, "a.b.03.json");

    let path = Path::new("/tmp/file.txt");
    for name in [
        "file.txt",
        "file.007.txt",
        "file.00a7.txt",
        "file.0007.json",
        "file.0007",
        "other.0007.txt",
        "file.-007.txt",
        "file.99999999999999999999999.txt",
        ".file.txt.tmp",
    ] {
        assert_eq!(rotated_index(path, 4, OsStr::new(name)), None, "{name}");
    }
}

#[test]
fn item_87_a_directory_at_the_path_is_an_error() {
    let fixture = Fixture::new(&[]);
    fs::create_dir(fixture.path(NAME)).unwrap();
    let mut writer = fixture.writer(AuditLimits::default());
    let err = writer.append(&record(&["date"]), at(30)).unwrap_err();
    assert!(matches!(err, AuditError::NotAFile { .. }), "{err:?}");
    assert!(err.to_string().contains(NAME), "{err}");
    assert_eq!(
        fixture.contents(),
        BTreeMap::from([(NAME.into(), "<dir>".into())])
    );
}

#[test]
fn a_symbolic_link_at_the_path_is_an_error() {
    let fixture = Fixture::new(&[("target", "", None)]);
    std::os::unix::fs::symlink(fixture.path("target"), fixture.path(NAME)).unwrap();
    let err = fixture
        .writer(AuditLimits::default())
        .append(&record(&["date"]), at(30))
        .unwrap_err();
    assert!(matches!(err, AuditError::NotAFile { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(fixture.path("target")).unwrap(), "");
}

#[test]
fn a_missing_directory_is_an_error_naming_the_file() {
    let fixture = Fixture::new(&[]);
    let path = fixture.path("missing").join(NAME);
    let err = AuditWriter::new(path, AuditLimits::default())
        .append(&record(&["date"]), at(30))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Io {
                operation: Operation::Open,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("could not open audit file "),
        "{err}"
    );
    assert!(err.to_string().ends_with("missing/records.ndjson"), "{err}");
}

#[test]
fn a_read_only_directory_is_an_error_and_leaves_nothing() {
    if nix::unistd::geteuid().is_root() {
        // Root ignores directory permissions; the write-failure path is covered by
        // `a_failed_or_short_write_is_truncated_back`.
        return;
    }
    let fixture = Fixture::new(&[]);
    fs::set_permissions(fixture.dir.path(), fs::Permissions::from_mode(0o500)).unwrap();
    let result = fixture
        .writer(AuditLimits::default())
        .append(&record(&["date"]), at(30));
    fs::set_permissions(fixture.dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(result.is_err());
    assert!(fixture.contents().is_empty());
}

#[test]
fn files_are_created_and_rewritten_with_mode_0600() {
    let fixture = Fixture::new(&[]);
    let mut writer = fixture.writer(limits(DEFAULT_MAX_SIZE, 15));
    writer.append(&record(&["apple"]), at(0)).unwrap();
    assert_eq!(fixture.mode(NAME), 0o600);
    // A file created by someone else with wider permissions is tightened by the prune rewrite.
    fs::set_permissions(fixture.path(NAME), fs::Permissions::from_mode(0o644)).unwrap();
    writer.append(&record(&["banana"]), at(30)).unwrap();
    assert_eq!(fixture.mode(NAME), 0o600);
    let scanned = scan(&fs::read(fixture.path(NAME)).unwrap());
    assert_eq!(scanned.records.len(), 1);
    assert!(!fixture.contents().keys().any(|name| name.ends_with(".tmp")));
}

/// Regression (issue 9, item 9): an audit file others could read, or another user's, was
/// appended to, so they read the trail.
#[test]
fn a_file_others_can_access_is_refused() {
    let fixture = Fixture::new(&[]);
    let mut writer = fixture.writer(AuditLimits::default());
    writer.append(&record(&["apple"]), at(0)).unwrap();
    let before = fs::read(fixture.path(NAME)).unwrap();
    fs::set_permissions(fixture.path(NAME), fs::Permissions::from_mode(0o640)).unwrap();
    let err = writer.append(&record(&["banana"]), at(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "audit file {}: is accessible to group or others (mode 0640); chmod 600 it",
            fixture.path(NAME).display()
        )
    );
    assert_eq!(fs::read(fixture.path(NAME)).unwrap(), before);
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(fixture.path(NAME), fs::Permissions::from_mode(0o600)).unwrap();
        nix::unistd::chown(
            &fixture.path(NAME),
            Some(nix::unistd::Uid::from_raw(4242)),
            None,
        )
        .unwrap();
        let err = writer.append(&record(&["banana"]), at(2)).unwrap_err();
        assert!(matches!(err, AuditError::NotPrivate { .. }), "{err}");
        assert_eq!(fs::read(fixture.path(NAME)).unwrap(), before);
    }
}

#[test]
fn a_torn_last_line_gets_a_line_of_its_own() {
    let torn = "{\"time\":\"2014-02-04T10:30:10Z\",\"data\":[{\"han";
    // A complete record that only lacks its newline stays a valid record.
    let unterminated = L10.trim_end();
    for (tail, records, invalid) in [(torn, 2, 1), (unterminated, 3, 0)] {
        let fixture = Fixture::new(&[(NAME, &format!("{L00}{tail}"), None)]);
        fixture
            .writer(AuditLimits::default())
            .append(&record(&["date"]), at(30))
            .unwrap();
        let content = fs::read_to_string(fixture.path(NAME)).unwrap();
        assert_eq!(content, format!("{L00}{tail}\n{NEW30}"));
        let scanned = scan(content.as_bytes());
        assert_eq!(
            (scanned.records.len(), scanned.invalid_lines),
            (records, invalid)
        );
        assert!(!scanned.torn_tail);
    }
}

#[test]
fn a_torn_only_line_is_pruned_as_an_invalid_head() {
    check(Case {
        before: &[(NAME, "{\"time\":\"2014-02-04T10:3", None)],
        limits: AuditLimits::default(),
        appends: vec![(30, record(&["date"]))],
        after: &[(NAME, NEW30)],
    });
}

#[test]
fn a_record_never_contains_a_value_that_is_not_a_key() {
    let fixture = Fixture::new(&[]);
    let record = Record {
        trigger: Trigger::Cli,
        entries: vec![
            AuditEntry::new("db", &Secret::new("correct-horse-battery"), ["api_key"]),
            AuditEntry::new("token", &Secret::new(HEX32), ["password"]),
        ],
        failed: Vec::new(),
        held_back: Vec::new(),
    };
    fixture
        .writer(AuditLimits::default())
        .append(&record, at(0))
        .unwrap();
    let content = fs::read_to_string(fixture.path(NAME)).unwrap();
    assert!(!content.contains("correct-horse"), "{content}");
    assert!(!content.contains(&HEX32[..20]), "{content}");
    assert!(!content.contains("value"), "{content}");
}

#[test]
fn a_failed_housekeeping_step_does_not_lose_the_record_and_waits_an_hour() {
    let fixture = Fixture::new(&[(NAME, &format!("{L00}{L10}{L20}"), None)]);
    // The prune's temporary file cannot be created: its name is taken by a directory.
    let blocker = fixture.path(".records.ndjson.tmp");
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("x"), "").unwrap();
    let mut writer = fixture.writer(limits(DEFAULT_MAX_SIZE, 15));
    writer.append(&record(&["date"]), at(30)).unwrap();
    let after_first = format!("{L00}{L10}{L20}{NEW30}");
    assert_eq!(fs::read_to_string(fixture.path(NAME)).unwrap(), after_first);
    fs::remove_dir_all(&blocker).unwrap();
    // Within the hour: no new attempt.
    writer.append(&record(&["elder"]), at(40)).unwrap();
    let content = fs::read_to_string(fixture.path(NAME)).unwrap();
    assert!(content.starts_with(&after_first), "{content}");
    // After it: pruned.
    writer.append(&record(&["fig"]), at(3700)).unwrap();
    let scanned = scan(&fs::read(fixture.path(NAME)).unwrap());
    let times: Vec<_> = scanned.records.iter().map(|record| record.time).collect();
    assert_eq!(times, [at(3700)]);
}

#[test]
fn a_file_removed_between_appends_is_recreated() {
    let fixture = Fixture::new(&[]);
    let mut writer = fixture.writer(AuditLimits::default());
    writer.append(&record(&["apple"]), at(0)).unwrap();
    fs::remove_file(fixture.path(NAME)).unwrap();
    writer.append(&record(&["date"]), at(30)).unwrap();
    assert_eq!(fs::read_to_string(fixture.path(NAME)).unwrap(), NEW30);
}

#[test]
fn a_failed_or_short_write_is_truncated_back() {
    /// A file of `content` whose single write writes at most `accept` bytes, then fails if
    /// `fail` is set.
    struct Fake {
        content: Vec<u8>,
        accept: usize,
        fail: bool,
        interrupted_once: bool,
    }
    impl AppendTarget for Fake {
        fn write_once(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if !self.interrupted_once {
                self.interrupted_once = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let written = bytes.len().min(self.accept);
            self.content.extend_from_slice(&bytes[..written]);
            if self.fail {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(written)
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.content.truncate(usize::try_from(len).unwrap());
            Ok(())
        }
    }
    #[track_caller]
    fn check_write(accept: usize, fail: bool, expected: &str, error: &str) {
        let mut fake = Fake {
            content: L00.as_bytes().to_vec(),
            accept,
            fail,
            interrupted_once: false,
        };
        let result = append_once(&mut fake, NEW30.as_bytes(), L00.len() as u64);
        let got = match result {
            Ok(()) => "ok".to_owned(),
            Err(AppendFailure::Short(written)) => format!("short {written}"),
            Err(AppendFailure::Io(err)) => format!("io {:?}", err.kind()),
        };
        assert_eq!(got, error);
        assert_eq!(String::from_utf8(fake.content).unwrap(), expected);
    }
    check_write(usize::MAX, false, &format!("{L00}{NEW30}"), "ok");
    check_write(40, false, L00, "short 40");
    check_write(40, true, L00, "io StorageFull");
    check_write(0, true, L00, "io StorageFull");
}

#[test]
fn errors_name_the_operation_and_path() {
    let err = AuditError::Io {
        operation: Operation::Rotate,
        path: PathBuf::from("run/secret-audit-file.json"),
        source: io::ErrorKind::PermissionDenied.into(),
    };
    assert_eq!(
        err.to_string(),
        "could not rotate audit file run/secret-audit-file.json"
    );
    assert_eq!(audit_path(Path::new("")), Path::new(FILE_NAME));
    assert_eq!(
        audit_path(Path::new("/run/keyturn")),
        Path::new("/run/keyturn/secret-audit-file.json")
    );
}
