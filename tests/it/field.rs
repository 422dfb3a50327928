//! Field safety: what a Pi in a club meets that a lab does not (docs/format.md). Here:
//! a FIFO where a file should be (1), junk named like an archive (3), a symlinked
//! folder under a restore target and a new file's mode (4), a hostile video name and
//! `check`'s exit codes (6), a card with reserved blocks, video folder modes and the
//! list's dates (9). The clock is in tests/it/field_clock.rs, bounds and old-format
//! archives in tests/it/field_archives.rs.
//!
//! Every process runs under a deadline much shorter than the common one: a test that
//! would hang fails instead, quickly.

use crate::common;
use crate::fieldkit;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use fieldkit::*;

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
        vec!["restore", name, "--videos", "--dry-run"],
        vec!["restore", name, "--videos"],
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

#[test]
fn empty_or_foreign_files_never_count_among_the_newest_three() {
    let t = Tree::new("retention-junk");
    let model = t.archive_path(&t.backup(&[]));
    let now = now_unix();
    let keep9 = plant_valid(&t, &model, now - 9 * 86_400);
    let gone10 = plant_valid(&t, &model, now - 10 * 86_400);
    let recent = plant_valid(&t, &model, now - 86_400);
    fs::remove_file(&model).unwrap_or_else(|e| panic!("{e}"));
    // Newer than all of them: an empty file, a text file, a folder-free junk name.
    let empty = name_at(now - 3 * 3600);
    let foreign = name_at(now - 2 * 3600);
    let truncated = name_at(now - 3600);
    write_file(&t.archive_path(&empty), b"");
    write_file(&t.archive_path(&foreign), b"this is not gzip at all\n");
    write_file(&t.archive_path(&truncated), b"\x1f");
    let made = t.backup(&[("RETENTION_DAYS", "7")]);
    let left = archives(&t.backups);
    // The newest 3 valid: this run, yesterday's, and the one of 9 days ago (older
    // than 7 days, but junk does not push it out); the one of 10 days ago goes.
    for n in [&made, &recent, &keep9, &empty, &foreign, &truncated] {
        assert!(left.contains(n), "{n} was removed: {left:?}");
    }
    assert!(!left.contains(&gone10), "{gone10} kept: {left:?}");
    assert_eq!(
        t.status().get("backups_count").u64(),
        3,
        "valid archives kept"
    );
    // The list says which are not archives.
    let formats = listed(&t);
    for (n, f) in &formats {
        let want = if [&empty, &foreign, &truncated].contains(&n) {
            "invalid"
        } else {
            "current"
        };
        assert_eq!(f, want, "{n}: {formats:?}");
    }
}

#[test]
fn a_file_missing_on_the_pi_is_restored_0600_and_owned_like_its_folder() {
    use std::os::unix::fs::MetadataExt;
    let t = Tree::new("restore-new-file-mode");
    // The archive records .env as 0777 (it was so on the Pi that day).
    fs::set_permissions(t.sync_agent_env(), fs::Permissions::from_mode(0o777))
        .unwrap_or_else(|e| panic!("{e}"));
    let archive = t.backup(&[]);
    fs::remove_file(t.sync_agent_env()).unwrap_or_else(|e| panic!("{e}"));
    let folder = t.sync_agent_env().parent().unwrap_or(&t.root).to_path_buf();
    let root = unsafe_euid() == 0;
    if root {
        std::os::unix::fs::chown(&folder, Some(1234), Some(2345)).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = quick(&t, &[], &["restore", &archive, "--only", "sync-agent.env"]);
    out.expect_code(0, "restore of a missing .env");
    assert_eq!(
        fs::read(t.sync_agent_env()).ok().as_deref(),
        Some(SYNC_AGENT_ENV)
    );
    assert_eq!(mode_of(&t.sync_agent_env()), 0o600, "{out}");
    if root {
        let m = fs::metadata(t.sync_agent_env()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.uid(), m.gid()), (1234, 2345), "owned like its folder");
    }
}

