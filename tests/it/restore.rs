//! Black-box tests of `neopro-backup restore` and `POST /api/backups/restore/:filename`
//! (issue 5): round trip with owner and mode kept, the dry run changing nothing, the
//! safety backup, damaged and hostile archives refused with nothing written anywhere,
//! a per-file error on a read-only folder, RESTART_CMD, and the API end to end.
//!
//! Std only; the hostile archives are built with Python's tarfile. Runs as root (CI):
//! it changes owners and mounts a read-only tmpfs.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{Daemon, Json, Out, Tree, archives, parse_json, python, write_file};

// ---------------------------------------------------------------------------------
// Helpers.

/// What a file looks like, to prove that nothing changed: bytes, mode, owner, mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    bytes: Vec<u8>,
    mode: u32,
    owner: (u32, u32),
    mtime: SystemTime,
}

fn state(path: &Path) -> Option<FileState> {
    let m = fs::symlink_metadata(path).ok()?;
    Some(FileState {
        bytes: fs::read(path).ok()?,
        mode: m.mode() & 0o7777,
        owner: (m.uid(), m.gid()),
        mtime: m.modified().ok()?,
    })
}

fn targets(t: &Tree) -> [PathBuf; 3] {
    [
        t.configuration_json(),
        t.sync_agent_env(),
        t.site_conf.clone(),
    ]
}

fn target_states(t: &Tree) -> Vec<Option<FileState>> {
    targets(t).iter().map(|p| state(p)).collect()
}

/// Every path under `root` (not following links) with its kind, size, mode and mtime,
/// except BACKUP_DIR's log and lock (which a refused restore may touch).
fn everything(t: &Tree) -> BTreeMap<PathBuf, (bool, u64, u32, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![t.root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p == t.backups.join("backup.log") || p == t.backups.join(".backup.lock") {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.insert(p, (m.is_dir(), m.len(), m.mode(), mtime));
        }
    }
    out
}

fn restore(t: &Tree, args: &[&str]) -> Out {
    let mut a = vec!["restore"];
    a.extend_from_slice(args);
    t.run(&a)
}

/// The safety backup named on stdout by a real restore.
fn safety_backup(out: &Out) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Safety backup of the state before the restore: "))
        .map(str::trim)
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no safety backup named\n{out}"))
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// Writes an archive with Python's tarfile: a complete, valid backup of made-up files
/// (with a correct MANIFEST.sha256) plus, last, the hostile entry `kind`.
const HOSTILE: &str = r##"
import hashlib, io, sys, tarfile
out, top, kind, extra = sys.argv[1:5]
files = {
    "configuration.json": b'{"hostile": true}\n',
    "sync-agent.env": b"SYNC_TOKEN=hostile\n",
    "site.conf": b"SITE_NAME=hostile\n",
    "videos-inventory.txt": b"# size_bytes\tmtime\tpath (relative to videos/)\n",
    "system-info.txt": b"made up\n",
}
def info(name, type=tarfile.REGTYPE, size=0, linkname=""):
    t = tarfile.TarInfo(name)
    t.type, t.size, t.mode, t.mtime, t.linkname = type, size, 0o644, 1700000000, linkname
    return t
bad = None          # (TarInfo, bytes or None)
listed = {}         # extra regular files listed in the manifest
if kind == "dotdot":
    bad = (info(top + "/../escape.txt", size=5), b"owned")
    listed["../escape.txt"] = b"owned"
elif kind == "absolute":
    bad = (info(extra, size=5), b"owned")
elif kind == "symlink":
    del files["site.conf"]
    bad = (info(top + "/site.conf", tarfile.SYMTYPE, linkname=extra), None)
elif kind == "hardlink":
    del files["site.conf"]
    bad = (info(top + "/site.conf", tarfile.LNKTYPE, linkname=top + "/configuration.json"), None)
elif kind == "fifo":
    bad = (info(top + "/videos/pipe.mp4", tarfile.FIFOTYPE), None)
elif kind == "device":
    t = info(top + "/videos/null.mp4", tarfile.CHRTYPE)
    t.devmajor, t.devminor = 1, 3
    bad = (t, None)
elif kind == "unexpected":
    bad = (info(top + "/evil.sh", size=9), b"rm -rf /\n")
    listed["evil.sh"] = b"rm -rf /\n"
