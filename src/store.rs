//! BACKUP_DIR, the store: what lives in it and under which name, the folder's mode, the
//! backup lock, crash leftovers, the list of archives and its cache. Every module names
//! files in BACKUP_DIR through the constants here (docs/format.md, "BACKUP_DIR"); the
//! temp prefix `.tmp-` is fsutil.rs's (every temp file the crate makes, in any folder),
//! re-exported here.
//!
//! ```text
//! BACKUP_DIR/                      0700, created by the first run or the daemon
//!   backup-YYYYMMDD-HHMMSS.tar.gz  the archives (0600), local time of the start
//!   .tmp-*                         a write in progress, or a crash leftover
//!   .backup.lock                   flock: one backup (or restore) at a time
//!   last-backup-status.json        the last run (status.rs)
//!   backup.log, backup.log.1       one line per event, rotated past 1 MiB
//!   auto-backup.json               the daemon's schedule switch
//!   offsite-pending/               queued offsite copies (offsite/)
//!   offsite-state.json, .offsite.lock
//!   alert-mail.json                email alerts not sent yet, failing since when
//!   videos-sha256.cache            the video hash cache (videos/hashes.rs)
//!   offsite-videos.txt             the videos offsite ledger (offsite/ledger.rs)
//!   .videos-restore.lock           flock: one `restore --videos` at a time
//!   .recover.lock                  flock: one recovery from the bucket at a time
//! ```

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nanoserde::SerJson;

use crate::clock;
use crate::fsutil::{Lock, LockWait, fsync_dir};
use crate::units::human_size;

pub use crate::fsutil::TMP_PREFIX;

/// The last run (status.rs), replaced atomically after every run.
pub const STATUS_FILE: &str = "last-backup-status.json";
/// One line per event; rotated to `backup.log.1` past 1 MiB.
pub const LOG_FILE: &str = "backup.log";

/// The backup lock (flock).
pub const LOCK_FILE: &str = ".backup.lock";
/// The daemon's schedule switch (`auto-toggle`), kept across restarts.
pub const SCHEDULE_FILE: &str = "auto-backup.json";
/// Offsite copies waiting to be sent: one empty marker file per archive name.
pub const OFFSITE_PENDING_DIR: &str = "offsite-pending";
/// The offsite queue's retry state.
pub const OFFSITE_STATE_FILE: &str = "offsite-state.json";
/// Email alerts: since when runs fail, and mails not sent yet (alerts/email.rs).
pub const MAIL_STATE_FILE: &str = "alert-mail.json";
/// One offsite sender at a time.
pub const OFFSITE_LOCK_FILE: &str = ".offsite.lock";
/// The video hash cache (videos/hashes.rs), with VIDEOS_OFFSITE or INCLUDE_VIDEOS.
pub const VIDEO_HASH_CACHE_FILE: &str = "videos-sha256.cache";
/// The videos offsite ledger (offsite/ledger.rs), with VIDEOS_OFFSITE.
pub const VIDEOS_LEDGER_FILE: &str = "offsite-videos.txt";
/// One video restore (`restore --videos`) at a time (restore/videos.rs).
pub const VIDEOS_RESTORE_LOCK_FILE: &str = ".videos-restore.lock";
/// One recovery from the bucket (`recover`, the API's job) at a time (recover.rs).
pub const RECOVER_LOCK_FILE: &str = ".recover.lock";
/// Google Drive (docs/format.md, Google Drive): the refresh token and the IDs of the
/// folders and files found or made (0600), the copies waiting, the queue's retry state,
/// one sender at a time.
pub const GDRIVE_TOKEN_FILE: &str = "gdrive-token.json";
pub const GDRIVE_PENDING_DIR: &str = "gdrive-pending";
pub const GDRIVE_STATE_FILE: &str = "gdrive-state.json";
pub const GDRIVE_LOCK_FILE: &str = ".gdrive.lock";

