//! `/api/gdrive…`: « Connecter Google Drive » on the Pi's page (docs/format.md, "Google
//! Drive over the API"; CONTRACT §8). The HTTP face of offsite/gdrive_account.rs, the
//! same domain as `neopro-backup gdrive login | status | logout`:
//!
//! - `GET /api/gdrive`: whether Drive is configured and connected, the login in
//!   progress, the copies' status and queue: no request to Google. `?quota=1` adds what
//!   Drive says (the space, the site's copies): two requests, in the handler.
//! - `POST /api/gdrive/login`: a device code asked of Google in the handler (202 with
//!   the code to type), then a thread of its own polls until the code is approved,
//!   refused or expired. A new login cancels the one before; so does SIGTERM
//!   ([`cancel_login`]). Once connected, the offsite worker is woken: the copies
//!   waiting go at once.
//! - `POST /api/gdrive/logout` `{"revoke":bool}`: the token on this Pi removed, with
//!   `revoke` first revoked at Google (every Pi of that account is then disconnected).

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nanoserde::{DeJson, SerJson};

use crate::clock;
use crate::config::GdriveSettings;
use crate::http::server::Response;
use crate::offsite::gdrive_account::{LoginEnd, LogoutError};
use crate::offsite::{self, gdrive, gdrive_account};
use crate::serve::reply::{error, failed, json, jstr, method_not_allowed, with_members};
use crate::serve::state::Shared;
use crate::status::Log;

/// The last login started over the API (kept for its state until a logout).
static LOGIN: Mutex<Option<Arc<Login>>> = Mutex::new(None);

/// A login started over the API: the code shown, and how it ended.
struct Login {
    user_code: String,
    verification_url: String,
    /// When the code stops being valid (Unix seconds).
    expires_at: i64,
    cancel: AtomicBool,
    /// `None` while the thread polls.
    end: Mutex<Option<LoginEnd>>,
}

