//! Restore drills on the in-memory store (bucket/mem.rs), with real backups of a real
//! Pi-like tree sent by the real queue (offsite/mem_tests.rs's `pi`): what passes, what
//! fails and why, what is written (drill.json only). The command against SeaweedFS is
//! in tests/it/drill.rs.

use std::io::Write;

use super::*;
use crate::bucket::mem::{Fault, MemBucket, Op};
use crate::offsite::Round;
use crate::offsite::mem_tests::{PREFIX, Pi, ok, pi, shared, writes};

fn settings(p: &Pi) -> OffsiteSettings {
    p.cfg
        .offsite
        .clone()
        .unwrap_or_else(|| panic!("offsite settings"))
}

/// A site with one backup sent to `m`; its archive's name in the bucket.
fn site(m: &MemBucket, name: &str, env: &[(&str, &str)]) -> (Pi, String) {
    let p = pi(name, env);
    let archive = p.backup();
    assert_eq!(p.round(m), Round::Sent(1));
    let enc = env.iter().any(|(k, _)| *k == "ENCRYPT_TO");
    let remote = if enc {
        format!("{archive}.age")
    } else {
        archive
    };
    assert!(m.bytes(&p.key(&remote)).is_some(), "{remote} not sent");
    (p, remote)
}

fn drill_all(
    m: &MemBucket,
    o: &OffsiteSettings,
    ids: &[age::x25519::Identity],
    deep: bool,
) -> Vec<SiteDrill> {
    let req = Request {
        site: None,
        identities: ids,
        deep,
    };
    let mut seen = Vec::new();
    let done =
        ok(run(m, o, &req, &mut |d| seen.push(d.site.clone()))
            .map_err(|e| e.message().to_string()));
    let names: Vec<String> = done.iter().map(|d| d.site.clone()).collect();
    assert_eq!(seen, names, "each site is told as it ends");
    done
}

fn drill_one(
    m: &MemBucket,
    o: &OffsiteSettings,
    site: &str,
    ids: &[age::x25519::Identity],
    deep: bool,
) -> SiteDrill {
    let req = Request {
        site: Some(site.to_string()),
        identities: ids,
        deep,
    };
    let mut done = ok(run(m, o, &req, &mut |_| {}).map_err(|e| e.message().to_string()));
    assert_eq!(done.len(), 1);
    done.remove(0)
}

/// The drill.json of `p`'s site, as the bucket holds it.
fn record_of(m: &MemBucket, p: &Pi) -> Record {
    let bytes = m
        .bytes(&p.key(DRILL_OBJECT))
        .unwrap_or_else(|| panic!("no drill.json"));
    ok(Record::parse(&bytes))
}

#[test]
fn a_plain_site_passes_and_only_its_drill_json_is_written() {
    let m = MemBucket::new();
    let (p, archive) = site(&m, "club-a", &[("VIDEOS_OFFSITE", "1")]);
    let o = settings(&p);
    let before = m.keys();
    let (w, bytes_in) = (writes(&m), m.bytes_received());
    let started = crate::clock::now_unix();
    let done = drill_all(&m, &o, &[], false);
    assert_eq!(done.len(), 1);
    let d = &done[0];
    assert!(d.ok(), "{:?}", d.failure);
    assert_eq!(
        d.archive.as_ref().map(|r| r.name.as_str()),
        Some(archive.as_str())
    );
    assert_eq!(
        d.bytes,
        m.bytes(&p.key(&archive)).map_or(0, |b| b.len() as u64)
    );
    assert_eq!(
        d.videos,
        Some(VideoCounts {
            checked: 2,
            ..VideoCounts::default()
        })
    );
    // Written: drill.json and its copy in the fleet's index, once each, and nothing
    // else (no create, no delete).
    assert_eq!(writes(&m) - w, 2);
    let mut after = m.keys();
    after.retain(|k| !before.contains(k));
    let copy = fleet_index::key(&o, fleet_index::Entry::Drill, "club-a");
    assert_eq!(after, [p.key(DRILL_OBJECT), copy.clone()]);
    assert_eq!(m.bytes(&copy), m.bytes(&p.key(DRILL_OBJECT)));
    let r = record_of(&m, &p);
    assert_eq!(
        m.bytes_received() - bytes_in,
        2 * r.serialize_json().len() as u64
    );
    assert_eq!(
        (r.version, r.archive.as_deref(), r.ok, r.error.as_deref()),
        (1, Some(archive.as_str()), true, None)
    );
    assert_eq!(r.videos, d.videos);
    let when = crate::clock::parse_iso(&r.when).unwrap_or_default();
    assert!(
        r.when.ends_with('Z') && when >= started && when <= crate::clock::now_unix() + 1,
        "{}",
        r.when
    );
    // The exact shape (docs/format.md, Restore drills).
    let text =
        String::from_utf8_lossy(&m.bytes(&p.key(DRILL_OBJECT)).unwrap_or_default()).to_string();
    assert_eq!(
        text,
        format!(
            r#"{{"version":1,"when":"{}","archive":"{archive}","ok":true,"error":null,"videos":{{"checked":2,"missing":0,"wrong_size":0,"deep":false,"bad_hash":0}}}}"#,
            r.when
        )
    );
}

