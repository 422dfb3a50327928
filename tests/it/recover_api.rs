//! Recovery from the bucket over the daemon's API (CONTRACT §7; docs/format.md,
//! "Recovery over the API"): `GET /api/offsite/backups`, `POST
//! /api/offsite/recover/:name` and `GET /api/offsite/recover`, against SeaweedFS as in
//! recover.rs. A site makes its backups with the real binary; a blank tree (a freshly
//! flashed card) runs `serve` and recovers it over HTTP with its API token.
//!
//! The tests that need the server are ignored in a plain `cargo test`; `make
//! test-offsite` runs them. The answers that need no bucket run everywhere.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::net::{Answer, ClosedPort, Relay};
use common::s3::*;
use common::*;

const TOKEN: &str = "recover-api-token-0123456789abcdef";

/// A site's environment with VIDEOS_OFFSITE.
fn site_env(prefix: &str, site: &str) -> Vec<(String, String)> {
    with(&s3_env(prefix, site), &[("VIDEOS_OFFSITE", "true")])
}

/// A site's backup whose copy must be in the bucket (its name). The bucket is made
/// first, through the filer: a freshly started SeaweedFS has none, and a site's `run`
/// then leaves its copy pending.
fn sent_backup(t: &Tree, env: &[(String, String)], prefix: &str, site: &str) -> String {
    put_object(&format!("{prefix}/bucket-made"), b"");
    let name = backup(t, env);
    let there = objects_in(&format!("{prefix}/{site}"));
    assert!(there.contains(&name), "{name} not sent: {there:?}");
    name
}

/// The daemon of `pi` with `env` and the API token.
fn daemon(pi: &Tree, env: &[(String, String)]) -> Daemon {
    let env = with(env, &[("API_TOKEN", TOKEN)]);
    Daemon::start(pi, &env_refs(&env))
}

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

fn get(d: &Daemon, path: &str) -> Answer {
    d.get_with_token(path, TOKEN)
}

fn post(d: &Daemon, path: &str, body: &str) -> Answer {
    d.post_json_with_token(path, TOKEN, body)
}

fn recover_path(name: &str) -> String {
    format!("/api/offsite/recover/{name}")
}

fn names(list: &Json) -> Vec<String> {
    list.get("backups")
        .arr()
        .iter()
        .map(|b| b.get("name").str().to_string())
        .collect()
}

