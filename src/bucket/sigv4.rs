//! AWS Signature Version 4 (the `Authorization` header S3 wants), as pure functions
//! checked against AWS's published examples below. Nothing here does I/O.

use ring::hmac;

use crate::clock;
use crate::config::Secret;
use crate::units::hex;

/// SHA-256 of the empty string, the payload hash of a request without body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub use crate::units::sha256_hex;

/// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, everything
/// else is `%XX` (upper case); `/` stays only when `keep_slash` (object paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query string: encoded `key=value` pairs sorted by key, then value.
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut enc: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request and its signed-headers list. `headers` are (name, value) in any
/// case and order; `path` is already URI-encoded.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
) -> (String, String) {
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    hs.sort();
    let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = hs
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (
        format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload_hash}"),
        signed,
    )
}

/// `YYYYMMDD/region/service/aws4_request`.
pub fn scope(amz_date: &str, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", &amz_date[..8])
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

fn hmac256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The derived signing key: HMAC chain over date, region, service, "aws4_request".
pub fn signing_key(secret: &str, date8: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac256(format!("AWS4{secret}").as_bytes(), date8.as_bytes());
    let k = hmac256(&k, region.as_bytes());
    let k = hmac256(&k, service.as_bytes());
    hmac256(&k, b"aws4_request")
}

pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex(&hmac256(key, string_to_sign.as_bytes()))
}

/// `20130524T000000Z` of a Unix time.
pub fn amz_date(unix: i64) -> String {
    let c = clock::civil(unix);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

pub struct Credentials {
    pub access_key: String,
    pub secret_key: Secret,
    pub region: String,
}

/// Signs a request: returns the `Authorization` header value. `headers` must hold
/// `host`, `x-amz-date` and `x-amz-content-sha256` (and whatever else is to be signed).
pub fn authorization(
    creds: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
    amz_date: &str,
) -> String {
    let (creq, signed) = canonical_request(method, path, query, headers, payload_hash);
    let scope = scope(amz_date, &creds.region, "s3");
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(
        creds.secret_key.expose(),
        &amz_date[..8],
        &creds.region,
        "s3",
    );
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={}",
        creds.access_key,
        signature(&key, &sts)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of "Signature Calculations for the Authorization Header" in the
    // Amazon S3 API reference (sig-v4-header-based-auth).
    fn example_creds() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            region: "us-east-1".into(),
        }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sig_of(auth: &str) -> &str {
        auth.rsplit("Signature=").next().unwrap_or("")
    }

    #[test]
    fn aws_get_object_example() {
        let date = "20130524T000000Z";
        let headers = h(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", date),
        ]);
        let (creq, signed) = canonical_request("GET", "/test.txt", "", &headers, EMPTY_SHA256);
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        let sts = string_to_sign(date, &scope(date, "us-east-1", "s3"), &creq);
        assert!(
            sts.ends_with("7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"),
            "{sts}"
        );
        let auth = authorization(
            &example_creds(),
            "GET",
            "/test.txt",
            "",
            &headers,
            EMPTY_SHA256,
            date,
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_put_object_example() {
        let date = "20130524T000000Z";
        let body = b"Welcome to Amazon S3.";
        let hash = sha256_hex(body);
        assert_eq!(
            hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let headers = h(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", date),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", &hash),
        ]);
        let path = format!("/{}", uri_encode("test$file.text", true));
        assert_eq!(path, "/test%24file.text");
        let auth = authorization(&example_creds(), "PUT", &path, "", &headers, &hash, date);
        assert_eq!(
            sig_of(&auth),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn aws_get_lifecycle_and_list_examples() {
        let date = "20130524T000000Z";
        let headers = h(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", date),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ]);
        let q = canonical_query(&[("lifecycle", "")]);
        assert_eq!(q, "lifecycle=");
        let auth = authorization(
            &example_creds(),
            "GET",
            "/",
            &q,
            &headers,
            EMPTY_SHA256,
            date,
        );
        assert_eq!(
            sig_of(&auth),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        let q = canonical_query(&[("prefix", "J"), ("max-keys", "2")]);
        assert_eq!(q, "max-keys=2&prefix=J");
        let auth = authorization(
            &example_creds(),
            "GET",
            "/",
            &q,
            &headers,
            EMPTY_SHA256,
            date,
        );
        assert_eq!(
            sig_of(&auth),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn aws_signing_key_example() {
        // "Examples of how to derive a signing key for Signature Version 4".
        let k = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn encoding_and_dates() {
        assert_eq!(uri_encode("a b/c~d%", true), "a%20b/c~d%25");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(
            canonical_query(&[
                ("prefix", "neopro/"),
                ("list-type", "2"),
                ("delimiter", "/")
            ]),
            "delimiter=%2F&list-type=2&prefix=neopro%2F"
        );
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
    }
}