#[test]
fn the_put_is_the_only_write_by_kind() {
    let m = MemBucket::new();
    let (p, _) = site(&m, "club-a", &[]);
    let o = settings(&p);
    let (put, create, delete) = (m.count(Op::Put), m.count(Op::Create), m.count(Op::Delete));
    let d = drill_one(&m, &o, "club-a", &[], false);
    assert!(d.ok(), "{:?}", d.failure);
    // Made without VIDEOS_OFFSITE: no video to check.
    assert_eq!(d.videos, None);
    assert_eq!(
        (
            m.count(Op::Put) - put,
            m.count(Op::Create) - create,
            m.count(Op::Delete) - delete
        ),
        (2, 0, 0),
        "drill.json and its copy in the fleet's index"
    );
}

fn identity_file(ids: &[&age::x25519::Identity]) -> Vec<age::x25519::Identity> {
    use age::secrecy::ExposeSecret;
    let dir = std::env::temp_dir().join(format!(
        "neopro-drill-ids-{}-{}",
        std::process::id(),
        crate::clock::now_unix()
    ));
    ok(std::fs::create_dir_all(&dir));
    let path = dir.join("keys.txt");
    let mut f = ok(std::fs::File::create(&path));
    for i in ids {
        ok(writeln!(
            f,
            "# public key: {}\n{}",
            i.to_public(),
            i.to_string().expose_secret()
        ));
    }
    drop(f);
    let read = ok(crate::restore::identity::read(&path));
    let _ = std::fs::remove_dir_all(&dir);
    read
}

#[test]
fn an_encrypted_site_passes_with_its_identity_and_fails_clearly_without_while_others_go_on() {
    let m = MemBucket::new();
    let (plain, _) = site(&m, "club-a", &[("VIDEOS_OFFSITE", "1")]);
    let id = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let (enc, archive) = site(
        &m,
        "club-b",
        &[("VIDEOS_OFFSITE", "1"), ("ENCRYPT_TO", &recipient)],
    );
    let o = settings(&plain);

    // No identity: club-b fails with the reason, club-a passes.
    let done = drill_all(&m, &o, &[], false);
    let (a, b) = (&done[0], &done[1]);
    assert_eq!((a.site.as_str(), b.site.as_str()), ("club-a", "club-b"));
    assert!(a.ok(), "{:?}", a.failure);
    let (kind, why) = b
        .failure
        .clone()
        .unwrap_or_else(|| panic!("club-b passed without its identity"));
    assert_eq!(kind, Kind::Identity);
    assert!(
        why.starts_with("no identity for this site") && why.contains(&archive),
        "{why}"
    );
    let r = record_of(&m, &enc);
    assert!(
        !r.ok
            && r.error.as_deref() == Some(why.as_str())
            && r.archive.as_deref() == Some(archive.as_str())
    );
    assert_eq!(r.videos, None);

    // Another site's identity only: the same reason, said as such.
    let wrong = identity_file(&[&other]);
    let d = drill_one(&m, &o, "club-b", &wrong, false);
    let (kind, why) = d
        .failure
        .unwrap_or_else(|| panic!("opened with another key"));
    assert_eq!(kind, Kind::Identity);
    assert!(
        why.starts_with("no identity for this site") && why.contains("does not open it"),
        "{why}"
    );

    // The operator's file with both sites' keys: passes, its age videos at their size,
    // and hashed with --deep (decrypted).
    let both = identity_file(&[&other, &id]);
    let d = drill_one(&m, &o, "club-b", &both, false);
    assert!(d.ok(), "{:?}", d.failure);
    assert_eq!(
        d.videos
            .as_ref()
            .map(|v| (v.checked, v.missing, v.wrong_size)),
        Some((2, 0, 0))
    );
    let d = drill_one(&m, &o, "club-b", &both, true);
    assert!(d.ok(), "{:?}", d.failure);
    assert_eq!(
        d.videos.as_ref().map(|v| (v.deep, v.bad_hash)),
        Some((true, 0))
    );
    assert!(record_of(&m, &enc).ok);
}

