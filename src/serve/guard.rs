//! Who may call the API: the Host must be an IP literal, `localhost` or this machine's
//! name (defeats DNS rebinding from a page the kiosk browser opens); /api and /metrics
//! need the bearer token when API_TOKEN is set (constant-time comparison); a
//! state-changing request from another origin is 403.

use crate::http::server::Request;
use crate::serve::state::Shared;

/// Constant-time comparison of two byte strings (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

pub fn host_allowed(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true; // HTTP/1.0 clients; the Origin check still applies.
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" {
        return true;
    }
    let me = crate::host::hostname().to_ascii_lowercase();
    name == me || name == format!("{me}.local")
}

/// Whether `Origin` names the host the request was sent to (`Host`), over http or
/// https: an HTTPS admin panel that proxies /api/backups to us, passing Host through,
/// is the same origin; any other site is not.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|h| h.eq_ignore_ascii_case(host))
}

pub fn cross_origin(req: &Request) -> bool {
    if req
        .header("Sec-Fetch-Site")
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return true;
    }
    match req.header("Origin") {
        None => false,
        Some(o) => !same_origin(o, req.header("Host")),
    }
}

pub fn authorized(shared: &Shared, req: &Request) -> bool {
    token_ok(shared.cfg.api_token.as_deref(), req)
}

/// True without a token, else when the request carries `Bearer <token>`.
pub fn token_ok(token: Option<&str>, req: &Request) -> bool {
    let Some(token) = token else {
        return true;
    };
    req.header("Authorization")
        .and_then(bearer_credentials)
        .is_some_and(|given| ct_eq(given.as_bytes(), token.as_bytes()))
}

/// The credentials of `Bearer <token>`: the scheme is case-insensitive and followed by
/// one or more spaces (RFC 9110, 11.1 and 11.4).
pub fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let given = rest.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("Bearer") && !given.is_empty()).then_some(given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_tokens() {
        assert!(host_allowed(Some("127.0.0.1:8081")));
        assert!(host_allowed(Some("localhost:8081")));
        assert!(host_allowed(Some("[::1]:8081")));
        assert!(!host_allowed(Some("evil.example:8081")));
        assert!(same_origin("http://127.0.0.1:8081", Some("127.0.0.1:8081")));
        assert!(same_origin("https://neopro.local", Some("neopro.local")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:8081")));
        assert!(!same_origin("null", Some("127.0.0.1:8081")));
        assert!(!same_origin(
            "http://127.0.0.1:8081.evil",
            Some("127.0.0.1:8081")
        ));
        assert!(!same_origin("http://127.0.0.1:8081", None));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
        for v in ["Bearer tok", "bearer tok", "BEARER  tok ", "BeArEr tok"] {
            assert_eq!(bearer_credentials(v), Some("tok"), "{v}");
        }
        for v in [
            "Bearertok",
            "Basic tok",
            "Bearer ",
            "tok",
            "Bearer\ttok",
            "",
        ] {
            assert_eq!(bearer_credentials(v), None, "{v}");
        }
    }
}