#[test]
fn restore_never_follows_a_symlinked_folder_to_write_elsewhere() {
    let t = Tree::new("restore-symlinked-folder");
    let archive = t.backup(&[]);
    // webapp/ becomes a link to another folder (e.g. made by the unprivileged user that
    // owns NEOPRO_DIR, hoping for a root restore), and so does SITE_CONF's folder.
    let elsewhere = t.root.join("elsewhere");
    let elsewhere_etc = t.root.join("elsewhere-etc");
    fs::create_dir_all(&elsewhere).unwrap_or_else(|e| panic!("{e}"));
    fs::create_dir_all(&elsewhere_etc).unwrap_or_else(|e| panic!("{e}"));
    let webapp = t
        .configuration_json()
        .parent()
        .unwrap_or(&t.root)
        .to_path_buf();
    fs::remove_dir_all(&webapp).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&elsewhere, &webapp).unwrap_or_else(|e| panic!("{e}"));
    let etc = t.site_conf.parent().unwrap_or(&t.root).to_path_buf();
    let etc_real = t.root.join("etc-real");
    fs::rename(&etc, &etc_real).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&elsewhere_etc, &etc).unwrap_or_else(|e| panic!("{e}"));
    write_file(&t.sync_agent_env(), b"SYNC_TOKEN=changed\n");

    // (The tree's config file moved with etc/: use one beside it.)
    let conf = t.root.join("backup.conf");
    write_file(&conf, b"");
    let run = |args: &[&str]| {
        let mut c = t.command_with_config(Some(&conf), args);
        run_within(&mut c, QUICK, &args.join(" "))
    };
    let out = run(&["restore", &archive]);
    assert!(
        names_in(&elsewhere).is_empty() && names_in(&elsewhere_etc).is_empty(),
        "a restore wrote through a symlinked folder: {:?} {:?}\n{out}",
        names_in(&elsewhere),
        names_in(&elsewhere_etc)
    );
    out.expect_code(1, "restore with two symlinked folders");
    assert!(
        out.stdout.contains("FAILED") && out.stdout.contains("symbolic link"),
        "{out}"
    );
    let out = run(&["restore", &archive, "--dry-run"]);
    out.expect_code(0, "dry run");
    assert!(out.stdout.contains("symbolic link"), "{out}");
    // The file whose folder is real was restored.
    assert_eq!(
        fs::read(t.sync_agent_env()).ok().as_deref(),
        Some(SYNC_AGENT_ENV)
    );
}

#[test]
fn check_prints_one_escaped_line_and_exits_3_on_usage_or_config_errors() {
    let t = Tree::new("check-nagios");
    t.backup(&[]);
    // A failed run whose error names a hostile video (what a copy error records).
    let evil = t.videos().join("evil\nOK: all good.mp4");
    let status = format!(
        "{{\"timestamp\":\"{}\",\"date\":\"2024-12-18\",\"success\":false,\"archive\":null,\
         \"size\":null,\"size_bytes\":null,\"backups_count\":1,\"retention_days\":7,\
         \"duration_ms\":5,\"warnings\":[],\"error\":\"{}\",\"last_success\":null}}\n",
        iso_utc(now_unix()),
        format!(
            "copying video {} failed: the file shrank while it was being read\r\x1b[32mOK",
            evil.display()
        )
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\x1b', "\\u001b")
    );
    write_file(
        &t.backups.join("last-backup-status.json"),
        status.as_bytes(),
    );
    let out = quick(&t, &[], &["check"]);
    out.expect_code(2, "check after a failed run");
    assert_eq!(out.stdout.lines().count(), 1, "exactly one line: {out}");
    assert!(out.stdout.starts_with("CRITICAL:"), "{out}");
    assert!(
        out.stdout.contains("evil\\nOK: all good.mp4"),
        "escaped: {out}"
    );
    assert!(
        !out.stdout.contains('\r') && !out.stdout.contains('\x1b'),
        "no control character: {:?}",
        out.stdout
    );

    // Usage and configuration errors: UNKNOWN, exit 3, one line on stdout.
    let missing = t.root.join("nope.conf");
    let missing = missing.to_string_lossy().into_owned();
    for (env, args) in [
        (vec![], vec!["check", "--max-age-hours", "0"]),
        (vec![], vec!["check", "--max-age-hours", "x\ny"]),
        (vec![], vec!["check", "extra"]),
        (vec![], vec!["check", "--json"]),
        (vec![("RETENTION_DAYS", "seven")], vec!["check"]),
        (vec![], vec!["--config", missing.as_str(), "check"]),
    ] {
        let mut c = if args[0] == "--config" {
            t.command_with_config(None, &args)
        } else {
            t.command(&args)
        };
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = run_within(&mut c, QUICK, &args.join(" "));
        out.expect_code(3, &format!("{env:?} {}", args.join(" ")));
        assert_eq!(out.stdout.lines().count(), 1, "{out}");
        assert!(out.stdout.starts_with("UNKNOWN: "), "{out}");
    }
    // Other commands keep exit 2 for the same errors.
    quick(&t, &[], &["status", "--max-age-hours", "3"]).expect_code(2, "status usage");
}

