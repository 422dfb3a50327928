//! Recovery from the bucket (docs/format.md, Recovery) against a real S3 server:
//! SeaweedFS on loopback, as for offsite.rs. A site makes its backups with the real
//! binary; a blank tree (a freshly flashed card) then recovers it with `recover`.
//! Objects are written and read back through SeaweedFS's filer, not our client.
//!
//! Ignored in a plain `cargo test` (no server there); `make test-offsite` runs them.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::net::Relay;
use common::s3::*;
use common::*;

/// A site's environment with VIDEOS_OFFSITE.
fn site_env(prefix: &str, site: &str) -> Vec<(String, String)> {
    with(&s3_env(prefix, site), &[("VIDEOS_OFFSITE", "true")])
}

/// A site with two nights and its videos in the bucket: (tree, first archive, second
/// archive, configuration.json of the first night).
fn site_with_two_nights(
    prefix: &str,
    site: &str,
    extra: &[(&str, &str)],
) -> (Tree, String, String, Vec<u8>) {
    let t = Tree::new(&format!("recover-{site}"));
    t.add_video(b"Sponsors/partner one.mp4", 300_000, BASE_MTIME);
    let env = with(&site_env(prefix, site), extra);
    let first = backup(&t, &env);
    let first_conf = fs::read(t.configuration_json()).unwrap_or_default();
    write_file(&t.configuration_json(), b"{\"club\": \"second night\"}\n");
    // Archive names have a one-second resolution.
    wait_for("the next second", 5, || {
        archives(&t.backups).len() == 1 && name_at(now_unix()) != first
    });
    let second = backup(&t, &env);
    assert_ne!(first, second);
    let remote = objects_in(&format!("{prefix}/{site}"));
    let suffix = if extra.iter().any(|(k, _)| *k == "ENCRYPT_TO") {
        ".age"
    } else {
        ""
    };
    for n in [&first, &second] {
        assert!(
            remote.contains(&format!("{n}{suffix}")),
            "{n} not sent: {remote:?}"
        );
    }
    (t, first, second, first_conf)
}

