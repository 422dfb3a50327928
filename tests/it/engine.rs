//! Black-box tests of the backup engine and its CLI (docs/format.md: exit codes, the archive, the status): each test
//! builds its own Pi-like tree in a fresh temp folder, runs the built binary as an
//! operator would, and checks the result with the tools users have (GNU tar, gzip,
//! sha256sum, Python's tarfile).
//!
//! The tmpfs tests (full disk, read-only BACKUP_DIR) need root, as CI has.

use crate::common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The files every archive holds besides the folder itself (all sources present).
const ARCHIVE_FILES: [&str; 6] = [
    "MANIFEST.sha256",
    "configuration.json",
    "site.conf",
    "sync-agent.env",
    "system-info.txt",
    "videos-inventory.txt",
];

fn stem(name: &str) -> &str {
    name.strip_suffix(".tar.gz").unwrap_or(name)
}

/// `neopro-backup verify ARCHIVE` (a name in BACKUP_DIR or a path).
fn verify(t: &Tree, archive: &OsStr) -> Out {
    let mut c = t.command(&["verify"]);
    c.arg(archive);
    output(&mut c)
}

fn gzip_ok(path: &Path) -> bool {
    tool("gzip", &["-t".as_ref(), path.as_os_str()], Path::new("/")).code == 0
}

/// `tar -tzf` of an archive, one name per line.
fn tar_list(path: &Path) -> Vec<String> {
    let out = tool("tar", &["-tzf".as_ref(), path.as_os_str()], Path::new("/"));
    out.expect_code(0, "tar -tzf");
    out.stdout.lines().map(str::to_string).collect()
}

/// The top-level folders of an archive listing.
fn top_folders(list: &[String]) -> BTreeSet<String> {
    list.iter()
        .map(|n| n.split('/').next().unwrap_or_default().to_string())
        .collect()
}

/// `sha256sum -c MANIFEST.sha256` inside `folder`; returns its output.
fn sha256sum_check(folder: &Path) -> Out {
    let out = tool(
        "sha256sum",
        &["-c".as_ref(), "MANIFEST.sha256".as_ref()],
        folder,
    );
    out.expect_code(0, "sha256sum -c MANIFEST.sha256");
    out
}

/// Python's tarfile reads the archive, finds one top folder `top`, and every regular file
/// matches MANIFEST.sha256; prints the number of files checked.
const PY_CHECK: &str = r#"
import hashlib, sys, tarfile
path, top = sys.argv[1], sys.argv[2]
with tarfile.open(path, "r:gz") as t:
    members = t.getmembers()
    names = [m.name for m in members]
    bad = [n for n in names if n != top and not n.startswith(top + "/")]
    assert not bad, "outside the top folder: %r" % bad
    files = {}
    for m in members:
        assert m.isfile() or m.isdir(), "unexpected member type: %r" % m.name
        if m.isfile():
            files[m.name[len(top) + 1:]] = hashlib.sha256(t.extractfile(m).read()).hexdigest()
    manifest = {}
    for line in t.extractfile(top + "/MANIFEST.sha256").read().decode("utf-8", "surrogateescape").split("\n"):
        if not line:
            continue
        if line.startswith("\\"):
            line = line[1:]
            name = line[66:].replace("\\\\", "\0").replace("\\n", "\n").replace("\\r", "\r").replace("\0", "\\")
        else:
            name = line[66:]
        manifest[name] = line[:64]
    del files["MANIFEST.sha256"]
    assert files == manifest, (files, manifest)
    print(len(files))
"#;

// ---------------------------------------------------------------------------------
// The archive

#[test]
fn archive_is_byte_exact_one_folder_0600_and_readable_by_tar_gzip_python_sha256sum() {
    let t = Tree::new("archive");
    let out = t.run_env(&[("SERVICES", "neopro-app nginx")], &["run"]);
    out.expect_code(0, "run");
    let names = archives(&t.backups);
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    let top = stem(name);
    let path = t.archive_path(name);
    assert!(
        out.stdout.contains(name.as_str()),
        "run names its archive\n{out}"
    );
    assert!(
        temp_files(&t.backups).is_empty(),
        "{:?}",
        names_in(&t.backups)
    );

    let mode = fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777);
    assert_eq!(
        mode.ok(),
        Some(0o600),
        "the archive holds secrets: mode 0600"
    );

    assert!(gzip_ok(&path), "gzip -t fails on {name}");

    // GNU tar: exactly one top folder named like the archive, exactly the expected files.
    let list = tar_list(&path);
    assert_eq!(
        top_folders(&list),
        BTreeSet::from([top.to_string()]),
        "{list:?}"
    );
    let mut expected: BTreeSet<String> =
        ARCHIVE_FILES.iter().map(|f| format!("{top}/{f}")).collect();
    expected.insert(format!("{top}/"));
    let got: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(got, expected);
    assert_eq!(
        list[0],
        format!("{top}/"),
        "the folder comes first (restore-club.sh)"
    );

    // Extracted: byte-exact copies, and sha256sum -c passes inside the folder.
    let dest = extract(&path, &t.root.join("extracted"));
    assert_eq!(names_in(&dest), [top]);
    let folder = dest.join(top);
    for (inner, want) in [
        ("configuration.json", CONFIGURATION_JSON),
        ("sync-agent.env", SYNC_AGENT_ENV),
        ("site.conf", SITE_CONF),
    ] {
        let got = fs::read(folder.join(inner)).unwrap_or_default();
        assert!(got == want, "{inner} is not a byte-exact copy: {got:?}");
    }
    let manifest = fs::read_to_string(folder.join("MANIFEST.sha256")).unwrap_or_default();
    let listed: BTreeSet<&str> = manifest.lines().map(|l| l.get(66..).unwrap_or(l)).collect();
    let others: BTreeSet<&str> = ARCHIVE_FILES[1..].iter().copied().collect();
    assert_eq!(
        listed, others,
        "one manifest line per other file:\n{manifest}"
    );
    let check = sha256sum_check(&folder);
    assert_eq!(check.stdout.matches(": OK").count(), 5, "{check}");

    // system-info.txt: hostname, uptime, disk use, the state of each service.
    let info = fs::read_to_string(folder.join("system-info.txt")).unwrap_or_default();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert!(info.contains(host.trim()), "hostname missing:\n{info}");
    assert!(info.contains("uptime"), "{info}");
    assert!(
        info.contains(&t.neopro.display().to_string()),
        "disk use of NEOPRO_DIR:\n{info}"
    );
    assert!(info.contains("service neopro-app: unknown"), "{info}");
    assert!(info.contains("service nginx: unknown"), "{info}");
    assert!(
        !info.contains("neopro-sync-agent"),
        "SERVICES was honoured:\n{info}"
    );

    // Python's tarfile reads it, and its hashes agree with the manifest.
    let py = python(PY_CHECK, &[path.as_os_str(), top.as_ref()]);
    py.expect_code(0, "python tarfile");
    assert_eq!(py.stdout.trim(), "5");
    let py = python(
        "import sys,tarfile; t=tarfile.open(sys.argv[1]); sys.stdout.write(t.extractfile(sys.argv[2]).read().hex())",
        &[
            path.as_os_str(),
            format!("{top}/configuration.json").as_ref(),
        ],
    );
    py.expect_code(0, "python extractfile");
    let hex: String = CONFIGURATION_JSON
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(py.stdout, hex);

    // Our own verify agrees, by name and by path.
    verify(&t, name.as_ref()).expect_code(0, "verify by name");
    verify(&t, path.as_os_str()).expect_code(0, "verify by path");
}

