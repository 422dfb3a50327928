//! `last-backup-status.json` (replaced atomically after every run, failed ones included)
//! and `backup.log` (one line per event, appended, rotated to backup.log.1 past 1 MiB;
//! every line is also written to stderr, which journald collects under systemd).

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nanoserde::{DeJson, SerJson};

use crate::clock::{self, Tz};
use crate::fsutil;
use crate::store::{LOG_FILE, STATUS_FILE};

pub const LOG_ROTATE_BYTES: u64 = 1024 * 1024;

/// A success dated more than this ahead of the clock is not a fresh one: it was made
/// while the clock was wrong, or the clock is wrong now (an hour of slack for a clock
/// that NTP nudged back).
pub const FUTURE_SLACK: i64 = 3600;

/// The status of the last run. Field names are the contract's (docs/format.md, The status);
/// `last_success` is ours: the timestamp of the last successful run, kept across
/// failures so that `check` and the catch-up know how old the newest good backup is.
#[derive(Debug, Clone, Default, SerJson, DeJson, PartialEq)]
#[nserde(default)]
#[nserde(serialize_none_as_null)]
pub struct Status {
    pub timestamp: String,
    pub date: String,
    pub success: bool,
    pub archive: Option<String>,
    pub size: Option<String>,
    pub size_bytes: Option<u64>,
    pub backups_count: u64,
    pub retention_days: u32,
    pub duration_ms: u64,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// `error_words::code_of(error)`: the error's stable code (docs/format.md, Error
    /// codes), null when there is no error. Set whenever the status is written or read
    /// ([`Status::fill_codes`]); absent from statuses of older versions.
    pub error_code: Option<String>,
    pub last_success: Option<String>,
    /// Offsite copies (docs/format.md, Offsite), only when S3 is configured: the field is absent,
    /// not null, when offsite is off. (A `proxy` field is the one kind of Option that
    /// nanoserde omits when None despite `serialize_none_as_null` on the struct.)
    #[nserde(proxy = "Offsite")]
    pub offsite: Option<Offsite>,
    /// Copies to Google Drive (docs/format.md, Google Drive), the same shape as
    /// `offsite`; absent when Drive is off. The fleet reads `offsite` only.
    #[nserde(proxy = "Offsite")]
    pub gdrive: Option<Offsite>,
}

/// `"offsite": {"pending": N, "last_upload": "…", "error": null, "error_code": null, "poisoned": 0,
/// "videos": false, "held": false, "install": "…", "other_install": null}`.
#[derive(Debug, Clone, Default, SerJson, DeJson, PartialEq)]
#[nserde(default)]
#[nserde(serialize_none_as_null)]
pub struct Offsite {
    /// Archives waiting to be sent, and with VIDEOS_OFFSITE the videos still to upload.
    pub pending: u64,
    /// When the last copy was sent (local time, like `timestamp`).
    pub last_upload: Option<String>,
    /// Why the last attempt failed; null after a success.
    pub error: Option<String>,
    /// `error_words::code_of(error)` (docs/format.md, Error codes); null when `error` is,
    /// and in statuses of older versions.
    pub error_code: Option<String>,
    /// With VIDEOS_OFFSITE: shared video objects found not to hold the video their name
    /// says (another site wrote them first), each routed around with this site's own
    /// copy (docs/format.md, Videos offsite). 0 in statuses of older versions.
    pub poisoned: u64,
    /// Whether VIDEOS_OFFSITE is on: the site then publishes videos-referenced.txt, and
    /// `fleet gc` waits for a site that says so and has no readable list. false in
    /// statuses of older versions.
    pub videos: bool,
    /// Every offsite write is held back (docs/format.md, Offsite: a site's history):
    /// this install has no history of its own in the site and the bucket already holds
    /// archives of it; `error` says why. false in statuses of older versions.
    pub held: bool,
    /// This install's id (32 hex digits, docs/format.md, Offsite); null before the
    /// first offsite round and in statuses of older versions.
    pub install: Option<String>,
    /// The id of another install found writing this site's status in the bucket: two
    /// installs send backups under one SITE_ID. null when none.
    pub other_install: Option<String>,
}

impl From<&Offsite> for Offsite {
    fn from(o: &Offsite) -> Offsite {
        o.clone()
    }
}

