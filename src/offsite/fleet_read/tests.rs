//! The reader on the in-memory store, with real Pis (a real backup, a real offsite
//! round): what each read costs, by kind, and that it shows what changed.

use super::*;
use crate::bucket::counted::KINDS;
use crate::bucket::mem::{Fault, MemBucket, Op};
use crate::clock;
use crate::offsite::Round;
use crate::offsite::fleet::Site;
use crate::offsite::mem_tests::{PREFIX, Pi, gc_settings, ok, pi};

/// The requests of a read, by kind, as `(kind, n)` for the kinds with n > 0.
fn by_kind(cost: &Cost) -> Vec<(&'static str, u64)> {
    KINDS
        .iter()
        .zip(cost.requests)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (*k, n))
        .collect()
}

fn row<'a>(f: &'a Fleet, site: &str) -> &'a Site {
    f.sites
        .iter()
        .find(|s| s.site == site)
        .unwrap_or_else(|| panic!("no row for {site}: {:?}", f.sites))
}

/// Two upgraded Pis, and a site of a Pi not upgraded yet (its status and a copy in its
/// folder, nothing in the index).
fn fleet_of_three(m: &MemBucket) -> (Pi, Pi) {
    let a = pi("club-a", &[]);
    let b = pi("club-b", &[]);
    for p in [&a, &b] {
        p.backup();
        assert_eq!(p.round(m), Round::Sent(1));
    }
    let status = ok(std::fs::read(a.dir().join(crate::store::STATUS_FILE)));
    m.insert(&format!("{PREFIX}/club-old/{STATUS_OBJECT}"), &status);
    m.insert(
        &format!("{PREFIX}/club-old/backup-20240101-030000.tar.gz"),
        b"x",
    );
    (a, b)
}

#[test]
fn the_pi_puts_its_status_in_the_index_too() {
    let m = MemBucket::new();
    let (a, _) = fleet_of_three(&m);
    let o = gc_settings();
    let copy = fleet_index::key(&o, Entry::Status, "club-a");
    assert_eq!(copy, format!("{PREFIX}/fleet-index/status/club-a.json"));
    let folder = m.bytes(&a.key(STATUS_OBJECT));
    assert!(folder.is_some());
    assert_eq!(m.bytes(&copy), folder);
}

#[test]
fn a_refresh_without_change_lists_and_reads_nothing_again() {
    let m = MemBucket::new();
    fleet_of_three(&m);
    let o = gc_settings();
    let now = clock::now_unix();
    let mut r = Reader::new();
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(f.sites.len(), 3, "{:?}", f.sites);
    assert!(
        ["club-a", "club-b", "club-old"]
            .iter()
            .all(|s| row(&f, s).state == "ok")
    );
    // First read: the whole listing, the index, one GET per status.
    assert_eq!(cost.status_gets, 3);
    assert_eq!(cost.requests[1], 3, "{:?}", by_kind(&cost));
    // Nothing changed: listings, and one 304 for the site outside the index.
    let gets = m.count(Op::Get);
    let (f2, cost) = ok(r.read(&m, &o, now, 8));
    let kinds = by_kind(&cost);
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[1], ("get_not_modified", 1), "{kinds:?}");
    assert_eq!(m.count(Op::Get) - gets, 1);
    // The same rows (the strip too).
    assert_eq!(f2.sites, f.sites);
    assert_eq!(r.total.get()[2], 1);
}