#[test]
fn include_videos_puts_every_video_byte_exact_in_the_archive() {
    let t = Tree::new("with-videos");
    // Hostile names, a name that is not UTF-8, and a path over tar's 100-byte field.
    let long = format!(
        "{}/{}.mp4",
        "nested-folder".repeat(6),
        "long-name-".repeat(10)
    );
    let extra: [&[u8]; 5] = [
        b"odd name\twith tab.mp4",
        b"car\rriage.avi",
        b"odd\nnewline\\slash.MOV",
        b"raw\xffbyte.mkv",
        long.as_bytes(),
    ];
    for rel in extra {
        t.add_video(rel, 100 + rel.len() as u64, BASE_MTIME);
    }
    let name = t.backup(&[("INCLUDE_VIDEOS", "true")]);
    let path = t.archive_path(&name);
    let top = stem(&name);
    assert!(gzip_ok(&path));
    let list = tar_list(&path);
    assert_eq!(
        top_folders(&list),
        BTreeSet::from([top.to_string()]),
        "{list:?}"
    );
    let folder = extract(&path, &t.root.join("x")).join(top);
    let mut rels: Vec<&[u8]> = VIDEOS.iter().map(|(r, _)| r.as_bytes()).collect();
    rels.extend(extra);
    for rel in &rels {
        let src = fs::read(t.videos().join(OsStr::from_bytes(rel))).unwrap_or_default();
        let copy = fs::read(folder.join("videos").join(OsStr::from_bytes(rel)));
        assert!(
            copy.ok().as_deref() == Some(&src[..]),
            "video {:?} not copied byte-exact",
            String::from_utf8_lossy(rel)
        );
    }
    for rel in NON_VIDEOS {
        assert!(
            !folder.join("videos").join(rel).exists(),
            "{rel} is not a video"
        );
    }
    let check = sha256sum_check(&folder);
    assert_eq!(
        check.stdout.matches(": OK").count(),
        5 + rels.len(),
        "{check}"
    );
    let py = python(PY_CHECK, &[path.as_os_str(), top.as_ref()]);
    py.expect_code(0, "python tarfile");
    assert_eq!(py.stdout.trim(), (5 + rels.len()).to_string());
    verify(&t, name.as_ref()).expect_code(0, "verify");
}

#[test]
fn inventory_lists_videos_sorted_with_size_iso_mtime_and_escaped_paths() {
    let t = Tree::new("inventory");
    // (raw name, size, mtime, the path as the inventory must print it). The expected
    // text is written out by hand (not computed by a copy of the escaping code): `\`
    // `\t` `\n` `\r` by name, `\xHH` for the bytes of any other control character (C0,
    // DEL, C1 such as U+0085 and U+009B) and for bytes that are not UTF-8.
    let hostile: [(&[u8], u64, i64, &str); 8] = [
        (
            b"bad\tname\nwith newline.mp4",
            77,
            1_600_000_000,
            r"bad\tname\nwith newline.mp4",
        ),
        (b"back\\slash.AVI", 12, 1_500_000_000, r"back\\slash.AVI"),
        (
            b"caf\xc3\xa9 \xc3\xa9t\xc3\xa9.mov",
            5,
            1_400_000_000,
            "café été.mov",
        ),
        (
            b"Match/raw\xffbyte\r.mkv",
            9,
            1_300_000_000,
            r"Match/raw\xffbyte\r.mkv",
        ),
        (
            b"esc\x1b[31mred\x07bell.mp4",
            3,
            1_200_000_000,
            r"esc\x1b[31mred\x07bell.mp4",
        ),
        (
            b"del\x7fnel\xc2\x85csi\xc2\x9b.MP4",
            4,
            1_100_000_000,
            r"del\x7fnel\xc2\x85csi\xc2\x9b.MP4",
        ),
        (b"\x01start.mkv", 6, 1_000_000_000, r"\x01start.mkv"),
        // A name that only looks like an escape stays distinguishable from one.
        (b"fake\\x41.avi", 8, 900_000_000, r"fake\\x41.avi"),
    ];
    for (rel, size, mtime, _) in hostile {
        t.add_video(rel, size, mtime);
    }
    let name = t.backup(&[]);
    let text = read_member(
        &t.archive_path(&name),
        &format!("{}/videos-inventory.txt", stem(&name)),
    );
    let text = String::from_utf8(text).unwrap_or_else(|e| panic!("inventory is not UTF-8: {e}"));

    // Sorted by the path's bytes.
    let mut want: Vec<(Vec<u8>, u64, i64, String)> = VIDEOS
        .iter()
        .enumerate()
        .map(|(i, (rel, size))| {
            (
                rel.as_bytes().to_vec(),
                *size,
                BASE_MTIME + 1000 * i as i64,
                rel.to_string(),
            )
        })
        .chain(
            hostile
                .iter()
                .map(|(r, s, m, shown)| (r.to_vec(), *s, *m, shown.to_string())),
        )
        .collect();
    want.sort();
    let mut expected = String::new();
    for (_, size, mtime, shown) in &want {
        expected.push_str(&format!("{size}\t{}\t{shown}\n", iso_utc(*mtime)));
    }
    let (header, body) = text.split_once('\n').unwrap_or_default();
    assert!(header.starts_with('#'), "a `#` header line first:\n{text}");
    assert_eq!(body, expected, "inventory content or order is wrong");
    for line in body.lines() {
        assert_eq!(line.split('\t').count(), 3, "one record per line: {line:?}");
        assert!(
            !line.split('\t').any(|f| f.chars().any(char::is_control)),
            "a control character reached the inventory: {line:?}"
        );
    }
    assert!(!text.contains("thumbnails") && !text.contains(".part") && !text.contains("notes"));
}

// ---------------------------------------------------------------------------------
// Status and exit codes

fn assert_fresh_timestamp(ts: &str, before: i64, after: i64) {
    let (lo, hi) = (iso_utc(before - 1), iso_utc(after + 1));
    assert!(
        lo.as_str() <= ts && ts <= hi.as_str(),
        "timestamp {ts} not within [{lo}, {hi}]"
    );
}

#[test]
fn status_after_success_has_every_field() {
    let t = Tree::new("status-ok");
    let before = now_unix();
    let first = t.backup(&[("RETENTION_DAYS", "5")]);
    let started = std::time::Instant::now();
    let second = t.backup(&[("RETENTION_DAYS", "5")]);
    let wall_ms = started.elapsed().as_millis() as u64;
    let after = now_unix();
    assert_ne!(first, second, "two runs never share a name");
    let st = t.status();
    for key in [
        "timestamp",
        "date",
        "success",
        "archive",
        "size",
        "size_bytes",
        "backups_count",
        "retention_days",
        "duration_ms",
        "warnings",
        "error",
    ] {
        assert!(st.try_get(key).is_some(), "status lacks {key}: {st:?}");
    }
    let ts = st.get("timestamp").str();
    assert_fresh_timestamp(ts, before, after);
    assert_eq!(st.get("date").str(), &ts[..10]);
    assert!(st.get("success").bool());
    assert_eq!(st.get("archive").str(), second);
    let size = fs::metadata(t.archive_path(&second))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(st.get("size_bytes").u64(), size);
    let human = st.get("size").str();
    let (num, unit) = human.split_once(' ').unwrap_or_default();
    assert!(
        ["B", "KB", "MB"].contains(&unit) && num.parse::<f64>().is_ok(),
        "size {human:?}"
    );
    assert_eq!(st.get("backups_count").u64(), 2);
    assert_eq!(st.get("retention_days").u64(), 5);
    // The run's own duration: what its log line says, and no more than the process took.
    let ms = st.get("duration_ms").u64();
    assert!(
        ms <= wall_ms,
        "duration_ms {ms} > the {wall_ms} ms the process took"
    );
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    let done = log
        .lines()
        .rfind(|l| l.contains(&format!("backup done: {second}")))
        .unwrap_or_else(|| panic!("no 'backup done' line:\n{log}"));
    assert!(done.contains(&format!(", {ms} ms,")), "{done} vs {ms}");
    assert!(st.get("warnings").arr().is_empty(), "{st:?}");
    assert!(st.get("error").is_null());

    // `status --json` prints the same document; `status` says it in words.
    let out = t.run(&["status", "--json"]);
    out.expect_code(0, "status --json");
    assert_eq!(parse_json(out.stdout.trim()).ok(), Some(st.clone()));
    let out = t.run(&["status"]);
    out.expect_code(0, "status");
    assert!(
        out.stdout.contains(&second) && out.stdout.contains("success"),
        "{out}"
    );

    // backup.log: one line per event.
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert_eq!(log.matches("backup started").count(), 2, "{log}");
    assert!(log.contains(&format!("backup done: {second}")), "{log}");
}

