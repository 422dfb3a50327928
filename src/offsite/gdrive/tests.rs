//! The Drive queue on the in-memory store, with real Pis (a real backup, real files):
//! the same queue, backoff, retention and status shape as the S3 copies. Drive's own
//! wire (resumable uploads, IDs, tokens) is tested in bucket/gdrive.rs and against the
//! fake Google server (tests/it/gdrive.rs).

use super::*;
use crate::bucket::mem::{Fault, MemBucket, Op};
use crate::offsite::history;
use crate::offsite::mem_tests::{Pi, ok, pi};

const FOLDER: &str = "neopro-backups";

/// A Pi with Drive alone (no S3), and `more` keys.
fn drive_pi(site: &str, more: &[(&str, &str)]) -> Pi {
    let mut env = vec![
        ("S3_ENDPOINT", ""),
        ("GDRIVE_CLIENT_ID", "123-abc.apps.googleusercontent.com"),
        ("GDRIVE_CLIENT_SECRET", "GOCSPX-secret"),
    ];
    env.extend_from_slice(more);
    pi(site, &env)
}

fn round(p: &Pi, b: &dyn Bucket, force: bool) -> Round {
    let tz = Tz::utc();
    let log = Log::new(p.dir(), &tz);
    let never = AtomicBool::new(false);
    process_on(b, &p.cfg, &tz, &log, &never, force)
}

fn key(site: &str, name: &str) -> String {
    format!("{FOLDER}/{site}/{name}")
}

fn local_status(p: &Pi) -> status::Status {
    ok(status::read(p.dir()).map(|s| s.unwrap_or_default()))
}

#[test]
fn a_drive_only_pi_sends_its_archive_then_its_status_updated_in_place() {
    let p = drive_pi("club", &[]);
    assert!(p.cfg.offsite.is_none() && p.cfg.gdrive.is_some());
    let m = MemBucket::new();
    let name = p.backup();
    let st = local_status(&p);
    assert!(st.offsite.is_none(), "no S3: no offsite object");
    assert_eq!(st.gdrive.as_ref().map(|g| g.pending), Some(1));
    assert!(has_work(&p.cfg));
    assert_eq!(round(&p, &m, true), Round::Sent(1));
    let local = ok(std::fs::read(p.dir().join(&name)));
    assert_eq!(m.bytes(&key("club", &name)), Some(local));
    let remote = m
        .bytes(&key("club", STATUS_OBJECT))
        .unwrap_or_else(|| panic!("no status on Drive"));
    let remote = String::from_utf8_lossy(&remote).to_string();
    assert!(
        remote.contains(&format!("\"archive\":\"{name}\"")),
        "{remote}"
    );
    let g = local_status(&p).gdrive.unwrap_or_default();
    assert_eq!((g.pending, g.error.as_deref()), (0, None));
    assert!(g.last_upload.is_some());
    assert!(!has_work(&p.cfg), "nothing left to send");
    assert_eq!(sent_totals(&p.cfg).0, 1);
    // A second backup: its copy, and the status replaced (one object of that name).
    let puts = m.count(Op::Put);
    let second = p.backup_again_later();
    assert_eq!(round(&p, &m, true), Round::Sent(1));
    assert!(m.bytes(&key("club", &second)).is_some());
    assert_eq!(m.count(Op::Put) - puts, 2, "the copy and the status");
    let statuses = m
        .keys()
        .iter()
        .filter(|k| k.ends_with(STATUS_OBJECT))
        .count();
    assert_eq!(statuses, 1);
    // The S3 queue never saw these copies.
    assert!(crate::offsite::pending(p.dir()).is_empty());
}

#[test]
fn a_failure_keeps_the_copy_queued_with_backoff_and_says_why() {
    let p = drive_pi("club", &[("NEOPRO_OFFSITE_RETRY_SECS", "60")]);
    let m = MemBucket::new();
    let name = p.backup();
    m.inject(Op::Put, FOLDER, Fault::Status(503), 1);
    let r = round(&p, &m, true);
    assert!(matches!(&r, Round::Failed(e) if e.contains("503")), "{r:?}");
    assert_eq!(pending(p.dir()), std::slice::from_ref(&name));
    let g = local_status(&p).gdrive.unwrap_or_default();
    assert!(
        g.error.as_deref().is_some_and(|e| e.contains("503")),
        "{g:?}"
    );
    assert_eq!(g.pending, 1);
    let st = read_state(p.dir());
    assert_eq!(st.failures, 1);
    assert!(st.next_try > clock::now_unix());
    // Before the backoff is over, a round not forced does nothing.
    assert_eq!(round(&p, &m, false), Round::Idle);
    // Forced (a new backup): it goes.
    assert_eq!(round(&p, &m, true), Round::Sent(1));
    assert!(m.bytes(&key("club", &name)).is_some());
    assert_eq!(local_status(&p).gdrive.and_then(|g| g.error), None);
}