impl Status {
    /// The timestamp of the last successful run: this one when it succeeded, else the
    /// one it carried over.
    pub fn last_success_stamp(&self) -> Option<&str> {
        if self.success {
            Some(self.timestamp.as_str())
        } else {
            self.last_success.as_deref()
        }
    }

    /// `last_success_stamp` as Unix seconds.
    pub fn last_success_unix(&self) -> Option<i64> {
        self.last_success_stamp().and_then(clock::parse_iso)
    }

    /// The last success as a fresh success can be counted at `now`: none when it is
    /// dated more than `FUTURE_SLACK` in the future (docs/format.md, The schedule).
    pub fn credible_success_unix(&self, now: i64) -> Option<i64> {
        self.last_success_unix()
            .filter(|&t| t - now <= FUTURE_SLACK)
    }

    /// The status as written: its codes set from its errors ([`Status::fill_codes`]).
    pub fn to_json(&self) -> String {
        let mut st = self.clone();
        st.fill_codes();
        SerJson::serialize_json(&st)
    }

    /// Sets `error_code` and `offsite.error_code` from the errors they stand beside
    /// (`error_words::code_of`; null when there is no error), whatever they said: a
    /// code never outlives its error.
    pub fn fill_codes(&mut self) {
        self.error_code = code_of(self.error.as_deref());
        if let Some(o) = &mut self.offsite {
            o.error_code = code_of(o.error.as_deref());
        }
    }

    /// The status as the pages read it (`GET /api/backups`): the file's JSON, with
    /// `error_words` (error_words::words of the code, in French) after the codes, at the
    /// end of the status and of its `offsite` object; null when there is no error or the
    /// code has no words.
    pub fn to_json_with_words(&self) -> String {
        let mut st = self.clone();
        st.fill_codes();
        let words = |code: &Option<String>| {
            code.as_deref()
                .and_then(crate::error_words::words)
                .map(String::from)
                .serialize_json()
        };
        let offsite = st.offsite.take();
        let mut json = with_field(st.serialize_json(), "error_words", &words(&st.error_code));
        if let Some(o) = offsite {
            let o_json = with_field(o.serialize_json(), "error_words", &words(&o.error_code));
            json = with_field(json, "offsite", &o_json);
        }
        json
    }
}

/// The code of an error, as the status stores it.
fn code_of(error: Option<&str>) -> Option<String> {
    error.map(|e| crate::error_words::code_of(e).to_string())
}

/// `object` (a JSON object, as nanoserde writes it) with `"name":value` added last.
fn with_field(mut object: String, name: &str, value: &str) -> String {
    if object.ends_with('}') {
        object.pop();
        if !object.ends_with('{') {
            object.push(',');
        }
        object.push_str(&format!("\"{name}\":{value}}}"));
    }
    object
}

/// The most a status file may hold (one holds a few hundred bytes, more with warnings).
const STATUS_MAX_BYTES: u64 = 1024 * 1024;