#[test]
fn status_after_failure_records_the_error_and_run_exits_1() {
    let t = Tree::new("status-fail");
    let good = t.backup(&[]);
    let previous = t.status().get("timestamp").str().to_string();
    // Make the run fail: the lock file cannot be opened.
    let lock = t.backups.join(".backup.lock");
    let _ = fs::remove_file(&lock);
    fs::create_dir(&lock).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let before = now_unix();
    let out = t.run(&["run"]);
    let after = now_unix();
    out.expect_code(1, "a failed run");
    assert!(out.stderr.contains("lock"), "the reason is given\n{out}");

    let st = t.status();
    assert!(!st.get("success").bool());
    assert!(st.get("archive").is_null(), "{st:?}");
    assert!(st.get("size_bytes").is_null(), "{st:?}");
    let err = st.get("error").str();
    assert!(err.contains(".backup.lock"), "{err}");
    assert_fresh_timestamp(st.get("timestamp").str(), before, after);
    assert_eq!(st.get("backups_count").u64(), 1);
    assert_eq!(st.get("last_success").str(), previous);
    assert_eq!(archives(&t.backups), [good.as_str()]);
    verify(&t, good.as_ref()).expect_code(0, "the earlier archive");

    let out = t.run(&["check"]);
    out.expect_code(2, "check after a failure");
    assert!(
        out.stdout.starts_with("CRITICAL:") && out.stdout.contains("failed"),
        "{out}"
    );
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(log.contains("[ERROR]"), "{log}");
}

#[test]
fn exit_codes_for_usage_help_and_version() {
    let t = Tree::new("usage");
    for args in [
        &[][..],
        &["frobnicate"],
        &["run", "extra"],
        &["verify"],
        &["verify", "a", "b"],
        // (`check`'s usage errors are UNKNOWN, exit 3, on stdout: tests/it/field.rs.)
        &["list", "--bogus"],
    ] {
        let out = t.run(args);
        out.expect_code(2, &format!("{args:?}"));
        assert!(
            !out.stderr.trim().is_empty(),
            "{args:?}: a message on stderr"
        );
    }
    let out = t.run(&["--help"]);
    out.expect_code(0, "--help");
    assert!(
        out.stdout.contains("verify") && out.stdout.contains("check"),
        "{out}"
    );
    let out = t.run(&["--version"]);
    out.expect_code(0, "--version");
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")), "{out}");
    // The flag form of run works too.
    t.run(&["--run"]).expect_code(0, "--run");
    assert_eq!(archives(&t.backups).len(), 1);
}

/// The keys of README.md's configuration table (its first column; `A, B` is two keys).
fn readme_config_keys() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = text
        .split_once("\n### Configuration\n")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("README.md has no ### Configuration section"));
    let rows = section
        .lines()
        .skip_while(|l| !l.starts_with("| key |"))
        .skip(2) // the head and the |---| line
        .take_while(|l| l.starts_with('|'));
    let mut keys = BTreeSet::new();
    for row in rows {
        let first = row.split('|').nth(1).unwrap_or("");
        for key in first.split(',').map(str::trim) {
            // A key written otherwise (backticks, lower case) would be missed silently.
            assert!(
                !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "README.md's configuration table: {key:?} in {row:?} is not a bare KEY"
            );
            keys.insert(key.to_string());
        }
    }
    keys
}

/// The keys `--help` names: every `KEY=` in the lines after the "Configuration keys"
/// heading (whose own `KEY=VALUE` is not a key).
fn help_config_keys(help: &str) -> BTreeSet<String> {
    let (_, section) = help
        .split_once("Configuration keys")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .unwrap_or_else(|| panic!("--help has no \"Configuration keys\":\n{help}"));
    let mut keys = BTreeSet::new();
    let mut word = String::new();
    for c in section.chars() {
        if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
            word.push(c);
        } else {
            if c == '=' && !word.is_empty() {
                keys.insert(word.clone());
            }
            word.clear();
        }
    }
    keys
}

#[test]
fn help_lists_every_key_of_the_readme_table_and_no_other() {
    let readme = readme_config_keys();
    assert!(readme.len() >= 20, "README.md's table read as {readme:?}");
    let out = Tree::new("help-keys").run(&["--help"]);
    out.expect_code(0, "--help");
    let help = help_config_keys(&out.stdout);
    let not_in_help: Vec<_> = readme.difference(&help).collect();
    let not_in_readme: Vec<_> = help.difference(&readme).collect();
    assert!(
        not_in_help.is_empty() && not_in_readme.is_empty(),
        "keys of README.md's table missing from --help: {not_in_help:?}; \
         keys of --help missing from README.md's table: {not_in_readme:?}"
    );
}

// ---------------------------------------------------------------------------------
// Configuration

/// One bad value per key of docs/format.md, Configuration (several for some).
const BAD_VALUES: &[(&str, &str)] = &[
    ("NEOPRO_DIR", "relative/neopro"),
    ("NEOPRO_DIR", ""),
    ("BACKUP_DIR", "backups"),
    ("SITE_CONF", "site.conf"),
    ("RETENTION_DAYS", "seven"),
    ("RETENTION_DAYS", "0"),
    ("RETENTION_DAYS", "-3"),
    ("RETENTION_DAYS", "7d"),
    ("BACKUP_TIME", "25:00"),
    ("BACKUP_TIME", "3h"),
    ("BACKUP_TIME", "03:60"),
    ("LISTEN", "localhost"),
    ("LISTEN", "127.0.0.1:99999"),
    ("API_TOKEN", "short secret"),
    ("INCLUDE_VIDEOS", "maybe"),
    ("SERVICES", "nginx;reboot"),
];

fn assert_rejected(t: &Tree, out: &Out, key: &str, value: &str, how: &str) {
    out.expect_code(2, &format!("{key}={value:?} via {how}"));
    assert!(
        out.stderr.contains(key),
        "{key}={value:?} via {how}: the key is named\n{out}"
    );
    if key == "API_TOKEN" {
        assert!(
            !out.stderr.contains(value),
            "a secret is never echoed\n{out}"
        );
    } else {
        assert!(
            out.stderr.contains(&format!("{value:?}")),
            "{key}={value:?} via {how}: the value is named\n{out}"
        );
        assert!(
            out.stderr.contains("expected"),
            "{key}={value:?} via {how}: what is expected\n{out}"
        );
    }
    assert!(
        archives(&t.backups).is_empty(),
        "no backup with a bad configuration"
    );
    assert!(!t.backups.join("last-backup-status.json").exists());
}

#[test]
fn bad_config_values_in_the_environment_are_exit_2_naming_key_and_value() {
    let t = Tree::new("bad-env");
    for (key, value) in BAD_VALUES {
        let out = t.run_env(&[(key, value)], &["run"]);
        assert_rejected(&t, &out, key, value, "the environment");
    }
}