#[test]
fn a_revoked_connection_and_a_full_drive_have_their_code_and_keep_the_copies() {
    for (msg, code) in [
        (
            "Google Drive refused the refresh token (invalid_grant): run neopro-backup gdrive login again",
            "gdrive_auth",
        ),
        (
            "POST gdrive://neopro-backups/club: HTTP 403 storageQuotaExceeded: Google Drive is full",
            "gdrive_full",
        ),
    ] {
        let p = drive_pi("club", &[]);
        // Every write answered with the words the Drive adapter gives a revoked token
        // or a full Drive: the queue's side of them.
        let b = MemBucket::new();
        b.inject(Op::Put, FOLDER, Fault::Says(400, msg.to_string()), 2);
        let name = p.backup();
        assert!(matches!(round(&p, &b, true), Round::Failed(_)));
        assert_eq!(pending(p.dir()), std::slice::from_ref(&name));
        let g = local_status(&p).gdrive.unwrap_or_default();
        assert_eq!(g.error_code.as_deref(), Some(code), "{g:?}");
        assert!(crate::error_words::words(code).is_some());
        // Said once in the log, not at every retry.
        assert!(matches!(round(&p, &b, true), Round::Failed(_)));
        let log = ok(std::fs::read_to_string(p.dir().join(store::LOG_FILE)));
        assert_eq!(log.matches(msg).count(), 1, "{log}");
        assert_eq!(read_state(p.dir()).failures, 2);
        // The local backup was never touched.
        assert!(p.dir().join(&name).is_file());
    }
}

#[test]
fn both_targets_each_get_the_copy_on_their_own_queue() {
    let p = pi(
        "club",
        &[
            ("GDRIVE_CLIENT_ID", "123-abc.apps.googleusercontent.com"),
            ("GDRIVE_CLIENT_SECRET", "GOCSPX-secret"),
        ],
    );
    let s3 = MemBucket::new();
    let drive = MemBucket::new();
    let name = p.backup();
    assert_eq!(
        crate::offsite::pending(p.dir()),
        std::slice::from_ref(&name)
    );
    assert_eq!(pending(p.dir()), std::slice::from_ref(&name));
    // Drive first: S3's queue is untouched, and the other way round.
    assert_eq!(round(&p, &drive, true), Round::Sent(1));
    assert_eq!(
        crate::offsite::pending(p.dir()),
        std::slice::from_ref(&name)
    );
    assert_eq!(p.round(&s3), Round::Sent(1));
    assert!(s3.bytes(&p.key(&name)).is_some() && drive.bytes(&key("club", &name)).is_some());
    let st = local_status(&p);
    assert_eq!(st.offsite.map(|o| o.pending), Some(0));
    assert_eq!(st.gdrive.map(|g| g.pending), Some(0));
}

#[test]
fn retention_on_drive_keeps_the_newest_three_and_an_encrypted_copy_is_age() {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let p = drive_pi(
        "club",
        &[("GDRIVE_RETENTION_DAYS", "2"), ("ENCRYPT_TO", &recipient)],
    );
    let m = MemBucket::new();
    for d in ["20200101", "20200102", "20200103", "20200104"] {
        m.insert(
            &key("club", &format!("backup-{d}-030000.tar.gz.age")),
            b"old",
        );
    }
    // Copies this install did not send: it starts a new history there (else held).
    let log = Log::new(p.dir(), &Tz::utc());
    ok(history::new_start(&p.cfg, &log));
    let name = p.backup();
    assert_eq!(round(&p, &m, true), Round::Sent(1));
    let copy = m
        .bytes(&key("club", &format!("{name}.age")))
        .unwrap_or_else(|| panic!("no .age copy"));
    assert!(copy.starts_with(b"age-encryption.org/v1"));
    assert_eq!(m.bytes(&key("club", &name)), None, "no plain copy");
    let left: Vec<String> = m
        .keys()
        .into_iter()
        .filter(|k| k.contains("backup-2020"))
        .collect();
    // Old copies past 2 days go, but the newest 3 of the folder stay (this one and two).
    assert_eq!(
        left,
        [
            key("club", "backup-20200103-030000.tar.gz.age"),
            key("club", "backup-20200104-030000.tar.gz.age")
        ]
    );
}