/// Reads the status file; `Ok(None)` when there is none yet. Never waits on a FIFO and
/// never reads more than 1 MiB (fsutil::read_small).
pub fn read(dir: &Path) -> io::Result<Option<Status>> {
    let path = dir.join(STATUS_FILE);
    let text = match fsutil::read_small(&path, true, STATUS_MAX_BYTES) {
        Ok((b, _)) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{STATUS_FILE} {e}"))),
    };
    crate::json::parse::<Status>(&text)
        .map(|mut st| {
            st.fill_codes();
            Some(st)
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{STATUS_FILE}: {e}")))
}

pub fn write(dir: &Path, status: &Status) -> io::Result<()> {
    let mut json = status.to_json();
    json.push('\n');
    match fsutil::atomic_write(dir, STATUS_FILE, json.as_bytes(), 0o644) {
        // A disk so full that not even a temp file fits: a failure must still be
        // recorded, so rewrite the (sub-block) file in place, reusing its block.
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            let mut f = OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(dir.join(STATUS_FILE))
                .map_err(|_| e)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()
        }
        r => r,
    }
}

/// The log of BACKUP_DIR. Lines of the current run are also kept in memory, for the
/// API's `output`.
pub struct Log {
    path: PathBuf,
    tz: Tz,
    captured: RefCell<Vec<String>>,
}

impl Log {
    pub fn new(dir: &Path, tz: &Tz) -> Log {
        Log {
            path: dir.join(LOG_FILE),
            tz: tz.clone(),
            captured: RefCell::new(Vec::new()),
        }
    }

    pub fn info(&self, msg: &str) {
        self.line("INFO", msg);
    }

    pub fn warn(&self, msg: &str) {
        self.line("WARN", msg);
    }

    pub fn error(&self, msg: &str) {
        self.line("ERROR", msg);
    }

    fn line(&self, level: &str, msg: &str) {
        // One record per line, whatever the message holds.
        let msg = msg.replace(['\n', '\r'], " ");
        let line = format!(
            "{} [{level}] {msg}",
            clock::iso_local(clock::now_unix(), &self.tz)
        );
        eprintln!("{line}");
        if let Err(e) = self.append(&line) {
            eprintln!("(cannot write {}: {e})", self.path.display());
        }
        self.captured.borrow_mut().push(line);
    }

    fn append(&self, line: &str) -> io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= LOG_ROTATE_BYTES) {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            // O_NONBLOCK: a FIFO in place of the log fails at once instead of blocking.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&self.path)?;
        f.write_all(format!("{line}\n").as_bytes())
    }

    /// The lines logged through this handle so far.
    pub fn captured(&self) -> Vec<String> {
        self.captured.borrow().clone()
    }
}

