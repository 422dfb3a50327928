//! A site's history in the bucket, and the installs that write it (docs/format.md,
//! Offsite: a site's history).
//!
//! A Pi reinstalled under an existing SITE_ID (a fresh SD card) must not send the
//! backups of its blank tree into the site's folder: they would become the site's
//! newest copies, and remote retention would remove the real ones a month later. So a
//! Pi writes under `S3_PREFIX/SITE_ID/` only when it **belongs to the site's history**:
//! its own `offsite-state.json` records a copy it sent there, a recovery from there, a
//! new start declared there, or (a Pi upgraded from a version without this record) copies
//! sent before. Otherwise, when the site's folder already holds archives, every write
//! under it (archives, status, videos-referenced.txt, videos, remote retention) is
//! held, with the reason in the status, until `recover` calls [`record_recovery`] or
//! an operator declares a new start ([`new_start`]).
//!
//! Each install has an id (128 random bits, hex) kept in the same state, bound to the
//! machine it was made on (the Pi's serial number, else /etc/machine-id): a card cloned
//! into another Pi gets a new id at its first round. The status carries the id; before
//! putting its status, a Pi reads the one in the bucket, and one written by another
//! install since this one's last is reported: two installs send backups under one
//! SITE_ID.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::path::Path;
use std::time::{Duration, Instant};

use nanoserde::{DeJson, SerJson};

use crate::bucket::{self, Bucket};
use crate::clock::{self, Tz};
use crate::config::{Config, OffsiteSettings};
use crate::fsutil::{self, Lock, LockWait};
use crate::status::{Log, Status};
use crate::store::{self, OFFSITE_LOCK_FILE, OFFSITE_STATE_FILE};
use crate::units::{hex, sha256_hex};

use super::{QueueState, read_state, site_prefix};

/// The layout of offsite-state.json that has `version`, `history` and the install id.
pub const STATE_VERSION: u32 = 2;
/// Pages of the site's folder read to find its archives (1,000 keys a page on S3; a
/// site's folder holds its archives, a few lists and its status, its videos folded).
const PROBE_PAGES: u32 = 10;
/// How long `record_recovery` and `new_start` wait for the offsite queue's lock (the
/// daemon's worker may be in a round).
const LOCK_WAIT: Duration = Duration::from_secs(120);
/// Where the machine's identity is read, first found first (the Pi's serial number,
/// which a cloned card does not carry; else systemd's id, which it does).
const MACHINE_FILES: [&str; 2] = [
    "/sys/firmware/devicetree/base/serial-number",
    "/etc/machine-id",
];

/// One site this install has a history in.
#[derive(Debug, Clone, Default, SerJson, DeJson, PartialEq)]
#[nserde(default)]
pub struct SiteHistory {
    pub site: String,
    /// `sent` (its first copy went there), `recovered`, `new-start` or `upgrade` (an
    /// earlier version's state showed copies sent).
    pub how: String,
    /// When it was recorded (Unix time; 0 for an upgrade).
    pub since: i64,
    /// Whether this install has put its status there since: a status there that is not
    /// what it last put was written by another install after it.
    pub status: bool,
}

/// Whether `st` records a history in `site`.
pub(super) fn has_history(st: &QueueState, site: &str) -> bool {
    st.history.iter().any(|h| h.site == site)
}

fn record(st: &mut QueueState, site: &str, how: &str) {
    st.history.retain(|h| h.site != site);
    st.history.push(SiteHistory {
        site: site.to_string(),
        how: how.to_string(),
        since: clock::now_unix(),
        status: false,
    });
}

/// A copy (or the status: `status`) went to `site`: the first write records the history.
pub(super) fn wrote(st: &mut QueueState, site: &str, status: bool) {
    if !has_history(st, site) {
        record(st, site, "sent");
    }
    if status && let Some(h) = st.history.iter_mut().find(|h| h.site == site) {
        h.status = true;
    }
}

