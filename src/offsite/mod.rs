//! Offsite copies (docs/format.md, Offsite): after each successful backup the archive goes to
//! `s3://S3_BUCKET/S3_PREFIX/SITE_ID/<archive>` (`.age` when ENCRYPT_TO is set), then
//! the status to `…/SITE_ID/last-backup-status.json`; old copies are removed there
//! after S3_RETENTION_DAYS, never the newest 3.
//!
//! Offline first. The queue is a folder of empty marker files, one per archive still to
//! send (`BACKUP_DIR/offsite-pending/<archive>`): creating one is atomic, so the backup
//! enqueues without any lock of ours, and `ls` shows an operator what waits. Copies are
//! sent oldest first, by whoever holds `.offsite.lock`: the `run` command right after
//! its backup, or the daemon's worker, which retries with exponential backoff (state in
//! `offsite-state.json`). Nothing here can fail or hold up the local backup: it runs
//! after the backup lock is released, every network step has timeouts, and every error
//! ends up in the log and in the status's `offsite.error`, never in the exit code.
//!
//! With VIDEOS_OFFSITE each round first sends the videos the waiting archives name,
//! content-addressed, and publishes the site's references (videos.rs); `fleet gc` is
//! the operator's side (gc.rs).
//!
//! Encryption streams: the archive is read once, encrypted by the `age` crate on the
//! fly into an S3 upload that holds one 8 MiB part in memory at a time (a single PUT
//! when the whole copy fits in one part, multipart otherwise). No plaintext or
//! ciphertext staging file touches the SD card, and a Pi Zero's 512 MiB are never at
//! risk. The cost is that an encrypted copy is re-encrypted from the start when a
//! retry happens, which a temp file would have avoided at the price of an extra write
//! of the whole archive to the card and as much free space.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

pub mod drill_record;
pub mod fleet;
pub mod fleet_index;
pub mod fleet_read;
pub mod gc;
pub mod gdrive;
pub mod gdrive_account;
pub mod history;
mod ledger;
#[cfg(test)]
pub(crate) mod mem_tests;
mod video_put;
pub mod videos;

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nanoserde::{DeJson, SerJson};

use crate::bucket::{self, Bucket, s3::S3};
use crate::clock::{self, Tz};
use crate::config::{Config, OffsiteSettings};
use crate::fsutil::{self, Lock, LockWait};
use crate::retention;
use crate::status::{self, Log};
use crate::store::{self, OFFSITE_LOCK_FILE, OFFSITE_PENDING_DIR, OFFSITE_STATE_FILE};
use crate::units::sha256_hex;

pub const STATUS_OBJECT: &str = "last-backup-status.json";
/// Longest wait between two attempts.
const MAX_BACKOFF: i64 = 3600;

/// What the last attempts left behind (offsite-state.json).
#[derive(Debug, Clone, Default, SerJson, DeJson, PartialEq)]
#[nserde(default)]
struct QueueState {
    /// Local time of the last copy sent.
    last_upload: Option<String>,
    /// The last failure, cleared by a success.
    error: Option<String>,
    /// Failed attempts in a row (the backoff grows with it).
    failures: u32,
    /// Unix time before which the daemon does not try again.
    next_try: i64,
    /// SHA-256 of the status JSON last sent, so an unchanged status is not re-sent.
    status_sent: String,
    /// SHA-256 of the status last copied to the fleet's index (fleet_index.rs), or
    /// refused there for good (403); absent in earlier layouts (the next round copies
    /// the status there).
    index_sent: String,
    /// Totals since the state was created, for /metrics.
    archives_sent: u64,
    archive_bytes_sent: u64,
    videos_sent: u64,
    video_bytes_sent: u64,
    /// Videos offsite (videos.rs): the destination the ledger's `sent` flags are for,
    /// the archives merged into the ledger and the last merge number, the videos still
    /// to upload, and the SHA-256 of the videos-referenced.txt last published.
    videos_dest: String,
    videos_seq: u64,
    videos_merged: Vec<MergedArchive>,
    videos_pending: u64,
    refs_sent: String,
    /// Shared video objects found not to hold the video their name says (poisoned),
    /// routed around with this site's own copy.
    videos_poisoned: u64,
    /// The layout of this file: 0 for the versions before the sites' history (no
    /// field), `history::STATE_VERSION` since. An older version reading this file
    /// ignores the fields it does not know (and drops them when it rewrites it: the
    /// next upgrade then finds its copies sent and records the history again).
    version: u32,
    /// The sites this install has a history in (history.rs): copies it sent there, a
    /// recovery from there, a new start declared, or an upgrade that found copies sent.
    history: Vec<history::SiteHistory>,
    /// Why every offsite write is held back (history.rs), when it is.
    held: Option<String>,
    /// This install's id (32 hex digits) and the SHA-256 of the machine identity it was
    /// made on (history.rs).
    install: String,
    machine: String,
    /// Another install found writing this site's status.
    other_install: Option<String>,
}

