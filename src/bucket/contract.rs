//! The contract every store keeps (mod.rs, docs/format.md, Offsite store), as one suite
//! run on each implementation: the in-memory store in `make check`, S3 against
//! SeaweedFS in `make test-offsite` (`#[ignore]`d without it).

use std::io::Read;
use std::sync::atomic::AtomicBool;

use super::{Bucket, Fresh, ObjectBody, ObjectHead, RangeReader, sha256};

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Bytes that differ at every position (a shifted range shows).
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Runs the whole contract under `root` (a prefix no one else uses, ending in `/`).
pub fn run(b: &dyn Bucket, root: &str) {
    run_with(b, root, true);
}

/// The contract; `keeps_sha256`: the store keeps the SHA-256 a body was written with
/// (`head_checked`; S3 does, Google Drive does not: `None` there).
pub fn run_with(b: &dyn Bucket, root: &str, keeps_sha256: bool) {
    let k = |name: &str| format!("{root}{name}");

    // put replaces; get and head see the last one.
    ok(b.put_bytes(&k("status.json"), b"first", "application/json"));
    ok(b.put_bytes(&k("status.json"), b"second!", "application/json"));
    assert_eq!(ok(b.get(&k("status.json"))), Some(b"second!".to_vec()));
    assert_eq!(ok(b.head(&k("status.json"))), ObjectHead::Exists(7));

    // A conditional read: the listing's tag and the read's are the same; an unchanged
    // object is `Same`, a changed one comes with its new tag; the same bytes written
    // again keep their tag (a Pi's status put twice unchanged is no change).
    let listed = ok(b.list(&k("status.json"), None));
    let tag = listed
        .objects
        .first()
        .map(|o| o.etag.clone())
        .unwrap_or_default();
    assert!(!tag.is_empty(), "the listing gives no ETag");
    let got = ok(b.get_if(&k("status.json"), None, 100));
    assert_eq!(
        got,
        Fresh::Got {
            data: b"second!".to_vec(),
            etag: tag.clone()
        }
    );
    assert_eq!(
        ok(b.get_if(&k("status.json"), Some(&tag), 100)),
        Fresh::Same
    );
    ok(b.put_bytes(&k("status.json"), b"second!", "application/json"));
    assert_eq!(
        ok(b.get_if(&k("status.json"), Some(&tag), 100)),
        Fresh::Same
    );
    ok(b.put_bytes(&k("status.json"), b"third", "application/json"));
    match ok(b.get_if(&k("status.json"), Some(&tag), 100)) {
        Fresh::Got { data, etag } => assert!(data == b"third" && etag != tag && !etag.is_empty()),
        other => panic!("a changed object read as {other:?}"),
    }
    // Over the bound: refused, whatever the tag; an empty object is read.
    let e = b
        .get_if(&k("status.json"), None, 4)
        .map(|_| ())
        .unwrap_err();
    assert!(e.msg.contains("5 bytes, over 4"), "{e}");
    ok(b.put_bytes(&k("empty"), b"", "application/json"));
    assert!(
        matches!(ok(b.get_if(&k("empty"), None, 4)), Fresh::Got { data, .. } if data.is_empty())
    );
    ok(b.delete(&k("empty")));
    ok(b.put_bytes(&k("status.json"), b"second!", "application/json"));
    assert_eq!(ok(b.get_if(&k("none"), Some(&tag), 100)), Fresh::Missing);

    // get, head and delete of a key that is not there (in a bucket that exists: a
    // server may make the bucket at the first write).
    assert_eq!(ok(b.get(&k("none"))), None);
    assert_eq!(ok(b.head(&k("none"))), ObjectHead::Missing);
    assert!(ok(b.get_range(&k("none"), 0, 10)).is_none());
    ok(b.delete(&k("none")));

    // create never replaces.
    let data = pattern(1000, 1);
    assert!(ok(b.create(
        &k("v/a"),
        ObjectBody::bytes(&data),
        "application/octet-stream"
    )));
    let other = pattern(1000, 2);
    assert!(!ok(b.create(
        &k("v/a"),
        ObjectBody::bytes(&other),
        "application/octet-stream"
    )));
    assert_eq!(ok(b.get(&k("v/a"))), Some(data.clone()));
    // The store keeps the SHA-256 the body was written with (and checked).
    assert_eq!(
        ok(b.head_checked(&k("v/a"))),
        (
            ObjectHead::Exists(1000),
            keeps_sha256.then(|| sha256(&data))
        )
    );
    // Written without one: none kept.
    let body = ObjectBody {
        reader: Box::new(&data[..]),
        len: data.len() as u64,
        sha256: None,
    };
    ok(b.put(&k("v/unsummed"), body, "application/octet-stream"));
    assert_eq!(
        ok(b.head_checked(&k("v/unsummed"))),
        (ObjectHead::Exists(1000), None)
    );

    // A body whose SHA-256 is not the one announced is refused, nothing written; so is
    // a body shorter than its length.
    let lie = ObjectBody {
        reader: Box::new(&other[..]),
        len: other.len() as u64,
        sha256: Some(sha256(&data)),
    };
    let e = b.create(&k("v/lie"), lie, "application/octet-stream");
    assert!(e.is_err(), "a body that does not match its hash was taken");
    assert_eq!(ok(b.head(&k("v/lie"))), ObjectHead::Missing);
    let short = ObjectBody {
        reader: Box::new(&data[..10]),
        len: 20,
        sha256: None,
    };
    assert!(b.put(&k("v/short"), short, "text/plain").is_err());
    assert_eq!(ok(b.head(&k("v/short"))), ObjectHead::Missing);

    // Ranges: inside, across the end, past the end.
    let r = ok(b.get_range(&k("v/a"), 100, 50)).unwrap_or_else(|| panic!("v/a vanished"));
    assert_eq!((r.data.as_slice(), r.total), (&data[100..150], 1000));
    let r = ok(b.get_range(&k("v/a"), 990, 50)).unwrap_or_else(|| panic!("v/a vanished"));
    assert_eq!((r.data.as_slice(), r.total), (&data[990..], 1000));
    let r = ok(b.get_range(&k("v/a"), 1000, 50)).unwrap_or_else(|| panic!("v/a vanished"));
    assert!(r.data.is_empty());

    // Listing: key order, pages followed, folders with a delimiter.
    let names = ["l/a", "l/b/1", "l/b/2", "l/c", "l/d/1", "l/e", "l/f", "l/g"];
    for n in names {
        ok(b.put_bytes(&k(n), n.as_bytes(), "text/plain"));
    }
    let all = ok(b.list(&k("l/"), None));
    let keys: Vec<String> = all.objects.iter().map(|o| o.key.clone()).collect();
    let want: Vec<String> = names.iter().map(|n| k(n)).collect();
    assert_eq!(keys, want);
    assert!(all.objects.iter().all(|o| o.size == 3 || o.size == 5));
    let folded = ok(b.list(&k("l/"), Some("/")));
    let keys: Vec<String> = folded.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(keys, ["l/a", "l/c", "l/e", "l/f", "l/g"].map(k));
    assert_eq!(folded.prefixes, [k("l/b/"), k("l/d/")]);
    let mut seen = 0;
    ok(b.list_each(&k("l/b/"), None, &mut |_| seen += 1));
    assert_eq!(seen, 2);

    // A writer (length unknown in advance): over one S3 part, read back by ranges.
    let big = pattern(9 * 1024 * 1024 + 17, 3);
    let never = AtomicBool::new(false);
    let key = k("w/big");
    let mut w = b.writer(&key, "application/octet-stream", &never);
    ok(std::io::Write::write_all(&mut w, &big));
    assert_eq!(ok(w.finish()), big.len() as u64);
    let mut back = Vec::new();
    let mut rd = ok(RangeReader::open(b, &key)).unwrap_or_else(|| panic!("w/big vanished"));
    assert_eq!(ok(b.head(&key)), ObjectHead::Exists(big.len() as u64));
    ok(rd.read_to_end(&mut back));
    assert!(
        back == big,
        "the object read by ranges differs from what was written"
    );

    // Delete, then gone from reads and listings.
    for n in names {
        ok(b.delete(&k(n)));
    }
    for n in ["status.json", "v/a", "v/unsummed", "w/big"] {
        ok(b.delete(&k(n)));
    }
    assert!(ok(b.list(root, None)).objects.is_empty());
}

#[test]
fn the_memory_store_keeps_the_contract() {
    run(&super::mem::MemBucket::new(), "c/");
    // and with pages of one entry, and an empty root
    let mut m = super::mem::MemBucket::new();
    m.page_size = 1;
    run(&m, "");
}

/// S3 against SeaweedFS, with the identity scripts/seaweedfs.sh creates (`make
/// test-offsite` passes its address in NEOPRO_TEST_S3).
#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn s3_keeps_the_contract() {
    let endpoint = std::env::var("NEOPRO_TEST_S3").unwrap_or_else(|_| {
        panic!("NEOPRO_TEST_S3 is not set: run `make test-offsite`, which starts SeaweedFS")
    });
    let s3 = super::s3::S3 {
        endpoint: ok(crate::http::client::Url::parse(&endpoint)),
        bucket: "neopro-test".into(),
        creds: super::s3::Credentials {
            access_key: "NEOPROTESTKEY".into(),
            secret_key: crate::config::Secret::new("neopro-test-secret-0123456789".into()),
            region: "us-east-1".into(),
        },
    };
    let root = format!(
        "contract-{}-{}/",
        std::process::id(),
        crate::clock::now_unix()
    );
    run(&s3, &root);
}
