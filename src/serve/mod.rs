//! `serve`: the daemon systemd runs. It binds LISTEN, starts the HTTP server and the
//! schedule loop, talks to systemd (READY=1, WATCHDOG=1), and on SIGTERM or SIGINT stops
//! accepting, lets a running backup finish for a few seconds or abandons it cleanly
//! (the temp file is removed; no partial archive), then exits 0.

mod api;
mod download;
pub mod fleet;
mod gdrive_api;
mod guard;
mod metrics;
mod page;
mod prom;
mod recover_api;
mod reply;
mod restore_api;
pub mod state;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backup::Busy;
use crate::clock::{self, Tz};
use crate::config::Config;
use crate::fsutil::{self, LockWait};
use crate::http::server;
use crate::schedule::{self, Scheduler, Tick};
use crate::status::{self, Log, Status};
use crate::store;
use state::{Shared, read_enabled};

/// The accept loop is taken for stuck when it has not gone round for this long.
const ACCEPT_STALE: Duration = Duration::from_secs(2);

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// sd_notify: a datagram to $NOTIFY_SOCKET, when systemd gave one.
fn sd_notify(msg: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(abs) => SocketAddr::from_abstract_name(abs),
        None => SocketAddr::from_pathname(Path::new(&path)),
    };
    if let Ok(addr) = addr {
        let _ = sock.send_to_addr(msg.as_bytes(), &addr);
    }
}

/// How long a running backup may go on after SIGTERM before it is abandoned:
/// NEOPRO_SHUTDOWN_GRACE_MS (0 to 60000), default 3 s (a tuning knob, like the catch-up
/// delay; systemd's own stop timeout is longer).
fn shutdown_grace() -> Duration {
    let ms = std::env::var("NEOPRO_SHUTDOWN_GRACE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms <= 60_000)
        .unwrap_or(3000);
    Duration::from_millis(ms)
}

fn catch_up_delay() -> i64 {
    std::env::var("NEOPRO_CATCHUP_DELAY")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|d| (0..=3600).contains(d))
        .unwrap_or(60)
}

fn newest_archive(dir: &Path) -> Option<i64> {
    crate::store::list(dir).ok()?.first().map(|a| a.naive)
}

/// Plans the first run (a catch-up or the next BACKUP_TIME) and publishes it, before the
/// HTTP server starts, so that auto-status and /metrics never show a schedule not yet
/// planned. Returns the scheduler and whether it is catching up.
fn plan_schedule(shared: &Shared) -> (Scheduler, bool) {
    let log = Log::new(&shared.cfg.backup_dir, &shared.tz);
    let tz = &shared.tz;
    let now = clock::now_unix();
    let last = status::read(&shared.cfg.backup_dir).ok().flatten();
    let last_success = last.as_ref().and_then(Status::last_success_unix);
    let failed = last.as_ref().is_some_and(|s| !s.success);
    let catch_up = schedule::catch_up_due(now, last_success, failed);
    let sched = Scheduler::new(now, shared.cfg.backup_time, tz, catch_up, catch_up_delay());
    if catch_up {
        let why = match (last_success, failed) {
            (_, true) => "the last run failed",
            (None, _) => "no backup has succeeded yet",
            (Some(t), _) if t > now => "the last success is dated after the clock",
            _ => "the last successful backup is older than a day",
        };
        log.info(&format!("{why}: catching up soon"));
    }
    shared.catch_up_pending.store(catch_up, Ordering::SeqCst);
    *shared.next_run.lock().unwrap_or_else(|p| p.into_inner()) = sched.next;
    shared.scheduler_alive.store(true, Ordering::SeqCst);
    (sched, catch_up)
}