/// An archive whose video inventory is in the ledger, and its merge number.
#[derive(Debug, Clone, Default, SerJson, DeJson, PartialEq)]
#[nserde(default)]
struct MergedArchive {
    name: String,
    seq: u64,
}

/// Totals of what went to the bucket (for /metrics): (archives, their bytes, videos,
/// their bytes).
pub fn sent_totals(cfg: &Config) -> (u64, u64, u64, u64) {
    let st = read_state(&cfg.backup_dir);
    (
        st.archives_sent,
        st.archive_bytes_sent,
        st.videos_sent,
        st.video_bytes_sent,
    )
}

/// Copies waiting: archives, and videos with VIDEOS_OFFSITE.
fn pending_total(cfg: &Config, st: &QueueState) -> u64 {
    let videos = if cfg.videos_offsite() {
        st.videos_pending
    } else {
        0
    };
    pending(&cfg.backup_dir).len() as u64 + videos
}

fn read_state(dir: &Path) -> QueueState {
    read_state_file(dir, OFFSITE_STATE_FILE)
}

/// A queue's state file (`offsite-state.json`, `gdrive-state.json`).
fn read_state_file(dir: &Path, file: &str) -> QueueState {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|t| crate::json::parse::<QueueState>(&t).ok())
        .unwrap_or_default()
}

fn write_state(dir: &Path, st: &QueueState, log: &Log) {
    write_state_file(dir, OFFSITE_STATE_FILE, st, log);
}

fn write_state_file(dir: &Path, file: &str, st: &QueueState, log: &Log) {
    if let Err(e) = fsutil::atomic_write(dir, file, st.serialize_json().as_bytes(), 0o600) {
        log.warn(&format!("offsite: cannot write {file}: {e}"));
    }
}

/// Delay before the next attempt after `failures` failures in a row: with the default
/// base of a minute, 1, 2, 4 … 60 min.
pub fn backoff(failures: u32, base: i64) -> i64 {
    (base << failures.saturating_sub(1).min(12)).min(MAX_BACKOFF)
}

/// The first retry delay in seconds: 60, or NEOPRO_OFFSITE_RETRY_SECS (1 to 3600; for
/// tests, which cannot wait minutes).
fn retry_base() -> i64 {
    std::env::var("NEOPRO_OFFSITE_RETRY_SECS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|d| (1..=3600).contains(d))
        .unwrap_or(60)
}

/// The archives waiting to be sent, oldest first.
pub fn pending(dir: &Path) -> Vec<String> {
    pending_in(dir, OFFSITE_PENDING_DIR)
}

/// The archives waiting in the queue folder `queue`, oldest first.
fn pending_in(dir: &Path, queue: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join(queue))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| store::is_archive_name(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The `offsite` object of the status, `None` when offsite is off.
pub fn summary(cfg: &Config) -> Option<status::Offsite> {
    cfg.offsite.as_ref()?;
    let st = read_state(&cfg.backup_dir);
    Some(status_of(cfg, &st, st.error.clone()))
}

/// The status's `offsite` object for the queue state `st`, with `error`.
fn status_of(cfg: &Config, st: &QueueState, error: Option<String>) -> status::Offsite {
    status::Offsite {
        pending: pending_total(cfg, st),
        last_upload: st.last_upload.clone(),
        error_code: error
            .as_deref()
            .map(|e| crate::error_words::code_of(e).to_string()),
        error,
        poisoned: st.videos_poisoned,
        videos: cfg.videos_offsite(),
        held: st.held.is_some(),
        install: (!st.install.is_empty()).then(|| st.install.clone()),
        other_install: st.other_install.clone(),
    }
}

/// Queues `name` for sending (called by the backup, under its lock, once the archive is
/// in place) and returns the status's `offsite` object.
pub fn enqueue(cfg: &Config, name: &str, log: &Log) -> Option<status::Offsite> {
    cfg.offsite.as_ref()?;
    enqueue_in(cfg, OFFSITE_PENDING_DIR, name, log);
    summary(cfg)
}

/// Puts a marker for `name` in the queue folder `queue`.
fn enqueue_in(cfg: &Config, queue: &str, name: &str, log: &Log) {
    let dir = cfg.backup_dir.join(queue);
    let res = store::ensure_dir(&dir)
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(name))
        })
        .and_then(|_| fsutil::fsync_dir(&dir));
    if let Err(e) = res {
        log.warn(&format!(
            "offsite: cannot queue {name} in {}: {e}",
            dir.display()
        ));
    }
}