elif kind == "other-top":
    bad = (info("elsewhere/site.conf", size=5), b"owned")
elif kind != "badhash":
    sys.exit("unknown kind " + kind)
manifest = b""
for name, data in list(files.items()) + list(listed.items()):
    digest = hashlib.sha256(data).hexdigest()
    if kind == "badhash" and name == "configuration.json":
        digest = hashlib.sha256(b"something else").hexdigest()
    manifest += ("%s  %s\n" % (digest, name)).encode()
with tarfile.open(out, "w:gz", format=tarfile.GNU_FORMAT) as tf:
    tf.addfile(info(top + "/", tarfile.DIRTYPE))
    for name, data in files.items():
        tf.addfile(info(top + "/" + name, size=len(data)), io.BytesIO(data))
    tf.addfile(info(top + "/MANIFEST.sha256", size=len(manifest)), io.BytesIO(manifest))
    if bad:
        tf.addfile(bad[0], io.BytesIO(bad[1]) if bad[1] is not None else None)
"##;

/// Builds the hostile archive `kind` under a valid name in BACKUP_DIR; returns its name.
fn hostile(t: &Tree, name: &str, kind: &str, extra: &Path) -> String {
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let path = t.backups.join(name);
    let top = name.trim_end_matches(".tar.gz");
    let out = python(
        HOSTILE,
        &[
            path.as_os_str(),
            top.as_ref(),
            kind.as_ref(),
            extra.as_os_str(),
        ],
    );
    out.expect_code(0, &format!("python tarfile ({kind})"));
    name.to_string()
}

// ---------------------------------------------------------------------------------
// The CLI.

#[test]
fn round_trip_restores_bytes_and_keeps_owner_and_mode() {
    if !common::need_root("round_trip_restores_bytes_and_keeps_owner_and_mode") {
        return;
    }
    let t = Tree::new("restore-round-trip");
    chmod(&t.site_conf, 0o604);
    let archive = t.backup(&[]);
    let originals: Vec<Vec<u8>> = targets(&t).iter().map(|p| read(p)).collect();

    // The Pi changes: new contents, another owner and mode, a deleted site.conf.
    write_file(&t.configuration_json(), b"{\"club\": \"changed\"}\n");
    chmod(&t.configuration_json(), 0o640);
    std::os::unix::fs::chown(t.configuration_json(), Some(1234), Some(2345))
        .unwrap_or_else(|e| panic!("chown: {e}"));
    write_file(&t.sync_agent_env(), b"SYNC_TOKEN=changed\n");
    fs::remove_file(&t.site_conf).unwrap_or_else(|e| panic!("rm: {e}"));
    let etc = t.site_conf.parent().unwrap_or(&t.root).to_path_buf();
    std::os::unix::fs::chown(&etc, Some(4321), Some(5432)).unwrap_or_else(|e| panic!("{e}"));

    let out = restore(&t, &[&archive]);
    out.expect_code(0, "restore");
    for (p, want) in targets(&t).iter().zip(&originals) {
        assert_eq!(&read(p), want, "{} is not byte-equal\n{out}", p.display());
    }
    // Existing files keep their current owner and mode; a new one is 0600 (it may hold
    // secrets, whatever mode the archive recorded) and gets its folder's owner.
    assert_eq!(mode(&t.configuration_json()), 0o640);
    assert_eq!(owner(&t.configuration_json()), (1234, 2345));
    assert_eq!(mode(&t.sync_agent_env()), 0o600);
    assert_eq!(mode(&t.site_conf), 0o600);
    assert_eq!(owner(&t.site_conf), (4321, 5432));
    // No temporary file left beside the targets.
    for p in targets(&t) {
        let dir = p.parent().unwrap_or(&t.root);
        let leftovers: Vec<String> = common::names_in(dir)
            .into_iter()
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?} in {}", dir.display());
    }
    assert!(out.stdout.contains("neopro-app needs a restart"), "{out}");
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(log.contains(&format!("restore of {archive} done")), "{log}");
    // Secrets never reach the log or the output.
    assert!(
        !log.contains("s3cr3t") && !out.stdout.contains("s3cr3t") && !out.stderr.contains("s3cr3t")
    );

    // A second restore finds nothing to do: no rewrite, no safety backup.
    let before = target_states(&t);
    let n = archives(&t.backups).len();
    let again = restore(&t, &[&archive]);
    again.expect_code(0, "restore again");
    assert!(again.stdout.contains("Nothing to restore"), "{again}");
    assert_eq!(target_states(&t), before);
    assert_eq!(archives(&t.backups).len(), n);
}

