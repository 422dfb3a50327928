//! The offsite domain on the in-memory store (bucket/mem.rs), in `make check`: the
//! queue, remote retention, encryption, videos offsite and its ledger, `fleet gc` and
//! the fleet, with real backups of a real Pi-like tree in a temp folder, and the
//! failures a store shows injected (5xx, a connection that drops mid-body, 403).
//! The same paths run against SeaweedFS in tests/offsite.rs, tests/videos.rs and
//! tests/fleet.rs (`make test-offsite`).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::backup;
use crate::bucket::mem::{Fault, MemBucket, Op};
use crate::bucket::{Bucket, ObjectHead};
use crate::clock::{self, Tz};
use crate::config::{Config, Lookup};
use crate::fsutil::LockWait;
use crate::status::{self, Log};
use crate::units::hex;

use super::{Round, gc, pending, process_on, read_state};

pub(crate) fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A folder of its own under the system's temp dir, removed at the end.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "neopro-mem-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        ok(std::fs::create_dir_all(&p));
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Pi: its Neopro tree (two videos) and its BACKUP_DIR, with `env` on top of the
/// offsite keys (the endpoint is never contacted: the store is the in-memory one).
pub(crate) struct Pi {
    _scratch: Scratch,
    pub(crate) root: PathBuf,
    pub(crate) cfg: Config,
    vars: HashMap<String, String>,
}

pub(crate) const PREFIX: &str = "neopro";

pub(crate) fn pi(site: &str, env: &[(&str, &str)]) -> Pi {
    pi_with_tree(site, env, None)
}