fn unqueue_in(dir: &Path, queue: &str, name: &str) {
    let pdir = dir.join(queue);
    let _ = std::fs::remove_file(pdir.join(name));
    let _ = fsutil::fsync_dir(&pdir);
}

/// The store the settings name (S3 today).
pub fn bucket(o: &OffsiteSettings) -> S3 {
    S3 {
        endpoint: o.endpoint.clone(),
        bucket: o.bucket.clone(),
        creds: bucket::s3::Credentials {
            access_key: o.access_key.clone(),
            secret_key: o.secret_key.clone(),
            region: o.region.clone(),
        },
    }
}

/// Where a site's copies go in a store, whichever store: the root of the sites' folders
/// (`S3_PREFIX/` in the bucket, `GDRIVE_FOLDER/` on Drive), how long they are kept and
/// whom they are encrypted to. The queue, remote retention and `recover` work on a
/// place, not on a store's own settings.
#[derive(Debug, Clone)]
pub struct Place {
    /// The root with its trailing `/` (empty: the store's top).
    pub root: String,
    pub retention_days: u32,
    pub encrypt_to: Vec<String>,
}

impl Place {
    /// The S3 bucket's.
    pub fn s3(o: &OffsiteSettings) -> Place {
        Place {
            root: if o.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", o.prefix)
            },
            retention_days: o.retention_days,
            encrypt_to: o.encrypt_to.clone(),
        }
    }

    /// Google Drive's: `GDRIVE_FOLDER/` under My Drive.
    pub fn gdrive(g: &crate::config::GdriveSettings) -> Place {
        Place {
            root: format!("{}/", g.folder),
            retention_days: g.retention_days,
            encrypt_to: g.encrypt_to.clone(),
        }
    }

    /// `ROOT/SITE/`.
    pub fn site_prefix(&self, site: &str) -> String {
        format!("{}{site}/", self.root)
    }

    /// The name of an archive's copy (`.age` when encrypted).
    pub fn object_name(&self, name: &str) -> String {
        if self.encrypt_to.is_empty() {
            name.to_string()
        } else {
            format!("{name}.age")
        }
    }
}

/// A source of copies: the S3 bucket or the club's Google Drive (`recover --from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The S3 bucket (S3_ENDPOINT).
    S3,
    /// The club's Google Drive (GDRIVE_CLIENT_ID).
    Gdrive,
}

impl Source {
    /// The one asked, else S3 when it is set, else Drive; an error (for a person) when
    /// the one asked, or any, is not configured.
    pub fn pick(cfg: &Config, asked: Option<Source>) -> Result<Source, String> {
        match (asked, cfg.offsite.is_some(), cfg.gdrive.is_some()) {
            (Some(Source::S3), true, _) | (None, true, _) => Ok(Source::S3),
            (Some(Source::Gdrive), _, true) | (None, false, true) => Ok(Source::Gdrive),
            (Some(Source::S3), false, _) => Err("recover --from s3: S3_ENDPOINT is not set".into()),
            (Some(Source::Gdrive), _, false) => {
                Err("recover --from gdrive: GDRIVE_CLIENT_ID is not set".into())
            }
            (None, false, false) => Err(
                "recover reads the offsite copies, and no offsite target is configured: set \
                 S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY and S3_SECRET_KEY, or the GDRIVE_ keys \
                 (the site's backup.conf)"
                    .into(),
            ),
        }
    }

    /// Where its copies are: the place, `None` when it is not configured.
    pub fn place(self, cfg: &Config) -> Option<Place> {
        match self {
            Source::S3 => cfg.offsite.as_ref().map(Place::s3),
            Source::Gdrive => cfg.gdrive.as_ref().map(Place::gdrive),
        }
    }
}