#[derive(SerJson)]
pub struct ArchiveEntry {
    pub name: String,
    pub size: String,
    #[nserde(rename = "sizeBytes")]
    pub size_bytes: u64,
    pub date: String,
    pub created: String,
    pub age: String,
    /// Absent for an archive of the current format (the contract's exact shape); else
    /// `old` (written by the old auto-backup.sh), `unknown` (gzip, but not a layout we
    /// know) or `invalid` (empty, or not gzip: not an archive at all).
    pub format: Option<String>,
}

/// "0 jours", "1 jour", "12 jours": whole days since the time in the name (never negative).
pub fn age_days(naive_then: i64, naive_now: i64) -> String {
    let d = ((naive_now - naive_then) / 86_400).max(0);
    if d == 1 {
        "1 jour".to_string()
    } else {
        format!("{d} jours")
    }
}

/// The instant a local (naive) time in a name stands for: the first of two in the
/// hour repeated in autumn, the moment the clock jumped for one in the hour skipped in
/// spring.
pub fn name_unix(naive: i64, tz: &clock::Tz) -> i64 {
    match tz.unix_of_naive(naive).first() {
        Some(&t) => t,
        None => naive - i64::from(tz.offset_secs(naive - 86_400)),
    }
}

/// One line of the list. `date`, `created`, `age` and the order all come from the time
/// in the name (what the user sees, and what survives a copy that resets mtime).
pub fn entry(a: &ArchiveInfo, format: Format, naive_now: i64, tz: &clock::Tz) -> ArchiveEntry {
    ArchiveEntry {
        name: a.name.clone(),
        size: human_size(a.size, 2),
        size_bytes: a.size,
        date: clock::plain(a.naive),
        created: clock::iso_utc_millis(name_unix(a.naive, tz), 0),
        age: age_days(a.naive, naive_now),
        format: (format != Format::Current).then(|| format.as_str().to_string()),
    }
}

/// What a file named like an archive holds, judged from its first bytes (`sniff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One top folder `backup-YYYYMMDD-HHMMSS/` (docs/format.md, The archive).
    Current,
    /// Written by the old auto-backup.sh: top folder `YYYYMMDD-HHMMSS/`, no manifest.
    Old,
    /// A gzip stream, but its first entry is not a top folder we know (or unreadable).
    Unknown,
    /// Empty, not a regular file, or not gzip: not an archive, and never one of the
    /// newest 3 that retention keeps.
    Invalid,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Current => "current",
            Format::Old => "old",
            Format::Unknown => "unknown",
            Format::Invalid => "invalid",
        }
    }
}

/// `YYYYMMDD-HHMMSS`: the top folder of an old-format archive.
pub fn is_old_top(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15
        && b[8] == b'-'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit)
}

/// docs/format.md, Retention: a non-empty regular file (not a symlink) that starts with
/// the gzip magic. Reads two bytes, never waits on a FIFO.
pub fn is_valid(path: &Path) -> bool {
    use std::io::Read;
    let Ok((mut f, meta)) = crate::fsutil::open_regular(path, true) else {
        return false;
    };
    let mut magic = [0u8; 2];
    meta.len() > 0 && f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b]
}

/// The most compressed bytes `sniff` reads to find the first tar header.
const SNIFF_MAX_INPUT: u64 = 64 * 1024;

/// Judges the file at `path` by its first bytes, without following a symlink and
/// without waiting on a FIFO: the gzip magic, then the name of the first tar entry
/// (inflating at most 64 KiB of input for its 512 bytes).
pub fn sniff(path: &Path) -> Format {
    use std::io::Read;
    let Ok((f, meta)) = crate::fsutil::open_regular(path, true) else {
        return Format::Invalid;
    };
    if meta.len() == 0 {
        return Format::Invalid;
    }
    let mut r = f.take(SNIFF_MAX_INPUT);
    let mut magic = [0u8; 2];
    if r.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Format::Invalid;
    }
    let gz = flate2::read::GzDecoder::new(io::Cursor::new(magic).chain(r));
    let mut header = [0u8; 512];
    if gz.take(512).read_exact(&mut header).is_err() {
        return Format::Unknown;
    }
    let name_field = &header[..100];
    let name = &name_field[..name_field.iter().position(|&b| b == 0).unwrap_or(100)];
    let first = name.split(|&b| b == b'/').next().unwrap_or_default();
    let Ok(first) = std::str::from_utf8(first) else {
        return Format::Unknown;
    };
    match first.strip_prefix("backup-") {
        Some(stamp) if is_old_top(stamp) => Format::Current,
        None if is_old_top(first) => Format::Old,
        _ => Format::Unknown,
    }
}

