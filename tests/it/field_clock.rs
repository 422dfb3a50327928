//! Field safety, the clock (docs/format.md, Retention and The schedule): a Pi has no
//! real-time clock; it may believe it is 1970, or 2099 after a bad NTP answer. Run with
//! libfaketime (Debian's libfaketime): 1970, 2099 and back, two days forward, two
//! minutes back: no doubled run, no skipped day, no lost archive.

use crate::common;
use crate::fieldkit;

use std::fs;
use std::time::{Duration, Instant};

use common::*;
use fieldkit::*;

#[test]
fn a_run_whose_clock_jumped_ahead_deletes_nothing_and_1970_deletes_nothing() {
    let Some(lib) = libfaketime() else { return };
    let t = Tree::new("clock-retention");
    let model = t.archive_path(&t.backup(&[]));
    let now = now_unix();
    // Ten minutes short of whole days, so that "7 days old" is not a race with the clock.
    let mut planted: Vec<String> = (1..=10)
        .map(|k| plant_valid(&t, &model, now - k * 86_400 + 600))
        .collect();
    fs::remove_file(&model).unwrap_or_else(|e| panic!("{e}"));
    planted.sort();
    // 2099: every archive is decades "old"; none may go.
    let made = t.backup(&faked(&lib, "@2099-01-01 12:00:00"));
    assert!(made.starts_with("backup-20990101-12"), "{made}");
    let left = archives(&t.backups);
    for p in &planted {
        assert!(left.contains(p), "the 2099 run removed {p}: {left:?}");
    }
    let w = warnings(&t);
    assert!(
        w.iter()
            .any(|x| x.contains("retention skipped") && x.contains("48 h")),
        "{w:?}"
    );
    fs::remove_file(t.archive_path(&made)).unwrap_or_else(|e| panic!("{e}"));
    // Three days forward (the newest archive is a day old): more than 48 h, nothing goes.
    let made = t.backup(&faked(&lib, "+3d"));
    let left = archives(&t.backups);
    for p in &planted {
        assert!(left.contains(p), "a run 3 days ahead removed {p}: {left:?}");
    }
    fs::remove_file(t.archive_path(&made)).unwrap_or_else(|e| panic!("{e}"));
    // 1970: everything is in the future, nothing is old.
    let made = t.backup(&faked(&lib, "@1970-01-01 00:00:10"));
    assert!(made.starts_with("backup-19700101-"), "{made}");
    let left = archives(&t.backups);
    for p in &planted {
        assert!(left.contains(p), "the 1970 run removed {p}: {left:?}");
    }
    // Back to the real clock: the usual rule, which the 1970 and real ones obey.
    let made = t.backup(&[]);
    let left = archives(&t.backups);
    assert!(left.contains(&made));
    assert_eq!(
        left.iter().filter(|n| planted.contains(n)).count(),
        7,
        "archives older than 7 days go, the newest 3 stay: {left:?}"
    );
}