/// A state of a version before this record (`version` 0): when it shows copies sent,
/// they were sent by this install under the SITE_ID of the moment, which counts as its
/// history there (logged once). Any state is at STATE_VERSION afterwards.
pub(super) fn upgrade(st: &mut QueueState, site: &str, log: &Log) {
    if st.version >= STATE_VERSION {
        return;
    }
    st.version = STATE_VERSION;
    let sent_before = st.archives_sent > 0
        || st.videos_sent > 0
        || st.last_upload.is_some()
        || !st.status_sent.is_empty()
        || !st.refs_sent.is_empty();
    if sent_before && !has_history(st, site) {
        st.history.push(SiteHistory {
            site: site.to_string(),
            how: "upgrade".to_string(),
            since: 0,
            status: !st.status_sent.is_empty(),
        });
        log.info(&format!(
            "offsite: {OFFSITE_STATE_FILE} of an earlier version shows copies sent: they count \
             as this install's history in site {site}"
        ));
    }
}

// ---------------------------------------------------------------------------------
// The install's id.

/// The SHA-256 (hex) of this machine's identity, empty when none can be read.
/// NEOPRO_MACHINE_ID_FILE names the one file to read instead (tests).
pub fn machine_fingerprint() -> String {
    let over = std::env::var_os("NEOPRO_MACHINE_ID_FILE");
    let files: Vec<&Path> = match &over {
        Some(f) => vec![Path::new(f)],
        None => MACHINE_FILES.iter().map(Path::new).collect(),
    };
    for f in files {
        let Ok((bytes, _)) = fsutil::read_small(f, false, 4096) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let id = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        if !id.is_empty() {
            return sha256_hex(format!("neopro-backup machine\n{id}").as_bytes());
        }
    }
    String::new()
}

fn new_install_id() -> Option<String> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    Some(hex(&b))
}

/// Makes the install's id when there is none, and a new one when the state was made on
/// another machine (`machine`: `machine_fingerprint()`; a cloned card, or a card moved
/// to another Pi), with a log line. An identity that cannot be read now (empty) changes
/// nothing.
pub(super) fn ensure_install(st: &mut QueueState, machine: &str, log: &Log) {
    let machine = machine.to_string();
    let moved = !machine.is_empty() && !st.machine.is_empty() && st.machine != machine;
    if !st.install.is_empty() && !moved {
        if st.machine.is_empty() {
            st.machine = machine;
        }
        return;
    }
    let Some(id) = new_install_id() else {
        log.warn("offsite: no randomness for this install's id: tried again next round");
        return;
    };
    if moved {
        log.warn(&format!(
            "offsite: {OFFSITE_STATE_FILE} was made on another machine (a cloned or moved SD \
             card): this install's id is now {id} (was {})",
            st.install
        ));
    } else {
        log.info(&format!("offsite: this install's id is {id}"));
    }
    st.install = id;
    st.machine = machine;
}

// ---------------------------------------------------------------------------------
// The gate of a round.

/// What the site's folder holds that this install did not send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub archives: u64,
    pub newest: String,
    /// The listing stopped at its bound: there may be more.
    pub more: bool,
}

/// Whether `name` (under a site's folder) is an archive's copy:
/// `backup-YYYYMMDD-HHMMSS.tar.gz[.age]`.
pub fn is_copy_name(name: &str) -> bool {
    store::is_archive_name(name.strip_suffix(".age").unwrap_or(name))
}