#[test]
fn bad_config_values_in_the_config_file_are_exit_2_naming_key_and_value() {
    let t = Tree::new("bad-file");
    for (key, value) in BAD_VALUES {
        write_file(
            &t.config_file,
            format!("# a config file\n{key}=\"{value}\"\n").as_bytes(),
        );
        let mut c = t.command(&["run"]);
        c.env_remove(key);
        let out = output(&mut c);
        assert_rejected(&t, &out, key, value, "the config file");
    }
    // Lines that are not KEY=VALUE name the file and the line.
    for bad in ["JUSTAWORD\n", "RETENTION_DAYS=\"7\n", "BAD KEY=1\n"] {
        write_file(&t.config_file, format!("# ok\n{bad}").as_bytes());
        let out = t.run(&["run"]);
        out.expect_code(2, bad);
        let cfg = t.config_file.display().to_string();
        assert!(
            out.stderr.contains(&format!("{cfg}:2")),
            "{bad:?}: file and line named\n{out}"
        );
    }
    assert!(archives(&t.backups).is_empty());
}

#[test]
fn missing_config_file_given_with_dash_dash_config_is_exit_2() {
    let t = Tree::new("missing-config");
    let missing = t.root.join("etc/no-such.conf");
    let out = output(&mut t.command_with_config(Some(&missing), &["run"]));
    out.expect_code(2, "--config of a missing file");
    assert!(out.stderr.contains(&missing.display().to_string()), "{out}");
    assert!(archives(&t.backups).is_empty());
    // A folder is not a config file either.
    let out = output(&mut t.command_with_config(Some(&t.root), &["run"]));
    out.expect_code(2, "--config of a folder");
}

#[test]
fn config_file_values_are_used_and_the_environment_wins() {
    let t = Tree::new("config-file");
    write_file(
        &t.config_file,
        format!(
            "# neopro-backup\nexport NEOPRO_DIR='{}'\nRETENTION_DAYS=\"9\"\n\nINCLUDE_VIDEOS=yes\nSERVICES=\"svc-a svc-b\"\n",
            t.neopro.display()
        )
        .as_bytes(),
    );
    let mut c = t.command(&["run"]);
    c.env_remove("NEOPRO_DIR");
    output(&mut c).expect_code(0, "run with values from the file");
    let st = t.status();
    assert_eq!(st.get("retention_days").u64(), 9);
    let name = st.get("archive").str().to_string();
    let list = tar_list(&t.archive_path(&name));
    assert!(
        list.contains(&format!("{}/configuration.json", stem(&name))),
        "{list:?}"
    );
    assert!(
        list.contains(&format!("{}/videos/promo.mp4", stem(&name))),
        "INCLUDE_VIDEOS=yes\n{list:?}"
    );
    let info = read_member(
        &t.archive_path(&name),
        &format!("{}/system-info.txt", stem(&name)),
    );
    assert!(String::from_utf8_lossy(&info).contains("service svc-b: unknown"));

    t.backup(&[("RETENTION_DAYS", "4"), ("INCLUDE_VIDEOS", "false")]);
    let st = t.status();
    assert_eq!(st.get("retention_days").u64(), 4, "the environment wins");
    let list = tar_list(&t.archive_path(st.get("archive").str()));
    assert!(!list.iter().any(|n| n.contains("/videos/")), "{list:?}");
}

#[test]
fn missing_sources_are_warnings_and_the_backup_still_succeeds() {
    let t = Tree::new("missing-sources");
    fs::remove_file(t.sync_agent_env()).unwrap_or_else(|e| panic!("{e}"));
    fs::remove_file(&t.site_conf).unwrap_or_else(|e| panic!("{e}"));
    fs::remove_dir_all(t.videos()).unwrap_or_else(|e| panic!("{e}"));
    let out = t.run(&["run"]);
    out.expect_code(0, "run with missing sources");
    assert!(out.stdout.contains("warning"), "{out}");
    let st = t.status();
    assert!(st.get("success").bool());
    assert!(st.get("error").is_null());
    let warnings: Vec<&str> = st.get("warnings").arr().iter().map(Json::str).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.contains("sync-agent")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("site.conf")),
        "{warnings:?}"
    );

    let name = st.get("archive").str().to_string();
    let top = stem(&name);
    let list: BTreeSet<String> = tar_list(&t.archive_path(&name)).into_iter().collect();
    let expected: BTreeSet<String> = [
        format!("{top}/"),
        format!("{top}/configuration.json"),
        format!("{top}/videos-inventory.txt"),
        format!("{top}/system-info.txt"),
        format!("{top}/MANIFEST.sha256"),
    ]
    .into_iter()
    .collect();
    assert_eq!(list, expected);
    let folder = extract(&t.archive_path(&name), &t.root.join("x")).join(top);
    assert_eq!(sha256sum_check(&folder).stdout.matches(": OK").count(), 3);
    let inv = fs::read_to_string(folder.join("videos-inventory.txt")).unwrap_or_default();
    assert_eq!(inv.lines().count(), 1, "only the header:\n{inv}");
    verify(&t, name.as_ref()).expect_code(0, "verify");

    // Nothing at all: still a (nearly empty) backup, three warnings.
    fs::remove_dir_all(&t.neopro).unwrap_or_else(|e| panic!("{e}"));
    t.run(&["run"]).expect_code(0, "run with no sources at all");
    assert_eq!(t.status().get("warnings").arr().len(), 3);
}

// ---------------------------------------------------------------------------------
// Retention

/// A planted archive: retention counts a file as an archive only when it starts with the
/// gzip magic (docs/format.md, Retention).
const PLANTED: &[u8] = b"\x1f\x8b planted";

#[test]
fn retention_removes_old_keeps_future_and_never_the_newest_three() {
    let t = Tree::new("retention");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    // An archive of an hour ago: without one, this run's clock would be decades ahead of
    // the newest earlier archive, and such a run deletes nothing (docs/format.md, Retention).
    let recent = name_at(now_unix() - 3600);
    write_file(&t.backups.join(&recent), PLANTED);
    let planted = [
        "backup-20200101-030000.tar.gz",
        "backup-20200102-030000.tar.gz",
        "backup-20200103-030000.tar.gz",
        "backup-20990101-030000.tar.gz",
    ];
    let bystanders = [
        "notes.txt",
        "backup-2020.tar.gz",
        "backup-20200101-030000.tar.gz.bak",
    ];
    for n in planted.iter() {
        write_file(&t.backups.join(n), PLANTED);
    }
    for n in bystanders.iter() {
        write_file(&t.backups.join(n), b"planted");
    }
    let first = t.backup(&[]);
    // Newest three by the time in the name: 2099, the new one, the one of an hour ago.
    let mut want = vec![
        first.clone(),
        recent.clone(),
        "backup-20990101-030000.tar.gz".to_string(),
    ];
    want.sort();
    assert_eq!(archives(&t.backups), want);
    assert_eq!(t.status().get("backups_count").u64(), 3);
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(
        log.contains("backup-20200101-030000.tar.gz"),
        "removals are logged:\n{log}"
    );

    let second = t.backup(&[]);
    let mut want = vec![
        first,
        second,
        recent,
        "backup-20990101-030000.tar.gz".to_string(),
    ];
    want.sort();
    assert_eq!(
        archives(&t.backups),
        want,
        "the future-dated archive is kept"
    );
    for b in bystanders {
        assert!(
            t.backups.join(b).exists(),
            "{b} is not an archive: never removed"
        );
    }

    // Four future-dated archives (made while the clock said 2099): the oldest of them is
    // not among the newest three, yet it is not "older than 7 days" either: kept.
    let t = Tree::new("retention-future");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let future = [
        "backup-20990101-030000.tar.gz",
        "backup-20990102-030000.tar.gz",
        "backup-20990103-030000.tar.gz",
        "backup-20990104-030000.tar.gz",
    ];
    let recent = name_at(now_unix() - 3600);
    for n in future
        .iter()
        .chain(&["backup-20200101-030000.tar.gz", recent.as_str()])
    {
        write_file(&t.backups.join(n), PLANTED);
    }
    let made = t.backup(&[]);
    let mut want: Vec<String> = future.iter().map(|s| s.to_string()).collect();
    want.push(made);
    want.push(recent);
    want.sort();
    assert_eq!(
        archives(&t.backups),
        want,
        "old one removed, future and new kept"
    );
}

