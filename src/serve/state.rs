//! The daemon's shared state: the configuration, the schedule switch (persisted in
//! BACKUP_DIR), the next run, and the one way the API and the schedule loop start a
//! backup.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nanoserde::{DeJson, SerJson};

use crate::backup::{self, Busy, Outcome};
use crate::clock::{self, Tz};
use crate::config::Config;
use crate::fsutil::{self, LockWait};
use crate::http::server::Stats;
use crate::schedule;
use crate::status::{self, Log};
use crate::store::{self, SCHEDULE_FILE};

/// Stack of the thread a backup runs in (compression wants more than a connection's).
pub const BACKUP_STACK: usize = 8 * 1024 * 1024;

/// The persisted on/off switch of the automatic schedule.
#[derive(SerJson, DeJson)]
struct ScheduleFile {
    enabled: bool,
}

/// State shared by the HTTP handlers and the schedule loop.
pub struct Shared {
    pub cfg: Config,
    pub tz: Tz,
    pub enabled: AtomicBool,
    /// Next scheduled run (Unix seconds), 0 when none.
    pub next_run: Mutex<i64>,
    pub scheduler_alive: AtomicBool,
    pub failures: AtomicU64,
    /// Backups running in this process (the lock lets only one write at a time).
    pub running: AtomicUsize,
    /// Set when the daemon must abandon a running backup.
    pub cancel: AtomicBool,
    /// A catch-up run is planned; any successful backup before it makes it moot.
    pub catch_up_pending: AtomicBool,
    pub stats: Arc<Stats>,
}

impl Shared {
    /// At the daemon's start: no run planned or running, no failure seen yet.
    pub fn new(cfg: Config, tz: Tz, enabled: bool) -> Shared {
        Shared {
            cfg,
            tz,
            enabled: AtomicBool::new(enabled),
            next_run: Mutex::new(0),
            scheduler_alive: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            catch_up_pending: AtomicBool::new(false),
            stats: Arc::new(Stats::default()),
        }
    }

    /// One backup, refused (Busy) when another one holds the lock.
    pub fn run_backup(&self) -> Result<Outcome, Busy> {
        let out = self.worker("backup", true, || {
            backup::run(&self.cfg, &self.tz, LockWait::Try, &self.cancel)
        });
        let out = match out {
            Some(r) => r?,
            // A thread that cannot start, or a panic (abort in release): report as failure.
            None => return Err(Busy),
        };
        if !out.status.success {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else if self.catch_up_pending.swap(false, Ordering::SeqCst) {
            // A manual backup did the catch-up's job: the next run is the daily one
            // (shown at once; the schedule loop replans when it next wakes).
            let next = schedule::next_after(clock::now_unix(), self.cfg.backup_time, &self.tz);
            *self.next_run.lock().unwrap_or_else(|p| p.into_inner()) = next;
        }
        // The offsite worker sends the copy (and the status) in its own thread.
        crate::offsite::wake();
        Ok(out)
    }

    /// Runs `work` on a [`big_stack`] thread; with `writes`, it counts in `running`
    /// meanwhile (the shutdown waits for, or cancels, what writes).
    pub fn worker<T: Send>(
        &self,
        name: &str,
        writes: bool,
        work: impl FnOnce() -> T + Send,
    ) -> Option<T> {
        if writes {
            self.running.fetch_add(1, Ordering::SeqCst);
        }
        let out = big_stack(name, work);
        if writes {
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
        out
    }

    /// Switches the schedule on or off and persists the choice atomically.
    pub fn set_enabled(&self, on: bool) -> std::io::Result<()> {
        let json = ScheduleFile { enabled: on }.serialize_json();
        store::ensure_dir(&self.cfg.backup_dir)?;
        fsutil::atomic_write(&self.cfg.backup_dir, SCHEDULE_FILE, json.as_bytes(), 0o644)?;
        self.enabled.store(on, Ordering::SeqCst);
        Ok(())
    }

    pub fn next_run(&self) -> Option<i64> {
        let n = *self.next_run.lock().unwrap_or_else(|p| p.into_inner());
        (n != 0 && self.enabled.load(Ordering::SeqCst)).then_some(n)
    }
}

/// Runs `work` in a thread of its own named `name`, with [`BACKUP_STACK`]: compression
/// (a backup, a restore's safety backup) wants more stack than an HTTP connection
/// thread has. Scoped, so `work` may borrow; `None` when the thread cannot start or
/// `work` panicked.
pub fn big_stack<T: Send>(name: &str, work: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name(name.into())
            .stack_size(BACKUP_STACK)
            .spawn_scoped(s, work)
            .ok()?;
        h.join().ok()
    })
}

