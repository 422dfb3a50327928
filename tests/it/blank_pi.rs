//! A blank Pi never overwrites a site's history, and two installs under one SITE_ID are
//! reported (docs/format.md, Offsite: a site's history), against a real S3 server:
//! SeaweedFS on loopback (`make test-offsite`), the daemon of tests/common/daemon.rs,
//! objects read back through the filer. Each test works under a prefix of its own.
//!
//! Ignored in a plain `cargo test` (no server there); `make test-offsite` runs them.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::Daemon;
use common::s3::*;
use common::*;

/// A webhook receiver on 127.0.0.1: the bodies of the requests it got.
type Bodies = Arc<Mutex<Vec<String>>>;

fn webhook() -> (String, Bodies) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    let seen: Bodies = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            c.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            let body = loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break String::new(),
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
                let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&raw[..i]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
                    .unwrap_or(0);
                while raw.len() < i + 4 + len {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                break String::from_utf8_lossy(&raw[i + 4..]).to_string();
            };
            s2.lock().unwrap_or_else(|e| e.into_inner()).push(body);
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

fn events(seen: &Bodies) -> Vec<String> {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|b| {
            parse_json(b)
                .unwrap_or_else(|e| panic!("{e}: {b}"))
                .get("event")
                .str()
                .to_string()
        })
        .collect()
}

fn state(t: &Tree) -> Json {
    let text = fs::read_to_string(t.backups.join("offsite-state.json")).unwrap_or_default();
    parse_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A file holding a machine identity, for NEOPRO_MACHINE_ID_FILE.
fn machine(t: &Tree, id: &str) -> String {
    let p = t.root.join("machine-id");
    write_file(&p, format!("{id}\n").as_bytes());
    p.display().to_string()
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_blank_pi_daemon_keeps_its_catch_up_backup_local_and_says_why() {
    let prefix = unique_prefix("blank");
    let site = format!("{prefix}/club");
    // The site's real Pi sent its backups.
    let old = Tree::new("blank-old");
    let out = run(&old, &s3_env(&prefix, "club"), &["run"]);
    out.expect_code(0, "the real Pi's run");
    assert!(out.stdout.contains("offsite: 1 copy(ies) sent"), "{out}");
    let sent = archives(&old.backups).pop().unwrap_or_default();
    let before = objects_in(&site);
    assert_eq!(
        before,
        [sent.clone(), "last-backup-status.json".to_string()]
    );
    let status_before = object(&format!("{site}/last-backup-status.json"));
    // A fresh SD card under the same SITE_ID: the daemon's catch-up backup.
    let blank = Tree::new("blank-new");
    let (hook, seen) = webhook();
    let env = with(
        &s3_env(&prefix, "club"),
        &[
            ("NEOPRO_CATCHUP_DELAY", "1"),
            ("NEOPRO_OFFSITE_RETRY_SECS", "1"),
            ("ALERT_WEBHOOK", &hook),
        ],
    );
    let mut d = Daemon::start(&blank, &env_refs(&env));
    d.wait_log("offsite copies held", Duration::from_secs(60));
    let local = archives(&blank.backups);
    assert_eq!(local.len(), 1, "no catch-up backup: {local:?}");
    // Some rounds later (the retries' backoff), the bucket is as the real Pi left it.
    wait_for("three held rounds", 60, || {
        let text = fs::read_to_string(blank.backups.join("offsite-state.json")).unwrap_or_default();
        parse_json(&text).is_ok_and(|j| j.get("failures").u64() >= 3)
    });
    assert_eq!(objects_in(&site), before);
    assert_eq!(
        object(&format!("{site}/last-backup-status.json")),
        status_before
    );
    assert!(blank.archive_path(&local[0]).is_file());
    let st = blank.status();
    assert!(st.get("success").bool(), "{st:?}");
    let off = st.get("offsite");
    assert!(off.get("held").bool(), "{st:?}");
    assert_eq!(off.get("pending").u64(), 1);
    let why = off.get("error").str().to_string();
    assert!(
        why.contains("1 backup(s) of site club")
            && why.contains(&sent)
            && why.contains("recover --new-start"),
        "{why}"
    );
    assert_eq!(off.get("install").str().len(), 32, "{st:?}");
    // check, /metrics, the page's data, the log (once), the webhook (once).
    let out = run(&blank, &env, &["check"]);
    out.expect_code(2, "check while held");
    assert!(
        out.stdout.starts_with("CRITICAL: offsite copies held") && out.stdout.lines().count() == 1,
        "{out}"
    );
    assert_eq!(d.metric("neopro_backup_offsite_held"), 1.0);
    assert_eq!(d.metric("neopro_backup_offsite_other_install"), 0.0);
    let list = d.get("/api/backups");
    assert_eq!(list.status, 200, "{list}");
    let j = parse_json(&list.text()).unwrap_or_else(|e| panic!("{e}"));
    assert!(j.get("status").get("offsite").get("held").bool());
    let log = fs::read_to_string(blank.backups.join("backup.log")).unwrap_or_default();
    assert_eq!(log.matches("offsite copies held").count(), 1, "{log}");
    wait_for("the webhook", 30, || !events(&seen).is_empty());
    assert_eq!(events(&seen), ["offsite_held"]);
    let body = seen.lock().unwrap_or_else(|e| e.into_inner())[0].clone();
    let hook_json = parse_json(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hook_json.get("site").str(), "club");
    assert!(hook_json.get("text").str().contains("offsite copies held"));
    let (status, _, _) = d.terminate(Duration::from_secs(20));
    assert!(status.success());
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn an_upgraded_pi_keeps_sending_to_its_site() {
    let prefix = unique_prefix("upgraded");
    let site = format!("{prefix}/club");
    let t = Tree::new("upgraded");
    // What the earlier version left: a copy in the bucket, its archive on the Pi and
    // its offsite-state.json, as it wrote it.
    let first = backup(&t, &[]);
    put_object(
        &format!("{site}/{first}"),
        &fs::read(t.archive_path(&first)).unwrap_or_default(),
    );
    write_file(
        &t.backups.join("offsite-state.json"),
        br#"{"last_upload":"2025-01-05T03:00:12+00:00","failures":0,"next_try":0,"status_sent":"","archives_sent":1,"archive_bytes_sent":5000,"videos_sent":0,"video_bytes_sent":0,"videos_dest":"","videos_seq":0,"videos_merged":[],"videos_pending":0,"refs_sent":"","videos_poisoned":0}"#,
    );
    let out = run(&t, &s3_env(&prefix, "club"), &["run"]);
    out.expect_code(0, "run after the upgrade");
    assert!(out.stdout.contains("offsite: 1 copy(ies) sent"), "{out}");
    let second = archives(&t.backups)
        .into_iter()
        .find(|a| *a != first)
        .unwrap_or_else(|| panic!("no new archive"));
    let mut want = vec![first, second, "last-backup-status.json".to_string()];
    want.sort();
    assert_eq!(objects_in(&site), want);
    assert!(!t.status().get("offsite").get("held").bool());
    assert!(
        out.stderr
            .contains("of an earlier version shows copies sent"),
        "{out}"
    );
    let h = state(&t).get("history").arr().to_vec();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].get("site").str(), h[0].get("how").str()),
        ("club", "upgrade")
    );
    run(&t, &s3_env(&prefix, "club"), &["check"]).expect_code(0, "check");
}

