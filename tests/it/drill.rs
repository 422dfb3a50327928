//! Restore drills (`fleet drill`, docs/format.md, Fleet, Restore drills) against a real
//! S3 server: SeaweedFS on loopback, as for offsite.rs. Two sites make their backups
//! with the real binary (one plain, one with ENCRYPT_TO and VIDEOS_OFFSITE); the
//! operator drills them with the real binary, and `fleet --json` and `fleet serve` show
//! the drills. Objects are read and damaged through SeaweedFS's filer, not our client.
//!
//! Ignored in a plain `cargo test` (no server there); `make test-offsite` runs them.

use crate::common;

use std::collections::BTreeSet;
use std::fs;

use common::s3::*;
use common::*;

/// A new age key pair in `dir/name`: (file, public key).
fn keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let f = dir.join(name);
    tool("age-keygen", &["-o".as_ref(), f.as_os_str()], dir).expect_code(0, "age-keygen");
    let text = fs::read_to_string(&f).unwrap_or_default();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap_or_else(|| panic!("no public key in {text}"))
        .to_string();
    (f, public)
}

/// The operator's environment: the bucket and the prefix, no site of its own.
fn operator_env(prefix: &str) -> Vec<(String, String)> {
    with(&bucket_env(&s3_endpoint()), &[("S3_PREFIX", prefix)])
}

/// Makes sure the bucket exists (the filer makes it with its first object; a run of
/// this group alone on a fresh server has no other test to do it): a loose object under
/// the prefix, which is no site.
fn bucket_ready(prefix: &str) {
    put_object(&format!("{prefix}/README"), b"restore drill tests");
}