#[test]
fn retention_honours_retention_days_and_keeps_at_least_three() {
    // Fewer than three archives: even very old ones stay.
    let t = Tree::new("retention-min");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    for n in [
        "backup-19990101-000000.tar.gz",
        "backup-20000101-000000.tar.gz",
    ] {
        write_file(&t.backups.join(n), PLANTED);
    }
    let made = t.backup(&[("RETENTION_DAYS", "1")]);
    let mut want = vec![
        made,
        "backup-19990101-000000.tar.gz".to_string(),
        "backup-20000101-000000.tar.gz".to_string(),
    ];
    want.sort();
    assert_eq!(archives(&t.backups), want);

    // RETENTION_DAYS=4 with archives 1, 2, 3, 5 and 9 days old.
    let t = Tree::new("retention-days");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let now = now_unix();
    let aged: Vec<String> = [1, 2, 3, 5, 9]
        .iter()
        .map(|d| name_at(now - d * 86_400))
        .collect();
    for n in &aged {
        write_file(&t.backups.join(n), PLANTED);
    }
    let made = t.backup(&[("RETENTION_DAYS", "4")]);
    let mut want = vec![made, aged[0].clone(), aged[1].clone(), aged[2].clone()];
    want.sort();
    assert_eq!(archives(&t.backups), want, "5 and 9 days old are removed");
}

// ---------------------------------------------------------------------------------
// Concurrency, crashes, full and read-only disks

#[test]
fn four_concurrent_runs_make_four_distinct_archives_that_all_verify() {
    let t = Tree::new("concurrent");
    let children: Vec<_> = (0..4)
        .map(|_| {
            t.command(&["run"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn: {e}"))
        })
        .collect();
    let outs: Vec<Out> = children
        .into_iter()
        .map(|c| wait_output(c, "run"))
        .collect();
    let mut reported = BTreeSet::new();
    for out in &outs {
        out.expect_code(0, "a concurrent run");
        let name = out
            .stdout
            .split(|c: char| c == '/' || c.is_whitespace())
            .find(|w| is_archive_name(w))
            .unwrap_or_else(|| panic!("no archive named\n{out}"));
        reported.insert(name.to_string());
    }
    let found = archives(&t.backups);
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(reported, found.iter().cloned().collect::<BTreeSet<_>>());
    assert!(
        temp_files(&t.backups).is_empty(),
        "stray temp files: {:?}",
        names_in(&t.backups)
    );
    for name in &found {
        verify(&t, name.as_ref()).expect_code(0, name);
        assert!(gzip_ok(&t.archive_path(name)));
    }
    let st = t.status();
    assert!(st.get("success").bool());
    assert_eq!(st.get("backups_count").u64(), 4);
    assert_eq!(
        Some(st.get("archive").str()),
        found.last().map(String::as_str)
    );
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert_eq!(log.matches("backup done").count(), 4, "{log}");
}

#[test]
fn full_disk_fails_cleanly_and_keeps_earlier_archives() {
    if !need_root("full_disk_fails_cleanly_and_keeps_earlier_archives") {
        return;
    }
    let t = Tree::new("full-disk");
    let _mnt = Tmpfs::mount(&t.backups, 2 << 20, "");
    let first = t.backup(&[]);
    let first_bytes = fs::read(t.archive_path(&first)).unwrap_or_default();
    // Videos bigger than the free space (random, so gzip cannot shrink them).
    let free = free_bytes(&t.backups);
    t.add_video(b"big/match.mp4", free + (512 << 10), BASE_MTIME);

    let out = t.run_env(&[("INCLUDE_VIDEOS", "true")], &["run"]);
    out.expect_code(1, "a run on a full disk");
    assert!(
        out.stderr.contains("space"),
        "the message says the disk is full\n{out}"
    );
    let st = t.status();
    assert!(!st.get("success").bool());
    assert!(st.get("archive").is_null());
    assert!(st.get("error").str().contains("no space left"), "{st:?}");
    assert_eq!(st.get("backups_count").u64(), 1);
    assert!(
        temp_files(&t.backups).is_empty(),
        "partial file left: {:?}",
        names_in(&t.backups)
    );
    assert_eq!(
        archives(&t.backups),
        [first.as_str()],
        "no partial archive under a final name"
    );
    assert!(
        fs::read(t.archive_path(&first)).unwrap_or_default() == first_bytes,
        "earlier archive changed"
    );
    verify(&t, first.as_ref()).expect_code(0, "the earlier archive");
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(log.contains("backup failed"), "{log}");
    let out = t.run(&["check"]);
    out.expect_code(2, "check after a failure");

    // Once there is room again, the next run succeeds.
    fs::remove_file(t.videos().join("big/match.mp4")).unwrap_or_else(|e| panic!("{e}"));
    let second = t.backup(&[("INCLUDE_VIDEOS", "true")]);
    t.run(&["check"]).expect_code(0, "check after a success");

    // Completely full (something else ate the last byte): not even a temp file fits.
    // Still exit 1, a message about space, the failure recorded, nothing left behind.
    let filler = t.backups.join("filler.bin");
    let mut f = fs::File::create(&filler).unwrap_or_else(|e| panic!("{e}"));
    let chunk = vec![0u8; 64 << 10];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    assert_eq!(free_bytes(&t.backups), 0);
    let out = t.run(&["run"]);
    out.expect_code(1, "a run on a disk with 0 bytes free");
    assert!(out.stderr.contains("space"), "{out}");
    let st = t.status();
    assert!(!st.get("success").bool(), "the failure is recorded: {st:?}");
    assert!(st.get("error").str().contains("no space left"), "{st:?}");
    assert!(
        temp_files(&t.backups).is_empty(),
        "{:?}",
        names_in(&t.backups)
    );
    assert_eq!(archives(&t.backups), [first.clone(), second.clone()]);
    for name in [&first, &second] {
        verify(&t, name.as_ref()).expect_code(0, name);
    }
    t.run(&["check"]).expect_code(2, "check after the failure");
}

#[test]
fn read_only_backup_dir_is_a_failed_run_with_a_clear_message() {
    if !need_root("read_only_backup_dir_is_a_failed_run_with_a_clear_message") {
        return;
    }
    let t = Tree::new("read-only");
    let mnt = Tmpfs::mount(&t.backups, 4 << 20, "");
    let first = t.backup(&[]);
    mnt.remount_ro();
    let out = t.run(&["run"]);
    out.expect_code(1, "a run on a read-only BACKUP_DIR");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert_eq!(archives(&t.backups), [first.as_str()]);
    verify(&t, first.as_ref()).expect_code(0, "the earlier archive");
}

#[test]
fn kill_9_mid_run_leaves_no_incomplete_final_archive_and_the_next_run_cleans_up() {
    let t = Tree::new("kill-9");
    let first = t.backup(&[]);
    // 96 MiB of incompressible video: a run takes well over a second.
    for i in 0..12u64 {
        t.add_video(
            format!("long/part{i:02}.mp4").as_bytes(),
            8 << 20,
            BASE_MTIME,
        );
    }
    let mut child = t
        .command(&["run"])
        .env("INCLUDE_VIDEOS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let temp = loop {
        // Kill once the temp archive holds more than the config files: mid-stream.
        let big_temp = temp_files(&t.backups).into_iter().find(|n| {
            n.starts_with(".tmp-backup-")
                && fs::metadata(t.backups.join(n)).is_ok_and(|m| m.len() > 1 << 20)
        });
        if let Some(n) = big_temp {
            break n;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the run ended ({st:?}) before it could be killed: give it more video data");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no temp archive appeared: {:?}", names_in(&t.backups));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let st = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(
        st.signal(),
        Some(9),
        "the run was killed, not finished: {st:?}"
    );

    assert!(
        t.backups.join(&temp).exists(),
        "the killed run left its temp file"
    );
    for name in archives(&t.backups) {
        verify(&t, name.as_ref()).expect_code(0, &format!("final-named {name} after kill -9"));
        assert!(gzip_ok(&t.archive_path(&name)), "{name}");
    }
    assert!(archives(&t.backups).contains(&first));

    let out = t.run(&["run"]);
    out.expect_code(0, "the run after a crash");
    assert!(out.stderr.contains(&temp), "the cleanup is logged\n{out}");
    assert!(
        temp_files(&t.backups).is_empty(),
        "leftover: {:?}",
        names_in(&t.backups)
    );
    for name in archives(&t.backups) {
        verify(&t, name.as_ref()).expect_code(0, &name);
    }
    assert!(t.status().get("success").bool());
}

// ---------------------------------------------------------------------------------
// verify and check

#[test]
fn verify_fails_on_corrupted_and_truncated_archives() {
    let t = Tree::new("verify-corrupt");
    t.add_video(b"random.mp4", 64 << 10, BASE_MTIME);
    let name = t.backup(&[("INCLUDE_VIDEOS", "true")]);
    let good = fs::read(t.archive_path(&name)).unwrap_or_default();
    let dir = t.root.join("copies");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));

    // A byte-exact copy under another name verifies (the control for what follows).
    let copy = dir.join("copy.tar.gz");
    write_file(&copy, &good);
    verify(&t, copy.as_os_str()).expect_code(0, "an intact copy");

    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 16] {
        *b ^= 0xA5;
    }
    variants.push(("flipped-middle".into(), flipped));
    for tenth in 1..10 {
        variants.push((
            format!("truncated-{tenth}0pc"),
            good[..good.len() * tenth / 10].to_vec(),
        ));
    }
    for cut in [1, 4, 8] {
        variants.push((
            format!("trailer-minus-{cut}"),
            good[..good.len() - cut].to_vec(),
        ));
    }
    variants.push(("empty".into(), Vec::new()));
    variants.push((
        "not-gzip".into(),
        b"hello, this is not an archive\n".to_vec(),
    ));
    for (label, bytes) in variants {
        let p = dir.join(format!("{label}.tar.gz"));
        write_file(&p, &bytes);
        assert!(!gzip_ok(&p), "{label}: the damage is real (gzip -t agrees)");
        let out = verify(&t, p.as_os_str());
        out.expect_code(1, &format!("verify of {label}"));
        assert!(out.stdout.contains("DAMAGED"), "{label}\n{out}");
    }
    let out = verify(&t, t.root.join("nope.tar.gz").as_os_str());
    out.expect_code(1, "verify of a missing file");
}

