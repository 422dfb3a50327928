//! Field safety, reading archives and the config file (docs/format.md, Reading an
//! archive back, Old-format archives, Configuration): decompression bombs refused in
//! seconds, a config file that is a device, a FIFO or 100 MB, and the archives of the
//! old auto-backup.sh (made by bench/old-backup.sh) listed, verified and restored.

use crate::common;
use crate::fieldkit;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use fieldkit::*;

#[test]
fn old_format_archives_are_listed_as_such_verified_and_restored() {
    let t = Tree::new("old-format");
    let old = old_backup(&t);
    // The Pi changed since: a new configuration, a video gone.
    write_file(&t.configuration_json(), b"{\"changed\": true}\n");
    fs::remove_file(t.videos().join("promo.mp4")).unwrap_or_else(|e| panic!("{e}"));

    let formats = listed(&t);
    assert_eq!(formats, vec![(old.clone(), "old".to_string())]);
    let out = quick(&t, &[], &["list"]);
    assert!(out.stdout.contains("old format"), "{out}");

    let out = quick(&t, &[], &["verify", &old]);
    out.expect_code(0, "verify of an intact old-format archive");
    assert!(
        out.stdout.contains("old format, no manifest") && !out.stdout.contains("DAMAGED"),
        "{out}"
    );

    let out = quick(&t, &[], &["restore", &old, "--dry-run"]);
    out.expect_code(0, "restore --dry-run of an old-format archive");
    assert!(out.stdout.contains("old format, no manifest"), "{out}");
    assert!(out.stdout.contains("CHANGED"), "{out}");
    assert!(out.stdout.contains("missing  promo.mp4"), "{out}");
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(&b"{\"changed\": true}\n"[..]),
        "the dry run changed nothing"
    );

    // The API: listed as old, verified, dry run and real restore.
    let daemon = Daemon::start(&t, &[("NEOPRO_CATCHUP_DELAY", "3600")]);
    let a = daemon.get("/api/backups");
    let (st, body) = (a.status, a.text());
    assert_eq!(st, 200, "{body}");
    let j = parse_json(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(j.get("backups").at(0).get("format").str(), "old", "{body}");
    let a = daemon.post_json(&format!("/api/backups/verify/{old}"), "");
    let (st, body) = (a.status, a.text());
    assert_eq!(st, 200, "{body}");
    let j = parse_json(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(j.get("ok").bool() && j.get("error").is_null(), "{body}");
    assert_eq!(j.get("format").str(), "old", "{body}");
    let a = daemon.post_json(&format!("/api/backups/restore/{old}"), r#"{"dryRun":true}"#);
    let (st, body) = (a.status, a.text());
    assert_eq!(st, 200, "API dry run: {body}");
    let a = daemon.post_json(
        &format!("/api/backups/restore/{old}"),
        r#"{"dryRun":false,"only":["configuration.json"]}"#,
    );
    let (st, body) = (a.status, a.text());
    assert_eq!(st, 200, "API restore: {body}");
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(CONFIGURATION_JSON)
    );
    drop(daemon);

    // The CLI restore too (after another change).
    write_file(&t.sync_agent_env(), b"SYNC_TOKEN=changed\n");
    let out = quick(&t, &[], &["restore", &old]);
    out.expect_code(0, "restore of an old-format archive");
    assert_eq!(
        fs::read(t.sync_agent_env()).ok().as_deref(),
        Some(SYNC_AGENT_ENV)
    );

    // A Pi without a videos folder: the old inventory says "Aucune vidéo".
    let bare = Tree::bare("old-format-novideos");
    write_file(&bare.configuration_json(), CONFIGURATION_JSON);
    write_file(&bare.site_conf, SITE_CONF);
    let old2 = old_backup(&bare);
    let out = quick(&bare, &[], &["restore", &old2, "--dry-run"]);
    out.expect_code(0, "dry run, old inventory without videos");
    assert!(out.stdout.contains("0 listed"), "{out}");
    quick(&bare, &[], &["verify", &old2]).expect_code(0, "verify");
}

#[test]
fn old_format_archives_obey_the_same_safety_rules() {
    let t = Tree::new("old-format-unsafe");
    let old = old_backup(&t);
    let original = fs::read(t.archive_path(&old)).unwrap_or_else(|e| panic!("{e}"));
    let stamp = &old["backup-".len()..old.len() - ".tar.gz".len()];
    let work = t.root.join("work");
    let dir = work.join(stamp);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    write_file(&dir.join("configuration.json"), b"{}");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("site.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    let evil = name_at(now_unix() - 86_400);
    // The stamp of the old archive, under another name: its top folder does not match.
    let out = tool(
        "tar",
        &[
            "-czf".as_ref(),
            t.archive_path(&evil).as_os_str(),
            "-C".as_ref(),
            work.as_os_str(),
            stamp.as_ref(),
        ],
        Path::new("/"),
    );
    out.expect_code(0, "tar");
    let out = quick(&t, &[], &["restore", &evil, "--dry-run"]);
    out.expect_code(1, "an old-format archive for another time");
    // The same folder under its own name: a link inside is refused, nothing written.
    let evil2 = t.archive_path(&old);
    let out = tool(
        "tar",
        &[
            "-czf".as_ref(),
            evil2.as_os_str(),
            "-C".as_ref(),
            work.as_os_str(),
            stamp.as_ref(),
        ],
        Path::new("/"),
    );
    out.expect_code(0, "tar");
    for args in [vec!["restore", &old], vec!["verify", &old]] {
        let out = quick(&t, &[], &args);
        out.expect_code(1, &args.join(" "));
        assert!(
            out.stdout.contains("DAMAGED") || out.stderr.contains("refusing"),
            "{out}"
        );
    }
    assert_eq!(fs::read(&t.site_conf).ok().as_deref(), Some(SITE_CONF));
    // Truncated, it is damaged (its gzip stream ends too soon).
    write_file(&t.archive_path(&old), &original[..original.len() / 2]);
    let out = quick(&t, &[], &["verify", &old]);
    out.expect_code(1, "verify of a truncated old-format archive");
    assert!(out.stdout.contains("DAMAGED"), "{out}");
    // Whole again, it verifies.
    write_file(&t.archive_path(&old), &original);
    quick(&t, &[], &["verify", &old]).expect_code(0, "verify");
}

#[test]
fn decompression_bombs_are_refused_in_seconds() {
    let t = Tree::new("bomb");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let now = now_unix();
    for (i, (entry, why)) in [
        ("system-info.txt", "inflate past 16 MiB"),
        ("videos/match.mp4", "decompression bomb"),
    ]
    .iter()
    .enumerate()
    {
        let name = name_at(now - 86_400 * (i as i64 + 1));
        let path = t.archive_path(&name);
        bomb(&path, &name[..name.len() - 7], entry, 1);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size < 4 << 20, "a bomb of {size} bytes");
        for args in [
            vec!["verify", name.as_str()],
            vec!["restore", name.as_str(), "--dry-run"],
            vec!["restore", name.as_str()],
        ] {
            let started = Instant::now();
            let mut c = t.command(&args);
            let out = run_within(&mut c, Duration::from_secs(10), &args.join(" "));
            out.expect_code(1, &args.join(" "));
            let said = format!("{}{}", out.stdout, out.stderr);
            assert!(said.contains(why), "{entry}: {}\n{out}", args.join(" "));
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                started.elapsed()
            );
        }
    }
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(CONFIGURATION_JSON)
    );
}