fn strs(j: &Json) -> Vec<String> {
    j.arr().iter().map(|s| s.str().to_string()).collect()
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_blank_pi_lists_dry_runs_and_recovers_its_site_over_the_api() {
    let prefix = unique_prefix("recover-api");
    let site = "club-api";
    let t = Tree::new("recover-api-site");
    t.add_video(b"Sponsors/partner one.mp4", 300_000, BASE_MTIME);
    let env = site_env(&prefix, site);
    let first = sent_backup(&t, &env, &prefix, site);
    write_file(&t.configuration_json(), b"{\"club\": \"second night\"}\n");
    wait_for("the next second", 5, || name_at(now_unix()) != first);
    let second = sent_backup(&t, &env, &prefix, site);
    // An encrypted copy of an older night (from before ENCRYPT_TO was turned off), and
    // a file that is not an archive copy: listed and flagged, and left out.
    let old_age = format!("{}.age", name_at(now_unix() - 3 * 86_400));
    put_object(
        &format!("{prefix}/{site}/{old_age}"),
        b"age-encryption.org/v1\n-> X25519 not a real one\n",
    );
    put_object(&format!("{prefix}/{site}/notes.txt"), b"not an archive");

    let pi = blank_card("recover-api-pi");
    let d = daemon(&pi, &env);

    // The list: the same auth as every /api route, newest first, sizes as in the bucket.
    let anon = d.get("/api/offsite/backups");
    assert_eq!(anon.status, 401, "{anon}");
    let a = get(&d, "/api/offsite/backups");
    assert_eq!(a.status, 200, "{a}");
    let list = a.json();
    assert_eq!(list.get("site").str(), site);
    assert_eq!(
        names(&list),
        vec![second.clone(), first.clone(), old_age.clone()],
        "{a}"
    );
    for b in list.get("backups").arr() {
        let n = b.get("name").str();
        let bytes = object(&format!("{prefix}/{site}/{n}")).unwrap_or_default();
        assert_eq!(b.get("sizeBytes").u64(), bytes.len() as u64, "{n}");
        assert_eq!(b.get("encrypted").bool(), n.ends_with(".age"), "{n}");
        // "2024-12-18 03:00:00", the time in the name.
        let stamp = &n["backup-".len().."backup-".len() + 15];
        let want = format!(
            "{}-{}-{} {}:{}:{}",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8],
            &stamp[9..11],
            &stamp[11..13],
            &stamp[13..15]
        );
        assert_eq!(b.get("date").str(), want, "{n}");
    }

    // Refusals: a bad name, an encrypted copy (SSH), a body without dryRun, GET.
    for bad in ["notes.txt", "backup-2024.tar.gz", "..%2Fetc%2Fpasswd", ""] {
        let a = post(&d, &recover_path(bad), r#"{"dryRun":true}"#);
        assert_eq!(a.status, 400, "{bad}: {a}");
        assert_eq!(a.json().get("error").str(), "Nom de fichier invalide");
    }
    let age = post(&d, &recover_path(&old_age), r#"{"dryRun":true}"#);
    assert_eq!(age.status, 400, "{age}");
    let j = age.json();
    assert!(j.get("encrypted").bool(), "{age}");
    assert!(
        j.get("details").str().contains("SSH")
            && j.get("details")
                .str()
                .contains("neopro-backup recover ARCHIVE --identity FICHIER"),
        "{age}"
    );
    for body in ["", "{}", r#"{"dryRun":"false"}"#] {
        let a = post(&d, &recover_path(&second), body);
        assert_eq!(a.status, 400, "{body}: {a}");
    }
    let wrong = d.req(
        "GET",
        &recover_path(&second),
        &[("Authorization", &auth())],
        b"",
    );
    assert_eq!(wrong.status, 405, "{wrong}");
    let none = get(&d, "/api/offsite/recover").json();
    assert_eq!(none.get("state").str(), "none");
    assert!(none.get("job").is_null());

    // The dry run: the restore's dry run of the copy, what would be fetched and made,
    // and nothing written.
    let before = snapshot(&pi.root, false);
    let dry = post(&d, &recover_path(&second), r#"{"dryRun":true}"#);
    assert_eq!(dry.status, 200, "{dry}");
    let j = dry.json();
    assert!(j.get("success").bool() && j.get("dryRun").bool(), "{dry}");
    assert_eq!(j.get("fetched").str(), second);
    assert_eq!(j.get("archive").str(), second);
    assert_eq!(j.get("site").str(), site);
    let would = strs(j.get("wouldRestore"));
    for f in ["configuration.json", "sync-agent.env", "site.conf"] {
        assert!(would.iter().any(|w| w == f), "{f} not in {would:?}");
    }
    for f in j.get("files").arr() {
        assert_eq!(f.get("state").str(), "missing-on-pi", "{dry}");
        assert!(f.get("problem").is_null(), "{dry}");
    }
    let folders = strs(j.get("folders"));
    for want in [pi.neopro.join("webapp"), pi.neopro.join("sync-agent")] {
        assert!(
            folders.iter().any(|f| Path::new(f) == want),
            "{} not in {folders:?}",
            want.display()
        );
    }
    let vf = j.get("videoFetch");
    assert_eq!(vf.get("state").str(), "done", "{dry}");
    let plan = vf.get("report");
    assert_eq!(plan.get("fetch").arr().len(), VIDEOS.len() + 1, "{dry}");
    let video_bytes: u64 = VIDEOS.iter().map(|(_, s)| *s).sum::<u64>() + 300_000;
    assert_eq!(plan.get("fetchBytes").u64(), video_bytes);
    assert_eq!(
        snapshot(&pi.root, false),
        before,
        "the dry run wrote something"
    );

    // The recovery: 202 at once, then the job's report.
    let started = post(&d, &recover_path(&second), r#"{"dryRun":false}"#);
    assert_eq!(started.status, 202, "{started}");
    let id = started.json().get("job").u64();
    let r = d.wait_recovery(TOKEN, id, 120);
    assert_eq!(r.get("state").str(), "done", "{r:?}");
    assert_eq!(r.get("archive").str(), second);
    let p = r.get("progress");
    let archive = object(&format!("{prefix}/{site}/{second}")).unwrap_or_default();
    assert_eq!(p.get("archiveBytes").u64(), archive.len() as u64, "{r:?}");
    assert_eq!(p.get("archiveTotal").u64(), archive.len() as u64, "{r:?}");
    assert_eq!(p.get("videosDone").u64(), VIDEOS.len() as u64 + 1, "{r:?}");
    assert_eq!(p.get("videosTotal").u64(), VIDEOS.len() as u64 + 1, "{r:?}");
    assert_eq!(p.get("videoBytesDone").u64(), video_bytes, "{r:?}");
    assert_eq!(p.get("videoBytesTotal").u64(), video_bytes, "{r:?}");
    let res = r.get("result");
    assert!(
        res.get("success").bool() && res.get("complete").bool(),
        "{r:?}"
    );
    assert_eq!(res.get("fetched").str(), second);
    assert!(res.get("downloaded").bool());
    assert!(
        res.get("safetyBackup").is_null(),
        "a blank Pi has nothing to save"
    );
    let restored = strs(res.get("restored"));
    assert_eq!(restored.len(), 3, "{r:?}");
    let made = strs(res.get("folders"));
    assert!(
        made.iter()
            .any(|f| Path::new(f) == pi.neopro.join("webapp")),
        "{made:?}"
    );
    let vd = res.get("videoFetch");
    assert_eq!(vd.get("state").str(), "done");
    assert!(vd.get("report").get("success").bool(), "{r:?}");
    assert_eq!(
        vd.get("report").get("results").arr().len(),
        VIDEOS.len() + 1
    );

    // Byte-exact: the files, the videos, the archive in BACKUP_DIR.
    assert_eq!(
        fs::read(pi.configuration_json()).unwrap_or_default(),
        b"{\"club\": \"second night\"}\n"
    );
    assert_eq!(
        fs::read(pi.sync_agent_env()).unwrap_or_default(),
        SYNC_AGENT_ENV
    );
    assert_eq!(fs::read(&pi.site_conf).unwrap_or_default(), SITE_CONF);
    for rel in VIDEOS
        .iter()
        .map(|(r, _)| *r)
        .chain(["Sponsors/partner one.mp4"])
    {
        assert!(
            fs::read(t.videos().join(rel)).ok() == fs::read(pi.videos().join(rel)).ok(),
            "{rel} differs after the recovery"
        );
    }
    assert!(
        fs::read(pi.archive_path(&second)).ok() == Some(archive),
        "the archive differs from the bucket's copy"
    );
    assert_eq!(temp_files(&pi.backups), Vec::<String>::new());
    // The local list shows it at once.
    let local = get(&d, "/api/backups").json();
    assert_eq!(local.get("backups").at(0).get("name").str(), second);

    // A name the bucket does not hold: a job that fails, saying so.
    let gone = name_at(now_unix() - 30 * 86_400);
    let a = post(&d, &recover_path(&gone), r#"{"dryRun":false}"#);
    assert_eq!(a.status, 202, "{a}");
    let r = d.wait_recovery(TOKEN, a.json().get("job").u64(), 60);
    assert_eq!(r.get("state").str(), "failed", "{r:?}");
    assert!(
        r.get("result")
            .get("details")
            .str()
            .contains("not in the bucket"),
        "{r:?}"
    );
    let dry = post(&d, &recover_path(&gone), r#"{"dryRun":true}"#);
    assert_eq!(dry.status, 404, "{dry}");
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_second_recovery_is_refused_while_one_runs_and_the_report_shows_progress() {
    let prefix = unique_prefix("recover-api-busy");
    let site = "club-busy";
    let t = Tree::new("recover-api-busy-site");
    let big = t.videos().join("Match/full match.mp4");
    write_random(&big, 24 * 1024 * 1024, 11);
    let env = site_env(&prefix, site);
    let name = sent_backup(&t, &env, &prefix, site);
    let pi = blank_card("recover-api-busy-pi");
    // Through a relay that answers at 4 MiB/s: the big video takes 6 s.
    let relay = Relay::slow_answers(&s3_addr(), 4 * 1024 * 1024);
    let slow = with(&env, &[("S3_ENDPOINT", &relay.url())]);
    let d = daemon(&pi, &slow);
    let a = post(&d, &recover_path(&name), r#"{"dryRun":false}"#);
    assert_eq!(a.status, 202, "{a}");
    let id = a.json().get("job").u64();
    // Progress while it runs: the big video partly fetched.
    wait_for("the big video partly fetched", 60, || {
        let r = get(&d, "/api/offsite/recover").json();
        assert_eq!(r.get("state").str(), "running", "ended too soon: {r:?}");
        let p = r.get("progress");
        let (done, total) = (
            p.get("videoBytesDone").u64(),
            p.get("videoBytesTotal").u64(),
        );
        assert!(done <= total, "{r:?}");
        done > 0 && done < 24 * 1024 * 1024 && total >= 24 * 1024 * 1024
    });
    // Another recovery, and a dry run, are refused meanwhile; /healthz answers at once.
    let again = post(&d, &recover_path(&name), r#"{"dryRun":false}"#);
    assert_eq!(again.status, 409, "{again}");
    assert_eq!(again.json().get("job").u64(), id, "{again}");
    let dry = post(&d, &recover_path(&name), r#"{"dryRun":true}"#);
    assert_eq!(dry.status, 409, "{dry}");
    let t0 = Instant::now();
    let h = d.get("/healthz");
    assert_eq!(h.status, 200);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let r = d.wait_recovery(TOKEN, id, 120);
    assert_eq!(r.get("state").str(), "done", "{r:?}");
    assert!(
        fs::read(&big).ok() == fs::read(pi.videos().join("Match/full match.mp4")).ok(),
        "the big video differs"
    );
    // Once it ended, a new one may start (and finds everything in place).
    let next = post(&d, &recover_path(&name), r#"{"dryRun":false}"#);
    assert_eq!(next.status, 202, "{next}");
    let r = d.wait_recovery(TOKEN, next.json().get("job").u64(), 120);
    assert_eq!(r.get("state").str(), "done", "{r:?}");
    assert!(!r.get("result").get("downloaded").bool(), "{r:?}");
}

#[test]
fn without_a_bucket_the_offsite_routes_say_so_and_names_are_checked_first() {
    let pi = blank_card("recover-api-none");
    let d = daemon(&pi, &[]);
    let a = get(&d, "/api/offsite/backups");
    assert_eq!(a.status, 404, "{a}");
    let j = a.json();
    assert!(!j.get("offsite").bool(), "{a}");
    assert!(j.get("error").str().contains("S3_ENDPOINT"), "{a}");
    let name = name_at(now_unix());
    let p = post(&d, &recover_path(&name), r#"{"dryRun":true}"#);
    assert_eq!(p.status, 404, "{p}");
    let bad = post(&d, &recover_path("backup-1.tar.gz"), r#"{"dryRun":true}"#);
    assert_eq!(bad.status, 400, "{bad}");
    let age = post(
        &d,
        &recover_path(&format!("{name}.age")),
        r#"{"dryRun":false}"#,
    );
    assert_eq!(age.status, 400, "{age}");
    assert!(age.json().get("details").str().contains("--identity"));
    let report = get(&d, "/api/offsite/recover");
    assert_eq!(report.status, 200);
    assert_eq!(report.json().get("state").str(), "none");
    let wrong = d.req(
        "DELETE",
        "/api/offsite/backups",
        &[("Authorization", &auth())],
        b"",
    );
    assert_eq!(wrong.status, 405, "{wrong}");
    let unknown = get(&d, "/api/offsite/elsewhere");
    assert_eq!(unknown.status, 404, "{unknown}");
    assert_eq!(
        fs::read_dir(&pi.backups)
            .map(|r| r
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("backup-"))
                .count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn a_bucket_that_cannot_be_reached_is_a_502_with_its_error() {
    let pi = blank_card("recover-api-down");
    let down = ClosedPort::new();
    let env = with(
        &bucket_env(&down.url()),
        &[("S3_PREFIX", "p"), ("SITE_ID", "club-down")],
    );
    let d = daemon(&pi, &env);
    let a = get(&d, "/api/offsite/backups");
    assert_eq!(a.status, 502, "{a}");
    let j = a.json();
    assert_eq!(j.get("error").str(), "Lecture du bucket impossible");
    assert!(!j.get("details").str().is_empty(), "{a}");
    let dry = post(
        &d,
        &recover_path(&name_at(now_unix())),
        r#"{"dryRun":true}"#,
    );
    assert_eq!(dry.status, 502, "{dry}");
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_recover_from_the_command_line_makes_the_api_answer_409() {
    let prefix = unique_prefix("recover-api-cli");
    let t = Tree::new("recover-api-cli-site");
    write_random(&t.videos().join("Match/long.mp4"), 24 * 1024 * 1024, 5);
    let env = site_env(&prefix, "club-cli");
    let name = sent_backup(&t, &env, &prefix, "club-cli");
    let pi = blank_card("recover-api-cli-pi");
    let relay = Relay::slow_answers(&s3_addr(), 4 * 1024 * 1024);
    let slow = with(&env, &[("S3_ENDPOINT", &relay.url())]);
    let d = daemon(&pi, &env);
    let mut cmd = pi.command(&["recover"]);
    for (k, v) in &slow {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let child = Guard(child);
    // The CLI holds its lock from before its download to its end: seen by the part file
    // of the big video.
    let part = pi.videos().join("Match/.neopro-restore-long.mp4.part");
    wait_for("the CLI fetching the big video", 60, || part.exists());
    let a = post(&d, &recover_path(&name), r#"{"dryRun":false}"#);
    assert_eq!(a.status, 409, "{a}");
    assert!(
        a.json()
            .get("details")
            .str()
            .contains("neopro-backup recover"),
        "{a}"
    );
    let none = get(&d, "/api/offsite/recover").json();
    assert_eq!(
        none.get("state").str(),
        "none",
        "a job was started: {none:?}"
    );
    drop(child);
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_held_pi_says_so_in_the_list_and_a_new_start_from_the_page_lets_its_copies_go() {
    let prefix = unique_prefix("api-new-start");
    let site = Tree::new("api-new-start-site");
    let env = site_env(&prefix, "club-ns");
    let old = sent_backup(&site, &env, &prefix, "club-ns");
    // A fresh card under the same SITE_ID, with files of its own: its backup is held.
    let pi = Tree::bare("api-new-start-pi");
    write_file(&pi.configuration_json(), b"{\"club\": \"a new start\"}\n");
    let held = run(&pi, &env, &["run"]);
    held.expect_code(0, "the fresh card's local backup");
    assert!(held.stdout.contains("held"), "{held}");
    let d = daemon(&pi, &env);
    let l = get(&d, "/api/offsite/backups");
    assert_eq!(l.status, 200, "{l}");
    assert!(l.json().get("held").str().contains("recover"), "{l}");
    // A new start needs an explicit confirmation.
    for body in ["", "{}", "{\"confirm\":false}", "{\"confirm\":\"yes\"}"] {
        let a = post(&d, "/api/offsite/new-start", body);
        assert_eq!(a.status, 400, "{body}: {a}");
    }
    let g = get(&d, "/api/offsite/new-start");
    assert_eq!(g.status, 405, "{g}");
    let a = post(&d, "/api/offsite/new-start", "{\"confirm\":true}");
    assert_eq!(a.status, 200, "{a}");
    assert_eq!(a.json().get("site").str(), "club-ns");
    let l = get(&d, "/api/offsite/backups");
    assert!(l.json().get("held").is_null(), "{l}");
    // The held copy goes (the daemon's worker was woken), beside the old history.
    let mine = archives(&pi.backups);
    wait_for("the held copy to reach the bucket", 60, || {
        let there = objects_in(&format!("{prefix}/club-ns"));
        mine.iter().all(|n| there.contains(n))
    });
    assert!(objects_in(&format!("{prefix}/club-ns")).contains(&old));
}
