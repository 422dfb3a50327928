//! Google's OAuth 2.0 for a device without a browser (the "TVs and Limited Input
//! devices" flow): a device code the club's admin approves on a phone, the tokens it
//! yields, an access token refreshed from the refresh token, a revocation; and the file
//! that keeps the connection, `BACKUP_DIR/gdrive-token.json` (docs/format.md, Google
//! Drive token file).
//!
//! The refresh token is a secret: it is held as a `Secret` (whose Debug shows nothing),
//! sent only in a form body to Google's token endpoint, written only to the token file
//! (0600), and never put in a log line, an error message or a child's environment.
//! Access tokens (an hour's life) get the same care.

use std::io;
use std::path::Path;

use nanoserde::SerJson;

use crate::config::Secret;
use crate::fsutil;
use crate::http::client::{self, Payload, Timeouts, Url};
use crate::http::percent::percent_encode;
use crate::json::{self, Scalar, Seg};
use crate::store::GDRIVE_TOKEN_FILE;

use super::Error;

/// The only scope asked: the files this application made (not the rest of the Drive).
pub const SCOPE: &str = "https://www.googleapis.com/auth/drive.file";
/// The version of the token file this build writes (and the newest it reads).
pub const TOKEN_FILE_VERSION: u32 = 1;
/// Largest answer of an OAuth endpoint kept (they are a few hundred bytes).
const MAX_OAUTH_ANSWER: usize = 64 * 1024;
/// Largest token file read (ids of a few thousand folders and files).
const MAX_TOKEN_FILE: u64 = 4 * 1024 * 1024;
/// IDs kept in the token file (past it, gdrive.rs drops the files', then all).
pub const MAX_IDS: usize = 10_000;
/// Bounds of the numbers Google gives (seconds): a day, an hour between polls.
const MAX_EXPIRES_IN: u64 = 24 * 3600;
const MAX_INTERVAL: u64 = 3600;

/// What the admin is shown to approve this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_url: String,
    pub expires_in: u64,
    /// Seconds between two polls.
    pub interval: u64,
}

/// An access token and its life in seconds. Its Debug does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessToken([secret], expires_in: {})", self.expires_in)
    }
}

/// What an approved device code yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access: AccessToken,
    pub refresh_token: Secret,
    pub scope: String,
}

/// Where a device code stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Not approved yet: poll again after the interval.
    Pending,
    /// Polled too often: add 5 s to the interval.
    SlowDown,
    /// The admin refused.
    Denied,
    /// The code expired before it was approved: ask a new one.
    Expired,
    Done(Tokens),
}

/// The token file (`BACKUP_DIR/gdrive-token.json`, 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    pub version: u32,
    pub client_id: String,
    pub refresh_token: Secret,
    pub scope: String,
    /// When the connection was made (ISO 8601).
    pub connected: String,
    /// Drive IDs of the folders (path ending in `/`) and files (path) found or made.
    pub ids: Ids,
}

/// Drive IDs by path, sorted by path (a sorted vector: a map type of its own would
/// cost the binary kilobytes for a few thousand entries at most).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids(Vec<(String, String)>);