pub fn read_enabled(dir: &Path, log: &Log) -> bool {
    // Read without blocking or following a link: a FIFO there must not hang the start.
    match fsutil::read_small(&dir.join(SCHEDULE_FILE), true, 64 * 1024) {
        Ok((bytes, _)) => {
            match crate::json::parse::<ScheduleFile>(&String::from_utf8_lossy(&bytes)) {
                Ok(s) => s.enabled,
                Err(e) => {
                    log.warn(&format!(
                        "{SCHEDULE_FILE} is unreadable ({e}): the schedule stays on"
                    ));
                    true
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            log.warn(&format!(
                "{SCHEDULE_FILE} is unreadable ({e}): the schedule stays on"
            ));
            true
        }
    }
}

/// The clock warning of this daemon now: the clock, the newest archive, the status.
pub fn clock_warning(shared: &Shared) -> Option<crate::schedule::ClockWarning> {
    let dir = &shared.cfg.backup_dir;
    let st = status::read(dir).ok().flatten();
    let success = st.as_ref().and_then(|s| {
        let stamp = s.last_success_stamp()?;
        Some((stamp.to_string(), crate::clock::parse_iso(stamp)?))
    });
    let newest = store::newest(dir);
    crate::schedule::clock_warning(
        crate::clock::now_unix(),
        &shared.tz,
        newest.as_ref().map(|(n, t)| (n.as_str(), *t)),
        success.as_ref().map(|(s, t)| (s.as_str(), *t)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More stack than the 2 MiB a thread gets by default: without BACKUP_STACK this
    /// overflows (and aborts the test binary).
    fn deep() -> usize {
        let mut buf = [1u8; 3 * 1024 * 1024];
        std::hint::black_box(&mut buf);
        buf.iter().map(|&b| usize::from(b)).sum()
    }

    #[test]
    fn big_stack_runs_the_work_in_a_named_thread_with_the_big_stack() {
        let here = std::thread::current().id();
        let borrowed = String::from("borrowed");
        let got = big_stack("restore", || {
            let t = std::thread::current();
            (
                t.id() != here,
                t.name().map(str::to_string),
                deep(),
                borrowed.len(),
            )
        });
        assert_eq!(
            got,
            Some((true, Some("restore".to_string()), 3 * 1024 * 1024, 8))
        );
        assert_eq!(big_stack("x", || -> u8 { panic!("in the worker") }), None);
    }

    #[test]
    fn a_worker_that_writes_counts_as_running_meanwhile() {
        let s = Shared::new(Config::defaults(), Tz::utc(), true);
        let during = s.worker("backup", true, || s.running.load(Ordering::SeqCst));
        assert_eq!(during, Some(1));
        assert_eq!(s.running.load(Ordering::SeqCst), 0);
        let dry = s.worker("restore", false, || s.running.load(Ordering::SeqCst));
        assert_eq!(dry, Some(0));
        let failed = s.worker("backup", true, || -> usize { panic!("in the worker") });
        assert_eq!(failed, None);
        assert_eq!(
            s.running.load(Ordering::SeqCst),
            0,
            "a panic still counts down"
        );
    }
}
