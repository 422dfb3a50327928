//! The S3 side of the tests that need SeaweedFS (offsite, videos, fleet): where it
//! listens, the identity scripts/seaweedfs.sh creates, and prefixes no other test uses.

use std::sync::atomic::{AtomicU32, Ordering};

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

pub fn s3_endpoint() -> String {
    test_server_var("NEOPRO_TEST_S3")
}

/// SeaweedFS's filer (host, port), to read objects behind S3's back.
pub fn filer() -> (String, u16) {
    let url = test_server_var("NEOPRO_TEST_FILER");
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    let (h, p) = hostport.rsplit_once(':').unwrap_or((hostport, "80"));
    (h.to_string(), p.parse().unwrap_or(80))
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

/// The S3 environment of a test: endpoint, bucket, credentials, prefix, site.
pub fn s3_env(prefix: &str, site: &str) -> Vec<(String, String)> {
    vec![
        ("S3_ENDPOINT".into(), s3_endpoint()),
        ("S3_BUCKET".into(), BUCKET.into()),
        ("S3_ACCESS_KEY".into(), ACCESS_KEY.into()),
        ("S3_SECRET_KEY".into(), SECRET_KEY.into()),
        ("S3_PREFIX".into(), prefix.into()),
        ("SITE_ID".into(), site.into()),
    ]
}