#[test]
fn the_safety_backup_restores_the_state_before_the_restore() {
    let t = Tree::new("restore-safety");
    let archive = t.backup(&[]);
    let original_site = read(&t.site_conf);
    write_file(
        &t.configuration_json(),
        b"{\"state\": \"before the restore\"}\n",
    );
    write_file(&t.sync_agent_env(), b"SYNC_TOKEN=before-the-restore\n");
    fs::remove_file(&t.site_conf).unwrap_or_else(|e| panic!("rm: {e}"));
    let before: Vec<Option<Vec<u8>>> = targets(&t).iter().map(|p| fs::read(p).ok()).collect();

    let out = restore(&t, &[&archive]);
    out.expect_code(0, "restore");
    let safety = safety_backup(&out);
    assert!(
        archives(&t.backups).contains(&safety),
        "{safety} not in BACKUP_DIR\n{out}"
    );
    assert_ne!(safety, archive);
    t.run(&["verify", &safety])
        .expect_code(0, "verify the safety backup");

    let back = restore(&t, &[&safety]);
    back.expect_code(0, "restore of the safety backup");
    assert_eq!(fs::read(t.configuration_json()).ok(), before[0]);
    assert_eq!(fs::read(t.sync_agent_env()).ok(), before[1]);
    // site.conf was absent before: the safety backup has none, so it is left alone.
    assert_eq!(read(&t.site_conf), original_site);
    assert!(back.stdout.contains("skipped    site.conf"), "{back}");
}

#[test]
fn the_dry_run_changes_nothing_and_names_changes_and_missing_videos() {
    let t = Tree::new("restore-dry-run");
    let archive = t.backup(&[]);
    write_file(
        &t.configuration_json(),
        b"{\"club\": \"a longer, changed configuration\"}\n",
    );
    fs::remove_file(&t.site_conf).unwrap_or_else(|e| panic!("rm: {e}"));
    fs::remove_file(t.videos().join("promo.mp4")).unwrap_or_else(|e| panic!("rm: {e}"));
    let resized = t.videos().join("Match/HIGHLIGHTS.MKV");
    fs::OpenOptions::new()
        .append(true)
        .open(&resized)
        .and_then(|mut f| f.write_all(b"more"))
        .unwrap_or_else(|e| panic!("append: {e}"));
    let before = everything(&t);

    let out = restore(&t, &["--dry-run", &archive]);
    out.expect_code(0, "dry run");
    assert_eq!(
        everything(&t),
        before,
        "the dry run changed something\n{out}"
    );
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}\n{out}"))
            .to_string()
    };
    let cfg_len = common::CONFIGURATION_JSON.len();
    let changed = line("configuration.json");
    assert!(
        changed.contains("CHANGED") && changed.contains(&format!("archive {cfg_len} B")),
        "{changed}"
    );
    assert!(line("sync-agent.env").contains("unchanged"));
    assert!(line("site.conf").contains("MISSING ON THE PI"));
    assert!(out.stdout.contains("missing  promo.mp4"), "{out}");
    assert!(
        out.stdout
            .contains("resized  Match/HIGHLIGHTS.MKV (archive 2.1 KB, 2100 B, now 2.1 KB, 2104 B)"),
        "{out}"
    );

    // --only limits the files; unknown names are a usage error.
    let only = restore(&t, &["--dry-run", "--only", "site.conf", &archive]);
    only.expect_code(0, "dry run --only");
    assert!(!only.stdout.contains("configuration.json"), "{only}");
    for bad in ["passwd", ".env", "site.conf,nope", ""] {
        let o = restore(&t, &["--dry-run", "--only", bad, &archive]);
        o.expect_code(2, &format!("--only {bad:?}"));
    }
    restore(&t, &["--only", "nope", &archive]).expect_code(2, "real restore --only nope");
    assert_eq!(everything(&t), before, "a refused --only changed something");
}