/// `cp -a SRC DST`.
fn copy_dir(src: &Path, dst: &Path) {
    let out = tool(
        "cp",
        &[std::ffi::OsStr::new("-a"), src.as_os_str(), dst.as_os_str()],
        Path::new("/"),
    );
    out.expect_code(0, "cp -a");
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn two_installs_under_one_site_id_are_reported_by_both_and_by_fleet() {
    let prefix = unique_prefix("twice");
    let site = format!("{prefix}/club");
    let a = Tree::new("twice-a");
    let b = Tree::new("twice-b");
    let (hook, seen) = webhook();
    let env_a = with(
        &s3_env(&prefix, "club"),
        &[
            ("NEOPRO_MACHINE_ID_FILE", &machine(&a, "pi-serial-a")),
            ("ALERT_WEBHOOK", &hook),
        ],
    );
    let env_b = with(
        &s3_env(&prefix, "club"),
        &[("NEOPRO_MACHINE_ID_FILE", &machine(&b, "pi-serial-b"))],
    );
    backup(&a, &env_a);
    let ia = a.status().get("offsite").get("install").str().to_string();
    assert_eq!(ia.len(), 32);
    // The card cloned into a second Pi: same BACKUP_DIR, another machine.
    copy_dir(&a.backups, &b.backups);
    let out = run(&b, &env_b, &["run"]);
    out.expect_code(0, "the clone's run");
    assert!(out.stderr.contains("was made on another machine"), "{out}");
    let ib = b.status().get("offsite").get("install").str().to_string();
    assert!(ib.len() == 32 && ib != ia, "{ia} {ib}");
    // The clone's history is the card's: it sends. The status it replaced was its own
    // (the card's): no other install yet.
    assert!(b.status().get("offsite").get("other_install").is_null());
    // The first Pi's next run finds the clone's status where its own was.
    let out = run(&a, &env_a, &["run"]);
    out.expect_code(0, "a's run");
    assert!(
        out.stderr.contains(&format!(
            "another install ({ib}) also sends backups as club"
        )),
        "{out}"
    );
    assert_eq!(a.status().get("offsite").get("other_install").str(), ib);
    assert_eq!(events(&seen), ["offsite_other_install"]);
    let check = run(&a, &env_a, &["check"]);
    check.expect_code(2, "check of a");
    assert!(
        check.stdout.starts_with("CRITICAL: another install") && check.stdout.contains(&ib),
        "{check}"
    );
    // The fleet, from the status in the bucket (a's, naming b).
    let fleet = run(&a, &s3_env(&prefix, "club"), &["fleet"]);
    fleet.expect_code(0, "fleet");
    let row = fleet
        .stdout
        .lines()
        .find(|l| l.starts_with("club "))
        .unwrap_or_else(|| panic!("no club row:\n{fleet}"));
    assert!(row.contains("CLAIMED TWICE"), "{fleet}");
    let fj = run(&a, &s3_env(&prefix, "club"), &["fleet", "--json"]);
    let j = parse_json(&fj.stdout).unwrap_or_else(|e| panic!("{e}: {fj}"));
    let club = &j.get("sites").arr()[0];
    assert!(club.get("claimed_twice").bool(), "{j:?}");
    assert_eq!(club.get("other_install").str(), ib);
    // And the clone, at its next run, finds the first Pi's.
    let out = run(&b, &env_b, &["run"]);
    out.expect_code(0, "b's second run");
    assert_eq!(b.status().get("offsite").get("other_install").str(), ia);
    run(&b, &env_b, &["check"]).expect_code(2, "check of b");
    let remote = object(&format!("{site}/last-backup-status.json")).unwrap_or_default();
    let rj = parse_json(&String::from_utf8_lossy(&remote)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rj.get("offsite").get("install").str(), ib);
    assert_eq!(rj.get("offsite").get("other_install").str(), ia);
    // The first Pi's next run: the same other install, no second alert.
    backup(&a, &env_a);
    assert_eq!(a.status().get("offsite").get("other_install").str(), ib);
    assert_eq!(events(&seen), ["offsite_other_install"]);
}