fn pi_with_tree(site: &str, env: &[(&str, &str)], tree: Option<&Path>) -> Pi {
    let scratch = Scratch::new(site);
    let root = scratch.0.clone();
    let neopro = tree.map_or_else(|| root.join("neopro"), Path::to_path_buf);
    if tree.is_none() {
        ok(std::fs::create_dir_all(neopro.join("webapp")));
        ok(std::fs::create_dir_all(neopro.join("sync-agent")));
        ok(std::fs::create_dir_all(neopro.join("videos/sponsors")));
        ok(std::fs::write(
            neopro.join("webapp/configuration.json"),
            format!("{{\"club\":\"{site}\"}}"),
        ));
        ok(std::fs::write(
            neopro.join("sync-agent/.env"),
            "API_KEY=k\n",
        ));
        ok(std::fs::write(
            neopro.join("videos/sponsors/a.mp4"),
            vec![1u8; 300_000],
        ));
        ok(std::fs::write(
            neopro.join("videos/b.mp4"),
            vec![2u8; 70_000],
        ));
    }
    ok(std::fs::write(
        root.join("site.conf"),
        format!("SITE={site}\n"),
    ));
    let mut vars: HashMap<String, String> = [
        ("NEOPRO_DIR", neopro.display().to_string()),
        ("BACKUP_DIR", root.join("backups").display().to_string()),
        ("SITE_CONF", root.join("site.conf").display().to_string()),
        ("SITE_ID", site.to_string()),
        ("SERVICES", String::new()),
        ("S3_ENDPOINT", "http://127.0.0.1:9".to_string()),
        ("S3_BUCKET", "neopro-mem".to_string()),
        ("S3_PREFIX", PREFIX.to_string()),
        ("S3_ACCESS_KEY", "k".to_string()),
        ("S3_SECRET_KEY", "secret-secret".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in env {
        vars.insert(k.to_string(), v.to_string());
    }
    let cfg = config(&vars);
    Pi {
        _scratch: scratch,
        root,
        cfg,
        vars,
    }
}

fn config(vars: &HashMap<String, String>) -> Config {
    let lookup = ok(Lookup::from_parts(vars.clone(), "", Path::new("test.conf")).map_err(|e| e.0));
    ok(Config::from_sources(&lookup).map_err(|e| e.0))
}

impl Pi {
    pub(crate) fn dir(&self) -> &Path {
        &self.cfg.backup_dir
    }

    /// A real backup; its archive's name.
    pub(crate) fn backup(&self) -> String {
        let never = AtomicBool::new(false);
        let out = backup::run(&self.cfg, &Tz::utc(), LockWait::Try, &never)
            .unwrap_or_else(|_| panic!("another backup holds the lock"));
        assert!(out.status.success, "{:?}", out.status.error);
        out.status
            .archive
            .unwrap_or_else(|| panic!("a successful backup names its archive"))
    }

    /// One round, as the daemon's worker makes it. A round that succeeded but found the
    /// backup lock taken for a moment leaves the status unsent, and the worker makes
    /// another within 30 s: so do the tests (another test's child process, between its
    /// fork and its exec, holds every open file of the moment, our lock included).
    pub(crate) fn round(&self, b: &dyn Bucket) -> Round {
        let tz = Tz::utc();
        let log = Log::new(self.dir(), &tz);
        let never = AtomicBool::new(false);
        let r = process_on(b, &self.cfg, &tz, &log, &never, true);
        if matches!(r, Round::Sent(_)) {
            for _ in 0..20 {
                if !super::has_work(&self.cfg) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                process_on(b, &self.cfg, &tz, &log, &never, true);
            }
        }
        r
    }

    pub(crate) fn key(&self, name: &str) -> String {
        format!("{PREFIX}/{}/{name}", self.cfg.site_id)
    }

    fn local(&self, name: &str) -> Vec<u8> {
        ok(std::fs::read(self.dir().join(name)))
    }
}

#[test]
fn the_queue_sends_each_copy_then_the_status_and_nothing_twice() {
    let p = pi("club", &[]);
    let name = p.backup();
    assert_eq!(pending(p.dir()), std::slice::from_ref(&name));
    let m = MemBucket::new();
    assert_eq!(p.round(&m), Round::Sent(1));
    assert_eq!(m.bytes(&p.key(&name)), Some(p.local(&name)));
    assert!(pending(p.dir()).is_empty());
    let st = m
        .bytes(&p.key(super::STATUS_OBJECT))
        .unwrap_or_else(|| panic!("no status in the bucket"));
    let st = ok(crate::json::parse::<status::Status>(
        &String::from_utf8_lossy(&st),
    ));
    assert_eq!(st.archive.as_deref(), Some(name.as_str()));
    let offsite = st.offsite.unwrap_or_else(|| panic!("no offsite object"));
    assert_eq!((offsite.pending, offsite.error), (0, None));
    assert!(!super::has_work(&p.cfg), "a round after success has work");
    // Nothing new: no write at all.
    let puts = m.count(Op::Put);
    assert_eq!(p.round(&m), Round::Sent(0));
    assert_eq!(m.count(Op::Put), puts);
}

#[test]
fn a_failed_upload_keeps_the_copy_queued_with_backoff_and_the_error_in_the_status() {
    for fault in [Fault::Status(503), Fault::Dropped(100), Fault::Unreachable] {
        let p = pi("club", &[]);
        let name = p.backup();
        let m = MemBucket::new();
        m.inject(Op::Put, &p.key(&name), fault.clone(), 1);
        let before = clock::now_unix();
        let Round::Failed(why) = p.round(&m) else {
            panic!("{fault:?}: the round did not fail");
        };
        assert!(why.contains(&name), "{fault:?}: {why}");
        assert_eq!(pending(p.dir()), std::slice::from_ref(&name), "{fault:?}");
        assert_eq!(m.bytes(&p.key(&name)), None, "{fault:?}: half a copy");
        let st = read_state(p.dir());
        assert_eq!(st.failures, 1);
        assert!(st.next_try > before, "{fault:?}: no backoff");
        let local = ok(status::read(p.dir())).unwrap_or_else(|| panic!("no status"));
        let err = local.offsite.and_then(|o| o.error).unwrap_or_default();
        assert!(err.contains(&name), "{fault:?}: status error {err:?}");
        // The next round sends it.
        assert_eq!(p.round(&m), Round::Sent(1), "{fault:?}");
        assert_eq!(m.bytes(&p.key(&name)), Some(p.local(&name)));
        assert_eq!(read_state(p.dir()).failures, 0);
    }
}

#[test]
fn remote_retention_removes_old_copies_never_the_newest_three_nor_counting_empty_ones() {
    let p = pi("club", &[("S3_RETENTION_DAYS", "30")]);
    let m = MemBucket::new();
    // Five old nights, the newest of them empty (a broken upload): it does not count.
    let old = [
        "backup-20200101-030000.tar.gz",
        "backup-20200102-030000.tar.gz",
        "backup-20200103-030000.tar.gz",
        "backup-20200104-030000.tar.gz",
        "backup-20200105-030000.tar.gz",
    ];
    for n in &old[..4] {
        m.insert(&p.key(n), b"old");
    }
    m.insert(&p.key(old[4]), b"");
    m.insert(&p.key("notes.txt"), b"not a copy");
    let name = p.backup();
    // This Pi sent them (an earlier version's state says so): it belongs to the site's
    // history, and its retention applies to them.
    old_version_state(&p, 4);
    assert_eq!(p.round(&m), Round::Sent(1));
    let left: Vec<String> = m.keys();
    for (n, kept) in [
        (old[0], false),
        (old[1], false),
        (old[2], true),
        (old[3], true),
        (old[4], false),
        (name.as_str(), true),
        ("notes.txt", true),
    ] {
        assert_eq!(left.contains(&p.key(n)), kept, "{n}: {left:?}");
    }
}

#[test]
fn an_encrypted_copy_decrypts_to_the_archive() {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let p = pi("club", &[("ENCRYPT_TO", &recipient)]);
    let name = p.backup();
    let m = MemBucket::new();
    assert_eq!(p.round(&m), Round::Sent(1));
    assert_eq!(m.bytes(&p.key(&name)), None, "a plain copy with ENCRYPT_TO");
    let enc = m
        .bytes(&p.key(&format!("{name}.age")))
        .unwrap_or_else(|| panic!("no .age copy"));
    let d = ok(age::Decryptor::new(&enc[..]));
    let mut plain = Vec::new();
    ok(ok(d.decrypt(std::iter::once(&id as &dyn age::Identity))).read_to_end(&mut plain));
    assert!(plain == p.local(&name), "the decrypted copy differs");
}

fn video_keys(m: &MemBucket) -> Vec<String> {
    m.keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}/videos/")))
        .collect()
}

#[test]
fn videos_go_once_per_bucket_a_second_site_sends_none_of_their_bytes() {
    let a = pi("club-a", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    let videos = video_keys(&m);
    assert_eq!(videos.len(), 2, "{videos:?}");
    // The objects are the videos' bytes under their hash.
    for (file, len) in [("videos/sponsors/a.mp4", 300_000), ("videos/b.mp4", 70_000)] {
        let bytes = ok(std::fs::read(a.root.join("neopro").join(file)));
        assert_eq!(bytes.len(), len);
        let h = hex(&crate::units::sha256(&bytes));
        let want = format!("{PREFIX}/videos/sha256/{}/{h}", &h[..2]);
        let found = videos.iter().find(|k| **k == want);
        let found = found.unwrap_or_else(|| panic!("{file} is not in the bucket: {videos:?}"));
        assert_eq!(m.bytes(found), Some(bytes));
    }
    // The references list names both.
    let refs = refs_of(&m, &a).unwrap_or_else(|| panic!("no videos-referenced.txt"));
    assert_eq!(refs.len(), 2);
    assert_eq!(read_state(a.dir()).videos_pending, 0);
    // A second site with the same videos: the bucket has them, it sends none of their
    // bytes (the look before the write, not the write's refusal, spares them).
    let b = pi_with_tree(
        "club-b",
        &[("VIDEOS_OFFSITE", "1")],
        Some(&a.root.join("neopro")),
    );
    let bname = b.backup();
    let before = m.bytes_received();
    assert_eq!(b.round(&m), Round::Sent(1));
    let sent = m.bytes_received() - before;
    let archive = b.local(&bname).len() as u64;
    assert!(
        sent < archive + 10_000,
        "the second site sent {sent} bytes for an archive of {archive}: the videos again"
    );
    assert_eq!(video_keys(&m).len(), 2);
    // A night with nothing new reads no video and asks nothing per video.
    let heads = m.count(Op::Head);
    b.backup_again_later();
    assert_eq!(b.round(&m), Round::Sent(1));
    assert_eq!(
        m.count(Op::Head),
        heads,
        "a quiet night looked at the videos"
    );
}

impl Pi {
    /// The same Pi with `env` changed (its configuration edited).
    fn reconfigure(&mut self, env: &[(&str, &str)]) {
        for (k, v) in env {
            self.vars.insert(k.to_string(), v.to_string());
        }
        self.cfg = config(&self.vars);
    }

    /// A second backup, a second later (archive names have one-second resolution).
    pub(crate) fn backup_again_later(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        self.backup()
    }
}

#[test]
fn a_video_upload_that_breaks_is_retried_and_the_archive_waits_for_its_videos() {
    let a = pi("club", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    let name = a.backup();
    m.inject(
        Op::Create,
        &format!("{PREFIX}/videos/"),
        Fault::Unreachable,
        1,
    );
    let Round::Failed(_) = a.round(&m) else {
        panic!("the round did not fail");
    };
    // The archive waits for its videos.
    assert_eq!(m.bytes(&a.key(&name)), None);
    assert_eq!(pending(a.dir()), std::slice::from_ref(&name));
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(video_keys(&m).len(), 2);
    assert_eq!(m.bytes(&a.key(&name)), Some(a.local(&name)));
}

// ---------------------------------------------------------------------------------
// fleet gc

/// A bucket with two sites' references, a plain and an encrypted object each, and
/// orphans; dated 40 days ago (S3_RETENTION_DAYS 30).
fn gc_bucket(o: &crate::config::OffsiteSettings) -> (MemBucket, [[u8; 32]; 5]) {
    let m = MemBucket::new();
    m.set_time(clock::now_unix() - 40 * 86_400);
    let h = [[1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32], [5u8; 32]];
    let refs = |hs: &[[u8; 32]]| {
        hs.iter()
            .map(|x| format!("{}\n", hex(x)))
            .collect::<String>()
    };
    m.insert(
        &format!("{PREFIX}/a/{}", super::videos::REFS_OBJECT),
        refs(&[h[0], h[2]]).as_bytes(),
    );
    m.insert(
        &format!("{PREFIX}/b/{}", super::videos::REFS_OBJECT),
        refs(&[h[1]]).as_bytes(),
    );
    m.insert(&super::videos::plain_key(o, &h[0]), b"a's video");
    m.insert(&super::videos::plain_key(o, &h[1]), b"b's video");
    m.insert(&super::videos::plain_key(o, &h[3]), b"orphan");
    // Encrypted: a's copy of h[2] (a lists it), b's copy of h[2] (b does not).
    m.insert(&super::videos::age_key(o, "a", &h[2]), b"age a");
    m.insert(&super::videos::age_key(o, "b", &h[2]), b"age b");
    m.insert(&format!("{PREFIX}/videos/notes.txt"), b"not a video");
    m.set_time(clock::now_unix());
    // A young orphan.
    m.insert(&super::videos::plain_key(o, &h[4]), b"young");
    (m, h)
}

pub(crate) fn gc_settings() -> crate::config::OffsiteSettings {
    let p = pi("op", &[("S3_RETENTION_DAYS", "30")]);
    p.cfg
        .offsite
        .clone()
        .unwrap_or_else(|| panic!("offsite settings"))
}

#[test]
fn gc_removes_only_old_objects_no_site_references_encrypted_ones_by_their_own_site() {
    let o = gc_settings();
    let (m, h) = gc_bucket(&o);
    let now = clock::now_unix();
    let plan = ok(gc::plan(&m, &o, now));
    let doomed: Vec<&str> = plan.doomed.iter().map(|j| j.key.as_str()).collect();
    let b_age = super::videos::age_key(&o, "b", &h[2]);
    let orphan = super::videos::plain_key(&o, &h[3]);
    assert_eq!(doomed, [b_age.as_str(), orphan.as_str()]);
    assert_eq!((plan.objects, plan.referenced, plan.young), (6, 3, 1));
    assert_eq!(plan.foreign, [format!("{PREFIX}/videos/notes.txt")]);
    // The dry run deleted nothing.
    assert_eq!(m.count(Op::Delete), 0);
    let done = ok(gc::apply(&m, &o, &plan));
    assert_eq!(done.removed.len(), 2);
    assert!(done.errors.is_empty());
    let left = m.keys();
    assert!(!left.contains(&orphan) && !left.contains(&b_age));
    for kept in [
        super::videos::plain_key(&o, &h[0]),
        super::videos::plain_key(&o, &h[1]),
        super::videos::plain_key(&o, &h[4]),
        super::videos::age_key(&o, "a", &h[2]),
        format!("{PREFIX}/videos/notes.txt"),
    ] {
        assert!(left.contains(&kept), "{kept} removed");
    }
}

#[test]
fn gc_spares_what_a_site_started_to_reference_after_the_plan() {
    let o = gc_settings();
    let (m, h) = gc_bucket(&o);
    let plan = ok(gc::plan(&m, &o, clock::now_unix()));
    assert_eq!(plan.doomed.len(), 2);
    // Between the plan and the removal, b starts to name the orphan and its own h[2].
    m.insert(
        &format!("{PREFIX}/b/{}", super::videos::REFS_OBJECT),
        format!("{}\n{}\n{}\n", hex(&h[1]), hex(&h[2]), hex(&h[3])).as_bytes(),
    );
    let done = ok(gc::apply(&m, &o, &plan));
    assert_eq!((done.removed.len(), done.spared), (0, 2));
    assert_eq!(m.count(Op::Delete), 0);
}

#[test]
fn gc_removes_nothing_when_a_list_cannot_be_read() {
    let o = gc_settings();
    let (m, _) = gc_bucket(&o);
    // A damaged list: nothing planned.
    m.insert(
        &format!("{PREFIX}/b/{}", super::videos::REFS_OBJECT),
        b"not a hash\n",
    );
    let e = gc::plan(&m, &o, clock::now_unix()).err();
    assert!(e.as_deref().is_some_and(|e| e.contains("damaged")), "{e:?}");
    // A list that cannot be fetched at the second look: nothing removed.
    let (m, _) = gc_bucket(&o);
    let plan = ok(gc::plan(&m, &o, clock::now_unix()));
    m.inject(Op::Get, &format!("{PREFIX}/b/"), Fault::Status(500), 1);
    assert!(gc::apply(&m, &o, &plan).is_err());
    assert_eq!(m.count(Op::Delete), 0);
}

// ---------------------------------------------------------------------------------
// The fleet

#[test]
fn the_fleet_is_one_paginated_listing_and_one_get_per_status() {
    let o = gc_settings();
    let m = MemBucket::new();
    let a = pi("club-a", &[]);
    let b = pi("club-b", &[]);
    a.backup();
    b.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(b.round(&m), Round::Sent(1));
    // A site with a copy and no status, a site with a damaged status, the videos.
    m.insert(
        &format!("{PREFIX}/club-c/backup-20240101-030000.tar.gz"),
        b"x",
    );
    m.insert(&format!("{PREFIX}/club-d/{}", super::STATUS_OBJECT), b"{");
    m.insert(
        &format!("{PREFIX}/videos/sha256/01/{}", "01".repeat(32)),
        b"v",
    );
    let (lists, gets) = (m.count(Op::List), m.count(Op::Get));
    // A slow store: the listing's time is what the dashboard reports as its cost.
    m.inject(
        Op::List,
        PREFIX,
        Fault::Slow(std::time::Duration::from_millis(60)),
        1,
    );
    let (fleet, cost) = ok(super::fleet_read::build_on(&m, &o, clock::now_unix()));
    assert!(
        cost.listing >= std::time::Duration::from_millis(60),
        "{:?}",
        cost.listing
    );
    let sites: Vec<(&str, &str)> = fleet
        .sites
        .iter()
        .map(|s| (s.site.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(sites.len(), 4, "{sites:?}");
    assert!(sites.contains(&("club-a", "ok")) && sites.contains(&("club-b", "ok")));
    assert_eq!(fleet.unreadable, 1);
    assert_eq!(cost.status_gets, 3);
    assert_eq!(m.count(Op::Get) - gets, 3);
    // Pages of three keys: the listing followed them all.
    assert!(m.count(Op::List) - lists >= 3);
    assert_eq!(m.count(Op::Head), 0);
}

#[test]
fn a_range_read_resumes_after_a_dropped_range() {
    let m = MemBucket::new();
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    m.insert("v", &big);
    m.inject(Op::Get, "v", Fault::Dropped(0), 1);
    let mut r = ok(crate::bucket::RangeReader::open(&m, "v")).unwrap_or_else(|| panic!("gone"));
    let mut back = Vec::new();
    ok(r.read_to_end(&mut back));
    assert!(back == big);
    // Three ranges of 8 MiB, plus the one that dropped.
    assert_eq!(m.count(Op::Get), 4);
    assert_eq!(ok(m.head("v")), ObjectHead::Exists(big.len() as u64));
}

// ---------------------------------------------------------------------------------
// Poisoned shared objects (docs/format.md, Videos offsite)

/// The shared key and the bytes of the site's video `rel`.
pub(crate) fn shared(p: &Pi, rel: &str) -> (String, Vec<u8>, [u8; 32]) {
    let bytes = ok(std::fs::read(p.root.join("neopro/videos").join(rel)));
    let hash = crate::units::sha256(&bytes);
    let o = p.cfg.offsite.as_ref().unwrap_or_else(|| panic!("offsite"));
    (super::videos::plain_key(o, &hash), bytes, hash)
}

#[test]
fn junk_under_a_video_name_is_found_and_routed_around_with_the_site_own_copy() {
    let a = pi("club-a", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    let (key, bytes, hash) = shared(&a, "sponsors/a.mp4");
    // A hostile site wrote junk of the right size first, without a kept SHA-256.
    m.insert(&key, &vec![0u8; bytes.len()]);
    let name = a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    let o = a.cfg.offsite.as_ref().unwrap_or_else(|| panic!("offsite"));
    let own = super::videos::fallback_key(o, "club-a", &hash);
    assert_eq!(m.bytes(&own), Some(bytes.clone()), "no copy of its own");
    assert_eq!(
        m.bytes(&key),
        Some(vec![0u8; bytes.len()]),
        "the junk was replaced"
    );
    // Reported: state, status (local and in the bucket), and the archive still went.
    assert_eq!(read_state(a.dir()).videos_poisoned, 1);
    let st = ok(status::read(a.dir())).unwrap_or_else(|| panic!("no status"));
    assert_eq!(st.offsite.map(|o| o.poisoned), Some(1));
    let remote = m
        .bytes(&a.key(super::STATUS_OBJECT))
        .unwrap_or_else(|| panic!("no status in the bucket"));
    assert!(String::from_utf8_lossy(&remote).contains("\"poisoned\":1"));
    assert_eq!(m.bytes(&a.key(&name)), Some(a.local(&name)));
    // The next night checks nothing again: its one GET is the site's status, read
    // before it is replaced (history.rs).
    let gets = m.count(Op::Get);
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(read_state(a.dir()).videos_poisoned, 1);
    assert_eq!(m.count(Op::Get), gets + 1);
}

#[test]
fn a_kept_sha256_is_trusted_without_a_download_and_an_unsummed_object_is_read_once() {
    let a = pi("club-a", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    let (key_a, bytes_a, _) = shared(&a, "sponsors/a.mp4");
    let (key_b, bytes_b, _) = shared(&a, "b.mp4");
    // a.mp4 as an honest site sends it (SHA-256 kept); b.mp4 as an older version did
    // (no SHA-256 kept).
    ok(m.put(
        &key_a,
        crate::bucket::ObjectBody::bytes(&bytes_a),
        "video/mp4",
    ));
    m.insert(&key_b, &bytes_b);
    a.backup();
    let gets = m.count(Op::Get);
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(read_state(a.dir()).videos_poisoned, 0);
    // Only b.mp4 was read (one range: 70,000 bytes), besides the site's status before
    // it is replaced, and nothing was uploaded.
    assert_eq!(m.count(Op::Get) - gets, 2);
    assert_eq!(m.count(Op::Create), 0);
    // Junk that carries its own (true) SHA-256: told apart without a download.
    let b = pi_with_tree(
        "club-b",
        &[("VIDEOS_OFFSITE", "1")],
        Some(&a.root.join("neopro")),
    );
    let m2 = MemBucket::new();
    let junk = vec![9u8; bytes_a.len()];
    ok(m2.put(&key_a, crate::bucket::ObjectBody::bytes(&junk), "video/mp4"));
    b.backup();
    assert_eq!(b.round(&m2), Round::Sent(1));
    assert_eq!(read_state(b.dir()).videos_poisoned, 1);
    let o = b.cfg.offsite.as_ref().unwrap_or_else(|| panic!("offsite"));
    let hash = crate::units::sha256(&bytes_a);
    assert_eq!(
        m2.bytes(&super::videos::fallback_key(o, "club-b", &hash)),
        Some(bytes_a)
    );
}

// ---------------------------------------------------------------------------------
// The references list (docs/format.md, Videos offsite)

fn refs_of(m: &MemBucket, p: &Pi) -> Option<Vec<[u8; 32]>> {
    let text = m.bytes(&p.key(super::videos::REFS_OBJECT))?;
    Some(ok(super::videos::parse_hash_list(
        &String::from_utf8_lossy(&text),
    )))
}

#[test]
fn a_lost_reference_list_is_published_again_and_its_videos_looked_at_again() {
    let a = pi("club", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(refs_of(&m, &a).map(|r| r.len()), Some(2));
    // Removed by hand (as the docs once advised), and one video with it.
    ok(m.delete(&a.key(super::videos::REFS_OBJECT)));
    let (key, bytes, _) = shared(&a, "b.mp4");
    ok(m.delete(&key));
    let heads = m.count(Op::Head);
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(
        refs_of(&m, &a).map(|r| r.len()),
        Some(2),
        "not published again"
    );
    assert!(
        m.count(Op::Head) >= heads + 2,
        "the videos were not looked at again"
    );
    assert_eq!(
        m.bytes(&key),
        Some(bytes),
        "the missing video was not sent again"
    );
}

#[test]
fn turning_videos_offsite_off_publishes_an_empty_list_and_gc_no_longer_waits() {
    let mut a = pi("club", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    let o = a.cfg.offsite.clone().unwrap_or_else(|| panic!("offsite"));
    // The list is lost: gc waits for this site, whose status says videos are on.
    ok(m.delete(&a.key(super::videos::REFS_OBJECT)));
    let e = gc::plan(&m, &o, clock::now_unix())
        .err()
        .unwrap_or_default();
    assert!(e.contains("club") && e.contains("nothing removed"), "{e}");
    // VIDEOS_OFFSITE off: an explicit empty list, a status that says so; gc goes on.
    a.reconfigure(&[("VIDEOS_OFFSITE", "0")]);
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(refs_of(&m, &a), Some(vec![]));
    let st = m
        .bytes(&a.key(super::STATUS_OBJECT))
        .unwrap_or_else(|| panic!("no status"));
    let st = String::from_utf8_lossy(&st);
    assert!(st.contains("\"videos\":false"), "{st}");
    let plan = ok(gc::plan(&m, &o, clock::now_unix()));
    assert_eq!(plan.sites, [("club".to_string(), 0)]);
    // Once: the next round writes no list.
    let puts = m.count(Op::Put);
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(
        m.count(Op::Put) - puts,
        3,
        "the archive, the status and its copy in the fleet's index only"
    );
}

#[test]
fn a_reserved_site_id_sends_nothing_says_why_and_the_local_backup_goes_on() {
    for env in [&[][..], &[("VIDEOS_OFFSITE", "1")][..]] {
        let p = pi("videos", env);
        let name = p.backup();
        assert!(p.dir().join(&name).is_file());
        let m = MemBucket::new();
        let Round::Failed(why) = p.round(&m) else {
            panic!("a reserved SITE_ID sent copies");
        };
        assert!(why.contains("reserved") && why.contains("videos"), "{why}");
        assert!(m.keys().is_empty(), "{:?}", m.keys());
        assert_eq!(
            m.count(Op::Put) + m.count(Op::Create) + m.count(Op::List),
            0
        );
        assert_eq!(pending(p.dir()), std::slice::from_ref(&name));
        let st = ok(status::read(p.dir())).unwrap_or_else(|| panic!("no status"));
        assert!(st.success);
        let err = st.offsite.and_then(|o| o.error).unwrap_or_default();
        assert!(err.contains("reserved"), "{err}");
    }
}

#[test]
fn gc_age_limit_is_s3_retention_days_exactly_and_a_site_without_videos_is_not_waited_for() {
    let o = gc_settings();
    let m = MemBucket::new();
    let now = clock::now_unix();
    // One orphan exactly 30 days old (goes), one 29 days old (stays).
    m.set_time(now - 30 * 86_400);
    m.insert(&super::videos::plain_key(&o, &[7u8; 32]), b"thirty");
    m.set_time(now - 29 * 86_400);
    m.insert(&super::videos::plain_key(&o, &[8u8; 32]), b"twenty-nine");
    // A site with copies and a status that says videos offsite is off, and no list.
    let st = r#"{"timestamp":"2026-01-01T03:00:00+00:00","date":"2026-01-01","success":true,"archive":null,"size":null,"size_bytes":null,"backups_count":1,"retention_days":7,"duration_ms":1,"warnings":[],"error":null,"last_success":null,"offsite":{"pending":0,"last_upload":null,"error":null,"poisoned":0,"videos":false}}"#;
    m.insert(
        &format!("{PREFIX}/plain-site/{}", super::STATUS_OBJECT),
        st.as_bytes(),
    );
    let plan = ok(gc::plan(&m, &o, now));
    assert_eq!(plan.retention_days, 30);
    let doomed: Vec<&str> = plan.doomed.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(doomed, [super::videos::plain_key(&o, &[7u8; 32])]);
    assert_eq!(plan.young, 1);
    assert_eq!(plan.sites, [("plain-site".to_string(), 0)]);
}

#[test]
fn gc_tells_a_site_that_started_naming_a_removed_object_to_send_it_again() {
    let o = gc_settings();
    let (m, h) = gc_bucket(&o);
    let plan = ok(gc::plan(&m, &o, clock::now_unix()));
    assert_eq!(plan.doomed.len(), 2);
    // At the first removal, b starts to name the plain orphan h[3] (it found the object
    // still there); a names nothing new.
    // b already had a notice from an earlier collection, not yet dealt with: kept.
    let earlier = [9u8; 32];
    m.insert(
        &format!("{PREFIX}/b/{}", super::videos::MISSING_OBJECT),
        format!("{}\n", hex(&earlier)).as_bytes(),
    );
    // The race of docs/format.md (fleet gc): b writes its new list just before the
    // first removal, after the collection's last look.
    m.meanwhile(
        Op::Delete,
        &format!("{PREFIX}/b/{}", super::videos::REFS_OBJECT),
        format!("{}\n{}\n", hex(&h[1]), hex(&h[3])).as_bytes(),
    );
    let done = ok(gc::apply(&m, &o, &plan));
    assert_eq!(done.removed.len(), 2);
    assert_eq!(done.notices, [("b".to_string(), 1)]);
    let notice = m
        .bytes(&format!("{PREFIX}/b/{}", super::videos::MISSING_OBJECT))
        .unwrap_or_else(|| panic!("no notice for b"));
    let listed = ok(super::videos::parse_hash_list(&String::from_utf8_lossy(
        &notice,
    )));
    assert_eq!(listed, [h[3], earlier]);
    assert_eq!(
        m.bytes(&format!("{PREFIX}/a/{}", super::videos::MISSING_OBJECT)),
        None
    );
}

#[test]
fn a_key_that_may_not_list_gets_403_for_a_missing_video_and_still_sends_it() {
    // The documented policy gives the Pis no ListBucket under videos/: a HEAD of a
    // missing object answers 403, not 404.
    let a = pi("club", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    m.inject(
        Op::Head,
        &format!("{PREFIX}/videos/"),
        Fault::Status(403),
        100,
    );
    m.inject(
        Op::Get,
        &format!("{PREFIX}/videos/"),
        Fault::Status(403),
        100,
    );
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(video_keys(&m).len(), 2);
    let (key, bytes, _) = shared(&a, "b.mp4");
    assert_eq!(m.bytes(&key), Some(bytes));
    assert_eq!(read_state(a.dir()).videos_poisoned, 0);
}

#[test]
fn encrypted_videos_go_to_the_site_age_folder_and_decrypt_to_the_videos() {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let a = pi(
        "club",
        &[("VIDEOS_OFFSITE", "1"), ("ENCRYPT_TO", &recipient)],
    );
    let m = MemBucket::new();
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    let o = a.cfg.offsite.clone().unwrap_or_else(|| panic!("offsite"));
    for rel in ["sponsors/a.mp4", "b.mp4"] {
        let (plain, bytes, hash) = shared(&a, rel);
        assert_eq!(m.bytes(&plain), None, "{rel}: a plain copy with ENCRYPT_TO");
        let key = super::videos::age_key(&o, "club", &hash);
        let enc = m.bytes(&key).unwrap_or_else(|| panic!("{rel}: no {key}"));
        // The announced length was the ciphertext's exact size (the store checks it).
        let d = ok(age::Decryptor::new(&enc[..]));
        let mut back = Vec::new();
        ok(ok(d.decrypt(std::iter::once(&id as &dyn age::Identity))).read_to_end(&mut back));
        assert!(back == bytes, "{rel}: the decrypted video differs");
    }
    assert_eq!(read_state(a.dir()).videos_pending, 0);
}

#[test]
fn junk_of_another_size_is_found_without_a_download() {
    let a = pi("club", &[("VIDEOS_OFFSITE", "1")]);
    let m = MemBucket::new();
    let (key, bytes, _) = shared(&a, "b.mp4");
    m.insert(&key, &vec![0u8; bytes.len() + 1]);
    a.backup();
    let gets = m.count(Op::Get);
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(read_state(a.dir()).videos_poisoned, 1);
    // No range read: the one GET is the site's status, read before it is replaced.
    assert_eq!(m.count(Op::Get) - gets, 1);
}

// ---------------------------------------------------------------------------------
// A site's history (history.rs; docs/format.md, Offsite: a site's history)

/// The offsite-state.json of the version before the sites' history, as it wrote it,
/// after `archives` copies sent by this Pi.
fn old_version_state(p: &Pi, archives: u64) {
    let text = format!(
        r#"{{"last_upload":"2025-01-05T03:00:12+00:00","failures":0,"next_try":0,"status_sent":"{}","archives_sent":{archives},"archive_bytes_sent":123456,"videos_sent":0,"video_bytes_sent":0,"videos_dest":"","videos_seq":0,"videos_merged":[],"videos_pending":0,"refs_sent":"","videos_poisoned":0}}"#,
        "5".repeat(64)
    );
    ok(std::fs::write(
        p.dir().join(crate::store::OFFSITE_STATE_FILE),
        text,
    ));
}

/// Two archives and a status of `site`, as another Pi sent them.
fn site_with_history(m: &MemBucket, p: &Pi) -> [String; 2] {
    let names = [
        "backup-20250103-030000.tar.gz".to_string(),
        "backup-20250104-030000.tar.gz".to_string(),
    ];
    for n in &names {
        m.insert(&p.key(n), b"the site's real archive");
    }
    m.insert(&p.key(super::STATUS_OBJECT), b"{\"success\":true}");
    names
}

pub(crate) fn writes(m: &MemBucket) -> u64 {
    m.count(Op::Put) + m.count(Op::Create) + m.count(Op::Delete)
}

fn log_of(p: &Pi) -> String {
    std::fs::read_to_string(p.dir().join(crate::store::LOG_FILE)).unwrap_or_default()
}

fn local_offsite(p: &Pi) -> status::Offsite {
    ok(status::read(p.dir()))
        .and_then(|s| s.offsite)
        .unwrap_or_else(|| panic!("no offsite object in the local status"))
}

#[test]
fn a_blank_pi_under_an_existing_site_writes_nothing_there_and_says_why() {
    for env in [&[][..], &[("VIDEOS_OFFSITE", "1")][..]] {
        let p = pi("club", env);
        let m = MemBucket::new();
        let names = site_with_history(&m, &p);
        let before = m.keys();
        let name = p.backup();
        let Round::Held(why) = p.round(&m) else {
            panic!("a blank Pi wrote under its site's folder: {:?}", m.keys());
        };
        assert!(
            why.contains("2 backup(s) of site club")
                && why.contains(&names[1])
                && why.contains("recover --new-start"),
            "{why}"
        );
        // Nothing written anywhere in the bucket (no archive, status, list or video), one
        // listing of the site's folder.
        assert_eq!(writes(&m), 0, "{env:?}");
        assert_eq!(m.keys(), before);
        assert_eq!(m.count(Op::List), 1);
        // The local backup is there and its copy waits.
        assert!(p.dir().join(&name).is_file());
        assert_eq!(pending(p.dir()), std::slice::from_ref(&name));
        let off = local_offsite(&p);
        assert!(
            off.held && off.error.as_deref() == Some(why.as_str()),
            "{off:?}"
        );
        assert_eq!(super::history::held(&p.cfg).as_deref(), Some(why.as_str()));
        let st = ok(status::read(p.dir())).unwrap_or_else(|| panic!("no status"));
        assert!(st.success);
        let (good, line) = status::check(Some(&st), clock::now_unix(), 25);
        assert!(
            !good && line.starts_with("CRITICAL: offsite copies held"),
            "{line}"
        );
        // The next rounds too; the reason is logged once.
        p.backup_again_later();
        assert!(matches!(p.round(&m), Round::Held(_)));
        assert_eq!(writes(&m), 0);
        assert_eq!(pending(p.dir()).len(), 2);
        assert_eq!(log_of(&p).matches("offsite copies held").count(), 1);
        assert!(
            local_offsite(&p).held,
            "a new backup's status lost the hold"
        );
    }
}

#[test]
fn a_blank_pi_on_an_empty_site_sends_and_records_its_history() {
    let p = pi("club", &[]);
    // One page a listing: the listings are counted below.
    let mut m = MemBucket::new();
    m.page_size = 1000;
    // Another site's archives are not this one's.
    m.insert(
        &format!("{PREFIX}/club-other/backup-20250104-030000.tar.gz"),
        b"x",
    );
    // A site folder with other things than archives holds no history.
    m.insert(&p.key("notes.txt"), b"operator notes");
    let name = p.backup();
    assert_eq!(p.round(&m), Round::Sent(1));
    assert_eq!(m.bytes(&p.key(&name)), Some(p.local(&name)));
    assert_eq!(
        m.count(Op::List),
        2,
        "the look for a history, remote retention"
    );
    let st = read_state(p.dir());
    assert_eq!(st.version, super::history::STATE_VERSION);
    let h: Vec<(&str, &str, bool)> = st
        .history
        .iter()
        .map(|h| (h.site.as_str(), h.how.as_str(), h.status))
        .collect();
    assert_eq!(h, [("club", "sent", true)]);
    assert_eq!(st.held, None);
    assert_eq!(st.install.len(), 32, "{:?}", st.install);
    let off = local_offsite(&p);
    assert!(!off.held && off.install.as_deref() == Some(st.install.as_str()));
    // The status in the bucket names the install.
    let remote = m.bytes(&p.key(super::STATUS_OBJECT)).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&remote).contains(&format!("\"install\":\"{}\"", st.install)),
        "{}",
        String::from_utf8_lossy(&remote)
    );
    // Its own archives there now: the next night sends, with no look for a history.
    let lists = m.count(Op::List);
    let second = p.backup_again_later();
    assert_eq!(p.round(&m), Round::Sent(1));
    assert!(m.bytes(&p.key(&second)).is_some());
    assert_eq!(
        m.count(Op::List) - lists,
        1,
        "remote retention's listing only"
    );
    assert_eq!(read_state(p.dir()).install, st.install, "the id changed");
}

#[test]
fn an_upgraded_pi_keeps_sending_to_its_site() {
    let p = pi("club", &[]);
    let m = MemBucket::new();
    let names = site_with_history(&m, &p);
    let name = p.backup();
    old_version_state(&p, 2);
    assert_eq!(p.round(&m), Round::Sent(1));
    assert_eq!(m.bytes(&p.key(&name)), Some(p.local(&name)));
    for n in &names {
        assert!(m.bytes(&p.key(n)).is_some(), "{n} removed");
    }
    let st = read_state(p.dir());
    // The earlier version's figures are kept, the copy counted on top.
    assert_eq!(
        (st.archives_sent, st.version),
        (3, super::history::STATE_VERSION)
    );
    assert_eq!(
        st.history
            .iter()
            .map(|h| (h.site.as_str(), h.how.as_str(), h.since))
            .collect::<Vec<_>>(),
        [("club", "upgrade", 0)]
    );
    assert_eq!(
        log_of(&p)
            .matches("of an earlier version shows copies sent")
            .count(),
        1
    );
    p.backup_again_later();
    assert_eq!(p.round(&m), Round::Sent(1));
    assert_eq!(
        log_of(&p)
            .matches("of an earlier version shows copies sent")
            .count(),
        1
    );
    // An earlier version's state that never sent anything (a blank Pi that only
    // failed) is no history.
    let q = pi("club", &[]);
    q.backup();
    ok(std::fs::write(
        q.dir().join(crate::store::OFFSITE_STATE_FILE),
        r#"{"failures":3,"next_try":0,"status_sent":"","archives_sent":0,"error":"connection refused"}"#,
    ));
    let puts = writes(&m);
    assert!(matches!(q.round(&m), Round::Held(_)));
    assert_eq!(writes(&m), puts);
}

#[test]
fn the_new_state_file_stays_readable_by_the_previous_version() {
    // The previous version's QueueState, as it was: every field default, unknown ones
    // skipped (nanoserde).
    #[derive(nanoserde::DeJson, Default, Debug)]
    #[nserde(default)]
    #[allow(dead_code)]
    struct PreviousState {
        last_upload: Option<String>,
        error: Option<String>,
        failures: u32,
        next_try: i64,
        status_sent: String,
        archives_sent: u64,
        archive_bytes_sent: u64,
        videos_sent: u64,
        video_bytes_sent: u64,
        videos_dest: String,
        videos_seq: u64,
        videos_pending: u64,
        refs_sent: String,
        videos_poisoned: u64,
    }
    let p = pi("club", &[]);
    let m = MemBucket::new();
    p.backup();
    assert_eq!(p.round(&m), Round::Sent(1));
    let text = ok(std::fs::read_to_string(
        p.dir().join(crate::store::OFFSITE_STATE_FILE),
    ));
    assert!(
        text.contains("\"history\":[{") && text.contains("\"version\":2"),
        "{text}"
    );
    let old = ok(crate::json::parse::<PreviousState>(&text));
    assert_eq!(old.archives_sent, 1);
    assert_eq!(old.status_sent, read_state(p.dir()).status_sent);
}

#[test]
fn a_new_start_lifts_the_hold_and_the_old_archives_stay() {
    let p = pi("club", &[]);
    let m = MemBucket::new();
    let names = site_with_history(&m, &p);
    let name = p.backup();
    assert!(matches!(p.round(&m), Round::Held(_)));
    let log = Log::new(p.dir(), &Tz::utc());
    ok(super::history::new_start(&p.cfg, &log));
    assert_eq!(super::history::held(&p.cfg), None);
    let st = read_state(p.dir());
    assert_eq!((st.next_try, st.failures), (0, 0), "the next round waits");
    assert!(
        st.history
            .iter()
            .any(|h| h.site == "club" && h.how == "new-start")
    );
    assert!(log_of(&p).contains("new start declared for site club"));
    assert_eq!(p.round(&m), Round::Sent(1));
    assert_eq!(m.bytes(&p.key(&name)), Some(p.local(&name)));
    for n in &names {
        assert_eq!(
            m.bytes(&p.key(n)).as_deref(),
            Some(&b"the site's real archive"[..]),
            "{n}"
        );
    }
    assert!(!local_offsite(&p).held);
    // A new start needs offsite on, and a SITE_ID that names a site.
    let off = pi("club", &[("S3_ENDPOINT", "")]);
    assert!(super::history::new_start(&off.cfg, &log).is_err());
    let reserved = pi("videos", &[]);
    assert!(super::history::new_start(&reserved.cfg, &log).is_err());
}

#[test]
fn a_recovery_lifts_the_hold_and_the_copies_made_before_it_stay_local() {
    let p = pi("club", &[]);
    let m = MemBucket::new();
    site_with_history(&m, &p);
    let blank = p.backup();
    assert!(matches!(p.round(&m), Round::Held(_)));
    let log = Log::new(p.dir(), &Tz::utc());
    // A recovery from another site is no history in this one.
    ok(super::history::record_recovery(&p.cfg, "club-b", &log));
    assert!(super::history::held(&p.cfg).is_some());
    assert_eq!(pending(p.dir()), std::slice::from_ref(&blank));
    ok(super::history::record_recovery(&p.cfg, "club", &log));
    assert_eq!(super::history::held(&p.cfg), None);
    // The blank backup stays on the Pi, out of the queue.
    assert!(pending(p.dir()).is_empty());
    assert!(p.dir().join(&blank).is_file());
    let next = p.backup_again_later();
    assert_eq!(p.round(&m), Round::Sent(1));
    assert!(m.bytes(&p.key(&next)).is_some());
    assert_eq!(m.bytes(&p.key(&blank)), None, "the blank backup went");
    let sites: Vec<(String, String)> = read_state(p.dir())
        .history
        .into_iter()
        .map(|h| (h.site, h.how))
        .collect();
    assert_eq!(
        sites,
        [
            ("club-b".to_string(), "recovered".to_string()),
            ("club".to_string(), "recovered".to_string())
        ]
    );
    // The predecessor's status (older than the recovery) is no other install.
    assert_eq!(local_offsite(&p).other_install, None);
}

#[test]
fn a_listing_failure_writes_nothing_and_is_not_taken_for_an_empty_site() {
    for fault in [Fault::Unreachable, Fault::Status(500), Fault::Dropped(10)] {
        let p = pi("club", &[]);
        // An empty bucket: an error read as "no archive" would send.
        let m = MemBucket::new();
        let name = p.backup();
        m.inject(Op::List, &p.key(""), fault.clone(), 1);
        let Round::Failed(why) = p.round(&m) else {
            panic!("{fault:?}: the round did not fail");
        };
        assert!(why.contains("cannot tell whether the bucket"), "{why}");
        assert_eq!(writes(&m), 0, "{fault:?}: {:?}", m.keys());
        assert_eq!(pending(p.dir()), std::slice::from_ref(&name));
        let st = read_state(p.dir());
        assert!(st.history.is_empty() && st.held.is_none() && st.failures == 1);
        let off = local_offsite(&p);
        assert!(
            !off.held && off.error.as_deref() == Some(why.as_str()),
            "{off:?}"
        );
        // Once the store answers, the copy goes.
        assert_eq!(p.round(&m), Round::Sent(1), "{fault:?}");
        assert!(m.bytes(&p.key(&name)).is_some());
    }
}

#[test]
fn the_hold_ends_when_the_site_holds_no_archive_any_more() {
    let p = pi("club", &[]);
    let m = MemBucket::new();
    let names = site_with_history(&m, &p);
    p.backup();
    assert!(matches!(p.round(&m), Round::Held(_)));
    // The operator removed the old site's archives by hand.
    for n in &names {
        ok(m.delete(&p.key(n)));
    }
    assert_eq!(p.round(&m), Round::Sent(1));
    assert_eq!(read_state(p.dir()).held, None);
    assert!(log_of(&p).contains("the hold is over"));
}

#[test]
fn two_installs_under_one_site_id_are_reported_by_both() {
    let a = pi("club", &[]);
    let b = pi("club", &[]);
    let m = MemBucket::new();
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    b.backup();
    assert!(matches!(b.round(&m), Round::Held(_)));
    // The operator declares a new start on the second Pi (by mistake: both run).
    ok(super::history::new_start(
        &b.cfg,
        &Log::new(b.dir(), &Tz::utc()),
    ));
    assert_eq!(b.round(&m), Round::Sent(1));
    let (ia, ib) = (read_state(a.dir()).install, read_state(b.dir()).install);
    assert!(ia.len() == 32 && ib.len() == 32 && ia != ib);
    // a's status was there before b's new start: no other install yet.
    assert_eq!(local_offsite(&b).other_install, None);
    // a's next night finds b's status where its own was.
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(
        local_offsite(&a).other_install.as_deref(),
        Some(ib.as_str())
    );
    let (good, line) = status::check(ok(status::read(a.dir())).as_ref(), clock::now_unix(), 25);
    assert!(!good && line.contains(&ib), "{line}");
    assert!(log_of(&a).contains(&format!(
        "another install ({ib}) also sends backups as club"
    )));
    // The fleet marks the site.
    let o = a.cfg.offsite.clone().unwrap_or_else(|| panic!("offsite"));
    let (fleet, _) = ok(super::fleet_read::build_on(&m, &o, clock::now_unix()));
    let row = fleet.sites.iter().find(|s| s.site == "club");
    assert!(row.is_some_and(|r| r.claimed_twice), "{row:?}");
    // And vice versa.
    b.backup_again_later();
    assert_eq!(b.round(&m), Round::Sent(1));
    assert_eq!(
        local_offsite(&b).other_install.as_deref(),
        Some(ia.as_str())
    );
    // b stops: a sees b's last status once more, then its own.
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(
        local_offsite(&a).other_install.as_deref(),
        Some(ib.as_str())
    );
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert_eq!(local_offsite(&a).other_install, None);
    assert!(log_of(&a).contains("is this install's again"));
    let (fleet, _) = ok(super::fleet_read::build_on(&m, &o, clock::now_unix()));
    assert!(fleet.sites.iter().all(|s| !s.claimed_twice));
}

#[test]
fn the_look_for_archives_is_bounded_and_names_the_newest() {
    let p = pi("club", &[]);
    let o = p.cfg.offsite.clone().unwrap_or_else(|| panic!("offsite"));
    let m = MemBucket::new(); // 3 keys a page
    assert_eq!(
        super::history::probe_in(&m, &super::site_prefix(&o, "club")).ok(),
        Some(None)
    );
    m.insert("neopro/club/notes.txt", b"x");
    m.insert("neopro/club/videos/ab/cd", b"x");
    m.insert("neopro/club-b/backup-20250101-030000.tar.gz", b"x");
    assert_eq!(
        super::history::probe_in(&m, &super::site_prefix(&o, "club")).ok(),
        Some(None)
    );
    m.insert("neopro/club/backup-20250101-030000.tar.gz.age", b"x");
    m.insert("neopro/club/backup-20250102-030000.tar.gz", b"x");
    let f = super::history::probe_in(&m, &super::site_prefix(&o, "club"))
        .ok()
        .flatten();
    assert_eq!(
        f,
        Some(super::history::Found {
            archives: 2,
            newest: "backup-20250102-030000.tar.gz".into(),
            more: false
        })
    );
    // Past PROBE_PAGES pages: "at least".
    for d in 1..=40 {
        m.insert(
            &format!("neopro/club/backup-202502{:02}-030000.tar.gz", d % 28 + 1),
            b"x",
        );
        m.insert(&format!("neopro/club/c-{d:02}.txt"), b"x");
    }
    let f = super::history::probe_in(&m, &super::site_prefix(&o, "club"))
        .ok()
        .flatten();
    let f = f.unwrap_or_else(|| panic!("nothing found"));
    assert!(f.more && f.archives > 0, "{f:?}");
    assert!(
        super::history::hold_reason("club", &f).contains("at least"),
        "{f:?}"
    );
    // Nothing but other objects within the bound: it cannot tell, so it holds.
    let m = MemBucket::new();
    for d in 0..40 {
        m.insert(&format!("neopro/club/a-{d:02}.txt"), b"x");
    }
    m.insert("neopro/club/backup-20250101-030000.tar.gz", b"x");
    let f = super::history::probe_in(&m, &super::site_prefix(&o, "club"))
        .ok()
        .flatten();
    let f = f.unwrap_or_else(|| panic!("taken for an empty folder"));
    assert!(f.more && f.archives == 0, "{f:?}");
    assert!(
        super::history::hold_reason("club", &f).contains("more objects"),
        "{f:?}"
    );
    assert_eq!(m.count(Op::List), 10);
}