#[test]
fn system_info_gives_the_disk_figures_of_df() {
    let t = Tree::bare("disk-df");
    let Some(_fs) = Ext4::mount(&t.root.join("card.img"), &t.neopro) else {
        return;
    };
    write_file(&t.configuration_json(), CONFIGURATION_JSON);
    let made = t.backup(&[]);
    let info = read_member(
        &t.archive_path(&made),
        &format!("{}/system-info.txt", &made[..made.len() - 7]),
    );
    let info = String::from_utf8_lossy(&info).into_owned();
    let line = info
        .lines()
        .find(|l| l.starts_with("disk ("))
        .unwrap_or_else(|| panic!("no disk line:\n{info}"));
    let pct: u64 = line
        .rsplit('(')
        .next()
        .and_then(|p| p.split('%').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {line:?}"));
    let df = tool(
        "df",
        &[
            "-B1".as_ref(),
            "--output=size,used,avail,pcent".as_ref(),
            t.neopro.as_os_str(),
        ],
        Path::new("/"),
    );
    df.expect_code(0, "df");
    let f: Vec<u64> = df
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.trim_end_matches('%').parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "{df}");
    assert_eq!(pct, f[3], "{line:?} but df says {}", df.stdout);
    // Reserved blocks are neither used nor free: a fresh card is a few % used, not 25.
    assert!(pct < 10, "{line:?}");
    assert!(line.contains(" used of "), "{line:?}");
}