#[test]
fn a_damaged_newest_copy_fails_the_drill_which_never_takes_an_older_one() {
    let m = MemBucket::new();
    let (p, older) = site(&m, "club", &[]);
    let newest = p.backup_again_later();
    assert_eq!(p.round(&m), Round::Sent(1));
    let key = p.key(&newest);
    let whole = m.bytes(&key).unwrap_or_default();
    // Truncated (an upload cut short by a store that kept it anyway).
    m.insert(&key, &whole[..whole.len() / 2]);
    let o = settings(&p);
    let d = drill_one(&m, &o, "club", &[], false);
    let (kind, why) = d
        .failure
        .clone()
        .unwrap_or_else(|| panic!("a truncated copy passed"));
    assert_eq!(kind, Kind::Damaged, "{why}");
    assert!(why.starts_with(&format!("{newest} is damaged: ")), "{why}");
    assert!(!why.contains(&older), "{why}");
    let r = record_of(&m, &p);
    assert_eq!((r.ok, r.archive.as_deref()), (false, Some(newest.as_str())));
    // Garbage that is no gzip at all: damaged too.
    m.insert(&key, b"not an archive");
    let d = drill_one(&m, &o, "club", &[], false);
    assert_eq!(d.failure.map(|f| f.0), Some(Kind::Damaged));
    // Whole again: passes.
    m.insert(&key, &whole);
    assert!(drill_one(&m, &o, "club", &[], false).ok());
}

#[test]
fn a_missing_video_and_one_of_the_wrong_size_fail_the_drill_naming_them() {
    let m = MemBucket::new();
    let (p, _) = site(&m, "club", &[("VIDEOS_OFFSITE", "1")]);
    let o = settings(&p);
    let (key_a, _, _) = shared(&p, "sponsors/a.mp4");
    let (key_b, bytes_b, _) = shared(&p, "b.mp4");
    ok(m.delete(&key_a));
    m.insert(&key_b, &bytes_b[..bytes_b.len() - 1]);
    let d = drill_one(&m, &o, "club", &[], false);
    let (kind, why) = d
        .failure
        .clone()
        .unwrap_or_else(|| panic!("passed without its videos"));
    assert_eq!(kind, Kind::Videos);
    assert_eq!(
        d.videos,
        Some(VideoCounts {
            checked: 2,
            missing: 1,
            wrong_size: 1,
            deep: false,
            bad_hash: 0
        })
    );
    assert!(why.contains("1 missing, 1 of the wrong size of 2"), "{why}");
    assert!(why.contains("sponsors/a.mp4: missing"), "{why}");
    let shown = format!("b.mp4: {}: 69999 bytes, 70000 expected", m.describe(&key_b));
    assert!(why.contains(&shown), "{why}");
    let r = record_of(&m, &p);
    assert!(!r.ok && r.videos == d.videos);
    // The site's own copy (fallback) stands in for a shared one, as for a restore.
    let hash = crate::units::sha256(&bytes_b);
    m.insert(&videos::fallback_key(&o, "club", &hash), &bytes_b);
    let d = drill_one(&m, &o, "club", &[], false);
    assert_eq!(d.videos.map(|v| (v.missing, v.wrong_size)), Some((1, 0)));
}

#[test]
fn deep_catches_a_poisoned_object_of_the_right_size() {
    let m = MemBucket::new();
    let (p, _) = site(&m, "club", &[("VIDEOS_OFFSITE", "1")]);
    let o = settings(&p);
    let (key, bytes, hash) = shared(&p, "sponsors/a.mp4");
    m.insert(&key, &vec![0u8; bytes.len()]);
    // By size it looks whole.
    assert!(drill_one(&m, &o, "club", &[], false).ok());
    let gets = m.count(Op::Get);
    let d = drill_one(&m, &o, "club", &[], true);
    let (kind, why) = d
        .failure
        .clone()
        .unwrap_or_else(|| panic!("deep missed a poisoned video"));
    assert_eq!(kind, Kind::Videos);
    assert_eq!(
        d.videos.as_ref().map(|v| (v.deep, v.bad_hash, v.missing)),
        Some((true, 1, 0))
    );
    assert!(
        why.contains("sponsors/a.mp4") && why.contains("hash to"),
        "{why}"
    );
    // Read by ranges: the archive, then each video's bytes.
    assert!(m.count(Op::Get) - gets >= 3);
    // A whole copy of the site's own (fallback) is what a restore would take: passes.
    m.insert(&videos::fallback_key(&o, "club", &hash), &bytes);
    let d = drill_one(&m, &o, "club", &[], true);
    assert!(d.ok(), "{:?}", d.failure);
}