impl Ids {
    fn find(&self, path: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(path))
    }

    pub fn get(&self, path: &str) -> Option<&String> {
        self.find(path)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, path: &str) -> bool {
        self.find(path).is_ok()
    }

    /// Keeps `id` for `path`; the ID it replaces.
    pub fn insert(&mut self, path: String, id: String) -> Option<String> {
        match self.find(&path) {
            Ok(i) => self.0.get_mut(i).map(|e| std::mem::replace(&mut e.1, id)),
            Err(i) => {
                self.0.insert(i, (path, id));
                None
            }
        }
    }

    pub fn remove(&mut self, path: &str) -> Option<String> {
        self.find(path).ok().map(|i| self.0.remove(i).1)
    }

    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|(k, _)| keep(k));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The answers of the OAuth endpoints, success or error (all fields optional: which
/// ones come depends on the answer).
#[derive(Default)]
struct OAuthAnswer {
    device_code: Option<String>,
    user_code: Option<String>,
    verification_url: Option<String>,
    expires_in: Option<u64>,
    interval: Option<u64>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl OAuthAnswer {
    /// The fields of the answer's top object (read by json::walk: a derived reader
    /// would cost kilobytes of the binary). Google says `verification_url`, RFC 8628
    /// `verification_uri`: either is taken.
    fn parse(text: &str) -> Result<OAuthAnswer, String> {
        let mut a = OAuthAnswer::default();
        json::walk(text, &mut |p, v| {
            let Some(k) = json::top(p) else {
                return;
            };
            let number = |v: Scalar<'_>| match v {
                Scalar::Num(n) => n.parse().ok(),
                _ => None,
            };
            match k {
                "expires_in" => a.expires_in = number(v),
                "interval" => a.interval = number(v),
                _ => {
                    let slot = match k {
                        "device_code" => &mut a.device_code,
                        "user_code" => &mut a.user_code,
                        "verification_url" | "verification_uri" => &mut a.verification_url,
                        "access_token" => &mut a.access_token,
                        "refresh_token" => &mut a.refresh_token,
                        "scope" => &mut a.scope,
                        "error" => &mut a.error,
                        "error_description" => &mut a.error_description,
                        _ => return,
                    };
                    if let Scalar::Str(s) = v {
                        *slot = Some(s);
                    }
                }
            }
        })?;
        Ok(a)
    }
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The URL of `path` under the root `oauth` (whose own path, if any, is a prefix).
fn endpoint(oauth: &Url, path: &str) -> Url {
    oauth.with_path(format!("{}{path}", oauth.path.trim_end_matches('/')))
}

/// POSTs a form to `path`; the answer whatever its status (its JSON says more), parsed.
fn post_form(
    oauth: &Url,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<(u16, OAuthAnswer), Error> {
    let body = form(fields);
    let url = endpoint(oauth, path);
    let headers = [(
        "Content-Type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    let what = format!("POST {}{path}", oauth.origin());
    let r = client::request(
        "POST",
        &url,
        &headers,
        Payload::bytes(body.as_bytes()),
        MAX_OAUTH_ANSWER,
        Timeouts::GOOGLE,
    )
    .map_err(|e| Error::transport(format!("{what}: {e}")))?;
    let answer = std::str::from_utf8(&r.body)
        .ok()
        .and_then(|t| OAuthAnswer::parse(t).ok());
    match answer {
        Some(a) => Ok((r.status, a)),
        None if r.status >= 500 || r.status == 429 => Err(Error::transport(format!(
            "{what}: HTTP {} (Google is unavailable: try again later)",
            r.status
        ))),
        None => Err(Error::refused(
            format!(
                "{what}: HTTP {}, an answer that is not Google's JSON",
                r.status
            ),
            r.status,
        )),
    }
}

/// A bounded number of seconds Google gave (0 when absent).
fn seconds(v: Option<u64>, max: u64) -> u64 {
    v.unwrap_or(0).min(max)
}

/// A readable error of an OAuth answer (`error` and `error_description` are Google's
/// words, never a token).
fn refused(what: &str, status: u16, a: &OAuthAnswer) -> Error {
    let code = a.error.as_deref().unwrap_or("no error code");
    let desc = a
        .error_description
        .as_deref()
        .filter(|d| d.len() < 300)
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let hint = match code {
        "invalid_client" | "unauthorized_client" => {
            ": check GDRIVE_CLIENT_ID and GDRIVE_CLIENT_SECRET (an OAuth client of type \
             \"TVs and Limited Input devices\")"
        }
        _ => "",
    };
    let e = format!("{what}: HTTP {status} {code}{desc}{hint}");
    if status >= 500 || status == 429 {
        Error::transport(e)
    } else {
        Error::refused(e, status)
    }
}

/// Asks a device code for `client_id` (scope `drive.file`).
pub fn device_code(oauth: &Url, client_id: &str) -> Result<DeviceCode, Error> {
    let what = "asking Google a device code";
    let (status, a) = post_form(
        oauth,
        "/device/code",
        &[("client_id", client_id), ("scope", SCOPE)],
    )?;
    if status != 200 || a.error.is_some() {
        return Err(refused(what, status, &a));
    }
    match (a.device_code, a.user_code, a.verification_url) {
        (Some(device_code), Some(user_code), Some(verification_url)) => Ok(DeviceCode {
            device_code,
            user_code,
            verification_url,
            expires_in: seconds(a.expires_in, MAX_EXPIRES_IN),
            interval: seconds(a.interval, MAX_INTERVAL).max(1),
        }),
        _ => Err(Error::local(format!(
            "{what}: the answer lacks device_code, user_code or verification_url"
        ))),
    }
}

/// Polls once whether the admin approved `device_code`. Google's answer is read from its
/// JSON `error` whatever the HTTP status (428 pending, 403 slow_down or access_denied,
/// 400 expired_token).
pub fn poll(
    oauth: &Url,
    client_id: &str,
    secret: &Secret,
    device_code: &str,
) -> Result<Poll, Error> {
    let what = "polling Google for the approval";
    let (status, a) = post_form(
        oauth,
        "/token",
        &[
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("device_code", device_code),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ],
    )?;
    match a.error.as_deref() {
        Some("authorization_pending") => return Ok(Poll::Pending),
        Some("slow_down") => return Ok(Poll::SlowDown),
        Some("access_denied") => return Ok(Poll::Denied),
        Some("expired_token") => return Ok(Poll::Expired),
        Some(_) => return Err(refused(what, status, &a)),
        None if status != 200 => return Err(refused(what, status, &a)),
        None => {}
    }
    match (a.access_token, a.refresh_token) {
        (Some(token), Some(refresh)) if !token.is_empty() && !refresh.is_empty() => {
            Ok(Poll::Done(Tokens {
                access: AccessToken {
                    token,
                    expires_in: seconds(a.expires_in, MAX_EXPIRES_IN),
                },
                refresh_token: Secret::new(refresh),
                scope: a.scope.unwrap_or_default(),
            }))
        }
        _ => Err(Error::local(format!(
            "{what}: the answer lacks access_token or refresh_token"
        ))),
    }
}

/// A fresh access token from the refresh token. `invalid_grant` (revoked, expired, or a
/// consent screen still in "Testing", whose tokens die after 7 days) is an error that
/// says to log in again.
pub fn refresh(
    oauth: &Url,
    client_id: &str,
    secret: &Secret,
    refresh_token: &Secret,
) -> Result<AccessToken, Error> {
    let what = "refreshing the Google access token";
    let (status, a) = post_form(
        oauth,
        "/token",
        &[
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("refresh_token", refresh_token.expose()),
            ("grant_type", "refresh_token"),
        ],
    )?;
    if a.error.as_deref() == Some("invalid_grant") {
        return Err(Error::refused(
            format!(
                "{what}: invalid_grant: the connection to Google Drive was revoked or \
                 expired: run `neopro-backup gdrive login` again (an OAuth consent screen \
                 left in \"Testing\" kills its tokens after 7 days: publish it \"In \
                 production\")"
            ),
            status,
        ));
    }
    if status != 200 || a.error.is_some() {
        return Err(refused(what, status, &a));
    }
    match a.access_token {
        Some(token) if !token.is_empty() => Ok(AccessToken {
            token,
            expires_in: seconds(a.expires_in, MAX_EXPIRES_IN),
        }),
        _ => Err(Error::local(format!(
            "{what}: the answer lacks access_token"
        ))),
    }
}

/// Revokes `token` (the refresh token: the connection ends). A token Google no longer
/// knows (`invalid_token`) is already revoked: fine.
pub fn revoke(oauth: &Url, token: &Secret) -> Result<(), Error> {
    let what = "revoking the Google token";
    let (status, a) = post_form(oauth, "/revoke", &[("token", token.expose())])?;
    match (status, a.error.as_deref()) {
        (200, None) | (_, Some("invalid_token")) => Ok(()),
        _ => Err(refused(what, status, &a)),
    }
}

/// The token file of `dir`, `None` when there is none (not connected). A file that
/// cannot be read or parsed is an error that says so: it is never silently replaced.
pub fn read_token(dir: &Path) -> io::Result<Option<TokenFile>> {
    use std::io::Read;
    let path = dir.join(GDRIVE_TOKEN_FILE);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let mut text = String::new();
    f.take(MAX_TOKEN_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| damaged(&path, &e.to_string()))?;
    if text.len() as u64 > MAX_TOKEN_FILE {
        return Err(damaged(&path, &format!("over {MAX_TOKEN_FILE} bytes")));
    }
    // Its text is never shown (the refresh token): json's errors say only where.
    let (mut version, mut client_id, mut refresh) = (None, None, String::new());
    let (mut scope, mut connected, mut ids) = (String::new(), String::new(), Ids::default());
    json::walk(&text, &mut |p, v| match (p, v) {
        ([Seg::Key(k)], Scalar::Num(n)) if k == "version" => version = n.parse::<u32>().ok(),
        ([Seg::Key(k)], Scalar::Str(s)) => match k.as_str() {
            "client_id" => client_id = Some(s),
            "refresh_token" => refresh = s,
            "scope" => scope = s,
            "connected" => connected = s,
            _ => {}
        },
        // Sorted as they come; of one path twice, the last (as a JSON reader keeps). The
        // IDs are a cache: past MAX_IDS (which a write never passes), dropped.
        ([Seg::Key(k), Seg::Key(path)], Scalar::Str(id)) if k == "ids" && ids.len() < MAX_IDS => {
            ids.insert(path.clone(), id);
        }
        _ => {}
    })
    .map_err(|e| damaged(&path, &format!("not its JSON: {e}")))?;
    let (Some(version), Some(client_id)) = (version, client_id) else {
        return Err(damaged(&path, "not its JSON: no version or client_id"));
    };
    if version > TOKEN_FILE_VERSION || version == 0 {
        return Err(damaged(
            &path,
            &format!(
                "version {version} (this build reads version {TOKEN_FILE_VERSION}: was it \
                 written by a newer neopro-backup?)"
            ),
        ));
    }
    if refresh.is_empty() {
        return Err(damaged(&path, "no refresh token"));
    }
    Ok(Some(TokenFile {
        version,
        client_id,
        refresh_token: Secret::new(refresh),
        scope,
        connected,
        ids,
    }))
}

fn damaged(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is damaged ({why}): it was left as it is; run `neopro-backup gdrive login` \
             to connect again",
            path.display()
        ),
    )
}

/// Writes the token file of `dir` atomically, 0600.
pub fn write_token(dir: &Path, t: &TokenFile) -> io::Result<()> {
    // The JSON nanoserde's derive wrote (the same fields in the same order), by hand:
    // smaller code.
    let mut j = format!(
        "{{\"version\":{TOKEN_FILE_VERSION},\"client_id\":{},\"refresh_token\":{},\"scope\":{},\
         \"connected\":{},\"ids\":{{",
        t.client_id.serialize_json(),
        t.refresh_token.expose().serialize_json(),
        t.scope.serialize_json(),
        t.connected.serialize_json()
    );
    for (i, (k, v)) in t.ids.0.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        j.push_str(&k.serialize_json());
        j.push(':');
        j.push_str(&v.serialize_json());
    }
    j.push_str("}}");
    fsutil::atomic_write(dir, GDRIVE_TOKEN_FILE, j.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("neopro-gtoken-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    fn sample() -> TokenFile {
        let mut ids = Ids::default();
        ids.insert("neopro/".to_string(), "F1".to_string());
        ids.insert("neopro/club-1/status.json".to_string(), "X9".to_string());
        TokenFile {
            version: 1,
            client_id: "123.apps.googleusercontent.com".into(),
            refresh_token: Secret::new("1//secret-refresh".into()),
            scope: SCOPE.into(),
            connected: "2025-01-02T03:04:05Z".into(),
            ids,
        }
    }

    #[test]
    fn the_token_file_round_trips_0600_and_hides_the_secret() {
        let d = tmpdir("rt");
        assert_eq!(read_token(&d).unwrap_or_else(|e| panic!("{e}")), None);
        let t = sample();
        write_token(&d, &t).unwrap_or_else(|e| panic!("{e}"));
        let back = read_token(&d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.as_ref(), Some(&t));
        let meta = std::fs::metadata(d.join(GDRIVE_TOKEN_FILE)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(!format!("{t:?}").contains("secret-refresh"));
        let a = AccessToken {
            token: "ya29.x".into(),
            expires_in: 5,
        };
        assert!(!format!("{a:?}").contains("ya29"));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The version 1 file as this build's first release writes it (without `ids`, as a
    /// `gdrive login` that never uploaded leaves it, and with them).
    #[test]
    fn a_version_1_file_is_read() {
        let d = tmpdir("v1");
        std::fs::write(
            d.join(GDRIVE_TOKEN_FILE),
            r#"{"version":1,"client_id":"c","refresh_token":"1//r","scope":"s","connected":"2025-01-02T03:04:05Z"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = read_token(&d)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no token"));
        assert_eq!(
            (t.client_id.as_str(), t.refresh_token.expose()),
            ("c", "1//r")
        );
        assert!(t.ids.is_empty());
        std::fs::write(
            d.join(GDRIVE_TOKEN_FILE),
            r#"{"version":1,"client_id":"c","refresh_token":"1//r","scope":"s","connected":"x","ids":{"a/":"F"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = read_token(&d)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no token"));
        assert_eq!(t.ids.get("a/").map(String::as_str), Some("F"));
        // IDs out of order, one path twice: sorted, the last kept (what a JSON object
        // reader keeps), and written back sorted.
        std::fs::write(
            d.join(GDRIVE_TOKEN_FILE),
            r#"{"version":1,"client_id":"c","refresh_token":"1//r","ids":{"b/":"B","a/":"A1","c":7,"a/":"A2"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = read_token(&d)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no token"));
        assert_eq!(t.ids.get("a/").map(String::as_str), Some("A2"));
        assert_eq!((t.ids.len(), t.ids.contains_key("c")), (2, false));
        write_token(&d, &t).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(d.join(GDRIVE_TOKEN_FILE)).unwrap_or_default();
        assert!(text.ends_with(r#""ids":{"a/":"A2","b/":"B"}}"#), "{text}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_token_file_is_an_error_and_left_alone() {
        let d = tmpdir("bad");
        for (bad, why) in [
            (
                r#"{"version":1,"client_id":"c","refresh_tok"#,
                "not its JSON",
            ),
            (
                r#"{"version":2,"client_id":"c","refresh_token":"1//zz"}"#,
                "version 2",
            ),
            (
                r#"{"version":1,"client_id":"c","refresh_token":""}"#,
                "no refresh token",
            ),
            ("", "not its JSON"),
            // What made nanoserde panic or loop (json.rs): an error like any other.
            (
                r#"{"version":1,"client_id":"c","refresh_token":"1//zz","x": ]}"#,
                "not its JSON",
            ),
            (
                r#"{"version":1,"client_id":"c","refresh_token":"1//zz","ids":{"a/":["#,
                "not its JSON",
            ),
            (r#"{"client_id":"c","refresh_token":"1//zz"}"#, "no version"),
        ] {
            std::fs::write(d.join(GDRIVE_TOKEN_FILE), bad).unwrap_or_else(|e| panic!("{e}"));
            let e = read_token(&d).map(|_| ()).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("is damaged") && msg.contains(why), "{msg}");
            assert!(
                msg.contains("gdrive login") && !msg.contains("1//zz"),
                "{msg}"
            );
            let still = std::fs::read_to_string(d.join(GDRIVE_TOKEN_FILE))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(still, bad);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn form_bodies_are_percent_encoded() {
        assert_eq!(
            form(&[("token", "1//a+b=c&d"), ("scope", SCOPE)]),
            "token=1%2F%2Fa%2Bb%3Dc%26d&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fdrive.file"
        );
    }
}
