//! The one harness of the servers under test: `serve` (or `fleet serve`, or any command
//! that logs where it serves) started on 127.0.0.1:0. It binds a free port itself and
//! says which in its "serving on http://…" line; a thread keeps reading its stderr (so it
//! never writes into a closed pipe) for the tests that wait for a log line. Killed and
//! reaped on drop, even when the test fails.

use std::io::BufRead;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::net::{Answer, http};
use super::{Json, Tree, now_unix, parse_json};

pub struct Daemon {
    child: Child,
    /// `127.0.0.1:PORT`, as logged by the server.
    pub addr: String,
    /// Everything the server wrote on stderr so far.
    log: Arc<Mutex<String>>,
    /// Set when its stderr reached its end (the process is gone).
    log_closed: Arc<AtomicBool>,
}

impl Daemon {
    /// `serve` on 127.0.0.1:0 with this tree, no catch-up run and BACKUP_TIME twelve
    /// hours away (unless `env` says otherwise), and `env` on top.
    pub fn start(tree: &Tree, env: &[(&str, &str)]) -> Daemon {
        let mut c = tree.command(&["serve"]);
        // The daily run twelve hours away: no scheduled backup lands in a test that
        // happens to run at 03:00 (tests that need a BACKUP_TIME set their own).
        c.env("LISTEN", "127.0.0.1:0")
            .env("NEOPRO_CATCHUP_DELAY", "3600")
            .env("BACKUP_TIME", far_backup_time());
        for (k, v) in env {
            c.env(k, v);
        }
        Daemon::spawn(c, "the daemon")
    }

    /// Any prepared server command that listens on port 0 and logs `serving on`.
    pub fn spawn(mut c: Command, what: &str) -> Daemon {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({:?}): {e}", c.get_program()));
        let (addr, log, log_closed) = wait_serving(&mut child, what);
        Daemon {
            child,
            addr,
            log,
            log_closed,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a stderr line holding `needle` and returns it (lines seen by an earlier
    /// call with the same needle count too: that is the caller's business).
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_log_count(needle, 1, limit)
    }

    /// Waits until `n` lines hold `needle`; returns the n-th.
    pub fn wait_log_count(&mut self, needle: &str, n: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if let Some(l) = log.lines().filter(|l| l.contains(needle)).nth(n - 1) {
                return l.to_string();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the daemon exited ({st}) while waiting for {needle:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no log line #{n} with {needle:?} within {limit:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request on a fresh connection (`net::http`).
    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        http(&self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.req("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Answer {
        self.req("POST", path, &[], body)
    }

    /// POST with `Content-Type: application/json`, as the admin panel sends it.
    pub fn post_json(&self, path: &str, json: &str) -> Answer {
        self.req(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            json.as_bytes(),
        )
    }

    /// GET with the bearer `token` (API_TOKEN).
    pub fn get_with_token(&self, path: &str, token: &str) -> Answer {
        self.req(
            "GET",
            path,
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
    }

    /// `post_json` with the bearer `token` (API_TOKEN).
    pub fn post_json_with_token(&self, path: &str, token: &str, json: &str) -> Answer {
        self.req(
            "POST",
            path,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            json.as_bytes(),
        )
    }

    /// /api/backups/auto-status, which must answer 200.
    pub fn auto_status(&self) -> Json {
        let a = self.get("/api/backups/auto-status");
        assert_eq!(a.status, 200, "{a}");
        parse_json(&a.text()).unwrap_or_else(|e| panic!("{e}: {a}"))
    }

    /// Polls `GET /api/offsite/recover` (bearer `token`) until recovery job `id` is no
    /// longer running (`limit` seconds); returns its report.
    pub fn wait_recovery(&self, token: &str, id: u64, limit: u64) -> Json {
        let mut last = None;
        super::wait_for("the recovery job to end", limit, || {
            let a = self.get_with_token("/api/offsite/recover", token);
            assert_eq!(a.status, 200, "{a}");
            let j = a.json();
            assert_eq!(j.get("job").u64(), id, "another job reported: {a}");
            let running = j.get("state").str() == "running";
            last = Some(j);
            !running
        });
        last.unwrap_or_else(|| panic!("no report"))
    }

    /// The value of a metric of /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let a = self.get("/metrics");
        let body = a.text();
        assert_eq!(a.status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}:\n{body}"))
    }

    /// SIGTERM, then the exit status, how long it took and the whole log (panics after
    /// `limit`).
    pub fn terminate(mut self, limit: Duration) -> (ExitStatus, Duration, String) {
        signal(self.pid(), "TERM");
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let took = t0.elapsed();
                // Its last stderr lines.
                let end = Instant::now() + Duration::from_secs(5);
                while !self.log_closed.load(Ordering::SeqCst) {
                    assert!(
                        Instant::now() < end,
                        "timed out after 5 s waiting for the daemon's last stderr lines"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                return (st, took, self.log());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the daemon did not exit within {limit:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid`, which must succeed.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// `HH:MM` twelve hours from now (UTC, the tests' TZ).
pub fn far_backup_time() -> String {
    let t = now_unix() + 12 * 3600;
    format!(
        "{:02}:{:02}",
        t.rem_euclid(86_400) / 3600,
        t.rem_euclid(3600) / 60
    )
}

type Log = (String, Arc<Mutex<String>>, Arc<AtomicBool>);

/// Waits up to 30 s for `child` (spawned with `stderr(Stdio::piped())`) to log where it
/// serves: (its address, its log so far, set when its stderr ends); panics with its log
/// if it exits or stays silent.
fn wait_serving(child: &mut Child, what: &str) -> Log {
    let stderr = child
        .stderr
        .take()
        .unwrap_or_else(|| panic!("{what}: stderr is not piped"));
    let log = Arc::new(Mutex::new(String::new()));
    let log_closed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (log2, closed2) = (Arc::clone(&log), Arc::clone(&log_closed));
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("serving on http://").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let _ = tx.send(addr);
            }
            let mut l = log2.lock().unwrap_or_else(|p| p.into_inner());
            l.push_str(&line);
            l.push('\n');
        }
        closed2.store(true, Ordering::SeqCst);
    });
    let text = |log: &Mutex<String>| log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
            return (addr, log, log_closed);
        }
        if let Ok(Some(st)) = child.try_wait() {
            // Its last lines, then the verdict.
            let end = Instant::now() + Duration::from_secs(5);
            while !log_closed.load(Ordering::SeqCst) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("{what} exited ({st}) before serving:\n{}", text(&log));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{what} did not log `serving on` within 30 s:\n{}",
                text(&log)
            );
        }
    }
}