#[test]
fn the_config_file_must_be_a_small_regular_file_and_errors_cut_values() {
    let t = Tree::new("config-bounds");
    // A device, a FIFO: refused at once, exit 2.
    for (what, path) in [
        ("a device", Path::new("/dev/zero").to_path_buf()),
        ("a FIFO", t.root.join("etc/fifo.conf")),
    ] {
        if what == "a FIFO" {
            mkfifo(&path);
        }
        let mut c = t.command_with_config(Some(&path), &["status"]);
        let out = run_within(&mut c, QUICK, what);
        out.expect_code(2, what);
        assert!(
            out.stderr.contains(what) && out.stderr.contains("not a regular file"),
            "{out}"
        );
    }
    // /dev/null is the one device allowed: an empty file (scripts use it).
    let mut c = t.command_with_config(Some(Path::new("/dev/null")), &["status"]);
    run_within(&mut c, QUICK, "--config /dev/null").expect_code(0, "--config /dev/null");
    // 100 MB: refused without reading it.
    let big = t.root.join("etc/big.conf");
    let f = fs::File::create(&big).unwrap_or_else(|e| panic!("{e}"));
    f.set_len(100 << 20).unwrap_or_else(|e| panic!("{e}"));
    let mut c = t.command_with_config(Some(&big), &["status"]);
    let out = run_within(&mut c, QUICK, "a 100 MB config");
    out.expect_code(2, "a 100 MB config");
    assert!(out.stderr.contains("larger than 1 MiB"), "{out}");
    // A bad line of 900 KB: the error names it, cut.
    let mut line = b"RETENTION_DAYS=".to_vec();
    line.extend(std::iter::repeat_n(b'9', 900_000));
    line.push(b'x');
    write_file(&t.config_file, &line);
    let out = quick(&t, &[], &["status"]);
    out.expect_code(2, "a runaway value");
    assert!(
        out.stderr.contains("RETENTION_DAYS") && out.stderr.len() < 1000,
        "{} bytes",
        out.stderr.len()
    );
    let mut line = b"NOT A KEY LINE ".to_vec();
    line.extend(std::iter::repeat_n(b'y', 900_000));
    write_file(&t.config_file, &line);
    let out = quick(&t, &[], &["status"]);
    out.expect_code(2, "a runaway line");
    assert!(
        out.stderr.contains("expected KEY=VALUE") && out.stderr.len() < 1000,
        "{} bytes",
        out.stderr.len()
    );
    // A secret in a world-readable file: a warning; mode 0600: none.
    write_file(&t.config_file, b"API_TOKEN=0123456789abcdef0123\n");
    fs::set_permissions(&t.config_file, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = quick(&t, &[], &["status"]);
    out.expect_code(0, "status");
    assert!(
        out.stderr.contains("API_TOKEN") && out.stderr.contains("readable by every user"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("0123456789abcdef0123"),
        "the token is never shown: {out}"
    );
    fs::set_permissions(&t.config_file, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = quick(&t, &[], &["status"]);
    assert!(!out.stderr.contains("readable by every user"), "{out}");
    // 0644 in a folder closed to others: nobody else can read it.
    fs::set_permissions(&t.config_file, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let etc = t.config_file.parent().unwrap_or(&t.root).to_path_buf();
    fs::set_permissions(&etc, fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
    let out = quick(&t, &[], &["status"]);
    assert!(!out.stderr.contains("readable by every user"), "{out}");
}
