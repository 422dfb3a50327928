//! Google Drive (docs/format.md, Google Drive; issue 20): the built binary against the
//! fake Google of tests/gdrive (never Google itself), its faults injected there; every
//! copy checked byte-exact through Google's own Python client (tests/gdrive/
//! official_read.py), and every request the binary made checked against Drive v3's
//! discovery document (tests/gdrive/check_requests.py). Ignored in a plain `cargo test`
//! (Google's client comes from PyPI): `make test-gdrive` installs it and runs them.

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::google::{CLIENT_ID, CLIENT_SECRET, FakeGoogle, venv_python};
use common::json::parse_json;
use common::*;

const FOLDER: &str = "neopro-backups";
const SITE: &str = "club-gd";

/// A Pi with Drive alone (no S3), pointed at `fake`, a ~5 MiB archive (three chunks of
/// 2 MiB: a video of random bytes, INCLUDE_VIDEOS) and a fast backoff for the retries.
fn drive_pi(fake: &FakeGoogle, name: &str) -> (Tree, Vec<(String, String)>) {
    let t = Tree::new(name);
    write_random(&t.videos().join("big.mp4"), 5 * 1024 * 1024 + 12_345, 7);
    let mut env = fake.env();
    for (k, v) in [
        ("SITE_ID", SITE),
        ("INCLUDE_VIDEOS", "true"),
        ("NEOPRO_GDRIVE_BACKOFF_MS", "20"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    (t, env)
}

fn run_env(t: &Tree, env: &[(String, String)], args: &[&str]) -> Out {
    let mut c = t.command(args);
    c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    output(&mut c)
}

/// `gdrive login`, approved through the fake once the code is printed: its output.
fn login(t: &Tree, env: &[(String, String)], fake: &FakeGoogle, approve: bool) -> Out {
    let mut c = t.command(&["gdrive", "login"]);
    c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let out = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let mut lines = BufReader::new(out).lines();
    let mut seen = Vec::new();
    let mut code = None;
    while let Some(Ok(line)) = lines.next() {
        let after_prompt = seen
            .iter()
            .rev()
            .find(|l: &&String| !l.trim().is_empty())
            .is_some_and(|l| l.contains("enter the code"));
        seen.push(line.clone());
        if after_prompt && !line.trim().is_empty() {
            code = Some(line.trim().to_string());
            break;
        }
    }
    let code = code.unwrap_or_else(|| panic!("no code shown: {seen:#?}"));
    if approve {
        fake.approve(&code);
    } else {
        fake.deny(&code);
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut o = wait_output(child, "gdrive login");
    o.stdout = format!("{}\n{}\n{}", seen.join("\n"), rest.join("\n"), o.stdout);
    o
}

fn token_file(t: &Tree) -> Json {
    let text = std::fs::read_to_string(t.backups.join("gdrive-token.json"))
        .unwrap_or_else(|e| panic!("no token file: {e}"));
    parse_json(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// What Google's own client reads at each path: (size, sha256, id), None when missing.
fn official(fake: &FakeGoogle, t: &Tree, paths: &[String]) -> Vec<Option<(u64, String, String)>> {
    let refresh = token_file(t).get("refresh_token").str().to_string();
    let mut c = std::process::Command::new(venv_python());
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/gdrive/official_read.py"
    ))
    .args([&fake.url, CLIENT_ID, CLIENT_SECRET, &refresh])
    .args(paths);
    let out = output(&mut c);
    out.stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            match f[..] {
                [_, size, sha, id] => Some((
                    size.parse().unwrap_or(u64::MAX),
                    sha.to_string(),
                    id.to_string(),
                )),
                _ => None,
            }
        })
        .collect()
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = tool(
        "sha256sum",
        &[path.as_os_str()],
        path.parent().unwrap_or(path),
    );
    out.stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn drive_path(name: &str) -> String {
    format!("{FOLDER}/{SITE}/{name}")
}

/// The archive `name` is on Drive, byte for byte (read by Google's client).
fn assert_on_drive(fake: &FakeGoogle, t: &Tree, name: &str) {
    let local = t.archive_path(name);
    let size = std::fs::metadata(&local).map_or(0, |m| m.len());
    let got = official(fake, t, &[drive_path(name)]);
    assert_eq!(
        got.first().cloned().flatten().map(|(s, h, _)| (s, h)),
        Some((size, sha256_of(&local))),
        "{name} on Drive differs from the archive"
    );
}

#[test]
#[ignore = "needs Google's Python client: make test-gdrive"]
fn login_then_each_run_sends_its_archive_byte_exact_and_the_status_in_place() {
    let fake = FakeGoogle::start();
    fake.config(r#"{"interval":1}"#);
    let (t, env) = drive_pi(&fake, "gdrive-main");
    let o = login(&t, &env, &fake, true);
    o.expect_code(0, "gdrive login");
    // The link Google gives (the fake's, as Google's), on a line of its own.
    assert!(
        o.stdout
            .lines()
            .any(|l| l.trim() == "https://www.google.com/device"),
        "{o}"
    );
    assert!(o.stdout.contains("valid for"), "{o}");
    assert!(o.stdout.contains(&format!("{FOLDER}/{SITE}/")), "{o}");
    let mode = std::fs::metadata(t.backups.join("gdrive-token.json"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o600);
    assert_eq!(token_file(&t).get("client_id").str(), CLIENT_ID);
    // The first backup and its copy.
    let out = run_env(&t, &env, &["run"]);
    out.expect_code(0, "run");
    assert!(
        out.stdout
            .contains("gdrive: 1 copy(ies) sent to Google Drive"),
        "{out}"
    );
    let first = archives(&t.backups).pop().unwrap_or_default();
    assert_on_drive(&fake, &t, &first);
    let st = t.status();
    let g = st.get("gdrive");
    assert_eq!(
        (g.get("pending").u64(), g.get("error").is_null()),
        (0, true),
        "{st:?}"
    );
    let raw =
        std::fs::read_to_string(t.backups.join("last-backup-status.json")).unwrap_or_default();
    assert!(
        !raw.contains("\"offsite\""),
        "no S3: no offsite object: {raw}"
    );
    // The status on Drive says the same; a second run replaces it in place (same ID).
    let status = drive_path("last-backup-status.json");
    let id_before = official(&fake, &t, std::slice::from_ref(&status))
        .first()
        .cloned()
        .flatten()
        .map(|f| f.2);
    assert!(id_before.is_some());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run_env(&t, &env, &["run"]).expect_code(0, "second run");
    let second = archives(&t.backups).pop().unwrap_or_default();
    assert_ne!(first, second);
    assert_on_drive(&fake, &t, &second);
    let id_after = official(&fake, &t, std::slice::from_ref(&status))
        .first()
        .cloned()
        .flatten()
        .map(|f| f.2);
    assert_eq!(
        id_before, id_after,
        "the status is one file, updated in place"
    );
    let files = fake.get_json("/_test/files");
    let folders = files
        .arr()
        .iter()
        .filter(|f| f.get("name").str() == FOLDER && !f.get("trashed").bool())
        .count();
    assert_eq!(folders, 1, "two runs never make two folders of one name");
    // gdrive status.
    let s = run_env(&t, &env, &["gdrive", "status", "--json"]);
    s.expect_code(0, "gdrive status");
    let j = parse_json(s.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {s}"));
    assert!(j.get("connected").bool());
    assert_eq!(j.get("copies").u64(), 2);
    assert_eq!(j.get("pending").u64(), 0);
    assert_eq!(j.get("folder").str(), format!("{FOLDER}/{SITE}/"));
    // Nothing secret anywhere a person reads.
    let log = std::fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    let refresh = token_file(&t).get("refresh_token").str().to_string();
    for text in [
        &log,
        &out.stdout,
        &out.stderr,
        &s.stdout,
        &o.stdout,
        &o.stderr,
    ] {
        assert!(
            !text.contains(CLIENT_SECRET) && !text.contains(&refresh),
            "{text}"
        );
    }
    // Every request the binary made is one Drive v3 knows, with its parameters.
    fake.check_requests(&t.root.join("requests.json"));
    // logout --revoke: the token goes, and the grant at Google with it.
    let l = run_env(&t, &env, &["gdrive", "logout", "--revoke"]);
    l.expect_code(0, "gdrive logout --revoke");
    assert!(l.stdout.contains("every Pi"), "{l}");
    assert!(!t.backups.join("gdrive-token.json").exists());
    let revoked = fake
        .requests()
        .arr()
        .iter()
        .any(|r| r.get("path").str() == "/revoke" && r.get("status").u64() == 200);
    assert!(revoked);
    // Not connected: the next copy waits, with a clear status.
    let out = run_env(&t, &env, &["run"]);
    out.expect_code(
        0,
        "a run without Drive connected (the backup itself succeeds)",
    );
    assert!(out.stdout.contains("gdrive: not sent"), "{out}");
    let g = t.status().get("gdrive").clone();
    assert_eq!(g.get("error_code").str(), "gdrive_auth", "{g:?}");
    assert_eq!(g.get("pending").u64(), 1);
}

#[test]
#[ignore = "needs Google's Python client: make test-gdrive"]
fn each_fault_ends_with_the_copy_byte_exact_or_queued_with_its_status() {
    let fake = FakeGoogle::start();
    fake.config(r#"{"interval":1}"#);
    let (t, env) = drive_pi(&fake, "gdrive-faults");
    login(&t, &env, &fake, true).expect_code(0, "gdrive login");
    // Faults the upload survives: the copy is whole on Drive after this one run.
    let survived: [(&str, &str); 6] = [
        ("upload_chunk", r#"{"drop_after":300000}"#),
        ("upload_chunk", r#"{"partial":600000}"#),
        ("upload_chunk", r#"{"status":429}"#),
        (
            "upload_chunk",
            r#"{"status":403,"reason":"rateLimitExceeded"}"#,
        ),
        ("upload_start", r#"{"status":503}"#),
        ("upload_chunk", r#"{"status":401}"#),
    ];
    for (op, fault) in survived {
        fake.fault(op, fault, 1);
        let before = fake.requests().arr().len();
        let out = run_env(&t, &env, &["run"]);
        out.expect_code(0, "run");
        assert!(
            out.stdout.contains("gdrive: 1 copy(ies) sent"),
            "{op} {fault}: {out}"
        );
        let name = archives(&t.backups).pop().unwrap_or_default();
        assert_on_drive(&fake, &t, &name);
        // A dropped or partial chunk resumes from the range Drive reports, not from 0.
        if fault.contains("drop_after") || fault.contains("partial") {
            let log = fake.requests();
            let ranges: Vec<String> = log.arr()[before..]
                .iter()
                .filter(|r| r.get("method").str() == "PUT")
                .map(|r| r.get("headers").get("content-range").str().to_string())
                .collect();
            // The archive's own session (the status is another upload, after it).
            let total = ranges
                .first()
                .and_then(|r| r.rsplit('/').next())
                .unwrap_or_default()
                .to_string();
            let archive: Vec<&String> = ranges.iter().filter(|r| r.ends_with(&total)).collect();
            let starts = archive.iter().filter(|r| r.starts_with("bytes 0-")).count();
            assert_eq!(starts, 1, "{fault}: the upload started over: {ranges:?}");
            // After a drop it asks Drive where it stands; a partial 308 says it.
            let asked = archive.iter().any(|r| r.starts_with("bytes */"));
            assert_eq!(asked, fault.contains("drop_after"), "{ranges:?}");
            assert!(
                archive
                    .iter()
                    .skip(1)
                    .any(|r| r.starts_with("bytes 262144-") || r.starts_with("bytes 524288-")),
                "{fault}: not resumed from the range Drive reports: {ranges:?}"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    // Faults that keep the copy queued, with a status that says why, the local backup
    // untouched; the next run sends what waited.
    let held: [(&str, &str, &str); 3] = [
        ("refresh", r#"{"error":"invalid_grant"}"#, "gdrive_auth"),
        (
            "upload_start",
            r#"{"status":403,"reason":"storageQuotaExceeded"}"#,
            "gdrive_full",
        ),
        ("upload_chunk", r#"{"status":404}"#, "offsite_unreachable"),
    ];
    for (op, fault, code) in held {
        fake.fault(op, fault, 1);
        let out = run_env(&t, &env, &["run"]);
        out.expect_code(0, "the backup succeeds whatever Drive says");
        assert!(out.stdout.contains("gdrive: not sent"), "{fault}: {out}");
        let name = archives(&t.backups).pop().unwrap_or_default();
        let local = sha256_of(&t.archive_path(&name));
        let g = t.status().get("gdrive").clone();
        assert_eq!(g.get("pending").u64(), 1, "{fault}: {g:?}");
        if code != "offsite_unreachable" {
            assert_eq!(g.get("error_code").str(), code, "{fault}: {g:?}");
        }
        assert!(!g.get("error").is_null());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let out = run_env(&t, &env, &["run"]);
        assert!(
            out.stdout.contains("gdrive: 2 copy(ies) sent"),
            "{fault}: {out}"
        );
        assert_eq!(
            sha256_of(&t.archive_path(&name)),
            local,
            "the local backup changed"
        );
        assert_on_drive(&fake, &t, &name);
        assert_eq!(t.status().get("gdrive").get("pending").u64(), 0);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    fake.check_requests(&t.root.join("requests.json"));
}

#[test]
#[ignore = "needs Google's Python client: make test-gdrive"]
fn a_login_refused_expired_or_slowed_down_says_so() {
    let fake = FakeGoogle::start();
    fake.config(r#"{"interval":1}"#);
    let (t, env) = drive_pi(&fake, "gdrive-login");
    let o = login(&t, &env, &fake, false);
    o.expect_code(1, "a refused login");
    assert!(o.stderr.contains("refused"), "{o}");
    assert!(!t.backups.join("gdrive-token.json").exists());
    // slow_down, then the approval: connected all the same.
    fake.fault("token", r#"{"error":"slow_down"}"#, 1);
    login(&t, &env, &fake, true).expect_code(0, "a login slowed down");
    assert!(t.backups.join("gdrive-token.json").exists());
    // A code never approved expires.
    fake.config(r#"{"device_expires_in":2,"interval":1}"#);
    let mut c = t.command(&["gdrive", "login"]);
    c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let o = output(&mut c);
    o.expect_code(1, "an expired code");
    assert!(o.stderr.contains("expired"), "{o}");
    // Not configured: exit 2 and what to set.
    let bare = t.run(&["gdrive", "login"]);
    bare.expect_code(2, "gdrive login without the keys");
    assert!(bare.stderr.contains("GDRIVE_CLIENT_ID"), "{bare}");
    // VIDEOS_OFFSITE with Drive alone is refused, saying why.
    let mut env2 = env.clone();
    env2.push(("VIDEOS_OFFSITE".into(), "true".into()));
    let v = run_env(&t, &env2, &["run"]);
    v.expect_code(2, "VIDEOS_OFFSITE with Drive alone");
    assert!(v.stderr.contains("Google Drive"), "{v}");
}

#[test]
#[ignore = "needs Google's Python client: make test-gdrive"]
fn a_new_card_recovers_from_drive() {
    let fake = FakeGoogle::start();
    fake.config(r#"{"interval":1}"#);
    let (t, env) = drive_pi(&fake, "gdrive-old-card");
    login(&t, &env, &fake, true).expect_code(0, "gdrive login");
    run_env(&t, &env, &["run"]).expect_code(0, "run");
    let name = archives(&t.backups).pop().unwrap_or_default();
    // The SD card dies; a fresh one, the same backup.conf, a new login.
    let blank = blank_card("gdrive-new-card");
    login(&blank, &env, &fake, true).expect_code(0, "login on the new card");
    let s3 = run_env(&blank, &env, &["recover", "--from", "s3"]);
    s3.expect_code(2, "--from s3 without S3");
    let dry = run_env(&blank, &env, &["recover", "--dry-run"]);
    dry.expect_code(0, "recover --dry-run from Drive");
    assert!(dry.stdout.contains(&name), "{dry}");
    assert!(dry.stdout.contains("gdrive://"), "{dry}");
    let r = run_env(&blank, &env, &["recover", "--no-videos"]);
    r.expect_code(0, "recover from Drive");
    assert_eq!(
        sha256_of(&blank.archive_path(&name)),
        sha256_of(&t.archive_path(&name)),
        "the archive fetched from Drive"
    );
    for f in ["webapp/configuration.json", "sync-agent/.env"] {
        assert_eq!(
            std::fs::read(blank.neopro.join(f)).ok(),
            std::fs::read(t.neopro.join(f)).ok(),
            "{f}"
        );
    }
    fake.check_requests(&blank.root.join("requests.json"));
}

#[test]
#[ignore = "needs Google's Python client: make test-gdrive"]
fn an_encrypted_copy_resumes_within_its_run_and_a_new_card_decrypts_it() {
    let fake = FakeGoogle::start();
    fake.config(r#"{"interval":1}"#);
    let keys = fresh_dir("gdrive-keys");
    let key = keys.join("key.txt");
    tool("age-keygen", &["-o".as_ref(), key.as_os_str()], &keys).expect_code(0, "age-keygen");
    let text = std::fs::read_to_string(&key).unwrap_or_default();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap_or_else(|| panic!("no public key in {text}"))
        .to_string();
    let (t, mut env) = drive_pi(&fake, "gdrive-age");
    env.push(("ENCRYPT_TO".into(), public));
    login(&t, &env, &fake, true).expect_code(0, "gdrive login");
    // The connection drops in the middle of the first chunk of the age stream: the
    // unconfirmed chunk is still in memory, sent again from where Drive stands.
    fake.fault("upload_chunk", r#"{"drop_after":1000000}"#, 1);
    let out = run_env(&t, &env, &["run"]);
    out.expect_code(0, "run");
    assert!(out.stdout.contains("gdrive: 1 copy(ies) sent"), "{out}");
    let name = archives(&t.backups).pop().unwrap_or_default();
    let ranges: Vec<String> = fake
        .requests()
        .arr()
        .iter()
        .filter(|r| r.get("method").str() == "PUT")
        .map(|r| r.get("headers").get("content-range").str().to_string())
        .collect();
    assert!(
        ranges.iter().any(|r| r.starts_with("bytes */")),
        "no question to Drive after the drop: {ranges:?}"
    );
    assert_eq!(
        ranges.iter().filter(|r| r.starts_with("bytes 0-")).count(),
        2,
        "the age stream started over (one is the status's): {ranges:?}"
    );
    let got = official(&fake, &t, &[drive_path(&format!("{name}.age"))]);
    assert!(got.first().is_some_and(|f| f.is_some()), "no .age copy");
    assert!(
        official(&fake, &t, &[drive_path(&name)])[0].is_none(),
        "a plain copy"
    );
    // A new card with the identity gets the very archive back.
    let blank = blank_card("gdrive-age-new");
    login(&blank, &env, &fake, true).expect_code(0, "login on the new card");
    let r = run_env(
        &blank,
        &env,
        &[
            "recover",
            "--no-videos",
            "--identity",
            &key.to_string_lossy(),
        ],
    );
    r.expect_code(0, "recover an encrypted copy from Drive");
    assert_eq!(
        sha256_of(&blank.archive_path(&name)),
        sha256_of(&t.archive_path(&name))
    );
}