#[test]
fn the_schedule_survives_1970_2099_and_back_two_days_forward_and_two_minutes_back() {
    let Some(lib) = libfaketime() else { return };
    let t = Tree::new("clock-schedule");
    // Ten daily backups before day D (2031-03-10), made at 03:00 by the real binary.
    let d = naive_utc(2031, 3, 10, 3, 0, 0);
    let mut seeded = Vec::new();
    for k in (1..=10).rev() {
        let spec = format!("@{} 03:00:00", &iso_utc(d - k * 86_400)[..10]);
        seeded.push(t.backup(&[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", spec.as_str()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("NO_FAKE_STAT", "1"),
            ("RETENTION_DAYS", "30"),
        ]));
    }
    assert_eq!(archives(&t.backups), seeded);
    let clock = FakeClock::new(&t.root);
    clock.set(10); // 1970-01-01 00:00:10: a Pi without RTC before NTP answers
    let spec = clock.spec.to_string_lossy().into_owned();
    let mut daemon = Daemon::start(
        &t,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", spec.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("NO_FAKE_STAT", "1"),
            ("NEOPRO_CATCHUP_DELAY", "0"),
            ("BACKUP_TIME", "03:00"),
            ("RETENTION_DAYS", "30"),
        ],
    );
    let phase = Duration::from_secs(40);
    // 1970: the catch-up is due, but waits for the clock; the wait is visible.
    daemon.wait_log("the clock does not look set", phase);
    let a = daemon.auto_status();
    let w = a.try_get("clockWarning").map_or("", Json::str);
    assert!(w.contains("1970"), "{a:?}");
    assert_eq!(daemon.metric("neopro_backup_clock_warning"), 1.0);
    assert_eq!(archives(&t.backups), seeded, "nothing ran in 1970");

    // A bad NTP answer: 2099. The catch-up runs, and deletes nothing.
    clock.set(naive_utc(2099, 1, 1, 12, 0, 0));
    let line = daemon.wait_log("backup done: backup-2099", phase);
    let now = archives(&t.backups);
    for s in &seeded {
        assert!(now.contains(s), "the 2099 run removed {s}: {now:?}\n{line}");
    }
    assert_eq!(with_prefix(&now, "backup-2099").len(), 1, "{now:?}");

    // Back to the real date D, five minutes before BACKUP_TIME: D's backup runs at
    // 03:00, although an archive of 2099 is in the folder.
    clock.set(d - 300);
    daemon.wait_log("backup done: backup-20310310-0300", phase);
    // The status is written just after that line: the last success becomes D 03:00
    // (never 2099, which /metrics reports as 0 while it is in the future).
    let deadline = Instant::now() + phase;
    let ls = loop {
        let ls = daemon.metric("neopro_backup_last_success_timestamp_seconds");
        if (ls - d as f64).abs() < 600.0 || Instant::now() > deadline {
            break ls;
        }
        assert_eq!(ls, 0.0, "a last success neither D nor 0");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        (ls - d as f64).abs() < 600.0,
        "the last success is D 03:00, never 2099: {ls}"
    );
    let a = daemon.auto_status();
    let w = a.try_get("clockWarning").map_or("", Json::str);
    assert!(
        w.contains("backup-20990101"),
        "the archive of 2099 is pointed out: {a:?}"
    );
    assert_eq!(daemon.metric("neopro_backup_clock_warning"), 1.0);

    // Two minutes back, just after that run: 03:00 comes again and must not run twice.
    // The event waited for: the daemon's own clock three minutes past 03:00 (its
    // scheduler reads the clock at least once a minute, so 03:00 has come again and
    // been looked at twice).
    clock.set(d - 120 + 30);
    wait_daemon_clock(&daemon, d + 180, phase);
    assert_eq!(
        with_prefix(&archives(&t.backups), "backup-20310310").len(),
        1,
        "D ran twice after the clock stepped back 2 minutes:\n{}",
        daemon.log()
    );

    // Two days forward: the missed run happens once, and deletes nothing.
    clock.set(d + 2 * 86_400 + 300);
    daemon.wait_log("backup done: backup-20310312-03", phase);
    // The next day still runs at 03:00.
    clock.set(d + 3 * 86_400 - 180);
    daemon.wait_log("backup done: backup-20310313-0300", phase);
    let now = archives(&t.backups);
    for s in &seeded {
        assert!(now.contains(s), "{s} was lost: {now:?}");
    }
    for (prefix, n) in [
        ("backup-1970", 0),
        ("backup-20990101", 1),
        ("backup-20310310", 1),
        ("backup-20310311", 0),
        ("backup-20310312", 1),
        ("backup-20310313", 1),
    ] {
        assert_eq!(
            with_prefix(&now, prefix).len(),
            n,
            "{prefix}: {now:?}\n{}",
            daemon.log()
        );
    }
    assert_eq!(now.len(), seeded.len() + 4, "{now:?}");
}

#[test]
fn an_archive_and_a_success_dated_2099_never_stop_the_schedule_nor_count_as_fresh() {
    let t = Tree::new("future-status");
    let made = t.backup(&[]);
    // What a run under a clock in 2099 leaves behind: its archive and its status.
    let future = name_at(naive_utc(2099, 1, 1, 3, 0, 0));
    fs::copy(t.archive_path(&made), t.archive_path(&future)).unwrap_or_else(|e| panic!("{e}"));
    let status = format!(
        "{{\"timestamp\":\"2099-01-01T03:00:00+00:00\",\"date\":\"2099-01-01\",\"success\":true,\
         \"archive\":\"{future}\",\"size\":\"1.1 KB\",\"size_bytes\":1100,\"backups_count\":2,\
         \"retention_days\":7,\"duration_ms\":5,\"warnings\":[],\"error\":null,\
         \"last_success\":\"2099-01-01T03:00:00+00:00\"}}\n"
    );
    write_file(
        &t.backups.join("last-backup-status.json"),
        status.as_bytes(),
    );
    let out = quick(&t, &[], &["check"]);
    out.expect_code(2, "check with a success dated 2099");
    assert!(
        out.stdout.starts_with("CRITICAL:") && out.stdout.contains("future"),
        "{out}"
    );
    let out = quick(&t, &[], &["status"]);
    assert!(
        out.stdout.contains("clock:") && out.stdout.contains("WARNING"),
        "{out}"
    );
    let mut daemon = Daemon::start(&t, &[("NEOPRO_CATCHUP_DELAY", "3600")]);
    assert_eq!(
        daemon.metric("neopro_backup_last_success_timestamp_seconds"),
        0.0,
        "a success of 2099 is not a fresh one"
    );
    assert_eq!(daemon.metric("neopro_backup_clock_warning"), 1.0);
    let a = daemon.auto_status();
    let w = a.try_get("clockWarning").map_or("", Json::str);
    assert!(w.contains("2099"), "{a:?}");
    drop(daemon);
    // The schedule is not stopped: the catch-up (the last success is not credible)
    // runs although the newest archive is dated 2099.
    daemon = Daemon::start(&t, &[("NEOPRO_CATCHUP_DELAY", "0")]);
    daemon.wait_log("backup done:", QUICK);
    // The status is written just after that log line: wait for it.
    let deadline = Instant::now() + QUICK;
    let ls = loop {
        let ls = daemon.metric("neopro_backup_last_success_timestamp_seconds");
        if ls > 0.0 || Instant::now() > deadline {
            break ls;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!((ls - now_unix() as f64).abs() < 600.0, "{ls}");
}