/// `^backup-\d{8}-\d{6}\.tar\.gz$`, the only names the API accepts.
pub fn is_archive_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 29
        && name.starts_with("backup-")
        && name.ends_with(".tar.gz")
        && b[15] == b'-'
        && b[7..15].iter().all(u8::is_ascii_digit)
        && b[16..22].iter().all(u8::is_ascii_digit)
}

/// `backup-YYYYMMDD-HHMMSS` for a local (naive) time.
pub fn stem_for(naive: i64) -> String {
    let c = clock::civil(naive);
    format!(
        "backup-{:04}{:02}{:02}-{:02}{:02}{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// The folder name inside an archive: its name without `.tar.gz`.
pub fn stem_of(name: &str) -> &str {
    name.strip_suffix(".tar.gz").unwrap_or(name)
}

/// The local (naive) time encoded in an archive name, if it is a real date.
pub fn name_time(name: &str) -> Option<i64> {
    if !is_archive_name(name) {
        return None;
    }
    let d = |r: std::ops::Range<usize>| name.get(r)?.parse::<u32>().ok();
    let (y, mo, da) = (d(7..11)?, d(11..13)?, d(13..15)?);
    let (h, mi, s) = (d(16..18)?, d(18..20)?, d(20..22)?);
    if !clock::valid_date(i64::from(y), mo, da) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some(clock::naive_secs(i64::from(y), mo, da, h, mi, s))
}

/// One archive found in BACKUP_DIR.
#[derive(Debug, Clone)]
pub struct ArchiveInfo {
    pub name: String,
    pub size: u64,
    /// The local time in the name.
    pub naive: i64,
    /// Inode and change time: what `sniff`'s memo is keyed on.
    pub ino: u64,
    pub ctime: (i64, i64),
}

/// Archives in `dir`, newest (by the time in their name) first. Symlinks, folders and
/// files that vanish while we look are skipped, never an error.
pub fn list(dir: &Path) -> io::Result<Vec<ArchiveInfo>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let Ok(entry) = entry else { continue };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(naive) = name_time(&name) else {
            continue;
        };
        // symlink_metadata: a symlink is not an archive, even when it points to one.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        use std::os::unix::fs::MetadataExt;
        out.push(ArchiveInfo {
            name,
            size: meta.len(),
            naive,
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        });
    }
    out.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(out)
}

/// The newest archive name in `dir` (by the time in the name) that is a regular file,
/// with that time; reads only the names, and stats only a name newer than the best so
/// far. For the daemon's clock checks, called per request.
pub fn newest(dir: &Path) -> Option<(String, i64)> {
    let mut best: Option<(String, i64)> = None;
    for entry in std::fs::read_dir(dir).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(naive) = name_time(&name) else {
            continue;
        };
        if best.as_ref().is_some_and(|(_, b)| *b >= naive) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            best = Some((name, naive));
        }
    }
    best
}

/// `sniff` results of the last listing, keyed on name, size, inode and ctime (any
/// rewrite changes the ctime): the list is asked for every few seconds, the archives
/// rarely change.
type FormatMemo = std::collections::HashMap<String, (u64, u64, (i64, i64), Format)>;
static FORMATS: std::sync::Mutex<Option<FormatMemo>> = std::sync::Mutex::new(None);