/// Builds test archives with Python's tarfile: folder `backup-20240101-000000/` with
/// `configuration.json` and a MANIFEST.sha256 tweaked per variant.
const PY_BUILD: &str = r##"
import hashlib, io, os, sys, tarfile
out = sys.argv[1]
top = "backup-20240101-000000"
conf = b'{"club": "test"}\n'
inv = b"# size_bytes\tmtime\tpath\n"
def sha(b): return hashlib.sha256(b).hexdigest()
def build(name, files, manifest, dirs=(top,)):
    with tarfile.open(os.path.join(out, name + ".tar.gz"), "w:gz") as t:
        for d in dirs:
            ti = tarfile.TarInfo(d); ti.type = tarfile.DIRTYPE; ti.mode = 0o700
            t.addfile(ti)
        entries = list(files.items())
        if manifest is not None:
            entries.append((top + "/MANIFEST.sha256", manifest.encode()))
        for path, data in entries:
            ti = tarfile.TarInfo(path); ti.size = len(data); ti.mode = 0o600
            t.addfile(ti, io.BytesIO(data))
good = {top + "/configuration.json": conf, top + "/videos-inventory.txt": inv}
good_manifest = "%s  configuration.json\n%s  videos-inventory.txt\n" % (sha(conf), sha(inv))
build("good", good, good_manifest)
build("wrong-hash", good, "%s  configuration.json\n%s  videos-inventory.txt\n" % (sha(b"other"), sha(inv)))
build("not-in-manifest", dict(good, **{top + "/extra.txt": b"x"}), good_manifest)
build("missing-file", {top + "/configuration.json": conf}, good_manifest)
build("no-manifest", good, None)
build("two-folders", dict(good, **{"other/file.txt": b"x"}), good_manifest, dirs=(top, "other"))
build("dot-dot", dict(good, **{top + "/../escape.txt": b"x"}), good_manifest)
"##;

#[test]
fn verify_fails_when_content_does_not_match_the_manifest() {
    let t = Tree::new("verify-manifest");
    let dir = t.root.join("py");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    python(PY_BUILD, &[dir.as_os_str()]).expect_code(0, "python build");
    let good = dir.join("good.tar.gz");
    let out = verify(&t, good.as_os_str());
    out.expect_code(0, "a well-formed archive built by Python (the control)");
    for variant in [
        "wrong-hash",
        "not-in-manifest",
        "missing-file",
        "no-manifest",
        "two-folders",
        "dot-dot",
    ] {
        let p = dir.join(format!("{variant}.tar.gz"));
        assert!(gzip_ok(&p), "{variant}: a readable gzip");
        let out = verify(&t, p.as_os_str());
        out.expect_code(1, &format!("verify of {variant}"));
        assert!(out.stdout.contains("DAMAGED"), "{variant}\n{out}");
    }
    let out = verify(&t, dir.join("wrong-hash.tar.gz").as_os_str());
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("FAILED") && l.ends_with("configuration.json")),
        "the bad file is named\n{out}"
    );
    // A renamed archive whose folder does not match its name is refused too.
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let renamed = t.backups.join("backup-20240102-000000.tar.gz");
    fs::copy(&good, &renamed).unwrap_or_else(|e| panic!("{e}"));
    verify(&t, "backup-20240102-000000.tar.gz".as_ref())
        .expect_code(1, "folder named unlike the archive");
}

fn write_status(t: &Tree, timestamp: &str, success: bool) {
    let (archive, error) = if success {
        ("\"backup-20200101-030000.tar.gz\"", "null")
    } else {
        ("null", "\"disk on fire\"")
    };
    let json = format!(
        "{{\"timestamp\":\"{timestamp}\",\"date\":\"{}\",\"success\":{success},\"archive\":{archive},\
         \"size\":\"1.0 KB\",\"size_bytes\":1024,\"backups_count\":1,\"retention_days\":7,\
         \"duration_ms\":5,\"warnings\":[],\"error\":{error}}}\n",
        &timestamp[..10]
    );
    write_file(&t.backups.join("last-backup-status.json"), json.as_bytes());
}

