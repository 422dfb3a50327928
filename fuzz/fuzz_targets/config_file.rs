//! Fuzzes the config file parser (src/config/mod.rs, docs/format.md "Configuration"): the
//! `KEY=VALUE` reader, then every key's validation (`Config::from_sources`), with the
//! real modules it calls (the URL parsers of src/http/client.rs and src/smtp/url.rs).
#![no_main]
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[path = "../../src/config/mod.rs"]
mod config;
#[path = "../../src/fsutil/mod.rs"]
mod fsutil;
#[path = "../../src/host.rs"]
mod host;
#[path = "../../src/http/client.rs"]
pub mod http_client;
#[path = "../../src/http/percent.rs"]
pub mod http_percent;
#[path = "../../src/http/response.rs"]
pub mod http_response;
#[path = "../../src/http/tls.rs"]
pub mod http_tls;
#[path = "../../src/smtp/url.rs"]
pub mod smtp_url;

/// What config/mod.rs reaches as `crate::http::client` (and client.rs as
/// `crate::http::response` and `crate::http::tls`, smtp/url.rs as
/// `crate::http::percent`) and `crate::smtp`.
mod http {
    pub use crate::http_client as client;
    pub use crate::http_percent as percent;
    pub use crate::http_response as response;
    pub use crate::http_tls as tls;
}
mod smtp {
    pub use crate::smtp_url::{SmtpUrl, check_address, parse_address_list};
}

use config::{Config, ConfigError, Lookup, SECRET_KEYS};

fn origin() -> &'static Path {
    Path::new("/etc/neopro/backup.conf")
}

fuzz_target!(|data: &[u8]| {
    // The daemon refuses a file that is not UTF-8 before parsing it (Lookup::gather).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = match config::parse_file(text, origin()) {
        Err(ConfigError(e)) => {
            // The error points at a line of the file.
            assert!(e.starts_with("/etc/neopro/backup.conf:"), "{e}");
            return;
        }
        Ok(pairs) => pairs,
    };
    // At most one pair per line; keys are identifiers (letters, digits, `_`); a value
    // is one line.
    assert!(pairs.len() <= text.lines().count());
    for (k, v) in &pairs {
        assert!(!k.is_empty(), "empty key");
        assert!(
            k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{k:?}"
        );
        assert!(!v.contains('\n'), "{v:?}");
    }
    // Written back as KEY="VALUE" lines, the pairs read the same.
    let written: String = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
        .collect();
    assert_eq!(
        config::parse_file(&written, origin()).ok().as_ref(),
        Some(&pairs)
    );

    // Every key's validation. It may refuse; it must not panic, and a refusal must
    // never show a secret's value.
    let Ok(src) = Lookup::from_parts(HashMap::new(), text, origin()) else {
        panic!("parse_file accepted the text but Lookup::from_parts refused it");
    };
    let e = match Config::from_sources(&src) {
        Ok(cfg) => {
            // Every key that is not one of the program's is reported, none dropped.
            let unknown: Vec<&String> = pairs
                .iter()
                .map(|(k, _)| k)
                .filter(|k| !config::KEYS.contains(&k.as_str()))
                .collect();
            assert_eq!(cfg.unknown_keys.iter().collect::<Vec<_>>(), unknown);
            return;
        }
        Err(ConfigError(e)) => e,
    };
    assert!(!e.is_empty());
    // The last value given for a key is the one the daemon uses.
    let last = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut secrets = Vec::new();
    // (key, secret, what of the value may be shown)
    secrets.extend(last("API_TOKEN").map(|v| ("API_TOKEN", v, vec![])));
    secrets.extend(last("S3_SECRET_KEY").map(|v| ("S3_SECRET_KEY", v, vec![])));
    // The password in a URL (scheme://user:PASSWORD@host): SMTP_URL's, and those of
    // the URLs whose user info errors never show (src/config/mod.rs, shown_url).
    for key in ["SMTP_URL", "ALERT_WEBHOOK", "PING_URL", "S3_ENDPOINT"] {
        if let Some(url) = last(key)
            && let Some((scheme, rest)) = url.split_once("://")
            && let Some((userinfo, host)) = rest.rsplit_once('@')
            && let Some((user, password)) = userinfo.split_once(':')
        {
            secrets.push((key, password, vec![scheme, user, host]));
        }
    }
    for (key, secret, visible) in secrets {
        // The whole secret, and its first and last 8 characters (a value cut at the
        // wrong place shows a part of it).
        let n = secret.len();
        let parts = [
            Some(secret),
            secret.get(..8),
            n.checked_sub(8).and_then(|i| secret.get(i..)),
        ];
        for part in parts.into_iter().flatten() {
            // A visible part is shown escaped (`config::shown`): NULs before a host's
            // digits read "\000000000", as a password of zeros would.
            if shown_for_another_reason(part, key, &pairs)
                || visible
                    .iter()
                    .any(|v| v.contains(part) || config::shown(v).contains(part))
            {
                continue;
            }
            assert!(
                !e.contains(part),
                "{part:?} of the value of {key} is shown in {e:?}"
            );
        }
    }
});

/// The sources whose fixed texts make up the error messages.
const SOURCES: [&str; 3] = [
    include_str!("../../src/config/mod.rs"),
    include_str!("../../src/smtp/url.rs"),
    include_str!("../../src/http/client.rs"),
];

/// Whether an error message could hold `secret` without showing the secret itself: too
/// short to tell, part of a fixed text, of another key or value, or with a character
/// that could join a fixed text or another part of the value to it (`=`, quotes,
/// spaces, `:`, `/`, ...), or made by the escaping of another value.
fn shown_for_another_reason(secret: &str, key: &str, pairs: &[(String, String)]) -> bool {
    secret.len() < 8
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        || SOURCES.iter().any(|s| s.contains(secret))
        || "/etc/neopro/backup.conf".contains(secret)
        || pairs.iter().any(|(k, v)| {
            // An error shows a value escaped (`config::shown`): "\0" then "1234567"
            // reads as "01234567" though the value never holds it.
            k.contains(secret)
                || (k != key && (v.contains(secret) || config::shown(v).contains(secret)))
        })
}
