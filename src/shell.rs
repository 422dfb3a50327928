//! Running an operator's shell command (RESTART_CMD after a restore, ON_FAILURE_CMD after
//! a failed run): `/bin/sh -c` in its own process group, without our secrets in its
//! environment, optional input on stdin, stdout and stderr captured together up to a
//! limit, and the whole group killed when it overruns its time.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::config::SECRET_KEYS;

pub struct Finished {
    /// None when the status could not be collected.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// stdout and stderr, interleaved, at most `max_output` bytes (lossy UTF-8).
    pub output: String,
}

impl Finished {
    pub fn ok(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// `exit status: 3`, `killed after 60 s`, …
    pub fn verdict(&self, timeout: Duration) -> String {
        if self.timed_out {
            format!("killed after {} s", timeout.as_secs())
        } else {
            self.status
                .map_or_else(|| "status lost".to_string(), |s| s.to_string())
        }
    }
}

/// Runs `sh -c cmd`; an error only when it cannot be started at all.
pub fn run_shell(
    cmd: &str,
    input: Option<&[u8]>,
    timeout: Duration,
    max_output: usize,
) -> io::Result<Finished> {
    let (mut reader, writer) = io::pipe()?;
    let writer2 = writer.try_clone()?;
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(cmd)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    for k in SECRET_KEYS {
        c.env_remove(k);
    }
    let spawned = c.spawn();
    // The Command keeps our copies of the pipe's write end: close them, or the end of
    // the output never comes.
    drop(c);
    let mut child = spawned?;
    // Input from a thread: a command that never reads its stdin must not block us.
    if let (Some(mut stdin), Some(data)) = (child.stdin.take(), input) {
        let data = data.to_vec();
        let _ = std::thread::Builder::new()
            .name("cmd-input".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = stdin.write_all(&data);
            });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("cmd-output".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = max_output.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            let _ = tx.send(kept);
        });
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(st)) => break (Some(st), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let pid = child.id() as libc::pid_t;
                // SAFETY: kill touches no memory of ours; -pid is the process group this
                // command leads (process_group(0)), not yet reaped, so not a reused id.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                break (child.wait().ok(), true);
            }
            Err(_) => break (None, false),
        }
    };
    // A command that left a background process holding the pipe: do not wait for it.
    let kept = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    Ok(Finished {
        status,
        timed_out,
        output: String::from_utf8_lossy(&kept).trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_output_status_and_timeout() {
        let r = run_shell(
            "tr a-z A-Z; echo err >&2; exit 3",
            Some(b"hello\n"),
            Duration::from_secs(10),
            100,
        );
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert!(!r.ok() && r.status.and_then(|s| s.code()) == Some(3));
        assert!(
            r.output.contains("HELLO") && r.output.contains("err"),
            "{}",
            r.output
        );
        let r = run_shell("sleep 30 & sleep 30", None, Duration::from_millis(300), 100);
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert!(r.timed_out && !r.ok());
        assert_eq!(r.verdict(Duration::from_secs(1)), "killed after 1 s");
        let r = run_shell(
            "yes abcdefghijkl | head -c 100000",
            None,
            Duration::from_secs(10),
            10,
        );
        assert_eq!(r.map(|r| r.output.len()).unwrap_or(0), 10);
    }
}