/// The store of a source of copies (the S3 bucket, the club's Drive), `None` when it is
/// not configured.
pub fn store(cfg: &Config, from: Source) -> Option<Box<dyn Bucket>> {
    match from {
        Source::S3 => cfg
            .offsite
            .as_ref()
            .map(|o| Box::new(bucket(o)) as Box<dyn Bucket>),
        Source::Gdrive => cfg.gdrive.as_ref().map(|g| {
            Box::new(crate::bucket::gdrive::Drive::new(g, &cfg.backup_dir)) as Box<dyn Bucket>
        }),
    }
}

/// `S3_PREFIX/SITE_ID/` (or `SITE_ID/` with an empty prefix).
pub fn site_prefix(o: &OffsiteSettings, site: &str) -> String {
    Place::s3(o).site_prefix(site)
}

/// Sends one archive; `Ok(None)` when the local archive no longer exists.
fn send_archive(
    b: &dyn Bucket,
    o: &Place,
    site: &str,
    dir: &Path,
    name: &str,
    cancel: &AtomicBool,
) -> Result<Option<(String, u64)>, bucket::Error> {
    let key = format!("{}{}", o.site_prefix(site), o.object_name(name));
    let (mut file, meta) = match fsutil::open_regular_nofollow(&dir.join(name)) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bucket::Error::local(format!("cannot read {name}: {e}"))),
    };
    if o.encrypt_to.is_empty() {
        bucket::put_file(b, &key, &mut file, meta.len(), "application/gzip", cancel)?;
        return Ok(Some((key, meta.len())));
    }
    let recipients: Vec<age::x25519::Recipient> =
        o.encrypt_to.iter().filter_map(|r| r.parse().ok()).collect();
    let local = |e: String| bucket::Error::local(format!("encrypting {name}: {e}"));
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| local(e.to_string()))?;
    let mut up = b.writer(&key, "application/octet-stream", cancel);
    let copied = (|| -> io::Result<()> {
        let mut w = enc.wrap_output(&mut up)?;
        let mut src = file.by_ref().take(meta.len());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(io::Error::other("cancelled (shutdown)"));
            }
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            io::Write::write_all(&mut w, &buf[..n])?;
        }
        w.finish().map(|_| ())
    })();
    match copied {
        Ok(()) => up.finish().map(|size| Some((key, size))),
        Err(e) => Err(up.fail(e)),
    }
}

/// A queue of copies: its folder of markers and the word its log lines begin with.
#[derive(Clone, Copy)]
enum Queue {
    S3,
    Gdrive,
}

impl Queue {
    fn folder(self) -> &'static str {
        match self {
            Queue::S3 => OFFSITE_PENDING_DIR,
            Queue::Gdrive => store::GDRIVE_PENDING_DIR,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Queue::S3 => "offsite",
            Queue::Gdrive => "gdrive",
        }
    }

    /// Where this queue sends `site`'s copies, and how it says so.
    fn with<'a>(self, place: &'a Place, site: &'a str, tz: &'a Tz, log: &'a Log) -> Sending<'a> {
        Sending {
            queue: self,
            place,
            site,
            tz,
            log,
        }
    }
}

/// A round's destination for `send_queued`.
struct Sending<'a> {
    queue: Queue,
    place: &'a Place,
    site: &'a str,
    tz: &'a Tz,
    log: &'a Log,
}

/// Sends the queued archive `name` and records it: the marker leaves the queue, the
/// totals, the last upload and the site's history in `state`, a log line. `Ok(false)`
/// when the local archive no longer exists (its marker leaves the queue too).
fn send_queued(
    b: &dyn Bucket,
    to: &Sending,
    dir: &Path,
    name: &str,
    cancel: &AtomicBool,
    state: &mut QueueState,
) -> Result<bool, bucket::Error> {
    let started = Instant::now();
    let label = to.queue.label();
    match send_archive(b, to.place, to.site, dir, name, cancel)? {
        Some((key, size)) => {
            unqueue_in(dir, to.queue.folder(), name);
            state.archives_sent = state.archives_sent.saturating_add(1);
            state.archive_bytes_sent = state.archive_bytes_sent.saturating_add(size);
            state.last_upload = Some(clock::iso_local(clock::now_unix(), to.tz));
            history::wrote(state, to.site, false);
            to.log.info(&format!(
                "{label}: sent {name} to {} ({}, {:.1} s)",
                b.describe(&key),
                crate::units::human_size(size, 1),
                started.elapsed().as_secs_f64()
            ));
            Ok(true)
        }
        None => {
            unqueue_in(dir, to.queue.folder(), name);
            to.log.warn(&format!(
                "{label}: {name} no longer exists locally: dropped from the queue"
            ));
            Ok(false)
        }
    }
}