/// The format of each archive of `list` (same order), sniffing only those not seen
/// unchanged by the previous call.
pub fn formats(dir: &Path, list: &[ArchiveInfo]) -> Vec<Format> {
    let mut memo = FORMATS.lock().unwrap_or_else(|p| p.into_inner());
    let old = memo.take().unwrap_or_default();
    let mut fresh = FormatMemo::with_capacity(list.len());
    let out = list
        .iter()
        .map(|a| {
            let f = match old.get(&a.name) {
                Some(&(size, ino, ctime, f)) if (size, ino, ctime) == (a.size, a.ino, a.ctime) => f,
                _ => sniff(&dir.join(&a.name)),
            };
            fresh.insert(a.name.clone(), (a.size, a.ino, a.ctime, f));
            f
        })
        .collect();
    *memo = Some(fresh);
    out
}

/// Creates BACKUP_DIR (0700: it holds secrets) if needed.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Takes the backup lock of `dir`.
/// With `LockWait::Block`, `on_wait` is called once before waiting for another backup.
pub fn lock(dir: &Path, wait: LockWait, on_wait: impl FnOnce()) -> io::Result<Option<Lock>> {
    let path = dir.join(LOCK_FILE);
    match wait {
        LockWait::Try => Lock::acquire(&path, LockWait::Try),
        LockWait::Block => match Lock::acquire(&path, LockWait::Try)? {
            Some(l) => Ok(Some(l)),
            None => {
                on_wait();
                Lock::acquire(&path, LockWait::Block)
            }
        },
    }
}

/// Removes our temporary files left in `dir` by a crashed run. Call with the lock held.
pub fn remove_leftovers(dir: &Path) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(TMP_PREFIX) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed.push(name.to_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !removed.is_empty() {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// The `backups` array of the list, serialized, with the folder state it was made from.
///
/// Listing stats every archive: with 1,000 archives that is 1,000 `statx` calls a request
/// (7 ms on a slow VM, more on an SD card), which the admin panel may ask for every few
/// seconds and several tabs at once. The array is reused while BACKUP_DIR itself is
/// unchanged (same inode, mtime and ctime: every create, rename, delete or new symlink in
/// the folder changes them) and for at most `LIST_CACHE_TTL`, which also bounds how late
/// an in-place change (a `touch`) and the `age` strings can be. A folder changed less
/// than a second before it was read is not cached at all: a second change within the
/// same timestamp tick would not move its mtime.
struct ListCache {
    dir: std::path::PathBuf,
    key: DirKey,
    made: std::time::Instant,
    backups_json: std::sync::Arc<[u8]>,
    total: u64,
    total_size: u64,
}

pub struct ArchiveListing {
    pub backups_json: std::sync::Arc<[u8]>,
    pub total: u64,
    pub total_size: u64,
}

type DirKey = (u64, u64, i64, i64, i64, i64);

const LIST_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

static LIST_CACHE: std::sync::Mutex<Option<ListCache>> = std::sync::Mutex::new(None);

/// One listing at a time: when the cached array expires under load, every handler in
/// flight would otherwise stat every archive at once, each with its own copy in memory.
static LIST_REBUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The folder's identity and change times, and whether it is old enough to cache.
fn dir_key(dir: &std::path::Path) -> Option<(DirKey, bool)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).ok()?;
    let settled = m
        .modified()
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= std::time::Duration::from_secs(1));
    let key = (
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
    Some((key, settled))
}

/// The cached array, when it was made from this folder in this state not long ago.
fn cache_hit(dir: &std::path::Path, key: Option<(DirKey, bool)>) -> Option<ArchiveListing> {
    let (k, _) = key?;
    let cache = LIST_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let c = cache.as_ref()?;
    (c.key == k && c.dir == dir && c.made.elapsed() < LIST_CACHE_TTL).then(|| ArchiveListing {
        backups_json: std::sync::Arc::clone(&c.backups_json),
        total: c.total,
        total_size: c.total_size,
    })
}