/// Lists the site's folder (its own level only, at most PROBE_PAGES pages): the archives
/// there, `None` when there is none. A listing error is an error, never "empty".
/// Lists the site's folder `prefix` (of any store: the bucket, Google Drive; its own
/// level only, at most PROBE_PAGES pages): the archives there, `None` when there is none.
/// A listing error is an error, never "empty".
pub(super) fn probe_in(b: &dyn Bucket, prefix: &str) -> Result<Option<Found>, bucket::Error> {
    let prefix = prefix.to_string();
    let mut found = Found {
        archives: 0,
        newest: String::new(),
        more: false,
    };
    let mut token: Option<String> = None;
    for n in 0..PROBE_PAGES {
        let page = b.list_page(&prefix, Some("/"), token.as_deref())?;
        for obj in &page.objects {
            if let Some(name) = obj.key.strip_prefix(&prefix)
                && is_copy_name(name)
            {
                found.archives += 1;
                if name > found.newest.as_str() {
                    found.newest = name.to_string();
                }
            }
        }
        match page.next {
            None => break,
            Some(t) if Some(&t) == token.as_ref() => {
                return Err(bucket::Error::local(format!(
                    "listing {}: the store sent the same page token twice",
                    b.describe(&prefix)
                )));
            }
            Some(_) if n + 1 == PROBE_PAGES => found.more = true,
            Some(t) => token = Some(t),
        }
    }
    Ok((found.archives > 0 || found.more).then_some(found))
}

/// The reason of Google Drive's hold (the same rule as the bucket's, gdrive.rs).
pub(super) fn drive_hold_reason(site: &str, f: &Found) -> String {
    let n = if f.more || f.archives == 0 {
        format!("at least {}", f.archives.max(1))
    } else {
        f.archives.to_string()
    };
    format!(
        "Google Drive copies held: Google Drive already holds {n} backup(s) of site {site} \
         that this Pi did not send; recover them (neopro-backup recover --from gdrive) or \
         declare a new start (neopro-backup recover --new-start)"
    )
}

/// The hold's reason, for the status, the log, `check` and the alerts.
pub(super) fn hold_reason(site: &str, f: &Found) -> String {
    if f.archives == 0 {
        return format!(
            "offsite copies held: the folder of site {site} in the bucket holds more objects \
             than this Pi looks through before finding a backup, so it may hold the site's \
             history; recover it (neopro-backup recover) or declare a new start \
             (neopro-backup recover --new-start)"
        );
    }
    let n = if f.more {
        format!("at least {}", f.archives)
    } else {
        f.archives.to_string()
    };
    let newest = if f.newest.is_empty() {
        String::new()
    } else {
        format!(" (newest {})", f.newest)
    };
    format!(
        "offsite copies held: the bucket already holds {n} backup(s) of site {site}{newest} \
         that this Pi did not send; recover them (neopro-backup recover) or declare a new \
         start (neopro-backup recover --new-start)"
    )
}

/// What a round may do under the site's folder.
#[derive(Debug)]
pub(super) enum Gate {
    Open,
    /// Every write held: the reason, and whether the hold just began (alert once).
    Held {
        reason: String,
        newly: bool,
    },
    /// The folder could not be listed: nothing is written this round.
    Failed(bucket::Error),
}

/// The gate of a round for `site` (under the offsite lock): open when this install has a
/// history there or the folder holds no archive; `st.held` follows.
pub(super) fn gate(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    site: &str,
    st: &mut QueueState,
    log: &Log,
) -> Gate {
    gate_in(
        b,
        &site_prefix(o, site),
        site,
        st,
        log,
        "offsite",
        hold_reason,
    )
}

/// `gate` on the site folder `prefix` of any store; `label` begins its log lines,
/// `reason` words the hold.
pub(super) fn gate_in(
    b: &dyn Bucket,
    prefix: &str,
    site: &str,
    st: &mut QueueState,
    log: &Log,
    label: &str,
    reason: fn(&str, &Found) -> String,
) -> Gate {
    if has_history(st, site) {
        st.held = None;
        return Gate::Open;
    }
    match probe_in(b, prefix) {
        Err(e) => Gate::Failed(bucket::Error {
            msg: format!(
                "cannot tell whether the bucket already holds backups of site {site} ({}): \
                 nothing is written there until it can",
                e.msg
            ),
            ..e
        }),
        Ok(None) => {
            if st.held.take().is_some() {
                log.info(&format!(
                    "{label}: the store holds no backup of site {site} any more: the hold is over"
                ));
            }
            Gate::Open
        }
        Ok(Some(found)) => {
            let reason = reason(site, &found);
            let newly = st.held.is_none();
            if st.held.as_deref() != Some(reason.as_str()) {
                log.error(&format!("{label}: {reason}"));
            }
            st.held = Some(reason.clone());
            Gate::Held { reason, newly }
        }
    }
}

