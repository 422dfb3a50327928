//! The S3 side of the tests that need SeaweedFS (offsite, videos, fleet): where it
//! listens, the identity scripts/seaweedfs.sh creates, prefixes no other test uses, the
//! environments a site or the operator runs with, and the bucket read and filled
//! through SeaweedFS's filer (behind S3's back, so that a bug in our own S3 client
//! cannot hide itself).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use super::net::{Answer, http};
use super::{Out, Tree, iso_utc, now_unix, parse_json};

pub const BUCKET: &str = "neopro-test";
// The identity of scripts/seaweedfs.sh.
pub const ACCESS_KEY: &str = "NEOPROTESTKEY";
pub const SECRET_KEY: &str = "neopro-test-secret-0123456789";

/// Where SeaweedFS listens: free ports picked by scripts/seaweedfs.sh, published in
/// target/seaweedfs/env, which `make test-offsite` passes on. No default port: a server
/// of someone else's on a well-known port is never taken for ours.
pub fn test_server_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `make test-offsite`, which starts SeaweedFS on free ports")
    })
}

/// The S3 endpoint, its bucket made (`ensure_bucket`).
pub fn s3_endpoint() -> String {
    let e = test_server_var("NEOPRO_TEST_S3");
    ensure_bucket();
    e
}

/// SeaweedFS's S3 port as `host:port` (for a relay in front of it).
pub fn s3_addr() -> String {
    host_port(&s3_endpoint())
}

/// SeaweedFS's filer as `host:port`, to read and write objects behind S3's back.
pub fn filer_addr() -> String {
    host_port(&test_server_var("NEOPRO_TEST_FILER"))
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

static PREFIX_N: AtomicU32 = AtomicU32::new(0);

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    format!(
        "t{}-{}-{name}",
        std::process::id(),
        PREFIX_N.fetch_add(1, Ordering::Relaxed)
    )
}

static BUCKET_MADE: std::sync::Once = std::sync::Once::new();

/// Makes the test bucket (a folder of the filer) once per test binary: on a fresh
/// server it exists only once something wrote into it, and a test's first request may
/// be a listing.
pub fn ensure_bucket() {
    BUCKET_MADE.call_once(|| {
        let a = http(
            &filer_addr(),
            "POST",
            &format!("/buckets/{BUCKET}/"),
            &[],
            b"",
        );
        assert!(
            (200..300).contains(&a.status) || a.status == 409,
            "cannot make the bucket through the filer: HTTP {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    });
}

/// The bucket at `endpoint` with the test identity: no prefix, no site.
pub fn bucket_env(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("S3_ENDPOINT".into(), endpoint.into()),
        ("S3_BUCKET".into(), BUCKET.into()),
        ("S3_ACCESS_KEY".into(), ACCESS_KEY.into()),
        ("S3_SECRET_KEY".into(), SECRET_KEY.into()),
    ]
}

/// The S3 environment of a site: endpoint, bucket, credentials, prefix, site.
pub fn s3_env(prefix: &str, site: &str) -> Vec<(String, String)> {
    with(
        &bucket_env(&s3_endpoint()),
        &[("S3_PREFIX", prefix), ("SITE_ID", site)],
    )
}

/// `env` with the variables of `extra` set (replacing those of the same name).
pub fn with(env: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(k2, _)| k2 == k))
        .cloned()
        .collect();
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

/// `env` borrowed, as `Tree::run_env` and `Tree::backup` take it.
pub fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `Tree::run_env` with an environment built by `s3_env` and `with`.
pub fn run(t: &Tree, env: &[(String, String)], args: &[&str]) -> Out {
    t.run_env(&env_refs(env), args)
}

/// `Tree::backup` (one run that must succeed; the new archive's name) with an
/// environment built by `s3_env` and `with`.
pub fn backup(t: &Tree, env: &[(String, String)]) -> String {
    t.backup(&env_refs(env))
}

/// An object's bytes read through the filer (None: 404).
pub fn object(key: &str) -> Option<Vec<u8>> {
    let Answer {
        status: st, body, ..
    } = http(
        &filer_addr(),
        "GET",
        &format!("/buckets/{BUCKET}/{key}"),
        &[],
        b"",
    );
    match st {
        200 => Some(body),
        404 => None,
        other => panic!(
            "filer GET {key}: HTTP {other}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// Writes an object through the filer.
pub fn put_object(key: &str, data: &[u8]) {
    let Answer {
        status: st, body, ..
    } = http(
        &filer_addr(),
        "PUT",
        &format!("/buckets/{BUCKET}/{key}"),
        &[],
        data,
    );
    assert!(
        (200..300).contains(&st),
        "filer PUT {key}: HTTP {st}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// The filer's entries directly under `dir/`: (key, is a folder). Empty when `dir` is
/// missing.
fn filer_entries(dir: &str) -> Vec<(String, bool)> {
    let dir = dir.trim_end_matches('/');
    let Answer {
        status: st, body, ..
    } = http(
        &filer_addr(),
        "GET",
        &format!("/buckets/{BUCKET}/{dir}/?limit=10000"),
        &[("Accept", "application/json")],
        b"",
    );
    if st == 404 {
        return vec![];
    }
    assert_eq!(
        st,
        200,
        "filer listing of {dir}: {}",
        String::from_utf8_lossy(&body)
    );
    let j = parse_json(&String::from_utf8_lossy(&body)).unwrap_or_else(|e| panic!("{e}"));
    let Some(entries) = j.try_get("Entries").filter(|e| !e.is_null()) else {
        return vec![];
    };
    let root = format!("/buckets/{BUCKET}/");
    entries
        .arr()
        .iter()
        .map(|e| {
            let full = e.get("FullPath").str();
            (
                full.strip_prefix(&root).unwrap_or(full).to_string(),
                e.get("Mode").u64() & (1 << 31) != 0,
            )
        })
        .collect()
}

/// The names of the objects (and folders) directly under `dir/`, sorted.
pub fn objects_in(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = filer_entries(dir)
        .into_iter()
        .map(|(key, _)| key.rsplit('/').next().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// Every object key under `dir/`, at any depth.
pub fn keys_under(dir: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.trim_end_matches('/').to_string()];
    while let Some(d) = todo.pop() {
        for (key, is_dir) in filer_entries(&d) {
            if is_dir {
                todo.push(key);
            } else {
                out.insert(key);
            }
        }
    }
    out
}

/// A last-backup-status.json as a site publishes it: success or not, the last success
/// `hours` ago, `pending` copies waiting.
pub fn site_status_json(success: bool, hours: i64, pending: u64) -> String {
    let last = iso_utc(now_unix() - hours * 3600);
    let (ts, err) = if success {
        (last.clone(), "null".to_string())
    } else {
        (iso_utc(now_unix() - 600), "\"disk full\"".to_string())
    };
    format!(
        r#"{{"timestamp":"{ts}","date":"{}","success":{success},"archive":"backup-x.tar.gz","size":"1.0 MB","size_bytes":1000000,"backups_count":3,"retention_days":7,"duration_ms":5,"warnings":[],"error":{err},"last_success":"{last}","offsite":{{"pending":{pending},"last_upload":null,"error":null}}}}"#,
        &ts[..10]
    )
}