#[test]
fn check_says_ok_or_critical_with_exit_0_or_2() {
    let t = Tree::new("check");
    let out = t.run(&["check"]);
    out.expect_code(2, "check before any backup");
    assert!(out.stdout.starts_with("CRITICAL:"), "{out}");

    t.backup(&[]);
    let out = t.run(&["check"]);
    out.expect_code(0, "check after a fresh backup");
    assert!(out.stdout.starts_with("OK:"), "{out}");

    write_status(&t, "2020-01-01T03:00:00+00:00", true);
    let out = t.run(&["check"]);
    out.expect_code(2, "check with a success from 2020");
    assert!(out.stdout.starts_with("CRITICAL:"), "{out}");

    let thirty_hours_ago = iso_utc(now_unix() - 30 * 3600);
    write_status(&t, &thirty_hours_ago, true);
    t.run(&["check"]).expect_code(2, "30 h old, default 25 h");
    let out = t.run(&["check", "--max-age-hours", "48"]);
    out.expect_code(0, "30 h old, limit 48 h");
    assert!(out.stdout.starts_with("OK:"), "{out}");
    t.run(&["check", "--max-age-hours", "24"])
        .expect_code(2, "30 h old, limit 24 h");

    // Offsets other than UTC are understood: one hour ago in UTC+02:00 is fresh.
    let one_hour_ago = iso_utc(now_unix() - 3600 + 2 * 3600).replace("+00:00", "+02:00");
    write_status(&t, &one_hour_ago, true);
    t.run(&["check", "--max-age-hours", "2"])
        .expect_code(0, "1 h old, written in UTC+02:00");
    write_status(&t, "2020-01-01T03:00:00+01:00", true);
    t.run(&["check", "--max-age-hours", "8760"])
        .expect_code(2, "years old");

    // A success dated in the future (made while the Pi believed it was 2099) is not a
    // fresh backup: otherwise monitoring would stay green for 75 years.
    write_status(&t, "2099-01-01T03:00:00+00:00", true);
    let out = t.run(&["check"]);
    out.expect_code(2, "check with a success dated 2099");
    assert!(
        out.stdout.starts_with("CRITICAL:") && out.stdout.contains("future"),
        "{out}"
    );

    write_status(&t, &iso_utc(now_unix()), false);
    let out = t.run(&["check"]);
    out.expect_code(2, "check after a failed run");
    assert!(
        out.stdout.starts_with("CRITICAL:") && out.stdout.contains("disk on fire"),
        "{out}"
    );
}

#[test]
fn backup_log_gets_one_line_per_event_and_is_rotated_past_1_mib() {
    let t = Tree::new("log-rotation");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let old = "2020-01-01T03:00:00+00:00 [INFO] an old line\n".repeat(25_000);
    assert!(old.len() > 1 << 20);
    write_file(&t.backups.join("backup.log"), old.as_bytes());
    let name = t.backup(&[]);
    let rotated = fs::read_to_string(t.backups.join("backup.log.1")).unwrap_or_default();
    assert!(rotated == old, "the full log moved to backup.log.1");
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(!log.contains("an old line") && log.len() < 4096, "{log}");
    assert!(log.contains(&format!("backup done: {name}")), "{log}");
    for line in log.lines() {
        assert!(
            line.starts_with(&iso_utc(now_unix())[..4]) && line.contains(" ["),
            "one dated line per event: {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Promises checked end to end: a failed run and retention, `list --json`,
// `status --json`, /etc/localtime, two runs in one second, the log's 1 MiB boundary,
// BACKUP_DIR's mode.

/// Whether a root-only check can run here; when it cannot it says so, and fails in CI.
fn have_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} needs root, as CI has"
    );
    eprintln!("SKIPPED (not root): {what}");
    false
}