#[test]
fn only_restores_the_named_files() {
    let t = Tree::new("restore-only");
    let archive = t.backup(&[]);
    write_file(&t.configuration_json(), b"changed json\n");
    write_file(&t.site_conf, b"changed site\n");
    let out = restore(&t, &["--only", "site.conf", &archive]);
    out.expect_code(0, "restore --only site.conf");
    assert_eq!(read(&t.site_conf), common::SITE_CONF);
    assert_eq!(read(&t.configuration_json()), b"changed json\n");
}

#[test]
fn a_damaged_archive_is_refused_and_nothing_is_written() {
    let t = Tree::new("restore-damaged");
    let archive = t.backup(&[]);
    write_file(&t.configuration_json(), b"changed\n");
    let path = t.archive_path(&archive);
    let mut bytes = read(&path);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let before = everything(&t);
    for args in [vec![archive.as_str()], vec!["--dry-run", archive.as_str()]] {
        let out = restore(&t, &args);
        out.expect_code(1, "restore of a damaged archive");
        assert!(out.stderr.contains("refusing"), "{out}");
        assert_eq!(everything(&t), before, "something was written\n{out}");
    }
    // Truncated.
    fs::write(&path, &bytes[..mid]).unwrap_or_else(|e| panic!("{e}"));
    let before = everything(&t);
    restore(&t, &[&archive]).expect_code(1, "truncated archive");
    assert_eq!(everything(&t), before);
    // A file that does not match MANIFEST.sha256.
    let name = hostile(
        &t,
        "backup-20240101-000000.tar.gz",
        "badhash",
        Path::new("-"),
    );
    let before = everything(&t);
    let out = restore(&t, &[&name]);
    out.expect_code(1, "manifest mismatch");
    assert!(out.stderr.contains("MANIFEST.sha256"), "{out}");
    assert_eq!(everything(&t), before);
}

#[test]
fn hostile_archives_are_refused_with_nothing_written_anywhere() {
    let t = Tree::new("restore-hostile");
    t.backup(&[]);
    let outside = t.root.join("outside");
    let cases = [
        ("dotdot", PathBuf::from("-"), "unsafe path"),
        ("absolute", outside.join("abs.txt"), "unsafe path"),
        (
            "symlink",
            outside.join("link-target"),
            "only files and folders",
        ),
        ("hardlink", PathBuf::from("-"), "only files and folders"),
        ("fifo", PathBuf::from("-"), "only files and folders"),
        ("device", PathBuf::from("-"), "only files and folders"),
        ("unexpected", PathBuf::from("-"), "unexpected file"),
        ("other-top", PathBuf::from("-"), "outside the folder"),
    ];
    for (i, (kind, extra, why)) in cases.iter().enumerate() {
        let name = format!("backup-2024010{}-000000.tar.gz", i + 1);
        hostile(&t, &name, kind, extra);
        let before = everything(&t);
        let states = target_states(&t);
        for dry in [false, true] {
            let mut args = vec![name.as_str()];
            if dry {
                args.insert(0, "--dry-run");
            }
            let out = restore(&t, &args);
            out.expect_code(1, &format!("hostile archive {kind} (dry run: {dry})"));
            assert!(out.stderr.contains(why), "{kind}: expected {why:?}\n{out}");
            assert_eq!(target_states(&t), states, "{kind}: a target changed\n{out}");
            assert_eq!(
                everything(&t),
                before,
                "{kind}: something was written\n{out}"
            );
        }
        assert!(!t.root.join("escape.txt").exists() && !t.backups.join("escape.txt").exists());
        assert!(!outside.exists(), "{kind}: {} appeared", outside.display());
    }
}

/// SITE_CONF on a tmpfs, backed up, then both it and configuration.json changed and the
/// tmpfs made read-only (what a non-root user or a locked /etc looks like). Returns the
/// mount guard (keep it alive), SITE_CONF and the archive's name.
fn read_only_site_conf(t: &Tree) -> (common::Tmpfs, PathBuf, String) {
    let ro = t.root.join("ro");
    let mount = common::Tmpfs::mount(&ro, 1 << 20, "");
    let site = ro.join("site.conf");
    write_file(&site, common::SITE_CONF);
    let archive = t.backup(&[("SITE_CONF", site.to_str().unwrap_or_default())]);
    write_file(&t.configuration_json(), b"changed json\n");
    write_file(&site, b"changed site\n");
    mount.remount_ro();
    (mount, site, archive)
}

