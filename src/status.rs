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
    pub last_success: Option<String>,
    /// Offsite copies (docs/format.md, Offsite), only when S3 is configured: the field is absent,
    /// not null, when offsite is off. (A `proxy` field is the one kind of Option that
    /// nanoserde omits when None despite `serialize_none_as_null` on the struct.)
    #[nserde(proxy = "Offsite")]
    pub offsite: Option<Offsite>,
}

/// `"offsite": {"pending": N, "last_upload": "…", "error": null, "poisoned": 0,
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

    pub fn to_json(&self) -> String {
        SerJson::serialize_json(self)
    }
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
    Status::deserialize_json(&text)
        .map(Some)
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
        assert!(j.contains(r#""error":"disk \"full\"""#), "{j}");
        assert_eq!(Status::deserialize_json(&j).ok(), Some(s.clone()));
        assert!(!j.contains("offsite"), "{j}");
        let s = Status {
            offsite: Some(Offsite {
                pending: 2,
                last_upload: None,
                error: Some("down".into()),
                poisoned: 1,
                videos: true,
                held: true,
                install: Some("ab".repeat(16)),
                other_install: None,
            }),
            ..s
        };
        let j = s.to_json();
        assert!(
            j.contains(
                r#""offsite":{"pending":2,"last_upload":null,"error":"down","poisoned":1,"videos":true,"held":true,"install":"abababababababababababababababab","other_install":null}"#
            ),
            "{j}"
        );
        // A status of an older version (no `poisoned`, `videos`, `held`, `install`,
        // `other_install`) reads as 0, false and null.
        let old = j.replace(
            r#","poisoned":1,"videos":true,"held":true,"install":"abababababababababababababababab","other_install":null"#,
            "",
        );
        assert!(old.ends_with(r#""error":"down"}}"#), "{old}");
        let back = Status::deserialize_json(&old).ok().and_then(|s| s.offsite);
        assert_eq!(
            back.map(|o| (o.poisoned, o.videos, o.held, o.install, o.other_install)),
            Some((0, false, false, None, None))
        );
        assert_eq!(Status::deserialize_json(&j).ok(), Some(s));
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