// ---------------------------------------------------------------------------------
// Two installs under one SITE_ID.

/// The id of another install that wrote `remote` (the site's status in the bucket, its
/// bytes) since this one's last status there: `None` when it is this install's (or
/// what this install last sent), of an older version (no id), unreadable, or older than
/// this install's history in the site (a predecessor's, before a recovery or a new
/// start, which this install has not written over yet).
pub(super) fn other_install(st: &QueueState, site: &str, remote: Option<&[u8]>) -> Option<String> {
    let bytes = remote?;
    if sha256_hex(bytes) == st.status_sent {
        return None;
    }
    let remote = crate::json::parse::<Status>(std::str::from_utf8(bytes).ok()?).ok()?;
    let id = remote.offsite.as_ref()?.install.clone()?;
    if id.is_empty() || id == st.install {
        return None;
    }
    let newer = match st.history.iter().find(|h| h.site == site) {
        // This install put its status there: whatever replaced it came after.
        Some(h) if h.status => true,
        // Not yet: a status of a run after the recovery or the new start (a
        // predecessor's is older).
        Some(h) => clock::parse_iso(&remote.timestamp).is_some_and(|t| t > h.since),
        None => true,
    };
    newer.then_some(id)
}

// ---------------------------------------------------------------------------------
// The interface of `recover` and the page.