#[test]
fn a_store_failure_is_reported_as_such_never_as_damage() {
    let m = MemBucket::new();
    let (p, archive) = site(&m, "club", &[("VIDEOS_OFFSITE", "1")]);
    let o = settings(&p);
    // The copy cannot be read (every retry of its first range fails).
    m.inject(Op::Get, &p.key(&archive), Fault::Unreachable, 4);
    let d = drill_one(&m, &o, "club", &[], false);
    let (kind, why) = d
        .failure
        .clone()
        .unwrap_or_else(|| panic!("passed without reading"));
    assert_eq!(kind, Kind::Store, "{why}");
    assert!(
        why.starts_with("store failure") && !why.contains("damaged"),
        "{why}"
    );
    // Recorded as the last drill (it did not pass), saying why.
    assert_eq!(record_of(&m, &p).error.as_deref(), Some(why.as_str()));
    // A 500 on the videos' HEADs: a store failure too, not "missing".
    m.inject(
        Op::Head,
        &format!("{PREFIX}/videos/"),
        Fault::Status(500),
        1,
    );
    let d = drill_one(&m, &o, "club", &[], false);
    assert_eq!(
        d.failure.as_ref().map(|f| f.0),
        Some(Kind::Store),
        "{:?}",
        d.failure
    );
    assert!(
        d.failure
            .as_ref()
            .is_some_and(|f| f.1.contains("HEAD") && f.1.contains("HTTP 500")),
        "{:?}",
        d.failure
    );
    assert_eq!(d.videos, None);
    // The sites cannot be listed: no drill at all, nothing written.
    let w = writes(&m);
    m.inject(Op::List, PREFIX, Fault::Unreachable, 1);
    let req = Request {
        site: None,
        identities: &[],
        deep: false,
    };
    let e = run(&m, &o, &req, &mut |_| panic!("a site was drilled")).err();
    assert!(
        matches!(&e, Some(Refused::Store(m)) if m.contains("cannot list")),
        "{e:?}"
    );
    assert_eq!(writes(&m), w);
    // A drill.json that cannot be written fails the site's drill (exit 1), said so.
    m.inject(Op::Put, &p.key(DRILL_OBJECT), Fault::Status(403), 1);
    let d = drill_one(&m, &o, "club", &[], false);
    assert!(d.failure.is_none() && !d.ok());
    assert!(
        d.recorded
            .as_ref()
            .is_err_and(|e| e.contains("cannot write")),
        "{:?}",
        d.recorded
    );
}

#[test]
fn an_empty_bucket_is_no_silent_success() {
    let m = MemBucket::new();
    let p = pi("club", &[]);
    let req = Request {
        site: None,
        identities: &[],
        deep: false,
    };
    let e = run(&m, &settings(&p), &req, &mut |_| {
        panic!("a site was drilled")
    })
    .err();
    assert!(
        matches!(&e, Some(Refused::NoSite(msg)) if msg.contains("holds no site under") && msg.contains("neopro/")),
        "{e:?}"
    );
    assert_eq!(writes(&m), 0);
}

#[test]
fn a_site_not_in_the_bucket_is_refused_and_nothing_is_written() {
    let m = MemBucket::new();
    let (p, _) = site(&m, "club", &[]);
    let o = settings(&p);
    let w = writes(&m);
    let req = Request {
        site: Some("clubb".into()),
        identities: &[],
        deep: false,
    };
    let e = run(&m, &o, &req, &mut |_| {}).err();
    assert!(
        matches!(&e, Some(Refused::NoSite(msg)) if msg.contains("no archive of clubb") && msg.contains("club")),
        "{e:?}"
    );
    assert_eq!(writes(&m), w);
    assert!(!m.keys().iter().any(|k| k.contains("clubb")));
    // A folder with no archive copy: fails, recorded in that folder.
    m.insert(&format!("{PREFIX}/empty/last-backup-status.json"), b"{}");
    let d = drill_one(&m, &o, "empty", &[], false);
    assert_eq!(d.failure.map(|f| f.0), Some(Kind::NoArchive));
    assert!(m.bytes(&format!("{PREFIX}/empty/{DRILL_OBJECT}")).is_some());
}