#[test]
fn video_folders_keep_their_mode_in_the_archive() {
    let t = Tree::new("folder-modes");
    let modes = [
        ("Match", 0o755),
        ("Match/2024", 0o750),
        ("archive/old", 0o711),
    ];
    for (d, m) in modes {
        fs::set_permissions(t.videos().join(d), fs::Permissions::from_mode(m))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    fs::set_permissions(t.videos(), fs::Permissions::from_mode(0o775))
        .unwrap_or_else(|e| panic!("{e}"));
    let made = t.backup(&[("INCLUDE_VIDEOS", "true")]);
    let out = python(
        "import sys, tarfile\n\
         for m in tarfile.open(sys.argv[1]):\n\
         \x20   if m.isdir(): print(m.name, oct(m.mode))",
        &[t.archive_path(&made).as_os_str()],
    );
    out.expect_code(0, "tarfile");
    let top = &made[..made.len() - 7];
    let mode_of = |inner: &str| {
        out.stdout
            .lines()
            .find_map(|l| {
                let key = if inner.is_empty() {
                    format!("{top} ")
                } else {
                    format!("{top}/{inner} ")
                };
                l.strip_prefix(&key)
            })
            .unwrap_or_else(|| panic!("no folder {inner}:\n{}", out.stdout))
            .to_string()
    };
    assert_eq!(mode_of(""), "0o700", "the top folder holds secrets");
    assert_eq!(mode_of("videos"), "0o775");
    for (d, m) in modes {
        assert_eq!(mode_of(&format!("videos/{d}")), format!("{m:#o}"), "{d}");
    }
}

#[test]
fn the_list_dates_created_from_the_name_not_the_mtime() {
    let t = Tree::new("created-from-name");
    let made = t.backup(&[]);
    let planted = "backup-20241218-030000.tar.gz";
    fs::copy(t.archive_path(&made), t.archive_path(planted)).unwrap_or_else(|e| panic!("{e}"));
    set_mtime(&t.archive_path(planted), 1_000_000_000); // 2001: a copy that reset it
    for (tz, created) in [
        ("UTC", "2024-12-18T03:00:00.000Z"),
        ("Europe/Paris", "2024-12-18T02:00:00.000Z"),
    ] {
        let out = quick(&t, &[("TZ", tz)], &["list", "--json"]);
        let j = parse_json(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        let b = j
            .get("backups")
            .arr()
            .iter()
            .find(|b| b.get("name").str() == planted)
            .unwrap_or_else(|| panic!("{planted} not listed: {out}"));
        assert_eq!(b.get("created").str(), created, "{tz}");
        assert_eq!(b.get("date").str(), "2024-12-18 03:00:00");
    }
}

/// Issue 21: a restore that applied O_NOFOLLOW to the last folder only passed the test
/// above. A link at each level of the path — NEOPRO_DIR itself, then each folder in
/// it — is refused: nothing is written through it, the error says why, and files
/// whose path holds no link are restored.
#[test]
fn restore_refuses_a_symlink_at_every_level_of_the_path_neopro_dir_included() {
    for level in ["neopro", "neopro/webapp", "neopro/sync-agent"] {
        let t = Tree::new("restore-link-level");
        let archive = t.backup(&[]);
        // The folder at `level` moves aside and a link to it takes its place; the files
        // behind the link are changed, so a write through it would show.
        let linked = t.root.join(level);
        let real = t.root.join(format!("{}-real", level.replace('/', "-")));
        fs::rename(&linked, &real).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&real, &linked).unwrap_or_else(|e| panic!("{e}"));
        let mut behind = Vec::new();
        for rel in ["neopro/webapp/configuration.json", "neopro/sync-agent/.env"] {
            if let Some(rest) = rel.strip_prefix(&format!("{level}/")) {
                let p = real.join(rest);
                write_file(&p, b"changed behind the link\n");
                behind.push(p);
            }
        }
        write_file(&t.site_conf, b"SITE=changed\n");
        let mut c = t.command(&["restore", &archive]);
        let out = run_within(&mut c, QUICK, "restore");
        out.expect_code(1, &format!("restore with a link at {level}"));
        assert!(out.stdout.contains("symbolic link"), "{level}: {out}");
        for p in &behind {
            assert_eq!(
                fs::read(p).unwrap_or_default(),
                b"changed behind the link\n",
                "{level}: a restore wrote through the link into {}",
                p.display()
            );
        }
        assert!(!behind.is_empty(), "{level}: nothing behind the link");
        // site.conf's folder holds no link: restored.
        assert_eq!(fs::read(&t.site_conf).ok().as_deref(), Some(SITE_CONF));
    }
}

/// A link or a folder where the archive has a file: not replaced, and the report says
/// which (the link is named as a link, the folder as not a regular file).
#[test]
fn restore_names_a_linked_file_and_a_folder_in_a_file_place() {
    let t = Tree::new("restore-odd-files");
    let archive = t.backup(&[]);
    let conf = t.configuration_json();
    fs::remove_file(&conf).unwrap_or_else(|e| panic!("{e}"));
    let target = t.root.join("target.json");
    write_file(&target, b"{}");
    std::os::unix::fs::symlink(&target, &conf).unwrap_or_else(|e| panic!("{e}"));
    let env = t.sync_agent_env();
    fs::remove_file(&env).unwrap_or_else(|e| panic!("{e}"));
    fs::create_dir(&env).unwrap_or_else(|e| panic!("{e}"));
    let mut c = t.command(&["restore", &archive]);
    let out = run_within(&mut c, QUICK, "restore");
    out.expect_code(1, "restore over a link and a folder");
    assert!(
        out.stdout.contains("configuration.json is a symbolic link"),
        "{out}"
    );
    assert!(out.stdout.contains(".env is not a regular file"), "{out}");
    assert_eq!(fs::read(&target).unwrap_or_default(), b"{}");
    assert!(env.is_dir());
}