/// The last `n` lines of backup.log (reading only its tail).
pub fn tail(dir: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok((mut f, _)) = fsutil::open_regular(&dir.join(LOG_FILE), true) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    // When we started mid-file, the first line may be partial.
    let skip_first = usize::from(start > 0 && !lines.is_empty());
    let from = lines.len().saturating_sub(n).max(skip_first);
    lines[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let s = Status {
            timestamp: "2024-12-18T03:00:00+01:00".into(),
            date: "2024-12-18".into(),
            success: false,
            retention_days: 7,
            error: Some("disk \"full\"".into()),
            ..Status::default()
        };
        let j = s.to_json();
        assert!(j.contains(r#""archive":null"#), "{j}");
        // The code comes with the error, right after it.
        assert!(
            j.contains(r#""error":"disk \"full\"","error_code":"unknown","last_success":null"#),
            "{j}"
        );
        let mut coded = s.clone();
        coded.fill_codes();
        assert_eq!(coded.error_code.as_deref(), Some("unknown"));
        assert_eq!(crate::json::parse::<Status>(&j).ok(), Some(coded.clone()));
        assert!(!j.contains("offsite"), "{j}");
        let s = Status {
            offsite: Some(Offsite {
                pending: 2,
                last_upload: None,
                error: Some("HTTP 503: Slow Down".into()),
                // A stale code never survives the write: it is the error's.
                error_code: Some("disk_full".into()),
                poisoned: 1,
                videos: true,
                held: true,
                install: Some("ab".repeat(16)),
                other_install: None,
            }),
            ..coded
        };
        let j = s.to_json();
        assert!(
            j.contains(
                r#""offsite":{"pending":2,"last_upload":null,"error":"HTTP 503: Slow Down","error_code":"offsite_server","poisoned":1,"videos":true,"held":true,"install":"abababababababababababababababab","other_install":null}"#
            ),
            "{j}"
        );
        // A status of an older version (no `error_code`, `poisoned`, `videos`, `held`,
        // `install`, `other_install`) reads as 0, false and null, its codes computed
        // from its errors when it is read from the file.
        let old = j.replace(
            r#","poisoned":1,"videos":true,"held":true,"install":"abababababababababababababababab","other_install":null"#,
            "",
        )
        .replace(r#","error_code":"offsite_server""#, "")
        .replace(r#","error_code":"unknown""#, "");
        assert!(!old.contains("error_code"), "{old}");
        assert!(old.ends_with(r#""error":"HTTP 503: Slow Down"}}"#), "{old}");
        let back = crate::json::parse::<Status>(&old).ok();
        assert_eq!(
            back.as_ref().and_then(|s| s.offsite.clone()).map(|o| (
                o.poisoned,
                o.videos,
                o.held,
                o.install,
                o.other_install,
                o.error_code
            )),
            Some((0, false, false, None, None, None))
        );
        assert_eq!(back.as_ref().map(|s| s.error_code.clone()), Some(None));
        let dir = std::env::temp_dir().join(format!("neopro-status-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(STATUS_FILE), &old).unwrap_or_else(|e| panic!("{e}"));
        let read_back = read(&dir).ok().flatten();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            read_back.map(|s| (s.error_code, s.offsite.and_then(|o| o.error_code))),
            Some((Some("unknown".into()), Some("offsite_server".into())))
        );
        let mut filled = s.clone();
        filled.fill_codes();
        assert_eq!(crate::json::parse::<Status>(&j).ok(), Some(filled));
    }

    /// The previous version's status file, as a Pi of the field holds it: it reads, and
    /// the pages still get the words of its error.
    #[test]
    fn previous_version_status_reads_with_words() {
        let previous = r#"{"timestamp":"2025-01-05T03:00:00+01:00","date":"2025-01-05","success":false,"archive":null,"size":null,"size_bytes":null,"backups_count":3,"retention_days":7,"duration_ms":12,"warnings":[],"error":"cannot create BACKUP_DIR /x: Not a directory (os error 20)","last_success":"2025-01-04T03:00:00+01:00","offsite":{"pending":1,"last_upload":"2025-01-04T03:00:12+01:00","error":"PUT s3://b/k: cannot connect to http://10.0.0.9:8333: Connection refused (os error 111)","poisoned":0,"videos":false,"held":false,"install":null,"other_install":null}}"#;
        let Ok(st) = crate::json::parse::<Status>(previous) else {
            panic!("the previous version's status does not read")
        };
        assert_eq!(st.error_code, None);
        let view = st.to_json_with_words();
        assert!(
            view.contains(r#""error_code":"not_a_directory","last_success""#),
            "{view}"
        );
        assert!(
            view.contains(r#","error_words":"Un dossier attendu est en fait un fichier"#),
            "{view}"
        );
        assert!(
            view.contains(r#""error_code":"offsite_unreachable","poisoned":0"#)
                && view.contains(r#""other_install":null,"error_words":"Le serveur des copies hors site est injoignable"#)
                && view.ends_with("}}"),
            "{view}"
        );
        // The view is JSON that reads back as the status it shows.
        let mut filled = st.clone();
        filled.fill_codes();
        assert_eq!(crate::json::parse::<Status>(&view).ok(), Some(filled));
        // No error: codes and words are null.
        let ok = Status {
            success: true,
            ..Status::default()
        };
        let view = ok.to_json_with_words();
        assert!(
            view.contains(r#""error":null,"error_code":null"#)
                && view.ends_with(r#","error_words":null}"#),
            "{view}"
        );
    }
}

/// The verdict of `check`: (healthy, one line starting with `OK:` or `CRITICAL:`).
pub fn check(status: Option<&Status>, now: i64, max_age_hours: u32) -> (bool, String) {
    let Some(st) = status else {
        return (
            false,
            "CRITICAL: no backup has been recorded yet".to_string(),
        );
    };
    if !st.success {
        return (
            false,
            format!(
                "CRITICAL: the last backup failed at {}: {}",
                st.timestamp,
                st.error.as_deref().unwrap_or("unknown error")
            ),
        );
    }
    if let Some(why) = offsite_trouble(st) {
        return (false, format!("CRITICAL: {why}"));
    }
    let Some(t) = clock::parse_iso(&st.timestamp) else {
        return (
            false,
            format!(
                "CRITICAL: unreadable timestamp {:?} in the status",
                st.timestamp
            ),
        );
    };
    // A Pi without a real-time clock may have made that backup while it believed it was
    // 2099: a success dated in the future says nothing about today, and would otherwise
    // count as fresh for years. (An hour of slack for a clock that NTP nudged back.)
    if t - now > FUTURE_SLACK {
        return (
            false,
            format!(
                "CRITICAL: the last backup is dated {}, in the future: the clock was wrong \
                 then or is wrong now",
                st.timestamp
            ),
        );
    }
    let age_h = (now - t) as f64 / 3600.0;
    let what = format!(
        "last backup {} ({:.1} h ago, {}, {})",
        st.timestamp,
        age_h.max(0.0),
        st.archive.as_deref().unwrap_or("?"),
        st.size.as_deref().unwrap_or("?")
    );
    if now - t > i64::from(max_age_hours) * 3600 {
        (
            false,
            format!("CRITICAL: {what}: older than {max_age_hours} h"),
        )
    } else {
        (true, format!("OK: {what}"))
    }
}

/// What makes the site's offsite history untrustworthy, in one sentence (docs/format.md,
/// Offsite: a site's history): every write held back, or another install sending
/// under the same SITE_ID. Both are CRITICAL for `check`: the local backups go on, but
/// the copy a replacement Pi would recover from is missing (held) or may be another
/// kiosk's (two installs), and nothing else on the site tells.
pub fn offsite_trouble(st: &Status) -> Option<String> {
    // Google Drive's hold (a new card not recovered yet) is as critical as the bucket's.
    if let Some(g) = st.gdrive.as_ref().filter(|g| g.held) {
        return Some(
            g.error
                .clone()
                .unwrap_or_else(|| "Google Drive copies held".to_string()),
        );
    }
    let o = st.offsite.as_ref()?;
    if o.held {
        return Some(
            o.error
                .clone()
                .unwrap_or_else(|| "offsite copies held".to_string()),
        );
    }
    o.other_install.as_ref().map(|other| {
        format!(
            "another install ({other}) also sends backups under this SITE_ID (this one is {}): \
             give each Pi its own SITE_ID",
            o.install.as_deref().unwrap_or("unknown")
        )
    })
}

#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    fn a_drive_hold_is_trouble() {
        let held = Status {
            gdrive: Some(Offsite {
                held: true,
                error: Some("Google Drive copies held: …".into()),
                ..Offsite::default()
            }),
            ..Status::default()
        };
        assert!(offsite_trouble(&held).is_some_and(|t| t.starts_with("Google Drive copies held")));
        let fine = Status {
            gdrive: Some(Offsite::default()),
            ..Status::default()
        };
        assert_eq!(offsite_trouble(&fine), None);
    }

    #[test]
    fn verdicts() {
        let t = "2024-12-18T03:00:00+01:00";
        let now = clock::parse_iso(t).unwrap_or_default();
        let ok = Status {
            timestamp: t.into(),
            success: true,
            ..Status::default()
        };
        assert!(check(Some(&ok), now + 24 * 3600, 25).0);
        let (fresh, msg) = check(Some(&ok), now + 26 * 3600, 25);
        assert!(!fresh && msg.starts_with("CRITICAL:"), "{msg}");
        let failed = Status {
            success: false,
            error: Some("disk full".into()),
            ..ok.clone()
        };
        let (good, msg) = check(Some(&failed), now, 25);
        assert!(!good && msg.contains("disk full"));
        assert!(!check(None, now, 25).0);
        // Dated in the future (the clock was wrong): not fresh; a few minutes ahead is.
        let (good, msg) = check(Some(&ok), now - 10 * 365 * 86_400, 25);
        assert!(!good && msg.contains("future"), "{msg}");
        assert!(check(Some(&ok), now - 300, 25).0);
        // Offsite copies held, or another install under the same SITE_ID: CRITICAL
        // however fresh the backup.
        let held = Status {
            offsite: Some(Offsite {
                held: true,
                error: Some("offsite copies held: the bucket already holds 2 backup(s)".into()),
                ..Offsite::default()
            }),
            ..ok.clone()
        };
        let (good, msg) = check(Some(&held), now, 25);
        assert!(
            !good && msg == "CRITICAL: offsite copies held: the bucket already holds 2 backup(s)",
            "{msg}"
        );
        let twice = Status {
            offsite: Some(Offsite {
                install: Some("a".repeat(32)),
                other_install: Some("b".repeat(32)),
                ..Offsite::default()
            }),
            ..ok.clone()
        };
        let (good, msg) = check(Some(&twice), now, 25);
        assert!(
            !good && msg.contains(&"b".repeat(32)) && msg.contains(&"a".repeat(32)),
            "{msg}"
        );
        // An offsite error alone (the server down) is not the check's business.
        let down = Status {
            offsite: Some(Offsite {
                error: Some("connection refused".into()),
                pending: 1,
                ..Offsite::default()
            }),
            ..ok.clone()
        };
        assert!(check(Some(&down), now, 25).0);
    }
}