/// `count` real archives (bytes of a run made now) planted under older names, one a day
/// from 2020-01-01 on.
fn plant_old_archives(t: &Tree, count: usize) -> Vec<String> {
    let src = Tree::new("planted-source");
    let made = src.backup(&[]);
    let bytes = fs::read(src.archive_path(&made)).unwrap_or_else(|e| panic!("{e}"));
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    // Old ones 20, 19, 18… days ago, the last one a day ago: the clock is then within
    // 48 h of the newest archive, so retention's clock rule lets the age rule apply.
    let now = now_unix();
    let mut names: Vec<String> = (0..count)
        .map(|i| {
            let days_ago = if i + 1 == count { 1 } else { 20 - i as i64 };
            let iso = iso_utc(now - days_ago * 86_400);
            let digits: String = iso[..19].chars().filter(char::is_ascii_digit).collect();
            let name = format!("backup-{}-{}.tar.gz", &digits[..8], &digits[8..14]);
            write_file(&t.backups.join(&name), &bytes);
            name
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_run_removes_nothing_and_status_json_reports_it() {
    if !have_root("a full tmpfs for BACKUP_DIR") {
        return;
    }
    let t = Tree::new("fail-retention");
    let _mnt = Tmpfs::mount(&t.backups, 2 << 20, "");
    let old = plant_old_archives(&t, 4);
    // Videos bigger than the free space: the run fails on a full disk.
    let free = free_bytes(&t.backups);
    t.add_video(b"big/match.mp4", free + (256 << 10), BASE_MTIME);
    let out = t.run_env(&[("INCLUDE_VIDEOS", "true")], &["run"]);
    out.expect_code(1, "a run on a full disk");
    assert_eq!(
        archives(&t.backups),
        old,
        "retention runs only after a successful backup\n{out}"
    );
    // `status --json` is the status file, failure included.
    let out = t.run(&["status", "--json"]);
    out.expect_code(0, "status --json");
    let j = parse_json(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        j,
        t.status(),
        "status --json prints last-backup-status.json"
    );
    assert!(!j.get("success").bool());
    assert!(j.get("archive").is_null());
    assert!(j.get("error").str().contains("no space left"), "{j:?}");
    assert_eq!(j.get("error_code").str(), "disk_full", "{j:?}");
    assert_eq!(j.get("backups_count").u64(), 4);
    let out = t.run(&["status"]);
    out.expect_code(0, "status");
    assert!(out.stdout.contains("FAILED"), "{out}");
    assert!(
        out.stdout
            .contains("error:         La carte SD (ou le disque de sauvegarde) est pleine."),
        "{out}"
    );
    assert!(out.stdout.contains("detail:        "), "{out}");
    assert!(out.stdout.contains("no space left"), "{out}");

    // Room again: the run succeeds, and only then the old ones go (the newest three
    // stay: the new archive and the two newest planted ones).
    fs::remove_file(t.videos().join("big/match.mp4")).unwrap_or_else(|e| panic!("{e}"));
    let made = t.backup(&[]);
    let mut want = vec![old[2].clone(), old[3].clone(), made];
    want.sort();
    assert_eq!(archives(&t.backups), want);
    let j =
        parse_json(t.run(&["status", "--json"]).stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert!(j.get("success").bool() && j.get("error").is_null(), "{j:?}");
}

#[test]
fn list_json_lists_the_archives_newest_first_with_the_status() {
    let t = Tree::new("list-json");
    // Nothing yet: an empty list and no status.
    let out = t.run(&["list", "--json"]);
    out.expect_code(0, "list --json with no BACKUP_DIR yet");
    let j = parse_json(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(j.get("backups").arr().is_empty(), "{j:?}");
    assert!(j.get("status").is_null(), "{j:?}");
    assert_eq!((j.get("total").u64(), j.get("totalSize").u64()), (0, 0));

    let old = plant_old_archives(&t, 1).remove(0);
    let made = t.backup(&[]);
    let out = t.run(&["list", "--json"]);
    out.expect_code(0, "list --json");
    let j = parse_json(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(j.keys(), ["backups", "status", "total", "totalSize"]);
    let names: Vec<&str> = j
        .get("backups")
        .arr()
        .iter()
        .map(|b| b.get("name").str())
        .collect();
    assert_eq!(names, [made.as_str(), old.as_str()], "newest first");
    let mut total = 0;
    for b in j.get("backups").arr() {
        let name = b.get("name").str();
        assert_eq!(
            b.keys(),
            ["name", "size", "sizeBytes", "date", "created", "age"]
        );
        let size = fs::metadata(t.archive_path(name)).map_or(0, |m| m.len());
        assert_eq!(b.get("sizeBytes").u64(), size, "{name}");
        total += size;
        // The date is the local time in the name (TZ=UTC here).
        let d = &name[7..22];
        let want = format!(
            "{}-{}-{} {}:{}:{}",
            &d[..4],
            &d[4..6],
            &d[6..8],
            &d[9..11],
            &d[11..13],
            &d[13..15]
        );
        assert_eq!(b.get("date").str(), want, "{name}");
        let created = b.get("created").str();
        assert!(
            created.len() == 24 && created.ends_with('Z') && created.as_bytes()[19] == b'.',
            "created is toISOString(): {created}"
        );
        assert!(b.get("size").str().ends_with('B'), "{b:?}");
    }
    let ages: Vec<&str> = j
        .get("backups")
        .arr()
        .iter()
        .map(|b| b.get("age").str())
        .collect();
    assert_eq!(ages[0], "0 jours");
    assert_eq!(ages[1], "1 jour", "the planted archive is a day old");
    assert_eq!(j.get("total").u64(), 2);
    assert_eq!(j.get("totalSize").u64(), total);
    assert_eq!(
        j.get("status"),
        &t.status(),
        "the status is the status file"
    );
    // The human table names the same archives.
    let out = t.run(&["list"]);
    out.expect_code(0, "list");
    assert!(
        out.stdout.contains(&made) && out.stdout.contains(&old),
        "{out}"
    );
}

#[test]
fn without_tz_the_zone_comes_from_etc_localtime() {
    if !have_root("a private mount namespace (unshare -m) for /etc/localtime") {
        return;
    }
    let t = Tree::new("localtime");
    let zone = Path::new("/usr/share/zoneinfo/Asia/Tokyo");
    assert!(zone.exists(), "tzdata is needed (apt-get install tzdata)");
    // In a mount namespace of its own, /etc/localtime says Tokyo (UTC+9, no DST); the
    // binary runs there with `tz` as its TZ (None: no TZ at all).
    let script = "mount --bind \"$1\" /etc/localtime && shift && exec \"$@\"";
    let run_in_tokyo = |tz: Option<&str>| {
        let mut c = std::process::Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(zone)
        .arg(BIN)
        .arg("--config")
        .arg(&t.config_file)
        .arg("run")
        .env_clear()
        .env("NEOPRO_DIR", &t.neopro)
        .env("BACKUP_DIR", &t.backups)
        .env("SITE_CONF", &t.site_conf)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null());
        if let Some(tz) = tz {
            c.env("TZ", tz);
        }
        output(&mut c)
    };
    let before = now_unix();
    let out = run_in_tokyo(None);
    let after = now_unix();
    out.expect_code(0, "run with /etc/localtime = Asia/Tokyo and no TZ");
    let st = t.status();
    let ts = st.get("timestamp").str();
    assert!(ts.ends_with("+09:00"), "the status is in Tokyo time: {ts}");
    let name = st.get("archive").str();
    let tokyo = |u: i64| name_at(u + 9 * 3600);
    assert!(
        (before..=after).any(|u| tokyo(u) == name),
        "{name} is not the Tokyo time of the run ({} .. {})",
        tokyo(before),
        tokyo(after)
    );
    // TZ set but empty counts as unset; a TZ that names a zone wins over the file.
    for (tz, offset) in [("", "+09:00"), ("Asia/Kolkata", "+05:30")] {
        run_in_tokyo(Some(tz)).expect_code(0, &format!("run with TZ={tz:?}"));
        let st = t.status();
        let ts = st.get("timestamp").str();
        assert!(ts.ends_with(offset), "TZ={tz:?}: {ts}");
    }
    // And the host's own /etc/localtime was not touched.
    let host = fs::read("/etc/localtime").unwrap_or_default();
    assert!(host != fs::read(zone).unwrap_or_default() || host.is_empty());
}

#[test]
fn a_run_never_reuses_the_name_of_an_archive_of_the_same_second() {
    let t = Tree::new("same-second");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    // Archives already named for this second and the next four (as a run a moment ago,
    // or a clock stepped back, would leave them): the run must wait for a free second,
    // never replace one of them.
    let now = now_unix();
    let taken: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            let name = name_at(now + i);
            let bytes = format!("the archive of second {i}").into_bytes();
            write_file(&t.backups.join(&name), &bytes);
            (name, bytes)
        })
        .collect();
    let made = t.backup(&[]);
    assert!(
        made > taken[4].0,
        "{made} must come after the seconds already taken"
    );
    for (name, bytes) in &taken {
        assert_eq!(
            &fs::read(t.backups.join(name)).unwrap_or_default(),
            bytes,
            "{name} was replaced"
        );
    }
    verify(&t, made.as_ref()).expect_code(0, "the new archive");
}

#[test]
fn backup_log_rotates_once_it_has_reached_1_mib() {
    const MIB: usize = 1 << 20;
    // An old line, to fill the log to an exact size.
    let fill = |len: usize| {
        let line = "2020-01-01T03:00:00+00:00 [INFO] an old line\n";
        let mut s = line.repeat(len / line.len());
        let pad = len - s.len();
        if pad > 0 {
            s.push_str(&format!("{}\n", "x".repeat(pad - 1)));
        }
        assert_eq!(s.len(), len);
        s
    };
    // Exactly 1 MiB: rotated before the run's first line; backup.log.1 is the old log.
    let t = Tree::new("log-1mib");
    let old = fill(MIB);
    write_file(&t.backups.join("backup.log"), old.as_bytes());
    t.backup(&[]);
    let rotated = fs::read_to_string(t.backups.join("backup.log.1")).unwrap_or_default();
    assert!(rotated == old, "a 1 MiB log is rotated as it is");
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(log.contains("backup started") && !log.contains("an old line"));

    // One byte less: the run's first line still goes to it (now past 1 MiB), and the
    // next line rotates it.
    let t = Tree::new("log-1mib-1");
    let old = fill(MIB - 1);
    write_file(&t.backups.join("backup.log"), old.as_bytes());
    t.backup(&[]);
    let rotated = fs::read_to_string(t.backups.join("backup.log.1")).unwrap_or_default();
    let extra = rotated
        .strip_prefix(old.as_str())
        .unwrap_or_else(|| panic!("backup.log.1 does not start with the old log"));
    assert_eq!(
        extra.lines().count(),
        1,
        "one more line, then rotation: {extra:?}"
    );
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(!log.contains("an old line") && log.len() < 4096, "{log}");
    assert!(log.contains("backup done"), "{log}");
}

#[test]
fn run_creates_backup_dir_0700_whatever_the_umask() {
    let t = Tree::new("mkdir-run");
    let nested = t.root.join("new/backups");
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .arg("--config")
        .arg(&t.config_file)
        .arg("run")
        .env_clear()
        .env("NEOPRO_DIR", &t.neopro)
        .env("BACKUP_DIR", &nested)
        .env("SITE_CONF", &t.site_conf)
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    output(&mut c).expect_code(0, "run with umask 000");
    let mode = fs::metadata(&nested)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or_else(|e| panic!("BACKUP_DIR: {e}"));
    assert_eq!(mode, 0o700, "BACKUP_DIR mode {mode:o}");
    let name = archives(&nested).pop().unwrap_or_default();
    let mode = fs::metadata(nested.join(&name)).map_or(0, |m| m.permissions().mode() & 0o7777);
    assert_eq!(mode, 0o600, "{name} mode {mode:o}");
}

#[test]
fn verify_refuses_data_after_the_gzip_stream() {
    // GNU tar refuses "trailing garbage"; so does verify (found by the fuzz target).
    let t = Tree::new("trailing-junk");
    let name = t.backup(&[]);
    let path = t.archive_path(&name);
    let mut bytes = fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    bytes.extend_from_slice(b"junk after the member");
    fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let out = t.run(&["verify", &name]);
    out.expect_code(1, "verify of an archive with data after its gzip stream");
    assert!(
        out.stdout.contains("after the end of the gzip stream"),
        "{out}"
    );
}