/// A site's drill.json, parsed (panics when there is none).
fn drill_json(prefix: &str, site: &str) -> Json {
    let bytes = object(&format!("{prefix}/{site}/drill.json"))
        .unwrap_or_else(|| panic!("no drill.json for {site}"));
    let text = String::from_utf8_lossy(&bytes).to_string();
    parse_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every key under the prefix, drill.json objects left out.
/// The keys under `prefix` but the drill records: the sites' drill.json and their
/// copies in the fleet's index (`fleet-index/drill/SITE.json`).
fn keys_but_drills(prefix: &str) -> BTreeSet<String> {
    let index = format!("{prefix}/fleet-index/drill/");
    keys_under(prefix)
        .into_iter()
        .filter(|k| !k.ends_with("/drill.json") && !k.starts_with(&index))
        .collect()
}

fn line_of<'a>(out: &'a str, site: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{site}  ")))
        .unwrap_or_else(|| panic!("no line for {site} in\n{out}"))
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn drills_of_a_plain_and_an_encrypted_site_are_recorded_and_shown() {
    let prefix = unique_prefix("drill");
    bucket_ready(&prefix);
    let op = Tree::bare("drill-operator");
    let (key_b, public_b) = keygen(&op.root, "club-b.txt");
    let (key_x, _) = keygen(&op.root, "other-site.txt");
    // The operator's file: another site's identity first, then club-b's.
    let keys = op.root.join("fleet-keys.txt");
    let mut all = fs::read(&key_x).unwrap_or_default();
    all.extend(fs::read(&key_b).unwrap_or_default());
    write_file(&keys, &all);
    let keys_arg = keys.to_string_lossy().to_string();
    let wrong_arg = key_x.to_string_lossy().to_string();

    // The sites, made with the real binary.
    let a = Tree::new("drill-club-a");
    let archive_a = backup(&a, &s3_env(&prefix, "club-a"));
    let b = Tree::new("drill-club-b");
    let env_b = with(
        &s3_env(&prefix, "club-b"),
        &[("ENCRYPT_TO", &public_b), ("VIDEOS_OFFSITE", "true")],
    );
    let archive_b = format!("{}.age", backup(&b, &env_b));
    assert!(object(&format!("{prefix}/club-b/{archive_b}")).is_some());
    let env = operator_env(&prefix);
    let before = keys_but_drills(&prefix);

    // Without an identity: club-a passes, club-b fails saying why; exit 1.
    let out = run(&op, &env, &["fleet", "drill"]);
    out.expect_code(1, "drill without the identity");
    let la = line_of(&out.stdout, "club-a");
    assert!(la.contains("  ok  ") && la.contains(&archive_a), "{out}");
    let lb = line_of(&out.stdout, "club-b");
    assert!(
        lb.contains("FAILED")
            && lb.contains("no identity for this site")
            && lb.contains(&archive_b),
        "{out}"
    );
    assert!(
        out.stdout.contains("2 site(s) drilled: 1 ok, 1 failed"),
        "{out}"
    );
    let ja = drill_json(&prefix, "club-a");
    assert_eq!(ja.get("version").u64(), 1);
    assert!(ja.get("ok").bool() && ja.get("error").is_null());
    assert_eq!(ja.get("archive").str(), archive_a);
    assert!(ja.get("videos").is_null(), "made without VIDEOS_OFFSITE");
    let when = ja.get("when").str().to_string();
    assert!(when.ends_with('Z') && when.len() == 20, "{when}");
    let jb = drill_json(&prefix, "club-b");
    assert!(!jb.get("ok").bool());
    assert!(
        jb.get("error")
            .str()
            .starts_with("no identity for this site")
    );
    assert_eq!(jb.get("archive").str(), archive_b);

    // Another site's key only: the same reason.
    let out = run(
        &op,
        &env,
        &[
            "fleet",
            "drill",
            "--site",
            "club-b",
            "--identity",
            &wrong_arg,
        ],
    );
    out.expect_code(1, "drill with another site's key");
    assert!(out.stdout.contains("does not open it"), "{out}");

    // The operator's file: both pass, club-b's videos in the bucket at their size.
    let out = run(&op, &env, &["fleet", "drill", "--identity", &keys_arg]);
    out.expect_code(0, "drill with the identities");
    assert!(
        out.stdout.contains("2 site(s) drilled: 2 ok, 0 failed"),
        "{out}"
    );
    let jb = drill_json(&prefix, "club-b");
    assert!(jb.get("ok").bool(), "{}", jb.get("error").str());
    let v = jb.get("videos");
    assert_eq!(
        (
            v.get("checked").u64(),
            v.get("missing").u64(),
            v.get("wrong_size").u64()
        ),
        (VIDEOS.len() as u64, 0, 0)
    );
    assert!(!v.get("deep").bool());
    // --deep reads and hashes each (decrypted) video.
    let out = run(
        &op,
        &env,
        &[
            "fleet",
            "drill",
            "--site",
            "club-b",
            "--deep",
            "--identity",
            &keys_arg,
        ],
    );
    out.expect_code(0, "deep drill");
    assert!(line_of(&out.stdout, "club-b").contains("hashed"), "{out}");
    let v = drill_json(&prefix, "club-b").get("videos").clone();
    assert!(v.get("deep").bool() && v.get("bad_hash").u64() == 0);
    // A drill reads: the only objects written are the drill.json ones.
    assert_eq!(keys_but_drills(&prefix), before);
    assert!(keys_under(&prefix).contains(&format!("{prefix}/club-a/drill.json")));
    assert_eq!(
        object(&format!("{prefix}/fleet-index/drill/club-b.json")),
        object(&format!("{prefix}/club-b/drill.json")),
        "the drill record's copy in the fleet's index"
    );

    // A video object of club-b gone: its drill fails, naming it.
    let video = keys_under(&format!("{prefix}/videos/sha256-age/club-b"))
        .into_iter()
        .find(|k| object(k).is_some_and(|b| b.len() > 1000))
        .unwrap_or_else(|| panic!("no video object of club-b"));
    let video_bytes = object(&video).unwrap_or_default();
    put_object(&video, &video_bytes[..video_bytes.len() - 1]);
    let out = run(
        &op,
        &env,
        &[
            "fleet",
            "drill",
            "--site",
            "club-b",
            "--identity",
            &keys_arg,
        ],
    );
    out.expect_code(1, "a video of the wrong size");
    assert!(out.stdout.contains("1 of the wrong size"), "{out}");
    assert_eq!(
        drill_json(&prefix, "club-b")
            .get("videos")
            .get("wrong_size")
            .u64(),
        1
    );
    put_object(&video, &video_bytes);
    run(
        &op,
        &env,
        &[
            "fleet",
            "drill",
            "--site",
            "club-b",
            "--identity",
            &keys_arg,
        ],
    )
    .expect_code(0, "the video back");

    // A damaged newest copy of club-a: failed, named, never an older one taken.
    let key_a = format!("{prefix}/club-a/{archive_a}");
    let whole = object(&key_a).unwrap_or_default();
    put_object(&key_a, &whole[..whole.len() / 2]);
    let out = run(&op, &env, &["fleet", "drill", "--site", "club-a"]);
    out.expect_code(1, "a truncated newest copy");
    assert!(
        line_of(&out.stdout, "club-a").contains(&format!("(damaged) {archive_a} is damaged")),
        "{out}"
    );
    let ja = drill_json(&prefix, "club-a");
    assert!(!ja.get("ok").bool() && ja.get("archive").str() == archive_a);

    // fleet --json: each row's drill.
    let fj = run(&op, &env, &["fleet", "--json"]);
    fj.expect_code(0, "fleet --json");
    let j = parse_json(&fj.stdout).unwrap_or_else(|e| panic!("{e}: {fj}"));
    let row = |site: &str| {
        j.get("sites")
            .arr()
            .iter()
            .find(|s| s.get("site").str() == site)
            .cloned()
            .unwrap_or_else(|| panic!("no {site} in {fj}"))
    };
    let (da, db) = (
        row("club-a").get("drill").clone(),
        row("club-b").get("drill").clone(),
    );
    assert_eq!(
        (da.get("state").str(), da.get("flagged").bool()),
        ("failed", true)
    );
    assert!(da.get("error").str().contains("is damaged"));
    assert_eq!(
        (db.get("state").str(), db.get("flagged").bool()),
        ("ok", false)
    );
    assert_eq!(db.get("max_days").u64(), 8);
    assert_eq!(j.get("drill_flagged").u64(), 1);
    let table = run(&op, &env, &["fleet"]);
    assert!(
        line_of(&table.stdout, "club-a").contains("FAILED"),
        "{table}"
    );
    // FLEET_DRILL_MAX_DAYS is read (and checked).
    let bad = run(
        &op,
        &with(&env, &[("FLEET_DRILL_MAX_DAYS", "0")]),
        &["fleet"],
    );
    bad.expect_code(2, "a bad FLEET_DRILL_MAX_DAYS");
    assert!(bad.stderr.contains("FLEET_DRILL_MAX_DAYS"), "{bad}");

    // fleet serve: the page's column, the API's rows, the metrics.
    let mut c = op.command(&["fleet", "serve", "--listen", "127.0.0.1:0"]);
    c.envs(with(&env, &[("NEOPRO_FLEET_CACHE_SECS", "3600")]));
    let d = Daemon::spawn(c, "fleet serve");
    let page = d.req("GET", "/", &[], b"");
    assert!(String::from_utf8_lossy(&page.body).contains("Restauration vérifiée"));
    let api = d.req("GET", "/api/fleet", &[], b"");
    let api = parse_json(&String::from_utf8_lossy(&api.body)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.get("drill_max_days").u64(), 8);
    assert_eq!(api.get("counts").get("drill_flagged").u64(), 1);
    let metrics = String::from_utf8_lossy(&d.req("GET", "/metrics", &[], b"").body).to_string();
    let value = |name: &str, site: &str| {
        let want = format!("{name}{{site=\"{site}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&want))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {want} in\n{metrics}"))
    };
    assert_eq!(value("neopro_fleet_site_last_drill_success", "club-a"), "0");
    assert_eq!(value("neopro_fleet_site_last_drill_success", "club-b"), "1");
    let t: i64 = value("neopro_fleet_site_last_drill_timestamp_seconds", "club-b")
        .parse()
        .unwrap_or(0);
    assert!((now_unix() - t).abs() < 600, "{t}");
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn usage_errors_are_2_and_a_bucket_that_cannot_be_read_is_1() {
    let prefix = unique_prefix("drill-exit");
    bucket_ready(&prefix);
    let op = Tree::bare("drill-exit");
    let a = Tree::new("drill-exit-a");
    backup(&a, &s3_env(&prefix, "club-a"));
    let env = operator_env(&prefix);
    // No S3 keys, an identity file that cannot be read, a bad --site: usage (2).
    run(&op, &[], &["fleet", "drill"]).expect_code(2, "no S3 keys");
    let out = run(
        &op,
        &env,
        &["fleet", "drill", "--identity", "/nonexistent/keys.txt"],
    );
    out.expect_code(2, "an identity file that cannot be read");
    assert!(
        out.stderr.contains("cannot read the identity file"),
        "{out}"
    );
    run(&op, &env, &["fleet", "drill", "--site", "../x"]).expect_code(2, "a bad --site");
    // A site the bucket does not hold: 1, naming those it holds, nothing written.
    let out = run(&op, &env, &["fleet", "drill", "--site", "club-z"]);
    out.expect_code(1, "a site not in the bucket");
    assert!(out.stderr.contains("club-a"), "{out}");
    assert!(
        !keys_under(&prefix)
            .iter()
            .any(|k| k.contains("club-z") || k.ends_with("drill.json"))
    );
    // The store cannot be reached: 1, said so.
    let gone = with(&env, &[("S3_ENDPOINT", "http://127.0.0.1:9")]);
    let out = run(&op, &gone, &["fleet", "drill"]);
    out.expect_code(1, "an unreachable bucket");
    assert!(
        out.stderr.contains("cannot list the bucket's sites"),
        "{out}"
    );
    // And a drill that passes: 0.
    run(&op, &env, &["fleet", "drill"]).expect_code(0, "a plain site");
}