#[test]
fn a_read_only_folder_is_a_per_file_error_and_the_others_are_restored() {
    if !common::need_root("a_read_only_folder_is_a_per_file_error_and_the_others_are_restored") {
        return;
    }
    let t = Tree::new("restore-read-only");
    // The mount is declared after the tree: unmounted before the tree is removed.
    let (mount, site, archive) = read_only_site_conf(&t);
    let env = [("SITE_CONF", site.to_str().unwrap_or_default())];

    let dry = t.run_env(&env, &["restore", "--dry-run", &archive]);
    dry.expect_code(0, "dry run");
    assert!(
        dry.stdout.contains("PROBLEM: the folder") && dry.stdout.contains("not writable"),
        "{dry}"
    );

    let out = t.run_env(&env, &["restore", &archive]);
    out.expect_code(1, "restore with a read-only SITE_CONF folder");
    assert_eq!(read(&t.configuration_json()), common::CONFIGURATION_JSON);
    assert_eq!(read(&site), b"changed site\n");
    assert!(out.stdout.contains("FAILED     site.conf"), "{out}");
    assert!(out.stdout.contains("INCOMPLETE"), "{out}");
    assert!(
        out.stdout.contains("restored   configuration.json"),
        "{out}"
    );
    safety_backup(&out);
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(log.contains("restore of site.conf failed"), "{log}");
    drop(mount);
}

#[test]
fn restart_cmd_runs_after_a_successful_restore_only() {
    let t = Tree::new("restore-restart");
    let archive = t.backup(&[]);
    let marker = t.root.join("restarted");
    let cmd = format!("echo restart-output; echo done > '{}'", marker.display());
    let env = [("RESTART_CMD", cmd.as_str())];

    // Nothing changed: nothing to restart.
    t.run_env(&env, &["restore", &archive])
        .expect_code(0, "no-op restore");
    assert!(!marker.exists());
    // A dry run never restarts.
    write_file(&t.configuration_json(), b"changed\n");
    t.run_env(&env, &["restore", "--dry-run", &archive])
        .expect_code(0, "dry run");
    assert!(!marker.exists());

    let out = t.run_env(&env, &["restore", &archive]);
    out.expect_code(0, "restore");
    assert!(marker.exists(), "RESTART_CMD did not run\n{out}");
    assert!(out.stdout.contains("neopro-app was restarted"), "{out}");
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(log.contains("RESTART_CMD: restart-output"), "{log}");

    // A failing command is reported, the restore itself stands.
    write_file(&t.configuration_json(), b"changed again\n");
    let out = t.run_env(&env_fail(), &["restore", &archive]);
    out.expect_code(0, "restore with a failing RESTART_CMD");
    assert!(out.stderr.contains("RESTART_CMD (exit 3) failed"), "{out}");
    assert_eq!(read(&t.configuration_json()), common::CONFIGURATION_JSON);
}

fn env_fail() -> [(&'static str, &'static str); 1] {
    [("RESTART_CMD", "exit 3")]
}

// ---------------------------------------------------------------------------------
// The API.