#[test]
fn videos_offsite_with_drive_alone_is_a_configuration_error_that_says_why() {
    let mut vars = std::collections::HashMap::new();
    for (k, v) in [
        ("GDRIVE_CLIENT_ID", "123-abc.apps.googleusercontent.com"),
        ("GDRIVE_CLIENT_SECRET", "GOCSPX-secret"),
        ("VIDEOS_OFFSITE", "true"),
    ] {
        vars.insert(k.to_string(), v.to_string());
    }
    let e = crate::config::Lookup::from_parts(vars, "", Path::new("t.conf"))
        .and_then(|l| Config::from_sources(&l))
        .map(|_| ())
        .map_err(|e| e.0);
    assert!(
        e.as_ref()
            .is_err_and(|e| e.contains("VIDEOS_OFFSITE") && e.contains("Google Drive")),
        "{e:?}"
    );
}

#[test]
fn a_new_card_writes_nothing_to_the_site_drive_until_it_recovers_or_starts_anew() {
    let m = MemBucket::new();
    let old = ["20250103", "20250104"].map(|d| key("club", &format!("backup-{d}-030000.tar.gz")));
    for k in &old {
        m.insert(k, b"the site's real archive");
    }
    m.insert(&key("club", STATUS_OBJECT), b"{\"success\":true}");
    let p = drive_pi("club", &[]);
    let first = p.backup();
    let writes = m.count(Op::Put) + m.count(Op::Create) + m.count(Op::Delete);
    let r = round(&p, &m, true);
    let why = match &r {
        Round::Held(why) => why.clone(),
        other => panic!("not held: {other:?}"),
    };
    assert!(
        why.contains("Google Drive copies held") && why.contains("2 backup(s)"),
        "{why}"
    );
    assert_eq!(
        m.count(Op::Put) + m.count(Op::Create) + m.count(Op::Delete),
        writes,
        "nothing written while held"
    );
    let g = local_status(&p).gdrive.unwrap_or_default();
    assert!(
        g.held && g.error_code.as_deref() == Some("gdrive_held"),
        "{g:?}"
    );
    assert_eq!(g.pending, 1);
    // Held again at the next round, said once in the log.
    assert!(matches!(round(&p, &m, true), Round::Held(_)));
    let log_text = ok(std::fs::read_to_string(p.dir().join(store::LOG_FILE)));
    assert_eq!(
        log_text.matches("Google Drive copies held").count(),
        1,
        "{log_text}"
    );
    // The recovery from the site: the hold is lifted, the blank card's copy leaves the
    // queue (it stays on the Pi), the next backup goes.
    let log = Log::new(p.dir(), &Tz::utc());
    ok(history::record_recovery(&p.cfg, "club", &log));
    assert!(
        pending(p.dir()).is_empty(),
        "the blank card's copy left the queue"
    );
    assert!(p.dir().join(&first).is_file());
    let next = p.backup_again_later();
    assert_eq!(round(&p, &m, true), Round::Sent(1));
    assert!(m.bytes(&key("club", &next)).is_some() && m.bytes(&key("club", &first)).is_none());
    assert!(
        old.iter().all(|k| m.bytes(k).is_some()),
        "the site's copies stay"
    );
    assert!(!local_status(&p).gdrive.unwrap_or_default().held);
    // Another new card: a new start lets its copies go beside the old ones.
    let q = drive_pi("club", &[]);
    let blank = q.backup();
    assert!(matches!(round(&q, &m, true), Round::Held(_)));
    ok(history::new_start(&q.cfg, &Log::new(q.dir(), &Tz::utc())));
    assert_eq!(round(&q, &m, false), Round::Sent(1));
    assert!(m.bytes(&key("club", &blank)).is_some());
    // A store that cannot be listed is never taken for an empty folder.
    let r2 = drive_pi("club", &[]);
    r2.backup();
    m.inject(Op::List, FOLDER, Fault::Status(503), 1);
    let r = round(&r2, &m, true);
    assert!(
        matches!(&r, Round::Failed(e) if e.contains("cannot tell")),
        "{r:?}"
    );
}