/// Runs `f` on a queue's state (the bucket's, Google Drive's) under its lock (waiting at
/// most LOCK_WAIT for a round of the daemon), after the upgrade of an older state, and
/// saves the state atomically when `f` changed it.
fn locked_in<T>(
    cfg: &Config,
    lock_file: &str,
    state_file: &str,
    log: &Log,
    f: impl FnOnce(&mut QueueState) -> Result<T, String>,
) -> Result<T, String> {
    let dir = &cfg.backup_dir;
    store::ensure_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(lock_file);
    let deadline = Instant::now() + LOCK_WAIT;
    let _lock = loop {
        match Lock::acquire(&path, LockWait::Try) {
            Ok(Some(l)) => break l,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Ok(None) => {
                return Err(format!(
                    "the offsite queue stayed busy for {} s (an upload in progress): try again \
                     later",
                    LOCK_WAIT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
    };
    let before = super::read_state_file(dir, state_file);
    let mut st = before.clone();
    upgrade(&mut st, &cfg.site_id, log);
    let out = f(&mut st)?;
    if st != before {
        fsutil::atomic_write(dir, state_file, st.serialize_json().as_bytes(), 0o600)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(state_file).display()))?;
    }
    Ok(out)
}

/// The hold of the site lifted: the daemon's next look sends at once.
fn lift(st: &mut QueueState) {
    st.held = None;
    st.error = None;
    st.failures = 0;
    st.next_try = 0;
}

/// Records that this install recovered from `site` (called by `recover` once the
/// configuration is back): it now belongs to the site's history, and the hold is over
/// when `site` is SITE_ID. The copies queued before the recovery (of the tree as it was
/// before) stay on the Pi but leave the queue: the next backup is the first copy sent.
pub fn record_recovery(cfg: &Config, site: &str, log: &Log) -> Result<(), String> {
    if site.is_empty() {
        return Err("no site named".to_string());
    }
    let tz = Tz::local();
    let mut dropped: Vec<String> = Vec::new();
    for (lock, state, queue) in queues(cfg) {
        let d = locked_in(cfg, lock, state, log, |st| {
            record(st, site, "recovered");
            if site != cfg.site_id {
                return Ok(Vec::new());
            }
            lift(st);
            // The archives made before now are of the tree before the recovery.
            let now = tz.to_naive(clock::now_unix());
            let before: Vec<String> = super::pending_in(&cfg.backup_dir, queue)
                .into_iter()
                .filter(|n| store::name_time(n).is_some_and(|t| t <= now))
                .collect();
            for n in &before {
                super::unqueue_in(&cfg.backup_dir, queue, n);
            }
            Ok(before)
        })?;
        for n in d {
            if !dropped.contains(&n) {
                dropped.push(n);
            }
        }
    }
    log.info(&format!(
        "offsite: this install recovered from site {site}: it belongs to the site's history{}",
        if site == cfg.site_id {
            ", its copies go there from now on"
        } else {
            ""
        }
    ));
    if !dropped.is_empty() {
        log.info(&format!(
            "offsite: {} copy(ies) made before the recovery stay on the Pi only: {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    Ok(())
}

/// The queues a recovery or a new start concerns: the bucket's (always when Drive is
/// off, as before Drive), Google Drive's when it is on: (lock, state, queue folder).
fn queues(cfg: &Config) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out = Vec::new();
    if cfg.offsite.is_some() || cfg.gdrive.is_none() {
        out.push((
            OFFSITE_LOCK_FILE,
            OFFSITE_STATE_FILE,
            store::OFFSITE_PENDING_DIR,
        ));
    }
    if cfg.gdrive.is_some() {
        out.push((
            store::GDRIVE_LOCK_FILE,
            store::GDRIVE_STATE_FILE,
            store::GDRIVE_PENDING_DIR,
        ));
    }
    out
}

/// Declares a new start for SITE_ID (`recover --new-start`, the API): this install's
/// history there begins now and the hold is lifted; its queued copies go. What the
/// bucket already holds of the site is never removed by it (remote retention then
/// treats it as usual).
pub fn new_start(cfg: &Config, log: &Log) -> Result<(), String> {
    if cfg.offsite.is_none() && cfg.gdrive.is_none() {
        return Err(
            "offsite copies are off (neither S3_ENDPOINT nor GDRIVE_CLIENT_ID is set): nothing \
             to start"
                .to_string(),
        );
    }
    let site = cfg.site_id.clone();
    if cfg.offsite.is_some()
        && let Some(why) = crate::config::reserved_site_id(&site)
    {
        return Err(why);
    }
    let mut was = None;
    for (lock, state, _) in queues(cfg) {
        let w = locked_in(cfg, lock, state, log, |st| {
            let was = st.held.clone();
            record(st, &site, "new-start");
            lift(st);
            Ok(was)
        })?;
        was = was.or(w);
    }
    log.info(&format!(
        "offsite: new start declared for site {site}: this install's copies go there from now \
         on{}; what the bucket already holds of the site stays (remote retention applies to it \
         as usual)",
        if was.is_some() {
            ", the hold is lifted"
        } else {
            ""
        }
    ));
    Ok(())
}

/// Why the offsite copies are held, if they are (from the states), for the page and the
/// API: the bucket's hold, else Google Drive's.
pub fn held(cfg: &Config) -> Option<String> {
    let s3 = cfg
        .offsite
        .as_ref()
        .and_then(|_| read_state(&cfg.backup_dir).held);
    s3.or_else(|| {
        cfg.gdrive.as_ref()?;
        super::read_state_file(&cfg.backup_dir, store::GDRIVE_STATE_FILE).held
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> (Log, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "neopro-history-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        (Log::new(&dir, &Tz::utc()), dir)
    }

    #[test]
    fn the_install_id_is_made_once_and_again_on_another_machine() {
        let (log, dir) = log();
        let mut st = QueueState::default();
        ensure_install(&mut st, "m1", &log);
        let first = st.install.clone();
        assert!(first.len() == 32 && first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(st.machine, "m1");
        // Same machine, or one that cannot be read now: the same id.
        ensure_install(&mut st, "m1", &log);
        ensure_install(&mut st, "", &log);
        assert_eq!(
            (st.install.as_str(), st.machine.as_str()),
            (first.as_str(), "m1")
        );
        // A cloned card in another Pi: a new id, logged with the old one.
        ensure_install(&mut st, "m2", &log);
        assert!(st.install.len() == 32 && st.install != first);
        assert_eq!(st.machine, "m2");
        let text = std::fs::read_to_string(dir.join(crate::store::LOG_FILE)).unwrap_or_default();
        assert!(
            text.contains("made on another machine") && text.contains(&first),
            "{text}"
        );
        // An id made where no identity could be read adopts the first one seen.
        let mut st = QueueState::default();
        ensure_install(&mut st, "", &log);
        let id = st.install.clone();
        ensure_install(&mut st, "m3", &log);
        assert_eq!(
            (st.install.as_str(), st.machine.as_str()),
            (id.as_str(), "m3")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn remote(install: Option<&str>, timestamp: &str) -> Vec<u8> {
        let st = Status {
            timestamp: timestamp.into(),
            success: true,
            offsite: Some(crate::status::Offsite {
                install: install.map(str::to_string),
                ..Default::default()
            }),
            ..Status::default()
        };
        st.to_json().into_bytes()
    }

    #[test]
    fn another_install_is_one_that_wrote_after_this_one() {
        let mut st = QueueState {
            install: "a".repeat(32),
            ..Default::default()
        };
        let b = "b".repeat(32);
        let t = "2025-01-05T03:00:00+00:00";
        let at = clock::parse_iso(t).unwrap_or_default();
        let theirs = remote(Some(&b), t);
        // No history: any other install.
        assert_eq!(other_install(&st, "club", Some(&theirs)), Some(b.clone()));
        // Ours, an older version's (no id), nothing, junk: none.
        assert_eq!(
            other_install(&st, "club", Some(&remote(Some(&"a".repeat(32)), t))),
            None
        );
        assert_eq!(other_install(&st, "club", Some(&remote(None, t))), None);
        assert_eq!(other_install(&st, "club", None), None);
        assert_eq!(other_install(&st, "club", Some(b"{")), None);
        // What this install last sent (its id changed since: a card moved): none.
        st.status_sent = sha256_hex(&theirs);
        assert_eq!(other_install(&st, "club", Some(&theirs)), None);
        st.status_sent.clear();
        // A recovery at the status's second or later: a predecessor's, none.
        st.history = vec![SiteHistory {
            site: "club".into(),
            how: "recovered".into(),
            since: at,
            status: false,
        }];
        assert_eq!(other_install(&st, "club", Some(&theirs)), None);
        st.history[0].since = at - 1;
        assert_eq!(other_install(&st, "club", Some(&theirs)), Some(b.clone()));
        // Once this install put its status there, whatever replaced it.
        st.history[0].since = at + 3600;
        st.history[0].status = true;
        assert_eq!(other_install(&st, "club", Some(&theirs)), Some(b));
    }

    #[test]
    fn an_earlier_version_state_that_sent_copies_is_a_history() {
        let (log, dir) = log();
        // As the version before wrote it.
        let text = r#"{"last_upload":"2025-01-05T03:00:12+00:00","failures":0,"next_try":0,"status_sent":"","archives_sent":0,"archive_bytes_sent":0,"videos_sent":0,"video_bytes_sent":0,"videos_dest":"","videos_seq":0,"videos_merged":[],"videos_pending":0,"refs_sent":"","videos_poisoned":0}"#;
        let mut st = crate::json::parse::<QueueState>(text).unwrap_or_default();
        assert_eq!(st.last_upload.as_deref(), Some("2025-01-05T03:00:12+00:00"));
        upgrade(&mut st, "club", &log);
        assert_eq!(st.version, STATE_VERSION);
        assert!(has_history(&st, "club") && !has_history(&st, "other"));
        assert_eq!(st.history[0].how, "upgrade");
        // Once: a state at this version is left alone.
        st.history.clear();
        upgrade(&mut st, "club", &log);
        assert!(st.history.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