fn same_videos(a: &Tree, b: &Tree) {
    let mut n = 0;
    for (rel, _) in VIDEOS
        .iter()
        .chain([("Sponsors/partner one.mp4", 0)].iter())
    {
        let want = fs::read(a.videos().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let got =
            fs::read(b.videos().join(rel)).unwrap_or_else(|e| panic!("{rel} not recovered: {e}"));
        assert!(want == got, "{rel} differs after the recovery");
        n += 1;
    }
    assert_eq!(n, VIDEOS.len() + 1);
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_blank_pi_recovers_its_site_files_videos_and_archive_in_one_command() {
    let prefix = unique_prefix("recover");
    let (site, first, second, first_conf) = site_with_two_nights(&prefix, "club-a", &[]);
    let pi = blank_card("recover-blank");
    let env = site_env(&prefix, "new-hostname");

    // The new hostname has no archive: exit 1, naming the sites the bucket holds.
    let before = snapshot(&pi.root, true);
    let none = run(&pi, &env, &["recover"]);
    none.expect_code(1, "recover under a new hostname");
    assert!(
        none.stderr.contains("no archive of new-hostname") && none.stderr.contains("club-a"),
        "{none}"
    );
    assert_eq!(
        snapshot(&pi.root, true),
        before,
        "a failed recover wrote something"
    );

    // The dry run names the archive, the files and the videos, and writes nothing.
    let dry = run(&pi, &env, &["recover", "--site", "club-a", "--dry-run"]);
    dry.expect_code(0, "dry run");
    assert!(
        dry.stdout.contains(&format!("would fetch {second}")),
        "{dry}"
    );
    assert!(
        dry.stdout.contains("MISSING ON THE PI: would be created"),
        "{dry}"
    );
    assert!(!dry.stdout.contains("PROBLEM"), "{dry}");
    assert!(
        dry.stdout
            .contains(&format!("{} to fetch", VIDEOS.len() + 1)),
        "{dry}"
    );
    assert_eq!(
        snapshot(&pi.root, true),
        before,
        "the dry run wrote something"
    );

    // The recovery.
    let out = run(&pi, &env, &["recover", "--site", "club-a"]);
    out.expect_code(0, "recover");
    assert!(out.stdout.contains("everything came back"), "{out}");
    assert_eq!(
        fs::read(pi.configuration_json()).unwrap_or_default(),
        b"{\"club\": \"second night\"}\n"
    );
    assert_eq!(
        fs::read(pi.sync_agent_env()).unwrap_or_default(),
        SYNC_AGENT_ENV
    );
    let env_mode = fs::metadata(pi.sync_agent_env()).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(env_mode.ok(), Some(0o600), ".env must be 0600");
    assert_eq!(fs::read(&pi.site_conf).unwrap_or_default(), SITE_CONF);
    same_videos(&site, &pi);
    let local = fs::read(pi.archive_path(&second)).unwrap_or_default();
    assert!(
        Some(local) == object(&format!("{prefix}/club-a/{second}")),
        "the archive differs from the bucket's copy"
    );
    let mode = fs::metadata(pi.archive_path(&second)).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600));
    let dir_mode = fs::metadata(&pi.backups).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(dir_mode.ok(), Some(0o700));
    run(&pi, &env, &["verify", &second]).expect_code(0, "verify the recovered archive");
    assert_eq!(temp_files(&pi.backups), Vec::<String>::new());
    // A file only created leaves nothing to save: no safety backup on a blank Pi.
    assert_eq!(archives(&pi.backups), vec![second.clone()]);

    // A named older archive (its files only).
    let older = run(
        &pi,
        &env,
        &["recover", &first, "--site", "club-a", "--no-videos"],
    );
    older.expect_code(0, "recover a named older archive");
    assert_eq!(
        fs::read(pi.configuration_json()).unwrap_or_default(),
        first_conf
    );
    assert!(older.stdout.contains("Safety backup"), "{older}");
    assert!(older.stdout.contains("not asked (--no-videos)"), "{older}");
    // A name the bucket does not have.
    let missing = run(
        &pi,
        &env,
        &[
            "recover",
            "backup-20000101-000000.tar.gz",
            "--site",
            "club-a",
        ],
    );
    missing.expect_code(1, "an archive the bucket does not hold");
    assert!(
        missing.stderr.contains("not in the bucket") && missing.stderr.contains(&second),
        "{missing}"
    );
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_damaged_newest_copy_is_named_and_skipped_and_never_left_in_backup_dir() {
    let prefix = unique_prefix("recover-damaged");
    let (_site, first, second, first_conf) = site_with_two_nights(&prefix, "club-d", &[]);
    let key = format!("{prefix}/club-d/{second}");
    let whole = object(&key).unwrap_or_default();
    put_object(&key, &whole[..whole.len() / 2]);
    let pi = blank_card("recover-damaged");
    let env = with(&site_env(&prefix, "club-d"), &[]);
    let dry = run(&pi, &env, &["recover", "--dry-run", "--no-videos"]);
    dry.expect_code(0, "dry run past a damaged copy");
    assert!(
        dry.stdout.contains(&format!("{second} is DAMAGED")),
        "{dry}"
    );
    assert!(
        dry.stdout.contains(&format!("would fetch {first}")),
        "{dry}"
    );
    let out = run(&pi, &env, &["recover", "--no-videos"]);
    out.expect_code(0, "recover past a damaged copy");
    assert!(
        out.stdout.contains(&format!("{second} is DAMAGED")),
        "{out}"
    );
    assert_eq!(
        fs::read(pi.configuration_json()).unwrap_or_default(),
        first_conf
    );
    assert_eq!(
        archives(&pi.backups),
        vec![first.clone()],
        "the damaged copy was kept"
    );
    assert_eq!(temp_files(&pi.backups), Vec::<String>::new());
    // Named, the damaged copy is refused, not replaced by another.
    let named = run(&pi, &env, &["recover", &second, "--no-videos"]);
    named.expect_code(1, "a named damaged copy");
    assert!(named.stderr.contains(&second), "{named}");
    assert_eq!(archives(&pi.backups), vec![first]);
    // Garbage under a newer plain name too: two copies skipped, the oldest taken.
    put_object(
        &format!("{prefix}/club-d/{}", name_at(now_unix() + 86_400)),
        b"age-encryption.org/v1 not gzip",
    );
    let pi2 = blank_card("recover-garbage");
    let none = run(&pi2, &env, &["recover", "--no-videos"]);
    none.expect_code(0, "garbage and a truncated copy skipped, the oldest taken");
    assert_eq!(none.stdout.matches("is DAMAGED").count(), 2, "{none}");
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn an_encrypted_site_needs_its_identity_and_a_wrong_one_writes_nothing() {
    let prefix = unique_prefix("recover-age");
    let keys = fresh_dir("recover-keys");
    let keygen = |name: &str| {
        let f = keys.join(name);
        tool("age-keygen", &["-o".as_ref(), f.as_os_str()], &keys).expect_code(0, "age-keygen");
        let text = fs::read_to_string(&f).unwrap_or_default();
        let public = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .unwrap_or_else(|| panic!("no public key in {text}"))
            .to_string();
        (f.to_string_lossy().into_owned(), public)
    };
    let (right, public) = keygen("right.txt");
    let (wrong, _) = keygen("wrong.txt");
    let (site, _, second, _) =
        site_with_two_nights(&prefix, "club-e", &[("ENCRYPT_TO", public.as_str())]);
    let pi = blank_card("recover-age");
    let env = with(
        &site_env(&prefix, "club-e"),
        &[("ENCRYPT_TO", public.as_str())],
    );
    let before = snapshot(&pi.root, true);
    let without = run(&pi, &env, &["recover"]);
    without.expect_code(1, "encrypted without an identity");
    assert!(
        without.stderr.contains("age identity is needed"),
        "{without}"
    );
    assert_eq!(
        snapshot(&pi.root, true),
        before,
        "recover without the identity wrote"
    );
    let bad = run(&pi, &env, &["recover", "--identity", &wrong]);
    bad.expect_code(1, "a wrong identity");
    assert!(bad.stderr.contains("does not open it"), "{bad}");
    assert_eq!(
        snapshot(&pi.root, true),
        before,
        "recover with a wrong identity wrote"
    );
    let dry = run(&pi, &env, &["recover", "--identity", &wrong, "--dry-run"]);
    dry.expect_code(1, "a wrong identity, dry run");
    let out = run(&pi, &env, &["recover", "--identity", &right]);
    out.expect_code(0, "the right identity");
    assert!(
        out.stdout.contains(&format!("Fetched {second}.age")),
        "{out}"
    );
    assert_eq!(
        fs::read(pi.configuration_json()).unwrap_or_default(),
        b"{\"club\": \"second night\"}\n"
    );
    same_videos(&site, &pi);
    run(&pi, &env, &["verify", &second]).expect_code(0, "the decrypted archive verifies");
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_recovery_killed_in_the_middle_of_a_video_finishes_at_the_next_run() {
    let prefix = unique_prefix("recover-kill");
    let t = Tree::new("recover-kill-site");
    let big = t.videos().join("Match/full match.mp4");
    write_random(&big, 48 * 1024 * 1024, 7);
    let env = site_env(&prefix, "club-k");
    let name = backup(&t, &env);
    let pi = blank_card("recover-kill");
    // Through a relay that answers at 4 MiB/s: the big video takes 12 s.
    let relay = Relay::slow_answers(&s3_addr(), 4 * 1024 * 1024);
    let slow = with(&env, &[("S3_ENDPOINT", &relay.url())]);
    let mut cmd = pi.command(&["recover"]);
    for (k, v) in &slow {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let part = pi
        .videos()
        .join("Match/.neopro-restore-full match.mp4.part");
    wait_for("the big video half fetched", 60, || {
        fs::metadata(&part).is_ok_and(|m| m.len() > 8 * 1024 * 1024)
    });
    child.kill().unwrap_or_else(|e| panic!("kill -9: {e}"));
    let _ = child.wait();
    assert!(
        !pi.videos().join("Match/full match.mp4").exists(),
        "a half video under its name"
    );
    // The second run finishes; the archive in BACKUP_DIR is reused.
    let started = Instant::now();
    let out = run(&pi, &env, &["recover"]);
    out.expect_code(0, "recover after a kill -9");
    assert!(
        out.stdout.contains(&format!("{name} is already in")),
        "{out}"
    );
    assert!(
        fs::read(&big).ok() == fs::read(pi.videos().join("Match/full match.mp4")).ok(),
        "the big video differs"
    );
    assert!(!part.exists(), "the part file is left");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_fresh_card_under_the_site_id_is_held_until_it_recovers_then_carries_on_the_history() {
    let prefix = unique_prefix("recover-held");
    let (_site, _, second, _) = site_with_two_nights(&prefix, "club-h", &[]);
    // A freshly flashed card: Neopro's default files, the site's SITE_ID.
    // Not in the same second as the site's last night (a name of its own).
    wait_for("the next second", 5, || name_at(now_unix()) != second);
    let pi = Tree::bare("recover-held");
    write_file(&pi.configuration_json(), b"{\"club\": \"default image\"}\n");
    write_file(&pi.sync_agent_env(), b"TOKEN=\n");
    let env = site_env(&prefix, "club-h");
    let remote_before = objects_in(&format!("{prefix}/club-h"));
    let held = run(&pi, &env, &["run"]);
    held.expect_code(0, "the fresh card's local backup");
    assert!(held.stdout.contains("held"), "{held}");
    assert_eq!(
        objects_in(&format!("{prefix}/club-h")),
        remote_before,
        "the fresh card wrote under the site"
    );
    let blank_night = archives(&pi.backups);
    assert_eq!(blank_night.len(), 1);
    let check = run(&pi, &env, &["check"]);
    check.expect_code(2, "check while held");
    // The recovery: the files come back (after a safety backup of the defaults) and the
    // Pi's next backup goes to the site; the ones made before stay local.
    // A file of its own under the name of the copy is never replaced.
    write_file(&pi.archive_path(&second), b"this Pi's own file");
    let clash = run(&pi, &env, &["recover", "--no-videos"]);
    clash.expect_code(1, "a file of the Pi under the copy's name");
    assert!(
        clash.stderr.contains("already holds another file"),
        "{clash}"
    );
    assert_eq!(
        fs::read(pi.archive_path(&second)).unwrap_or_default(),
        b"this Pi's own file"
    );
    fs::remove_file(pi.archive_path(&second)).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&pi, &env, &["recover", "--no-videos"]);
    out.expect_code(0, "recover");
    assert_eq!(
        String::from_utf8_lossy(&fs::read(pi.configuration_json()).unwrap_or_default()),
        "{\"club\": \"second night\"}\n",
        "{out}"
    );
    assert!(out.stdout.contains("Safety backup"), "{out}");
    let next = backup(&pi, &env);
    let remote = objects_in(&format!("{prefix}/club-h"));
    assert!(remote.contains(&next), "{remote:?}");
    assert!(remote.contains(&second), "{remote:?}");
    for local in archives(&pi.backups) {
        if local != next && local != second {
            assert!(
                !remote.contains(&local),
                "{local} (before the recovery) went: {remote:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn recover_new_start_lets_a_held_pi_send_beside_the_old_history_and_removes_nothing() {
    let prefix = unique_prefix("recover-new-start");
    let site = Tree::new("recover-new-start-site");
    let env = site_env(&prefix, "club-n");
    let old = backup(&site, &env);
    let pi = Tree::bare("recover-new-start-pi");
    write_file(&pi.configuration_json(), b"{\"club\": \"new\"}\n");
    let held = run(&pi, &env, &["run"]);
    assert!(held.stdout.contains("held"), "{held}");
    let off = run(&pi, &[], &["recover", "--new-start"]);
    off.expect_code(2, "--new-start without offsite keys");
    let out = run(&pi, &env, &["recover", "--new-start"]);
    out.expect_code(0, "recover --new-start");
    assert!(out.stdout.contains("New start"), "{out}");
    let next = backup(&pi, &env);
    let there = objects_in(&format!("{prefix}/club-n"));
    assert!(there.contains(&next) && there.contains(&old), "{there:?}");
    run(&pi, &env, &["check"]).expect_code(0, "check after the new start");
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn a_site_without_videos_offsite_recovers_its_files_and_says_the_videos_are_not_in_the_bucket() {
    let prefix = unique_prefix("recover-novideos");
    let site = Tree::new("recover-novideos-site");
    let env = s3_env(&prefix, "club-v");
    let name = backup(&site, &env);
    let pi = blank_card("recover-novideos");
    let before = snapshot(&pi.root, true);
    let dry = run(&pi, &env, &["recover", "--dry-run"]);
    dry.expect_code(0, "dry run of a site without VIDEOS_OFFSITE");
    assert!(dry.stdout.contains("Videos: none to fetch"), "{dry}");
    assert_eq!(snapshot(&pi.root, true), before, "the dry run wrote");
    let out = run(&pi, &env, &["recover"]);
    out.expect_code(0, "recover a site without VIDEOS_OFFSITE");
    assert!(out.stdout.contains("Videos: none to fetch"), "{out}");
    assert_eq!(
        fs::read(pi.configuration_json()).unwrap_or_default(),
        CONFIGURATION_JSON
    );
    assert_eq!(archives(&pi.backups), vec![name]);
}
