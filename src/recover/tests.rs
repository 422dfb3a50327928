//! The recovery's rules on the in-memory store (bucket/mem.rs): which copies are seen,
//! in which order, and a store failure never taken for a damaged copy. The whole
//! command, on real archives and SeaweedFS, is in tests/it/recover.rs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::bucket::mem::{Fault, MemBucket, Op};
use crate::config::{Config, Lookup};
use crate::offsite::mem_tests::{Scratch, ok};

fn config(root: &Path, prefix: &str) -> Config {
    let vars: HashMap<String, String> = [
        ("NEOPRO_DIR", root.join("neopro").display().to_string()),
        ("BACKUP_DIR", root.join("backups").display().to_string()),
        (
            "SITE_CONF",
            root.join("etc/site.conf").display().to_string(),
        ),
        ("SITE_ID", "club".to_string()),
        ("S3_ENDPOINT", "http://127.0.0.1:9".to_string()),
        ("S3_BUCKET", "neopro-mem".to_string()),
        ("S3_PREFIX", prefix.to_string()),
        ("S3_ACCESS_KEY", "k".to_string()),
        ("S3_SECRET_KEY", "secret-secret".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let lookup = ok(Lookup::from_parts(vars, "", Path::new("test.conf")).map_err(|e| e.0));
    ok(Config::from_sources(&lookup).map_err(|e| e.0))
}

fn settings(cfg: &Config) -> crate::offsite::Place {
    crate::offsite::Place::s3(
        cfg.offsite
            .as_ref()
            .unwrap_or_else(|| panic!("offsite settings")),
    )
}

#[test]
fn the_list_holds_only_archive_copies_newest_first() {
    let s = Scratch::new("list");
    let cfg = config(&s.0, "p");
    let m = MemBucket::new();
    for k in [
        "p/club/backup-20260101-030000.tar.gz",
        "p/club/backup-20260301-030000.tar.gz.age",
        "p/club/backup-20260201-030000.tar.gz",
        "p/club/last-backup-status.json",
        "p/club/videos-referenced.txt",
        "p/club/backup-20261399-030000.tar.gz",
        "p/club/backup-20260401-030000.tar.gz.part",
        "p/club/sub/backup-20260501-030000.tar.gz",
        "p/clubhouse/backup-20260601-030000.tar.gz",
    ] {
        m.insert(k, b"x");
    }
    let l = ok(list(&m, &settings(&cfg), "club"));
    let names: Vec<&str> = l.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backup-20260301-030000.tar.gz.age",
            "backup-20260201-030000.tar.gz",
            "backup-20260101-030000.tar.gz"
        ]
    );
    assert!(l[0].encrypted && !l[1].encrypted);
    assert_eq!(l[0].local_name(), "backup-20260301-030000.tar.gz");
    assert_eq!(l[0].key, "p/club/backup-20260301-030000.tar.gz.age");
    // Named by either name; a name held twice (plain and .age) must be told apart.
    let one = ok(candidates(&l, Some("backup-20260301-030000.tar.gz")));
    assert_eq!(one.len(), 1);
    assert!(candidates(&l, Some("backup-20250101-030000.tar.gz")).is_err());
    let mut twice = l.clone();
    twice.push(Remote {
        name: "backup-20260301-030000.tar.gz".into(),
        ..l[0].clone()
    });
    assert!(
        candidates(&twice, Some("backup-20260301-030000.tar.gz"))
            .is_err_and(|e| e.contains("twice"))
    );
    assert_eq!(ok(candidates(&l, None)).len(), 3);
}

#[test]
fn the_sites_are_named_reserved_ones_left_out_and_a_denied_listing_says_so() {
    let s = Scratch::new("sites");
    let cfg = config(&s.0, "p");
    let m = MemBucket::new();
    for k in [
        "p/alpha/last-backup-status.json",
        "p/beta/backup-20260101-030000.tar.gz",
        "p/videos/sha256/aa/x",
        "other/gamma/x",
    ] {
        m.insert(k, b"x");
    }
    assert_eq!(
        ok(sites(&m, &settings(&cfg))),
        Some(vec!["alpha".to_string(), "beta".to_string()])
    );
    m.inject(Op::List, "p/", Fault::Status(403), 1);
    assert_eq!(ok(sites(&m, &settings(&cfg))), None);
    let msg = no_archive_message("new", None);
    assert!(msg.contains("--site"), "{msg}");
    let many: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
    let msg = no_archive_message("new", Some(&many));
    assert!(
        msg.contains("s19") && !msg.contains("s20") && msg.contains("and 5 more"),
        "{msg}"
    );
}

#[test]
fn a_store_failure_is_never_taken_for_a_damaged_copy_and_nothing_is_left() {
    let s = Scratch::new("fetch");
    let cfg = config(&s.0, "p");
    let m = MemBucket::new();
    let key = "p/club/backup-20260101-030000.tar.gz";
    m.insert(key, &vec![7u8; 20 * 1024 * 1024]);
    let l = ok(list(&m, &settings(&cfg), "club"));
    let never = AtomicBool::new(false);
    let progress = Progress::default();
    let dir = cfg.backup_dir.clone();
    // Garbage: damaged, and BACKUP_DIR holds nothing under any name.
    let r = fetch(&m, &l[0], &dir, &[], &never, &progress);
    assert!(matches!(r, Err(FetchError::Damaged(_))), "{r:?}");
    assert_eq!(ok(std::fs::read_dir(&dir)).count(), 0);
    assert_eq!(
        progress.archive_total.load(Ordering::Relaxed),
        20 * 1024 * 1024
    );
    // The store unreachable from the start: a store failure.
    m.inject(Op::Get, key, Fault::Unreachable, 4);
    let r = fetch(&m, &l[0], &dir, &[], &never, &progress);
    assert!(matches!(r, Err(FetchError::Store(_))), "{r:?}");
    // ... and in the middle of the copy (after its first range): still the store's.
    let mut stream = ok(open(&m, &l[0], &[], None).map_err(|e| e.message().to_string()));
    m.inject(Op::Get, key, Fault::Unreachable, 4);
    let mut sink = Vec::new();
    assert!(stream.reader.read_to_end(&mut sink).is_err());
    assert!(stream.store_failure().is_some());
    assert_eq!(ok(std::fs::read_dir(&dir)).count(), 0);
    // An encrypted copy without an identity is refused before any read.
    let before = m.count(Op::Get);
    let age = Remote {
        name: "backup-20260101-030000.tar.gz.age".into(),
        encrypted: true,
        ..l[0].clone()
    };
    let r = open(&m, &age, &[], None);
    assert!(matches!(r, Err(FetchError::Identity(_))));
    assert_eq!(m.count(Op::Get), before);
}

#[test]
fn the_missing_folders_of_a_fresh_card_are_made_deepest_last() {
    let s = Scratch::new("folders");
    let target = s.0.join("a/b/c/file.json");
    assert_eq!(
        missing_folders(&s.0.join("a/b/c")),
        [s.0.join("a/b/c"), s.0.join("a/b"), s.0.join("a")]
    );
    let made = ok(make_folders(&target));
    assert_eq!(made, [s.0.join("a"), s.0.join("a/b"), s.0.join("a/b/c")]);
    assert!(s.0.join("a/b/c").is_dir());
    assert_eq!(ok(make_folders(&target)), Vec::<PathBuf>::new());
    // Never through a link.
    ok(std::os::unix::fs::symlink("/tmp", s.0.join("l")));
    assert!(make_folders(&s.0.join("l/x/file")).is_err());
    assert!(!Path::new("/tmp/x").join("file").exists());
}
