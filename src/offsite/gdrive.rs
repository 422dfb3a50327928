//! Copies to the club's Google Drive (docs/format.md, Google Drive): the second offsite
//! target, beside S3 or alone. The same queue mechanism as the S3 copies (mod.rs): one
//! empty marker per archive to send (`BACKUP_DIR/gdrive-pending/`), sent oldest first
//! by whoever holds `.gdrive.lock` (the `run` command after its backup, or the daemon's
//! worker after the S3 round), retried with the same backoff (`gdrive-state.json`, the
//! same layout as `offsite-state.json`); the same copy (`.tar.gz.age` with ENCRYPT_TO,
//! streamed), the same remote retention (GDRIVE_RETENTION_DAYS, never the newest 3,
//! nothing while the clock is 48 h ahead), the same status shape (the status's
//! `gdrive` object, and `GDRIVE_FOLDER/SITE_ID/last-backup-status.json`, one file
//! updated in place). The store is `bucket::gdrive::Drive`; nothing here knows Drive.
//!
//! The hold of a blank Pi applies as on S3 (history.rs, with Drive's own state): a Pi
//! without a history of its own in the site's Drive folder writes nothing there while
//! it holds archives, until `recover` (from either target) or `recover --new-start`.
//! What S3 has and Drive has not: the videos (VIDEOS_OFFSITE is refused with Drive
//! alone), the fleet (a club's Drive is its own: Drive-only clubs are not in `fleet`),
//! the fleet's index and the other-install check (it reads a bucket shared by every
//! site's Pi).
//!
//! Two failures have a status, an alert (once, when they begin) and keep the copies
//! queued: the connection revoked or expired (`invalid_grant`: `gdrive login` again)
//! and the Drive full (`storageQuotaExceeded`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{
    Place, Queue, QueueState, Round, STATUS_OBJECT, backoff, enqueue_in, history, pending_in,
    queue_lock, read_state_file, remote_retention, retry_base, send_queued, write_state_file,
    write_status_if_changed,
};
use crate::bucket::{self, Bucket};
use crate::clock::{self, Tz};
use crate::config::Config;
use crate::fsutil::LockWait;
use crate::status::{self, Log};
use crate::store::{self, GDRIVE_LOCK_FILE, GDRIVE_PENDING_DIR, GDRIVE_STATE_FILE};
use crate::units::sha256_hex;

/// The archives waiting for Drive, oldest first.
pub fn pending(dir: &Path) -> Vec<String> {
    pending_in(dir, GDRIVE_PENDING_DIR)
}

fn read_state(dir: &Path) -> QueueState {
    read_state_file(dir, GDRIVE_STATE_FILE)
}

/// The status's `gdrive` object for the queue state `st`, with `error`.
fn status_of(dir: &Path, st: &QueueState, error: Option<String>) -> status::Offsite {
    status::Offsite {
        pending: pending(dir).len() as u64,
        last_upload: st.last_upload.clone(),
        error_code: error
            .as_deref()
            .map(|e| crate::error_words::code_of(e).to_string()),
        error,
        held: st.held.is_some(),
        ..status::Offsite::default()
    }
}

/// The status's `gdrive` object, `None` when Drive is off.
pub fn summary(cfg: &Config) -> Option<status::Offsite> {
    cfg.gdrive.as_ref()?;
    let st = read_state(&cfg.backup_dir);
    Some(status_of(&cfg.backup_dir, &st, st.error.clone()))
}

/// Queues `name` for Drive (called by the backup, beside the S3 queue).
pub fn enqueue(cfg: &Config, name: &str, log: &Log) -> Option<status::Offsite> {
    cfg.gdrive.as_ref()?;
    enqueue_in(cfg, GDRIVE_PENDING_DIR, name, log);
    summary(cfg)
}

/// Totals of what went to Drive (for /metrics): archives and their bytes.
pub fn sent_totals(cfg: &Config) -> (u64, u64) {
    let st = read_state(&cfg.backup_dir);
    (st.archives_sent, st.archive_bytes_sent)
}

/// Whether a round has anything to do: copies pending, or a status not sent yet.
pub fn has_work(cfg: &Config) -> bool {
    if cfg.gdrive.is_none() {
        return false;
    }
    let dir = &cfg.backup_dir;
    if !pending(dir).is_empty() {
        return true;
    }
    match status::read(dir) {
        Ok(Some(st)) => sha256_hex(st.to_json().as_bytes()) != read_state(dir).status_sent,
        _ => false,
    }
}

/// The alert a failure calls for, by its code (docs/format.md, Error codes).
fn alert_event(msg: &str) -> Option<&'static str> {
    match crate::error_words::code_of(msg) {
        "gdrive_auth" => Some("gdrive_auth"),
        "gdrive_full" => Some("gdrive_full"),
        _ => None,
    }
}

/// One round on the club's Drive (see `process_on`).
pub fn process(cfg: &Config, tz: &Tz, log: &Log, cancel: &AtomicBool, force: bool) -> Round {
    let Some(g) = &cfg.gdrive else {
        return Round::Idle;
    };
    process_on(
        &crate::bucket::gdrive::Drive::new(g, &cfg.backup_dir),
        cfg,
        tz,
        log,
        cancel,
        force,
    )
}