impl Login {
    fn end(&self) -> Option<LoginEnd> {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The login's thread: a thread that stops without an end (a panic, or a thread that
/// could not start) leaves it failed, never waiting for ever.
struct Ending {
    login: Arc<Login>,
}

impl Ending {
    fn record(&self, end: LoginEnd) {
        *self.login.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        let mut end = self.login.end.lock().unwrap_or_else(|p| p.into_inner());
        if end.is_none() {
            *end = Some(LoginEnd::Failed(
                "the login stopped without an answer (internal error)".into(),
            ));
        }
    }
}

fn slot() -> MutexGuard<'static, Option<Arc<Login>>> {
    LOGIN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops a login in progress (the daemon's SIGTERM): its thread ends within a quarter
/// second, with nothing written.
pub fn cancel_login() {
    if let Some(l) = slot().as_ref() {
        l.cancel.store(true, Ordering::SeqCst);
    }
}

/// The routes under `/api/gdrive` (auth and origin already checked by the router; `m`
/// is the method, HEAD already made GET).
pub fn route(shared: &Arc<Shared>, m: &str, path: &str, query: &str, body: &[u8]) -> Response {
    match path {
        "/api/gdrive" if m == "GET" => get(shared, wants_quota(query)),
        "/api/gdrive" => method_not_allowed("GET"),
        "/api/gdrive/login" if m == "POST" => login(shared),
        "/api/gdrive/login" => method_not_allowed("POST"),
        "/api/gdrive/logout" if m == "POST" => logout(shared, body),
        "/api/gdrive/logout" => method_not_allowed("POST"),
        _ => error(404, "Route inconnue"),
    }
}

/// `quota=1` (or `quota=true`) among the query's parameters.
fn wants_quota(query: &str) -> bool {
    query
        .split('&')
        .any(|kv| matches!(kv, "quota=1" | "quota=true"))
}

fn not_configured() -> Response {
    json(
        404,
        format!(
            "{{\"error\":{},\"configured\":false}}",
            jstr(
                "Google Drive n'est pas configuré sur ce boîtier (GDRIVE_CLIENT_ID et \
                 GDRIVE_CLIENT_SECRET dans /etc/neopro/backup.conf)"
            )
        ),
    )
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct LoginJson {
    state: String,
    #[nserde(rename = "userCode")]
    user_code: Option<String>,
    #[nserde(rename = "verificationUrl")]
    verification_url: Option<String>,
    #[nserde(rename = "expiresAt")]
    expires_at: Option<i64>,
    error: Option<String>,
}

/// The login's member: `none` before any (or after a logout), `waiting` while its
/// thread polls (the code then given), then how it ended.
fn login_json(l: Option<&Login>) -> LoginJson {
    let Some(l) = l else {
        return LoginJson {
            state: "none".into(),
            user_code: None,
            verification_url: None,
            expires_at: None,
            error: None,
        };
    };
    let end = l.end();
    let state = match &end {
        None => "waiting",
        Some(LoginEnd::Connected) => "connected",
        Some(LoginEnd::Denied) => "denied",
        Some(LoginEnd::Expired) => "expired",
        Some(LoginEnd::Cancelled) => "cancelled",
        Some(LoginEnd::Failed(_)) => "failed",
    };
    let waiting = end.is_none();
    LoginJson {
        state: state.into(),
        user_code: waiting.then(|| l.user_code.clone()),
        verification_url: waiting.then(|| l.verification_url.clone()),
        expires_at: waiting.then_some(l.expires_at),
        error: end.filter(|e| *e != LoginEnd::Connected).map(|e| e.words()),
    }
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct QuotaJson {
    limit: Option<u64>,
    usage: u64,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct AccountJson {
    quota: Option<QuotaJson>,
    copies: Option<u64>,
    #[nserde(rename = "copiesBytes")]
    copies_bytes: Option<u64>,
    warning: Option<String>,
    #[nserde(rename = "driveError")]
    drive_error: Option<String>,
}

/// `GET /api/gdrive` (docs/format.md, Google Drive over the API).
fn get(shared: &Shared, quota: bool) -> Response {
    let cfg = &shared.cfg;
    let login = slot().clone();
    let Some(g) = &cfg.gdrive else {
        let body = format!(
            "{{\"configured\":false,\"connected\":false,\"since\":null,\"folder\":null,\
             \"tokenError\":null,\"login\":{},\"status\":null,\"pending\":0}}",
            login_json(None).serialize_json()
        );
        return json(200, body);
    };
    let (since, token_error) = match gdrive_account::connected(cfg) {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    let status = gdrive::summary(cfg).map_or_else(
        || "null".to_string(),
        |o| {
            let words = o
                .error_code
                .as_deref()
                .and_then(crate::error_words::words)
                .map(String::from);
            with_members(
                o.serialize_json(),
                &[(
                    "error_words",
                    words.map_or_else(|| "null".into(), |w| jstr(&w)),
                )],
            )
        },
    );
    let body = format!(
        "{{\"configured\":true,\"connected\":{},\"since\":{},\"folder\":{},\"tokenError\":{},\
         \"login\":{},\"status\":{status},\"pending\":{}}}",
        since.is_some(),
        since.as_deref().map_or_else(|| "null".into(), jstr),
        jstr(&folder(shared, g)),
        token_error.as_deref().map_or_else(|| "null".into(), jstr),
        login_json(login.as_deref()).serialize_json(),
        gdrive::pending(&cfg.backup_dir).len(),
    );
    if !quota {
        return json(200, body);
    }
    // Two requests to Drive, each bounded by the client's timeouts (Timeouts::GOOGLE).
    let a = gdrive_account::account(cfg, g);
    let extra = AccountJson {
        quota: a.quota.map(|q| QuotaJson {
            limit: q.limit,
            usage: q.usage,
        }),
        copies: a.copies.map(|c| c.0),
        copies_bytes: a.copies.map(|c| c.1),
        warning: a.warning,
        drive_error: a.error,
    }
    .serialize_json();
    json(200, merge(body, &extra))
}

fn folder(shared: &Shared, g: &GdriveSettings) -> String {
    format!("{}/{}/", g.folder, shared.cfg.site_id)
}

/// Two JSON objects as one: the members of `b` after those of `a`.
fn merge(mut a: String, b: &str) -> String {
    let inner = b
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or_default();
    if inner.is_empty() || !a.ends_with('}') {
        return a;
    }
    a.pop();
    if a.len() > 1 {
        a.push(',');
    }
    a.push_str(inner);
    a.push('}');
    a
}

#[derive(SerJson)]
struct StartedJson {
    #[nserde(rename = "userCode")]
    user_code: String,
    #[nserde(rename = "verificationUrl")]
    verification_url: String,
    #[nserde(rename = "expiresIn")]
    expires_in: u64,
}

/// `POST /api/gdrive/login`: 202 with the code to type; the poll goes on in a thread.
fn login(shared: &Arc<Shared>) -> Response {
    let Some(g) = &shared.cfg.gdrive else {
        return not_configured();
    };
    let code = match gdrive_account::start(g) {
        Ok(c) => c,
        Err(e) => return failed(502, "Google injoignable", &e),
    };
    let expires_in = code.expires_in;
    let login = Arc::new(Login {
        user_code: code.user_code.clone(),
        verification_url: code.verification_url.clone(),
        expires_at: clock::now_unix().saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX)),
        cancel: AtomicBool::new(false),
        end: Mutex::new(None),
    });
    let ending = Ending {
        login: Arc::clone(&login),
    };
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("gdrive-login".into())
        .spawn(move || {
            let shared = thread_shared;
            let Some(g) = &shared.cfg.gdrive else {
                return;
            };
            let log = Log::new(&shared.cfg.backup_dir, &shared.tz);
            let login = Arc::clone(&ending.login);
            let end = gdrive_account::finish(&shared.cfg, g, &code, &login.cancel, &log);
            match &end {
                LoginEnd::Connected => offsite::wake(),
                LoginEnd::Cancelled => log.info("gdrive: login cancelled"),
                LoginEnd::Expired => log.warn("gdrive: the login code expired before approval"),
                LoginEnd::Failed(e) => log.warn(&format!("gdrive: login failed: {e}")),
                LoginEnd::Denied => {}
            }
            ending.record(end);
        });
    if let Err(e) = spawned {
        return failed(
            500,
            "Connexion à Google Drive impossible",
            &format!("le traitement n'a pas pu démarrer : {e}"),
        );
    }
    let before = slot().replace(Arc::clone(&login));
    // The code shown before is void: its thread stops polling.
    if let Some(old) = before {
        old.cancel.store(true, Ordering::SeqCst);
    }
    Log::new(&shared.cfg.backup_dir, &shared.tz).info(&format!(
        "gdrive: login asked over the API (code valid {} s)",
        expires_in
    ));
    json(
        202,
        StartedJson {
            user_code: login.user_code.clone(),
            verification_url: login.verification_url.clone(),
            expires_in,
        }
        .serialize_json(),
    )
}

#[derive(DeJson)]
struct LogoutRequest {
    revoke: Option<bool>,
}

/// `{"revoke": bool}`, a JSON boolean, required.
fn parse_logout(body: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(body).ok()?;
    crate::json::parse::<LogoutRequest>(text).ok()?.revoke
}

/// `POST /api/gdrive/logout` `{"revoke":bool}`.
fn logout(shared: &Shared, body: &[u8]) -> Response {
    let Some(revoke) = parse_logout(body) else {
        return error(
            400,
            "Paramètre \"revoke\" requis (true pour révoquer aussi l'accès chez Google, false sinon)",
        );
    };
    let Some(g) = &shared.cfg.gdrive else {
        return not_configured();
    };
    let log = Log::new(&shared.cfg.backup_dir, &shared.tz);
    match gdrive_account::logout(&shared.cfg, g, revoke, &log) {
        Ok(done) => {
            // A login waiting is void too; the page then shows « not connected ».
            if let Some(old) = slot().take() {
                old.cancel.store(true, Ordering::SeqCst);
            }
            json(
                200,
                format!(
                    "{{\"success\":true,\"message\":{},\"done\":{}}}",
                    jstr("Google Drive est déconnecté de ce boîtier"),
                    jstr(&done)
                ),
            )
        }
        // gdrive_account::logout revokes first and removes nothing when that fails.
        Err(LogoutError::Revoke(e)) => failed(
            502,
            "Révocation impossible chez Google : rien n'a été retiré",
            &e,
        ),
        Err(LogoutError::Remove(e)) => failed(500, "Déconnexion impossible", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logout_body_needs_a_json_boolean() {
        assert_eq!(parse_logout(br#"{"revoke":true}"#), Some(true));
        assert_eq!(parse_logout(br#"{"revoke":false}"#), Some(false));
        for bad in [
            &b""[..],
            b"{}",
            b"null",
            br#"{"revoke":"true"}"#,
            br#"{"revoke":1}"#,
            br#"{"revoke":null}"#,
            b"[true]",
            b"\xff",
        ] {
            assert_eq!(parse_logout(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn quota_is_asked_by_its_parameter_only() {
        assert!(wants_quota("quota=1"));
        assert!(wants_quota("x=2&quota=true"));
        for no in ["", "quota=0", "quota", "quota=12", "xquota=1"] {
            assert!(!wants_quota(no), "{no}");
        }
    }

    #[test]
    fn objects_are_merged_member_by_member() {
        assert_eq!(merge(r#"{"a":1}"#.into(), r#"{"b":2}"#), r#"{"a":1,"b":2}"#);
        assert_eq!(merge("{}".into(), r#"{"b":2}"#), r#"{"b":2}"#);
        assert_eq!(merge(r#"{"a":1}"#.into(), "{}"), r#"{"a":1}"#);
        assert_eq!(
            with_members(r#"{"a":1}"#.into(), &[("b", jstr("x\""))]),
            r#"{"a":1,"b":"x\""}"#
        );
    }

    #[test]
    fn a_login_says_its_code_while_it_waits_and_why_it_ended() {
        let l = Login {
            user_code: "ABCD-EFGH".into(),
            verification_url: "https://www.google.com/device".into(),
            expires_at: 1_700_000_000,
            cancel: AtomicBool::new(false),
            end: Mutex::new(None),
        };
        assert_eq!(
            login_json(Some(&l)).serialize_json(),
            r#"{"state":"waiting","userCode":"ABCD-EFGH","verificationUrl":"https://www.google.com/device","expiresAt":1700000000,"error":null}"#
        );
        *l.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(LoginEnd::Denied);
        let j = login_json(Some(&l));
        assert_eq!(j.state, "denied");
        assert!(j.user_code.is_none() && j.expires_at.is_none());
        assert!(j.error.is_some_and(|e| e.contains("refused")));
        *l.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(LoginEnd::Connected);
        assert_eq!(
            login_json(Some(&l)).serialize_json(),
            r#"{"state":"connected","userCode":null,"verificationUrl":null,"expiresAt":null,"error":null}"#
        );
        assert_eq!(login_json(None).state, "none");
    }
}