#[test]
fn the_fleet_shows_each_site_last_drill() {
    let m = MemBucket::new();
    let (a, _) = site(&m, "club-a", &[]);
    site(&m, "club-b", &[]);
    let o = settings(&a);
    let (f, cost) = ok(crate::offsite::fleet_read::build_on(
        &m,
        &o,
        crate::clock::now_unix(),
    ));
    assert_eq!(cost.drill_gets, 0);
    assert!(
        f.sites
            .iter()
            .all(|s| s.drill.state == "never" && s.drill.flagged)
    );
    assert_eq!(f.drill_flagged, 2);
    // club-b's newest copy is damaged.
    let newest = ok(crate::recover::list(
        &m,
        &crate::offsite::Place::s3(&o),
        "club-b",
    ));
    m.insert(&newest[0].key, b"junk");
    drill_all(&m, &o, &[], false);
    let now = crate::clock::now_unix();
    let (f, cost) = ok(crate::offsite::fleet_read::build_on(&m, &o, now));
    assert_eq!((cost.status_gets, cost.drill_gets), (2, 2));
    let row = |s: &str| {
        f.sites
            .iter()
            .find(|r| r.site == s)
            .cloned()
            .unwrap_or_else(|| panic!("{s}"))
    };
    let (ra, rb) = (row("club-a").drill, row("club-b").drill);
    assert_eq!(
        (ra.state.as_str(), ra.flagged, ra.ok),
        ("ok", false, Some(true))
    );
    assert_eq!(
        (rb.state.as_str(), rb.flagged, rb.ok),
        ("failed", true, Some(false))
    );
    assert!(
        rb.error
            .as_deref()
            .is_some_and(|e| e.contains("is damaged"))
    );
    assert_eq!(f.drill_flagged, 1);
    // Nine days later, club-a's drill is old (FLEET_DRILL_MAX_DAYS 8), then not with 10.
    let later = now + 9 * 86_400;
    let (f, _) = ok(crate::offsite::fleet_read::read(&m, &o, later, 8));
    let ra = f
        .sites
        .iter()
        .find(|r| r.site == "club-a")
        .map(|r| r.drill.clone());
    assert_eq!(
        ra.as_ref().map(|d| (d.state.as_str(), d.flagged)),
        Some(("old", true))
    );
    assert_eq!(ra.and_then(|d| d.age_days), Some(9.0));
    let (f, _) = ok(crate::offsite::fleet_read::read(&m, &o, later, 10));
    assert_eq!(f.drill_flagged, 1);
    // An unreadable drill.json (a newer version's) is said so, and flagged.
    m.insert(
        &a.key(DRILL_OBJECT),
        br#"{"version":2,"when":"2026-01-01T00:00:00Z","ok":true}"#,
    );
    let (f, _) = ok(crate::offsite::fleet_read::build_on(&m, &o, now));
    let ra = f
        .sites
        .iter()
        .find(|r| r.site == "club-a")
        .map(|r| r.drill.clone());
    assert!(
        ra.as_ref().is_some_and(|d| d.state == "unreadable"
            && d.flagged
            && d.error.as_deref().is_some_and(|e| e.contains("version 2"))),
        "{ra:?}"
    );
}

#[test]
fn records_parse_and_refuse_what_they_cannot_read() {
    let r = Record {
        version: 1,
        when: "2026-01-05T09:12:40Z".into(),
        archive: Some("backup-20260105-030000.tar.gz.age".into()),
        ok: false,
        error: Some("no identity for this site: …".into()),
        videos: None,
    };
    let text = r.serialize_json();
    assert!(text.contains(r#""videos":null"#), "{text}");
    assert_eq!(ok(Record::parse(text.as_bytes())), r);
    for bad in [
        &b"not json"[..],
        br#"{"version":2,"when":"2026-01-05T09:12:40Z","archive":null,"ok":true,"error":null,"videos":null}"#,
        br#"{"version":1,"when":"yesterday","archive":null,"ok":true,"error":null,"videos":null}"#,
        b"\xff\xfe",
    ] {
        assert!(Record::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
}

#[test]
fn an_age_copy_size_follows_from_its_header_and_plain_size() {
    let id = age::x25519::Identity::generate();
    for n in [0usize, 1, 65_535, 65_536, 65_537, 200_000, 3 * 65_536] {
        let plain = vec![7u8; n];
        let mut out = Vec::new();
        let e = ok(age::Encryptor::with_recipients(std::iter::once(
            &id.to_public() as &dyn age::Recipient
        ))
        .map_err(|e| e.to_string()));
        let mut w = ok(e.wrap_output(&mut out));
        ok(w.write_all(&plain));
        ok(w.finish());
        let header = age_header_len(&out).unwrap_or_else(|| panic!("{n}: no header found"));
        assert_eq!(age_size(header, n as u64), out.len() as u64, "{n} bytes");
    }
    assert_eq!(age_header_len(b"\x1f\x8b not age"), None);
    assert_eq!(
        age_header_len(b"age-encryption.org/v1\n-> X25519 abc\n"),
        None
    );
}