/// `(status, body)` of one request to the daemon, sent as the admin panel sends it.
fn api_req(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let body = body.unwrap_or("");
    let a = d.req(
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    (a.status, a.text())
}

fn api_restore(d: &Daemon, name: &str, body: Option<&str>) -> (u16, Json) {
    let (status, text) = api_req(d, "POST", &format!("/api/backups/restore/{name}"), body);
    let j = parse_json(&text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"));
    (status, j)
}

fn strings(j: &Json) -> Vec<String> {
    j.arr().iter().map(|s| s.str().to_string()).collect()
}

#[test]
fn api_restore_end_to_end() {
    let t = Tree::new("restore-api");
    let archive = t.backup(&[]);
    let d = Daemon::start(&t, &[]);

    // Names: 400 before anything else, 404 when absent; wrong method 405.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "backup-2024.tar.gz", "x"] {
        let (s, j) = api_restore(&d, bad, Some(r#"{"dryRun":true}"#));
        assert_eq!((s, j.get("error").str()), (400, "Nom de fichier invalide"));
    }
    let (s, j) = api_restore(
        &d,
        "backup-20991231-235959.tar.gz",
        Some(r#"{"dryRun":true}"#),
    );
    assert_eq!((s, j.get("error").str()), (404, "Backup non trouvé"));
    assert_eq!(
        api_req(&d, "GET", &format!("/api/backups/restore/{archive}"), None).0,
        405
    );
    // The body must say dryRun as a JSON boolean: a restore never happens by accident.
    write_file(&t.configuration_json(), b"{\"changed\": true}\n");
    fs::remove_file(t.videos().join("promo.mp4")).unwrap_or_else(|e| panic!("rm: {e}"));
    let before = everything(&t);
    for body in [
        None,
        Some(""),
        Some("{}"),
        Some(r#"{"dryRun":"false"}"#),
        Some(r#"{"dryRun":0}"#),
        Some(r#"{"dryRun":null}"#),
        Some("not json"),
        Some(r#"{"dryRun":false,"only":["passwd"]}"#),
    ] {
        let (s, j) = api_restore(&d, &archive, body);
        assert_eq!(s, 400, "{body:?}: {j:?}");
        assert!(
            j.get("error").str().contains("dryRun") || j.get("error").str().contains("only"),
            "{j:?}"
        );
    }
    assert_eq!(everything(&t), before, "a 400 changed something");

    // Dry run.
    let (s, j) = api_restore(&d, &archive, Some(r#"{"dryRun":true}"#));
    assert_eq!(s, 200, "{j:?}");
    assert!(j.get("success").bool() && j.get("dryRun").bool());
    assert_eq!(strings(j.get("wouldRestore")), ["configuration.json"]);
    let files = j.get("files").arr();
    assert_eq!(files.len(), 3);
    let cfg = &files[0];
    assert_eq!(cfg.get("name").str(), "configuration.json");
    assert_eq!(cfg.get("state").str(), "changed");
    assert_eq!(
        cfg.get("archiveSize").u64(),
        common::CONFIGURATION_JSON.len() as u64
    );
    assert_eq!(cfg.get("currentSize").u64(), 18);
    assert!(cfg.get("problem").is_null());
    assert_eq!(files[1].get("state").str(), "unchanged");
    let videos = j.get("videos");
    assert_eq!(videos.get("listed").u64(), common::VIDEOS.len() as u64);
    assert_eq!(videos.get("missing").at(0).get("path").str(), "promo.mp4");
    assert_eq!(videos.get("missing").at(0).get("size").u64(), 3000);
    assert_eq!(everything(&t), before, "the dry run changed something");

    // 409 while a backup holds the lock.
    // `flock LOCK cat` holds the lock until its stdin closes (no stray process).
    let mut holder = Command::new("flock")
        .arg(t.backups.join(".backup.lock"))
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("flock: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("flock")
        .arg("-n")
        .arg(t.backups.join(".backup.lock"))
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "flock did not take the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (s, j) = api_restore(&d, &archive, Some(r#"{"dryRun":false}"#));
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(s, 409, "{j:?}");
    assert!(!j.get("success").bool());
    assert_eq!(everything(&t), before, "a 409 changed something");

    // The real restore.
    let (s, j) = api_restore(&d, &archive, Some(r#"{"dryRun":false}"#));
    assert_eq!(s, 200, "{j:?}");
    assert!(j.get("success").bool() && !j.get("dryRun").bool());
    assert_eq!(strings(j.get("restored")), ["configuration.json"]);
    assert_eq!(strings(j.get("unchanged")), ["sync-agent.env", "site.conf"]);
    assert!(strings(j.get("failed")).is_empty());
    assert!(j.get("restartNeeded").bool() && j.get("restart").is_null());
    let safety = j.get("safetyBackup").str().to_string();
    assert!(archives(&t.backups).contains(&safety), "{safety}");
    assert_eq!(read(&t.configuration_json()), common::CONFIGURATION_JSON);
    assert!(
        j.get("message").str().contains("Redémarrez neopro-app"),
        "{j:?}"
    );

    // A hostile archive under a valid name: 500, nothing written.
    let name = hostile(
        &t,
        "backup-20240101-000000.tar.gz",
        "symlink",
        &t.root.join("target"),
    );
    let before = everything(&t);
    let (s, j) = api_restore(&d, &name, Some(r#"{"dryRun":false}"#));
    assert_eq!(s, 500, "{j:?}");
    assert!(!j.get("success").bool());
    assert!(j.get("error").str().starts_with("Archive refusée"), "{j:?}");
    assert!(j.get("details").str().contains("Symlink"), "{j:?}");
    assert_eq!(
        everything(&t),
        before,
        "a refused archive changed something"
    );
    let (s, _) = api_restore(&d, &name, Some(r#"{"dryRun":true}"#));
    assert_eq!(s, 500);

    // The log tells the story, without secrets.
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    assert!(log.contains(&format!("restore of {archive} done")), "{log}");
    assert!(log.contains(&format!("restore of {name} refused")), "{log}");
    assert!(!log.contains("s3cr3t"));
}

#[test]
fn api_reports_a_per_file_failure_as_500_with_what_was_restored() {
    if !common::need_root("api_reports_a_per_file_failure_as_500_with_what_was_restored") {
        return;
    }
    let t = Tree::new("restore-api-partial");
    let (mount, site, archive) = read_only_site_conf(&t);
    let env = [("SITE_CONF", site.to_str().unwrap_or_default())];
    let d = Daemon::start(&t, &env);
    let (s, j) = api_restore(&d, &archive, Some(r#"{"dryRun":false}"#));
    assert_eq!(s, 500, "{j:?}");
    assert!(!j.get("success").bool());
    assert_eq!(strings(j.get("restored")), ["configuration.json"]);
    assert_eq!(strings(j.get("failed")), ["site.conf"]);
    assert!(
        j.get("error").str().starts_with("Restauration incomplète"),
        "{j:?}"
    );
    assert!(j.get("details").str().contains("not writable"), "{j:?}");
    assert!(archives(&t.backups).contains(&j.get("safetyBackup").str().to_string()));
    assert_eq!(read(&t.configuration_json()), common::CONFIGURATION_JSON);
    assert_eq!(read(&site), b"changed site\n");
    drop(d);
    drop(mount);
}

/// A target folder gone (webapp/ removed): that file is named with the reason, the
/// folder's absence, in the dry run and the real restore; the others are restored.
#[test]
fn a_missing_target_folder_is_named_as_missing_and_the_other_files_are_restored() {
    let t = Tree::new("restore-no-folder");
    let archive = t.backup(&[]);
    let webapp = t.neopro.join("webapp");
    fs::remove_dir_all(&webapp).unwrap_or_else(|e| panic!("{e}"));
    write_file(&t.site_conf, b"changed site\n");
    let missing = format!("the folder {} does not exist", webapp.display());
    let dry = restore(&t, &[&archive, "--dry-run"]);
    dry.expect_code(0, "dry run");
    assert!(dry.stdout.contains(&missing), "{dry}");
    assert!(!dry.stdout.contains("not writable"), "{dry}");
    let out = restore(&t, &[&archive]);
    out.expect_code(1, "a file cannot be restored");
    assert!(out.stdout.contains(&missing), "{out}");
    assert_eq!(read(&t.site_conf), common::SITE_CONF);
    assert!(!webapp.exists(), "restore made the folder");
}

/// A target whose name the system refuses (over 255 bytes: ENAMETOOLONG) cannot be
/// compared: it is named as such, never taken for a file missing on the Pi.
#[test]
fn a_target_the_system_cannot_look_at_is_not_taken_for_a_missing_file() {
    let t = Tree::new("restore-long-name");
    let archive = t.backup(&[]);
    let long = t.root.join("etc").join("s".repeat(300));
    let long_arg = long.display().to_string();
    let out = t.run_env(
        &[("SITE_CONF", &long_arg)],
        &["restore", &archive, "--dry-run"],
    );
    out.expect_code(0, "dry run");
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("site.conf"))
        .unwrap_or_else(|| panic!("no site.conf line\n{out}"));
    assert!(line.contains("cannot be compared"), "{out}");
    assert!(!line.contains("MISSING ON THE PI"), "{out}");
}