/// Removes this site's copies older than the place's retention (S3_RETENTION_DAYS,
/// GDRIVE_RETENTION_DAYS), never the newest 3 (the same rule, and the same pure
/// function, as local retention).
fn remote_retention(
    b: &dyn Bucket,
    o: &Place,
    site: &str,
    tz: &Tz,
    log: &Log,
) -> Result<(), bucket::Error> {
    let prefix = o.site_prefix(site);
    let listing = b.list(&prefix, None)?;
    // A remote copy counts among the newest 3 when it is not empty; the clock rule of
    // local retention applies too (docs/format.md, Retention): a clock far ahead of the
    // newest copy deletes nothing.
    let candidates: Vec<retention::Candidate> = listing
        .objects
        .iter()
        .filter_map(|obj| {
            let name = obj.key.strip_prefix(&prefix)?;
            let base = name.strip_suffix(".age").unwrap_or(name);
            Some(retention::Candidate {
                name: obj.key.clone(),
                naive: store::name_time(base)?,
                valid: obj.size > 0,
            })
        })
        .collect();
    let now = tz.to_naive(clock::now_unix());
    let plan = retention::plan(&candidates, now, o.retention_days, None);
    if let Some(newest) = &plan.clock_ahead_of {
        log.warn(&format!(
            "offsite: remote retention skipped: the clock is more than 48 h ahead of {newest}"
        ));
    }
    for key in plan.delete {
        b.delete(&key)?;
        log.info(&format!(
            "offsite: removed {} (older than {} days)",
            b.describe(&key),
            o.retention_days
        ));
    }
    Ok(())
}

/// What one round of `process` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// OffsiteSettings is off, or nothing to do yet (backoff).
    Idle,
    /// Another process is sending right now.
    Busy,
    /// Every pending copy went out (and how many).
    Sent(usize),
    /// A copy could not be sent; it stays pending.
    Failed(String),
    /// Every write under the site's folder is held back (history.rs): the reason.
    Held(String),
}

/// Whether a round has anything to do: copies pending, or a status not sent yet.
pub fn has_work(cfg: &Config) -> bool {
    if cfg.offsite.is_none() {
        return false;
    }
    let dir = &cfg.backup_dir;
    if !pending(dir).is_empty() {
        return true;
    }
    if cfg.videos_offsite() && read_state(dir).videos_pending > 0 {
        return true;
    }
    match status::read(dir) {
        Ok(Some(st)) => {
            let state = read_state(dir);
            let hash = sha256_hex(st.to_json().as_bytes());
            hash != state.status_sent || hash != state.index_sent
        }
        _ => false,
    }
}

/// One round: sends the pending copies oldest first, then applies remote retention,
/// then refreshes the status (locally and in the bucket). `force` ignores the backoff
/// (a new backup was just made). Never panics, never returns an error: the outcome is
/// logged and recorded in the status.
pub fn process(cfg: &Config, tz: &Tz, log: &Log, cancel: &AtomicBool, force: bool) -> Round {
    let Some(o) = &cfg.offsite else {
        return Round::Idle;
    };
    process_on(&bucket(o), cfg, tz, log, cancel, force)
}

/// `process` on the store `b` (the settings' own in the product, the in-memory one in
/// the unit tests).
pub fn process_on(
    b: &dyn Bucket,
    cfg: &Config,
    tz: &Tz,
    log: &Log,
    cancel: &AtomicBool,
    force: bool,
) -> Round {
    let Some(o) = &cfg.offsite else {
        return Round::Idle;
    };
    let dir = &cfg.backup_dir;
    let lock = match queue_lock(dir, OFFSITE_LOCK_FILE, "offsite", log) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut notices = Vec::new();
    let round = round_locked(b, cfg, o, tz, log, cancel, force, &mut notices);
    // The alerts a round calls for (once per hold, once per other install found) go
    // with the lock released: a mail may take its 30 s.
    drop(lock);
    for n in notices {
        crate::alerts::offsite(cfg, n.event, &n.text, log);
    }
    round
}

