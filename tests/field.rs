//! Field safety: what a Pi in a club meets that a lab does not. A FIFO where a file
//! should be, a clock that jumps to 1970 or 2099, junk named like an archive, a
//! symlinked folder under a restore target, a decompression bomb, a hostile video name,
//! archives of the old auto-backup.sh, a card with reserved blocks (docs/format.md).
//!
//! Every process runs under a deadline much shorter than the common one: a test that
//! would hang fails instead, quickly.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How long a command of these tests may take before the test fails.
const QUICK: Duration = Duration::from_secs(30);

/// Runs `c` to completion within `limit`, else kills it and fails the test.
fn run_within(c: &mut Command, limit: Duration, what: &str) -> Out {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let start = Instant::now();
    // wait_output has its own (longer) deadline; this watchdog kills the child first.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&done);
    let watchdog = std::thread::spawn(move || {
        while start.elapsed() < limit {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        true
    });
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_output(child, what)));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = watchdog.join().unwrap_or(false);
    assert!(
        !killed,
        "{what} did not finish within {limit:?}: it blocked (killed)"
    );
    match out {
        Ok(o) => o,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn quick(t: &Tree, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut c = t.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_within(&mut c, QUICK, &format!("neopro-backup {}", args.join(" ")))
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
    }
    tool("mkfifo", &[path.as_os_str()], Path::new("/")).expect_code(0, "mkfifo");
}

fn warnings(t: &Tree) -> Vec<String> {
    t.status()
        .get("warnings")
        .arr()
        .iter()
        .map(|w| w.str().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------
// 1. FIFOs and other non-regular files never block.

#[test]
fn fifo_sources_are_warnings_and_the_run_never_blocks() {
    let t = Tree::new("fifo-sources");
    let sources = [
        t.configuration_json(),
        t.sync_agent_env(),
        t.site_conf.clone(),
    ];
    for p in &sources {
        mkfifo(p);
    }
    mkfifo(&t.videos().join("live.mp4"));
    let out = quick(&t, &[("INCLUDE_VIDEOS", "true")], &["run"]);
    out.expect_code(0, "a run whose sources are FIFOs");
    let w = warnings(&t);
    for p in &sources {
        assert!(
            w.iter()
                .any(|x| x.contains(&p.display().to_string()) && x.contains("FIFO")),
            "no FIFO warning for {}: {w:?}",
            p.display()
        );
    }
    assert!(
        w.iter()
            .any(|x| x.contains("live.mp4") && x.contains("FIFO")),
        "{w:?}"
    );
    let a = archives(&t.backups);
    assert_eq!(a.len(), 1, "{a:?}");
    let list = tar_list(&t.archive_path(&a[0]));
    assert!(
        !list
            .iter()
            .any(|n| n.ends_with("configuration.json") || n.ends_with("live.mp4")),
        "{list:?}"
    );
    // The lock was released: the next run does not wait either.
    quick(&t, &[], &["run"]).expect_code(0, "the next run");
    quick(&t, &[], &["verify", &a[0]]).expect_code(0, "verify");
}

#[test]
fn verify_and_restore_refuse_a_fifo_named_like_an_archive_at_once() {
    let t = Tree::new("fifo-archive");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let name = "backup-20241218-030000.tar.gz";
    let fifo = t.archive_path(name);
    mkfifo(&fifo);
    let path = fifo.to_string_lossy().into_owned();
    for args in [
        vec!["verify", name],
        vec!["verify", path.as_str()],
        vec!["restore", name, "--dry-run"],
        vec!["restore", name],
        vec!["restore", path.as_str(), "--dry-run"],
    ] {
        let out = quick(&t, &[], &args);
        out.expect_code(1, &args.join(" "));
        assert!(out.stderr.contains("FIFO"), "{}\n{out}", args.join(" "));
    }
    // Nothing was written: the sources are as they were.
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(CONFIGURATION_JSON)
    );
    // A run is not disturbed by it either (it is not an archive: no retention on it).
    quick(&t, &[], &["run"]).expect_code(0, "a run beside a FIFO archive name");
}

fn tar_list(path: &Path) -> Vec<String> {
    let out = tool("tar", &["-tzf".as_ref(), path.as_os_str()], Path::new("/"));
    out.expect_code(0, "tar -tzf");
    out.stdout.lines().map(str::to_string).collect()
}