/// The `run` command's Drive step, after its backup: one round now, with a line on
/// stdout.
pub fn after_run(cfg: &Config, tz: &Tz) {
    if cfg.gdrive.is_none() {
        return;
    }
    let log = Log::new(&cfg.backup_dir, tz);
    let never = AtomicBool::new(false);
    match process(cfg, tz, &log, &never, true) {
        Round::Idle | Round::Sent(0) => {}
        Round::Busy => println!(
            "gdrive: another neopro-backup process is sending copies; it will send this one too"
        ),
        Round::Sent(n) => println!("gdrive: {n} copy(ies) sent to Google Drive"),
        Round::Failed(e) | Round::Held(e) => println!(
            "gdrive: not sent ({e}); {} copy(ies) pending, the daemon retries with backoff",
            pending(&cfg.backup_dir).len()
        ),
    }
}

/// One round on the store `b` (Drive in the product, the in-memory store in the unit
/// tests): the pending copies oldest first, remote retention, the status. Never panics,
/// never returns an error: the outcome is logged and recorded in the status.
pub fn process_on(
    b: &dyn Bucket,
    cfg: &Config,
    tz: &Tz,
    log: &Log,
    cancel: &AtomicBool,
    force: bool,
) -> Round {
    let Some(g) = &cfg.gdrive else {
        return Round::Idle;
    };
    let dir = &cfg.backup_dir;
    let lock = match queue_lock(dir, GDRIVE_LOCK_FILE, "gdrive", log) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut state = read_state(dir);
    let now = clock::now_unix();
    if !force && now < state.next_try {
        return Round::Idle;
    }
    let place = Place::gdrive(g);
    let site = cfg.site_id.as_str();
    let mut sent = 0usize;
    let mut failure: Option<bucket::Error> = None;
    let mut notice = None;
    // A Pi without a history of its own in the site's Drive folder (a new card, logged
    // in again) writes nothing there while it holds the site's archives: the same rule
    // as the bucket's (history.rs), so that blank backups never become the newest ones.
    history::upgrade(&mut state, site, log);
    match history::gate_in(
        b,
        &place.site_prefix(site),
        site,
        &mut state,
        log,
        "gdrive",
        history::drive_hold_reason,
    ) {
        history::Gate::Open => {}
        history::Gate::Held { reason, newly } => {
            if newly {
                notice = Some(("gdrive_held", reason.clone()));
            }
            failure = Some(bucket::Error::local(reason));
        }
        history::Gate::Failed(e) => failure = Some(e),
    }
    let held = state.held.is_some();
    for name in pending(dir).into_iter().filter(|_| failure.is_none()) {
        if cancel.load(Ordering::Relaxed) {
            failure = Some(bucket::Error::local("cancelled (shutdown)"));
            break;
        }
        let to = Queue::Gdrive.with(&place, site, tz, log);
        match send_queued(b, &to, dir, &name, cancel, &mut state) {
            Ok(true) => sent += 1,
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
        log.warn(&format!("gdrive: remote retention skipped: {e}"));
    }
    // The status, locally and on Drive (one file, updated in place), under the backup
    // lock so that a backup finishing now cannot be overwritten.
    let reachable = failure.as_ref().is_none_or(|e| !e.transport);
    if !cancel.load(Ordering::Relaxed)
        && let Ok(Some(_block)) = store::lock(dir, LockWait::Try, || {})
        && let Ok(Some(mut st)) = status::read(dir)
    {
        let fail_msg = failure.as_ref().map(|e| e.msg.clone());
        st.gdrive = Some(status_of(dir, &state, fail_msg));
        let json = st.to_json();
        let hash = sha256_hex(json.as_bytes());
        if reachable && failure.is_none() && hash != state.status_sent {
            let key = format!("{}{STATUS_OBJECT}", place.site_prefix(site));
            match b.put_bytes(&key, json.as_bytes(), "application/json") {
                Ok(()) => {
                    state.status_sent = hash;
                    history::wrote(&mut state, site, true);
                }
                Err(e) => {
                    st.gdrive = Some(status_of(dir, &state, Some(e.msg.clone())));
                    failure = Some(e);
                }
            }
        }
        write_status_if_changed(dir, &st, log);
    }
    let round = match failure {
        None => {
            if state.error.is_some() {
                log.info("gdrive: copies go out again");
            }
            state.error = None;
            state.failures = 0;
            state.next_try = 0;
            Round::Sent(sent)
        }
        Some(e) => {
            state.failures = state.failures.saturating_add(1);
            let wait = backoff(state.failures, retry_base());
            state.next_try = clock::now_unix() + wait;
            let event = alert_event(&e.msg);
            // An alert when such a failure begins, not at every retry.
            if event.is_some() && state.error.as_deref().and_then(alert_event) != event {
                notice = notice.or(event.map(|ev| (ev, e.msg.clone())));
            }
            // (A hold is said by the gate, once.)
            if !held && (state.error.as_deref() != Some(e.msg.as_str()) || state.failures == 1) {
                log.warn(&format!(
                    "gdrive: {}; {} copy(ies) pending, next try in {wait} s",
                    e.msg,
                    pending(dir).len()
                ));
            }
            state.error = Some(e.msg.clone());
            if held {
                Round::Held(e.msg)
            } else {
                Round::Failed(e.msg)
            }
        }
    };
    if read_state(dir) != state {
        write_state_file(dir, GDRIVE_STATE_FILE, &state, log);
    }
    drop(lock);
    if let Some((event, text)) = notice {
        crate::alerts::offsite(cfg, event, &text, log);
    }
    round
}

#[cfg(test)]
mod tests;