pub fn cached_backups(dir: &std::path::Path, tz: &clock::Tz) -> std::io::Result<ArchiveListing> {
    if let Some(l) = cache_hit(dir, dir_key(dir)) {
        return Ok(l);
    }
    let _one = LIST_REBUILD.lock().unwrap_or_else(|p| p.into_inner());
    // Another handler may have made it while this one waited.
    let key = dir_key(dir);
    if let Some(l) = cache_hit(dir, key) {
        return Ok(l);
    }
    let made = std::time::Instant::now();
    let archives = list(dir)?;
    let naive_now = tz.to_naive(clock::now_unix());
    let entries: Vec<ArchiveEntry> = archives
        .iter()
        .zip(formats(dir, &archives))
        .map(|(a, f)| entry(a, f, naive_now, tz))
        .collect();
    // Sized up front (an entry is ~160 bytes): no trail of ever larger buffers.
    let mut out = nanoserde::SerJsonState::new(String::with_capacity(entries.len() * 192 + 2));
    entries.ser_json(0, &mut out);
    let listed = ArchiveListing {
        backups_json: out.out.into_bytes().into(),
        total: archives.len() as u64,
        total_size: archives.iter().map(|a| a.size).sum(),
    };
    if let Some((k, true)) = key {
        *LIST_CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Some(ListCache {
            dir: dir.to_path_buf(),
            key: k,
            made,
            backups_json: std::sync::Arc::clone(&listed.backups_json),
            total: listed.total,
            total_size: listed.total_size,
        });
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .tar.gz whose first entry is the folder `top/`.
    fn targz(top: &str) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o700);
        let r = b
            .append_data(&mut h, format!("{top}/"), io::empty())
            .and_then(|_| b.into_inner())
            .and_then(|gz| gz.finish());
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn formats_are_judged_from_the_first_bytes() {
        let dir = std::env::temp_dir().join(format!("neopro-sniff-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for (name, bytes, want) in [
            ("empty", Vec::new(), Format::Invalid),
            ("text", b"not gzip".to_vec(), Format::Invalid),
            ("magic-only", vec![0x1f, 0x8b], Format::Unknown),
            ("current", targz("backup-20241218-030000"), Format::Current),
            ("old", targz("20241218-030000"), Format::Old),
            ("foreign", targz("home"), Format::Unknown),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, &bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(sniff(&p), want, "{name}");
            assert_eq!(is_valid(&p), want != Format::Invalid, "{name}");
        }
        let _ = std::os::unix::fs::symlink(dir.join("current"), dir.join("link"));
        assert_eq!(
            sniff(&dir.join("link")),
            Format::Invalid,
            "a symlink is not an archive"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names() {
        assert!(is_archive_name("backup-20241218-030000.tar.gz"));
        for bad in [
            "backup-2024121-030000.tar.gz",
            "backup-20241218-030000.tar.gz.age",
            "../backup-20241218-030000.tar.gz",
            "backup-20241218-03000a.tar.gz",
            "backup-20241218_030000.tar.gz",
            "",
        ] {
            assert!(!is_archive_name(bad), "{bad}");
        }
        assert!(is_old_top("20241218-030000") && !is_old_top("backup-20241218-030000"));
        assert_eq!(name_time("backup-20241399-030000.tar.gz"), None);
        let t = name_time("backup-20241218-030000.tar.gz");
        assert_eq!(t.map(stem_for).as_deref(), Some("backup-20241218-030000"));
    }

    #[test]
    fn a_name_holds_a_real_local_time_and_its_folder() {
        assert_eq!(
            name_time("backup-20241231-235959.tar.gz"),
            Some(clock::naive_secs(2024, 12, 31, 23, 59, 59))
        );
        assert_eq!(
            name_time("backup-20240229-000000.tar.gz"),
            Some(clock::naive_secs(2024, 2, 29, 0, 0, 0))
        );
        for bad in [
            "backup-20241218-240000.tar.gz",
            "backup-20241218-036000.tar.gz",
            "backup-20241218-030060.tar.gz",
            "backup-20230229-030000.tar.gz",
            "backup-20241218-030000.tar.bz",
        ] {
            assert_eq!(name_time(bad), None, "{bad}");
        }
        assert_eq!(
            stem_for(clock::naive_secs(2025, 1, 2, 3, 4, 5)),
            "backup-20250102-030405"
        );
        assert_eq!(
            stem_of("backup-20241218-030000.tar.gz"),
            "backup-20241218-030000"
        );
        assert_eq!(stem_of("20241218-030000"), "20241218-030000");
    }
}