/// A queue's lock (`.offsite.lock`, `.gdrive.lock`), taken without waiting: `Err` is
/// the round's answer (another process is sending, or the lock cannot be made).
fn queue_lock(dir: &Path, file: &str, label: &str, log: &Log) -> Result<Lock, Round> {
    match Lock::acquire(&dir.join(file), LockWait::Try) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(Round::Busy),
        Err(e) => {
            let msg = format!("{label}: cannot lock {}: {e}", dir.join(file).display());
            log.warn(&msg);
            Err(Round::Failed(msg))
        }
    }
}

/// Writes the local status when it differs from the file's (after a round).
fn write_status_if_changed(dir: &Path, st: &status::Status, log: &Log) {
    if status::read(dir).ok().flatten().as_ref() != Some(st)
        && let Err(e) = status::write(dir, st)
    {
        log.warn(&format!("cannot write {}: {e}", store::STATUS_FILE));
    }
}

/// An alert a round calls for: the webhook's `event`, and what happened.
struct Notice {
    event: &'static str,
    text: String,
}

/// Writes the state when it differs from the file's.
fn save_state(dir: &Path, st: &QueueState, log: &Log) {
    if read_state(dir) != *st {
        write_state(dir, st, log);
    }
}

/// The round of `process_on`, under the offsite lock.
#[allow(clippy::too_many_arguments)]
fn round_locked(
    b: &dyn Bucket,
    cfg: &Config,
    o: &OffsiteSettings,
    tz: &Tz,
    log: &Log,
    cancel: &AtomicBool,
    force: bool,
    notices: &mut Vec<Notice>,
) -> Round {
    let dir = &cfg.backup_dir;
    let site = cfg.site_id.as_str();
    let mut state = read_state(dir);
    history::upgrade(&mut state, site, log);
    history::ensure_install(&mut state, &history::machine_fingerprint(), log);
    let now = clock::now_unix();
    if let Some(why) = crate::config::reserved_site_id(&cfg.site_id) {
        let r = refuse_round(cfg, dir, &mut state, log, why);
        save_state(dir, &state, log);
        return r;
    }
    // A clock that jumped back must not postpone the retry by years.
    if !force && now < state.next_try && state.next_try - now <= MAX_BACKOFF {
        save_state(dir, &state, log);
        return Round::Idle;
    }
    // A Pi without a history of its own in the site writes nothing there while the
    // bucket holds archives of it (history.rs).
    match history::gate(b, o, site, &mut state, log) {
        history::Gate::Open => {}
        history::Gate::Held { reason, newly } => {
            if newly {
                notices.push(Notice {
                    event: "offsite_held",
                    text: reason.clone(),
                });
            }
            return stop_round(cfg, dir, &mut state, log, reason, true);
        }
        history::Gate::Failed(e) => return stop_round(cfg, dir, &mut state, log, e.msg, false),
    }
    let mut sent = 0usize;
    let mut failure: Option<bucket::Error> = None;
    let mut tried: Vec<String> = Vec::new();
    // Videos first: an archive copy goes only once the videos it names are in the
    // bucket (docs/format.md, Videos offsite).
    let mut ready: Option<Vec<String>> = None;
    let mut video_error = None;
    if !o.videos
        && !cancel.load(Ordering::Relaxed)
        && let Err(e) = videos::unpublish(o, b, site, log, &mut state)
    {
        failure = Some(e);
    }
    if o.videos && !cancel.load(Ordering::Relaxed) {
        match videos::sync(cfg, o, b, site, &pending(dir), log, cancel, &mut state) {
            Ok(s) => {
                ready = Some(s.ready);
                video_error = s.error;
            }
            Err(e) => failure = Some(e),
        }
    }
    let place = Place::s3(o);
    // Re-list after each copy: a backup made meanwhile is picked up in the same round
    // (with VIDEOS_OFFSITE, in the next one, after its videos).
    while failure.is_none()
        && let Some(name) = pending(dir)
            .into_iter()
            .find(|n| !tried.contains(n) && ready.as_ref().is_none_or(|r| r.contains(n)))
    {
        tried.push(name.clone());
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let to = Queue::S3.with(&place, site, tz, log);
        match send_queued(b, &to, dir, &name, cancel, &mut state) {
            Ok(true) => {
                sent += 1;
                state.error = None;
                state.failures = 0;
                state.next_try = 0;
            }
            Ok(false) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if sent > 0
        && failure.is_none()
        && let Err(e) = remote_retention(b, &place, site, tz, log)
    {
        log.warn(&format!("offsite: remote retention skipped: {e}"));
    }
    if failure.is_none() {
        failure = video_error;
    }
    // Refresh the status, under the backup lock so that a backup finishing now cannot
    // be overwritten (if one runs, it writes its own status and wakes us again).
    // The status goes to the bucket unless the server is unreachable anyway.
    let reachable = failure.as_ref().is_none_or(|e| !e.transport);
    if !cancel.load(Ordering::Relaxed)
        && let Ok(Some(_block)) = store::lock(dir, LockWait::Try, || {})
        && let Ok(Some(mut st)) = status::read(dir)
    {
        let fail_msg = failure.as_ref().map(|e| e.msg.clone());
        // `last_upload` as it will be once this round is recorded.
        st.offsite = Some(status_of(cfg, &state, fail_msg.clone()));
        let mut json = st.to_json();
        let mut hash = sha256_hex(json.as_bytes());
        if reachable && hash != state.status_sent {
            let key = format!("{}{STATUS_OBJECT}", site_prefix(o, site));
            // The status there first: one written by another install since this one's
            // last means two installs send under this SITE_ID (history.rs). A status that
            // cannot be read tells nothing either way.
            if let Ok(remote) = b.get(&key) {
                let other = history::other_install(&state, site, remote.as_deref());
                if other != state.other_install {
                    match &other {
                        Some(id) => {
                            let text = format!(
                                "another install ({id}) also sends backups as {site} (this one is {})",
                                state.install
                            );
                            log.error(&format!("offsite: {text}"));
                            notices.push(Notice {
                                event: "offsite_other_install",
                                text,
                            });
                        }
                        None => log.info(&format!(
                            "offsite: the site's status in the bucket is this install's again \
                             (no other install seen writing it as {site})"
                        )),
                    }
                    state.other_install = other;
                    st.offsite = Some(status_of(cfg, &state, fail_msg));
                    json = st.to_json();
                    hash = sha256_hex(json.as_bytes());
                }
            }
            match b.put_bytes(&key, json.as_bytes(), "application/json") {
                Ok(()) => {
                    state.status_sent = hash.clone();
                    history::wrote(&mut state, site, true);
                }
                Err(e) => {
                    if failure.is_none() {
                        st.offsite = Some(status::Offsite {
                            error: Some(e.msg.clone()),
                            error_code: Some(crate::error_words::code_of(&e.msg).to_string()),
                            ..st.offsite.clone().unwrap_or_default()
                        });
                        failure = Some(e);
                    }
                }
            }
        }
        // The fleet's copy, once the status is there (the same bytes).
        if reachable && hash == state.status_sent && hash != state.index_sent {
            match fleet_index::put(b, o, fleet_index::Entry::Status, site, json.as_bytes()) {
                Ok(()) => state.index_sent = hash,
                Err(e) if e.denied() => {
                    log.warn(&format!(
                        "offsite: the fleet's index may not be written with this key ({}): \
                         the fleet dashboard reads this site the slower way (docs/format.md, \
                         Fleet, The index)",
                        e.msg
                    ));
                    state.index_sent = hash;
                }
                Err(e) => {
                    if failure.is_none() {
                        st.offsite = Some(status::Offsite {
                            error: Some(e.msg.clone()),
                            ..st.offsite.clone().unwrap_or_default()
                        });
                        failure = Some(e);
                    }
                }
            }
        }
        write_status_if_changed(dir, &st, log);
    }
    let round = match failure {
        None => {
            state.error = None;
            state.failures = 0;
            state.next_try = 0;
            Round::Sent(sent)
        }
        Some(e) => {
            state.failures = state.failures.saturating_add(1);
            let wait = backoff(state.failures, retry_base());
            state.next_try = clock::now_unix() + wait;
            state.error = Some(e.msg.clone());
            let left = pending_total(cfg, &state);
            log.warn(&format!(
                "offsite: {}; {left} copy(ies) pending, next try in {wait} s",
                e.msg
            ));
            Round::Failed(e.msg)
        }
    };
    save_state(dir, &state, log);
    round
}

/// A round that writes nothing under the site's folder (history.rs): held (`held`), or
/// the folder could not be listed. The reason goes to the state and the local status,
/// the copies stay queued, and the next try waits for the backoff.
fn stop_round(
    cfg: &Config,
    dir: &Path,
    state: &mut QueueState,
    log: &Log,
    why: String,
    held: bool,
) -> Round {
    state.failures = state.failures.saturating_add(1);
    let wait = backoff(state.failures, retry_base());
    state.next_try = clock::now_unix() + wait;
    state.error = Some(why.clone());
    if !held {
        log.warn(&format!(
            "offsite: {why}; {} copy(ies) pending, next try in {wait} s",
            pending_total(cfg, state)
        ));
    }
    local_status_says(cfg, dir, state, log, &why);
    save_state(dir, state, log);
    if held {
        Round::Held(why)
    } else {
        Round::Failed(why)
    }
}

/// The local status's `offsite` object says `why` (under the backup lock, when no
/// backup holds it: a backup writes its own status and wakes the next round).
fn local_status_says(cfg: &Config, dir: &Path, state: &QueueState, log: &Log, why: &str) {
    if let Ok(Some(_block)) = store::lock(dir, LockWait::Try, || {})
        && let Ok(Some(mut st)) = status::read(dir)
    {
        let off = status_of(cfg, state, Some(why.to_string()));
        if st.offsite.as_ref() != Some(&off) {
            st.offsite = Some(off);
            if let Err(e) = status::write(dir, &st) {
                log.warn(&format!("cannot write {}: {e}", store::STATUS_FILE));
            }
        }
    }
}

/// A round that cannot send anything (a reserved SITE_ID): the reason goes to the log
/// (once), the state and the local status; the copies stay queued.
fn refuse_round(cfg: &Config, dir: &Path, state: &mut QueueState, log: &Log, why: String) -> Round {
    if state.error.as_deref() != Some(why.as_str()) {
        log.error(&format!("offsite: {why}"));
        state.error = Some(why.clone());
        write_state(dir, state, log);
    }
    local_status_says(cfg, dir, state, log, &why);
    Round::Failed(why)
}

/// The `run` command's offsite step, after its backup: one round now, whatever the
/// backoff says, with a line on stdout for the operator.
pub fn after_run(cfg: &Config, tz: &Tz) {
    gdrive::after_run(cfg, tz);
    if cfg.offsite.is_none() {
        return;
    }
    let log = Log::new(&cfg.backup_dir, tz);
    let never = AtomicBool::new(false);
    match process(cfg, tz, &log, &never, true) {
        Round::Idle => {}
        Round::Busy => println!(
            "offsite: another neopro-backup process is sending copies; it will send this one too"
        ),
        Round::Sent(0) => {}
        Round::Sent(n) => println!("offsite: {n} copy(ies) sent"),
        Round::Failed(e) => println!(
            "offsite: not sent ({e}); {} copy(ies) pending, the daemon retries with backoff",
            pending(&cfg.backup_dir).len()
        ),
        // `why` begins "offsite copies held: …".
        Round::Held(why) => println!(
            "{why}; {} copy(ies) kept on the Pi",
            pending(&cfg.backup_dir).len()
        ),
    }
}

static WAKE: AtomicBool = AtomicBool::new(false);

/// Asks the daemon's worker for a round now (after a backup).
pub fn wake() {
    WAKE.store(true, Ordering::SeqCst);
}

/// The daemon's offsite worker: a round when woken by a backup, and retries of pending
/// copies with backoff, until `stop` (which also cancels an upload in progress; the
/// copy stays pending).
pub fn worker(cfg: &Config, tz: &Tz, stop: &AtomicBool) {
    if cfg.offsite.is_none() && cfg.gdrive.is_none() {
        return;
    }
    let log = Log::new(&cfg.backup_dir, tz);
    let every = Duration::from_secs(retry_base().clamp(1, 30) as u64);
    // A first round soon after start, whatever the backoff said: a restart is a good
    // moment to retry the copies an earlier run left pending.
    let mut next_look = Instant::now() + Duration::from_secs(3);
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let woken = WAKE.swap(false, Ordering::SeqCst);
        if woken || Instant::now() >= next_look {
            if has_work(cfg) {
                process(cfg, tz, &log, stop, woken || first);
            }
            // Then Drive's copies (gdrive.rs), on their own queue.
            if gdrive::has_work(cfg) {
                gdrive::process(cfg, tz, &log, stop, woken || first);
            }
            first = false;
            next_look = Instant::now() + every;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_an_hour() {
        let b: Vec<i64> = (1..=9).map(|n| backoff(n, 60)).collect();
        assert_eq!(b, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(0, 60), 60);
        assert_eq!(backoff(u32::MAX, 60), 3600);
        assert_eq!(backoff(3, 1), 4);
    }
}