#[test]
fn one_changed_status_costs_one_get_and_one_listing_of_its_folder() {
    let m = MemBucket::new();
    let (a, _) = fleet_of_three(&m);
    let o = gc_settings();
    let mut r = Reader::new();
    let now = clock::now_unix();
    let (f, _) = ok(r.read(&m, &o, now, 8));
    assert_eq!(row(&f, "club-a").archives, 1);
    let (_, quiet) = ok(r.read(&m, &o, now, 8));
    // club-a backs up again and sends it.
    let newer = a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    let kinds = by_kind(&cost);
    // One GET (the index copy), one listing more than a quiet read (the folder).
    assert_eq!(cost.requests[1], 1, "{kinds:?}");
    assert_eq!(cost.requests[0], quiet.requests[0] + 1, "{kinds:?}");
    let ra = row(&f, "club-a");
    assert_eq!(ra.archives, 2);
    assert_eq!(ra.newest_archive.as_deref(), Some(newer.as_str()));
    // The strip shows its copy tonight (by the name's date).
    let day = crate::store::name_time(&newer).map(|t| t.div_euclid(86_400));
    let back = day.map(|d| now.div_euclid(86_400) - d);
    if let Some(back @ 0..=29) = back {
        assert_eq!(
            ra.nights.as_bytes()[29 - back as usize],
            b'1',
            "{}",
            ra.nights
        );
    }
    // The next read is quiet again.
    let (_, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(cost.requests[1], 0, "{:?}", by_kind(&cost));
}

#[test]
fn a_site_outside_the_index_is_read_by_a_conditional_get_and_listed_when_it_changed() {
    let m = MemBucket::new();
    fleet_of_three(&m);
    let o = gc_settings();
    let mut r = Reader::new();
    let now = clock::now_unix();
    ok(r.read(&m, &o, now, 8));
    let (_, quiet) = ok(r.read(&m, &o, now, 8));
    // The old Pi fails a backup: its status changes, with a copy more.
    let failed =
        br#"{"timestamp":"2026-01-02T03:00:00+00:00","success":false,"error":"disk full"}"#;
    m.insert(&format!("{PREFIX}/club-old/{STATUS_OBJECT}"), failed);
    m.insert(
        &format!("{PREFIX}/club-old/backup-20240102-030000.tar.gz"),
        b"y",
    );
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(
        (cost.requests[1], cost.requests[2]),
        (1, 0),
        "{:?}",
        by_kind(&cost)
    );
    assert_eq!(cost.requests[0], quiet.requests[0] + 1);
    let old = row(&f, "club-old");
    assert_eq!((old.state.as_str(), old.archives), ("failed", 2));
    assert_eq!(old.error.as_deref(), Some("disk full"));
}

#[test]
fn sites_that_appear_or_go_are_seen() {
    let m = MemBucket::new();
    let (_, b) = fleet_of_three(&m);
    let o = gc_settings();
    let mut r = Reader::new();
    let now = clock::now_unix();
    ok(r.read(&m, &o, now, 8));
    let c = pi("club-c", &[]);
    c.backup();
    assert_eq!(c.round(&m), Round::Sent(1));
    for k in m.keys() {
        if k.contains("club-b") {
            ok(m.delete(&k));
        }
    }
    let _ = b;
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    let names: Vec<&str> = f.sites.iter().map(|s| s.site.as_str()).collect();
    assert_eq!(names, ["club-a", "club-c", "club-old"]);
    assert_eq!(row(&f, "club-c").archives, 1);
    assert_eq!(cost.requests[1], 1, "{:?}", by_kind(&cost));
}

#[test]
fn an_index_copy_that_is_not_the_folder_status_is_set_aside_until_it_changes() {
    let m = MemBucket::new();
    let (a, _) = fleet_of_three(&m);
    let o = gc_settings();
    let now = clock::now_unix();
    // The folder holds a newer status than the index (the index's put failed).
    let failed =
        br#"{"timestamp":"2026-01-02T03:00:00+00:00","success":false,"error":"disk full"}"#;
    m.insert(&a.key(STATUS_OBJECT), failed);
    let mut r = Reader::new();
    let (f, _) = ok(r.read(&m, &o, now, 8));
    assert_eq!(
        row(&f, "club-a").state,
        "failed",
        "the folder's status is the reference"
    );
    // Later reads ask the folder (304), not the index copy.
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(
        (cost.requests[1], cost.requests[2]),
        (0, 2),
        "{:?}",
        by_kind(&cost)
    );
    assert_eq!(row(&f, "club-a").state, "failed");
    // The Pi's next round writes both: read once from the index, then quiet.
    a.backup_again_later();
    assert_eq!(a.round(&m), Round::Sent(1));
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(row(&f, "club-a").state, "ok");
    assert_eq!(cost.requests[1], 1, "{:?}", by_kind(&cost));
    let (_, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(
        (cost.requests[1], cost.requests[2]),
        (0, 1),
        "{:?}",
        by_kind(&cost)
    );
}

#[test]
fn a_drill_record_is_read_again_only_when_it_changed() {
    let m = MemBucket::new();
    fleet_of_three(&m);
    let o = gc_settings();
    let now = clock::now_unix();
    let mut r = Reader::new();
    let record = |ok: bool| {
        format!(
            r#"{{"version":1,"when":"{}","archive":null,"ok":{ok},"error":null,"videos":null}}"#,
            clock::iso_utc_millis(now - 3600, 0).replace(".000", "")
        )
    };
    for (site, rec) in [("club-a", record(true)), ("club-old", record(true))] {
        m.insert(&format!("{PREFIX}/{site}/{DRILL_OBJECT}"), rec.as_bytes());
    }
    // club-a's drill in the index too (as `fleet drill` writes it); club-old's by an
    // older version: in its folder only.
    m.insert(
        &fleet_index::key(&o, Entry::Drill, "club-a"),
        record(true).as_bytes(),
    );
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(cost.drill_gets, 2);
    assert!(row(&f, "club-a").drill.state == "ok" && row(&f, "club-old").drill.state == "ok");
    let (_, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!((cost.drill_gets, cost.requests[1]), (0, 0));
    // A new drill of club-a fails: one GET.
    let failed = record(false);
    m.insert(
        &format!("{PREFIX}/club-a/{DRILL_OBJECT}"),
        failed.as_bytes(),
    );
    m.insert(
        &fleet_index::key(&o, Entry::Drill, "club-a"),
        failed.as_bytes(),
    );
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(
        (cost.drill_gets, cost.requests[1]),
        (1, 1),
        "{:?}",
        by_kind(&cost)
    );
    let d = &row(&f, "club-a").drill;
    assert!(d.state == "failed" && d.flagged, "{d:?}");
}

#[test]
fn a_failed_read_keeps_the_previous_state_and_bounds_hold() {
    let m = MemBucket::new();
    let (a, _) = fleet_of_three(&m);
    let o = gc_settings();
    let now = clock::now_unix();
    let mut r = Reader::new();
    ok(r.read(&m, &o, now, 8));
    m.inject(Op::List, PREFIX, Fault::Status(500), 1);
    assert!(r.read(&m, &o, now, 8).is_err());
    let (_, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(cost.requests[1], 0, "{:?}", by_kind(&cost));
    // An index copy over 64 KiB: its row says so; nothing over the bound is kept.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    m.insert(
        &fleet_index::key(&o, Entry::Status, "club-a"),
        big.as_bytes(),
    );
    m.insert(&a.key(STATUS_OBJECT), big.as_bytes());
    let (f, _) = ok(r.read(&m, &o, now, 8));
    let ra = row(&f, "club-a");
    assert!(
        ra.error
            .as_deref()
            .is_some_and(|e| e.contains("over 65536")),
        "{ra:?}"
    );
    assert_eq!(f.unreadable, 1);
    // A listing of a site's folder that fails keeps its figures and says why.
    m.insert(
        &fleet_index::key(&o, Entry::Status, "club-b"),
        b"{\"success\":true}",
    );
    m.inject(
        Op::List,
        &format!("{PREFIX}/club-b/"),
        Fault::Status(503),
        1,
    );
    let (f, _) = ok(r.read(&m, &o, now, 8));
    let rb = row(&f, "club-b");
    assert_eq!(rb.archives, 1);
    assert!(
        rb.listing_error
            .as_deref()
            .is_some_and(|e| e.contains("503")),
        "{rb:?}"
    );
}

#[test]
fn a_pi_upgraded_from_the_version_before_the_index_copies_its_status_at_its_next_look() {
    let m = MemBucket::new();
    let a = pi("club-a", &[]);
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    let o = gc_settings();
    let copy = fleet_index::key(&o, Entry::Status, "club-a");
    // The state as the version before wrote it (no `index_sent`), and no index copy.
    let path = a.dir().join(crate::store::OFFSITE_STATE_FILE);
    let text = ok(std::fs::read_to_string(&path));
    let at = text
        .find(",\"index_sent\":\"")
        .unwrap_or_else(|| panic!("{text}"));
    let end = text[at + 15..]
        .find('"')
        .map_or(text.len(), |e| at + 15 + e + 1);
    let older = format!("{}{}", &text[..at], &text[end..]);
    assert!(
        !older.contains("index_sent") && older.contains("status_sent"),
        "{older}"
    );
    ok(std::fs::write(&path, older));
    ok(m.delete(&copy));
    assert!(crate::offsite::has_work(&a.cfg), "the copy is work to do");
    let puts = m.count(Op::Put);
    let tz = clock::Tz::utc();
    let log = crate::status::Log::new(a.dir(), &tz);
    let never = std::sync::atomic::AtomicBool::new(false);
    crate::offsite::process_on(&m, &a.cfg, &tz, &log, &never, false);
    // The copy only: the status itself, unchanged, is not sent again.
    assert_eq!(m.count(Op::Put) - puts, 1);
    assert_eq!(m.bytes(&copy), m.bytes(&a.key(STATUS_OBJECT)));
    assert!(!crate::offsite::has_work(&a.cfg));
}

#[test]
fn a_key_that_may_not_write_the_index_sends_its_copies_all_the_same() {
    let m = MemBucket::new();
    let o = gc_settings();
    let copy = fleet_index::key(&o, Entry::Status, "club-a");
    m.inject(Op::Put, &copy, Fault::Status(403), 1);
    let a = pi("club-a", &[]);
    a.backup();
    assert_eq!(a.round(&m), Round::Sent(1));
    assert!(m.bytes(&a.key(STATUS_OBJECT)).is_some() && m.bytes(&copy).is_none());
    // Said once in the log, not tried again at every look.
    let log = ok(std::fs::read_to_string(
        a.dir().join(crate::store::LOG_FILE),
    ));
    assert!(
        log.contains("the fleet's index may not be written"),
        "{log}"
    );
    assert!(!crate::offsite::has_work(&a.cfg));
    // The dashboard reads it from its folder.
    let (f, _) = ok(Reader::new().read(&m, &o, clock::now_unix(), 8));
    assert_eq!(row(&f, "club-a").state, "ok");
}

#[test]
fn a_fleet_of_upgraded_pis_refreshes_with_listing_requests_only() {
    let m = MemBucket::new();
    for site in ["club-a", "club-b", "club-c"] {
        let p = pi(site, &[]);
        p.backup();
        assert_eq!(p.round(&m), Round::Sent(1));
    }
    let o = gc_settings();
    let now = clock::now_unix();
    let mut r = Reader::new();
    ok(r.read(&m, &o, now, 8));
    let gets = m.count(Op::Get);
    let (f, cost) = ok(r.read(&m, &o, now, 8));
    assert_eq!(f.sites.len(), 3);
    let kinds = by_kind(&cost);
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert_eq!(kinds[0].0, "list");
    assert_eq!(m.count(Op::Get), gets, "no GET at all");
}