fn schedule_loop(
    shared: &Shared,
    shutdown: &AtomicBool,
    mut sched: Scheduler,
    mut catching_up: bool,
) {
    let log = Log::new(&shared.cfg.backup_dir, &shared.tz);
    let tz = &shared.tz;
    let mut was_enabled = shared.enabled.load(Ordering::SeqCst);
    let mut warned_clock = false;
    while !shutdown.load(Ordering::SeqCst) {
        let now = clock::now_unix();
        let enabled = shared.enabled.load(Ordering::SeqCst);
        if (enabled && !was_enabled)
            || (catching_up && !shared.catch_up_pending.load(Ordering::SeqCst))
        {
            sched.replan(now, tz);
            catching_up = false;
        }
        was_enabled = enabled;
        let due = now >= sched.next;
        let sane = !due
            || schedule::clock_sane(
                tz.to_naive(now),
                newest_archive(&shared.cfg.backup_dir),
                Path::new("/run/systemd/timesync/synchronized").exists(),
            );
        let wait = match sched.tick(now, tz, enabled, sane) {
            Tick::Sleep(s) => s,
            Tick::WaitClock => {
                if !warned_clock {
                    log.warn("the clock does not look set yet (no NTP sync): the backup waits");
                    warned_clock = true;
                }
                30
            }
            Tick::Run => {
                warned_clock = false;
                catching_up = false;
                shared.catch_up_pending.store(false, Ordering::SeqCst);
                match shared.run_backup() {
                    Ok(_) => {}
                    Err(Busy) => log.info("scheduled backup skipped: a backup is already running"),
                }
                sched.done(clock::now_unix(), tz);
                1
            }
        };
        *shared.next_run.lock().unwrap_or_else(|p| p.into_inner()) = sched.next;
        // Sleep in one-second slices: shutdown and toggles are seen at once, and the
        // wall clock is re-read at least every minute.
        for _ in 0..wait.clamp(1, 60) {
            if shutdown.load(Ordering::SeqCst)
                || shared.enabled.load(Ordering::SeqCst) != was_enabled
            {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    shared.scheduler_alive.store(false, Ordering::SeqCst);
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the exit code.
pub fn serve(cfg: Config) -> u8 {
    // glibc gives busy threads malloc arenas of their own (up to 8 per CPU), each keeping
    // the memory freed in it: under 64 keep-alive clients that doubled the daemon's RSS
    // (9 -> 20 MiB). Two are plenty for at most 16 handlers in flight. (musl, the Pis'
    // static build, has no per-thread arenas.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let tz = Tz::local();
    if let Err(e) = store::ensure_dir(&cfg.backup_dir) {
        eprintln!(
            "neopro-backup: cannot create BACKUP_DIR {}: {e}",
            cfg.backup_dir.display()
        );
        return 1;
    }
    let log = Log::new(&cfg.backup_dir, &tz);
    let listener = match TcpListener::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            log.error(&format!("cannot listen on {}: {e}", cfg.listen));
            return 1;
        }
    };
    // SAFETY: `on_signal` is an extern "C" fn that only stores an atomic (async-signal-
    // safe), SIG_IGN a valid disposition; signal() touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // Leftovers of a crash, if no backup is running in another process right now.
    let lock = fsutil::Lock::acquire(&cfg.backup_dir.join(store::LOCK_FILE), LockWait::Try);
    if let Ok(Some(_lock)) = lock
        && let Ok(removed) = store::remove_leftovers(&cfg.backup_dir)
    {
        for r in removed {
            log.warn(&format!("removed {r}, left by an interrupted run"));
        }
    }
    let enabled = read_enabled(&cfg.backup_dir, &log);
    let addr = server::local_addr(&listener).map_or(cfg.listen.to_string(), |a| a.to_string());
    let shared = Arc::new(Shared::new(cfg, tz, enabled));
    log.info(&format!(
        "neopro-backup {} serving on http://{addr} (schedule {}, daily at {:02}:{:02})",
        env!("CARGO_PKG_VERSION"),
        if enabled { "on" } else { "off" },
        shared.cfg.backup_time.0,
        shared.cfg.backup_time.1
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (first, catching_up) = plan_schedule(&shared);
    let sched = {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("schedule".into())
            .spawn(move || schedule_loop(&shared, &stop, first, catching_up))
    };
    let http = {
        let shared2 = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        let stats = Arc::clone(&shared.stats);
        let routes = Arc::new(server::Routes {
            quick: Box::new(api::quick),
            handler: Box::new(move |req| api::route(&shared2, req)),
        });
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || server::serve(listener, routes, &stop, stats))
    };
    // Offsite copies: sent and retried with backoff by a thread of their own, so that
    // an upload never delays the schedule or the API (docs/format.md, Offsite).
    let offsite = {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("offsite".into())
            .spawn(move || crate::offsite::worker(&shared.cfg, &shared.tz, &stop))
    };
    let (Ok(sched), Ok(http), Ok(offsite)) = (sched, http, offsite) else {
        log.error("cannot start the daemon threads");
        return 1;
    };
    sd_notify("READY=1");
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&u| u > 0)
        .map(|u| Duration::from_micros(u / 2));
    let mut last_ping = std::time::Instant::now();
    while !SIGNALLED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(every) = watchdog {
            // Ping only while the accept loop goes round (at least every 500 ms, busy
            // handlers or not): a stuck accept loop lets systemd restart the daemon.
            if last_ping.elapsed() >= every && shared.stats.accept_loop_alive(ACCEPT_STALE) {
                sd_notify("WATCHDOG=1");
                last_ping = std::time::Instant::now();
            }
        }
    }
    sd_notify("STOPPING=1");
    log.info("stopping (signal received)");
    stop.store(true, Ordering::SeqCst);
    // A Google Drive login waiting for its approval stops polling (nothing written).
    gdrive_api::cancel_login();
    // Give a running backup 3 seconds to finish, then abandon it cleanly.
    let grace = std::time::Instant::now() + shutdown_grace();
    while shared.running.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(100));
    }
    if shared.running.load(Ordering::SeqCst) > 0 {
        log.warn("abandoning the running backup (its temporary file is removed)");
        shared.cancel.store(true, Ordering::SeqCst);
    }
    let _ = http.join();
    // A backup run by an HTTP handler thread is seen through `running`.
    for _ in 0..100 {
        if shared.running.load(Ordering::SeqCst) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = sched.join();
    // `stop` also cancelled an upload in progress: its copy stays pending.
    let _ = offsite.join();
    log.info("stopped");
    0
}
