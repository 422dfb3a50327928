//! Connecting the club's Google Drive (docs/format.md, Google Drive): `gdrive login`,
//! `status` and `logout`, and the page's « Connecter Google Drive », over the OAuth 2.0
//! device authorization grant (RFC 8628, as Google speaks it: bucket/google_oauth.rs).
//! The volunteer opens a short link on a phone, types the code shown, approves; the Pi
//! polls at the interval Google gives and keeps the refresh token in
//! `BACKUP_DIR/gdrive-token.json` (0600). No browser on the Pi, no second machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bucket::gdrive::{Drive, Quota};
use crate::bucket::google_oauth::{self, DeviceCode, Poll, TokenFile};
use crate::clock;
use crate::config::{Config, GdriveSettings};
use crate::status::Log;
use crate::store::{GDRIVE_STATE_FILE, GDRIVE_TOKEN_FILE};

/// How a login ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginEnd {
    Connected,
    /// The volunteer refused on the consent screen.
    Denied,
    /// The code was not approved in time.
    Expired,
    /// Stopped (SIGTERM, or another login started).
    Cancelled,
    /// Google could not be asked, or answered something else (why).
    Failed(String),
}

impl LoginEnd {
    /// What it means, for a person.
    pub fn words(&self) -> String {
        match self {
            LoginEnd::Connected => "Google Drive is connected".into(),
            LoginEnd::Denied => "access was refused on the Google consent screen".into(),
            LoginEnd::Expired => {
                "the code expired before it was approved: run the login again for a new one".into()
            }
            LoginEnd::Cancelled => "the login was cancelled".into(),
            LoginEnd::Failed(e) => e.clone(),
        }
    }
}

/// Asks Google for a device code (the first step of a login).
pub fn start(g: &GdriveSettings) -> Result<DeviceCode, String> {
    google_oauth::device_code(&g.oauth, &g.client_id).map_err(|e| e.msg)
}

/// Polls until the code is approved, refused or expired (or `cancel`), at the interval
/// Google gave (5 s more after each `slow_down`), then keeps the refresh token. A
/// network failure while polling is retried until the code expires.
pub fn finish(
    cfg: &Config,
    g: &GdriveSettings,
    code: &DeviceCode,
    cancel: &AtomicBool,
    log: &Log,
) -> LoginEnd {
    let deadline = Instant::now() + Duration::from_secs(code.expires_in.max(1));
    let mut interval = code.interval.clamp(1, 60);
    let mut last_error: Option<String> = None;
    loop {
        // Wait the interval, a quarter second at a time (cancel is looked at).
        let until = Instant::now() + Duration::from_secs(interval);
        while Instant::now() < until {
            if cancel.load(Ordering::Relaxed) {
                return LoginEnd::Cancelled;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if Instant::now() >= deadline {
            return match last_error {
                Some(e) => LoginEnd::Failed(format!("{e} (and the code has expired)")),
                None => LoginEnd::Expired,
            };
        }
        match google_oauth::poll(&g.oauth, &g.client_id, &g.client_secret, &code.device_code) {
            Ok(Poll::Pending) => {}
            Ok(Poll::SlowDown) => interval = (interval + 5).min(60),
            Ok(Poll::Denied) => {
                log.warn("gdrive: login refused on the Google consent screen");
                return LoginEnd::Denied;
            }
            Ok(Poll::Expired) => return LoginEnd::Expired,
            Ok(Poll::Done(tokens)) => {
                let dir = &cfg.backup_dir;
                // The IDs found with the same client are kept (same Drive, most likely;
                // a stale one is looked up again).
                let ids = match google_oauth::read_token(dir) {
                    Ok(Some(old)) if old.client_id == g.client_id => old.ids,
                    _ => Default::default(),
                };
                let file = TokenFile {
                    version: google_oauth::TOKEN_FILE_VERSION,
                    client_id: g.client_id.clone(),
                    refresh_token: tokens.refresh_token,
                    scope: tokens.scope,
                    connected: clock::iso_utc_millis(clock::now_unix(), 0),
                    ids,
                };
                // A fresh Pi may connect Drive before its first backup made BACKUP_DIR.
                if let Err(e) = crate::store::ensure_dir(dir)
                    .and_then(|_| google_oauth::write_token(dir, &file))
                {
                    return LoginEnd::Failed(format!(
                        "approved, but {GDRIVE_TOKEN_FILE} cannot be written: {e}"
                    ));
                }
                // The copies waiting go at the next look, not after the backoff.
                let mut state = super::read_state_file(dir, GDRIVE_STATE_FILE);
                if state.next_try != 0 || state.failures != 0 {
                    state.next_try = 0;
                    state.failures = 0;
                    super::write_state_file(dir, GDRIVE_STATE_FILE, &state, log);
                }
                log.info(&format!(
                    "gdrive: connected; copies go to {}/{}/ of this Google account's Drive",
                    g.folder, cfg.site_id
                ));
                return LoginEnd::Connected;
            }
            Err(e) if e.transport => last_error = Some(e.msg),
            Err(e) => return LoginEnd::Failed(e.msg),
        }
    }
}

/// What `gdrive status` and the page show.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub connected: bool,
    /// When it was connected (ISO 8601 UTC).
    pub since: Option<String>,
    /// `GDRIVE_FOLDER/SITE_ID/`.
    pub folder: String,
    pub quota: Option<Quota>,
    /// The copies of this site on Drive, and their bytes.
    pub copies: Option<(u64, u64)>,
    /// Why Drive could not be read (quota, listing).
    pub error: Option<String>,
    /// The copies kept would not fit in the space left.
    pub warning: Option<String>,
}

/// Whether the token file says connected, and since when (no request).
pub fn connected(cfg: &Config) -> Result<Option<String>, String> {
    match google_oauth::read_token(&cfg.backup_dir) {
        Ok(Some(t)) => Ok(Some(t.connected)),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("{GDRIVE_TOKEN_FILE}: {e}")),
    }
}

/// The account as Drive shows it: two requests (the quota, the site's folder).
pub fn account(cfg: &Config, g: &GdriveSettings) -> Account {
    let mut a = Account {
        folder: format!("{}/{}/", g.folder, cfg.site_id),
        ..Account::default()
    };
    match connected(cfg) {
        Ok(Some(since)) => {
            a.connected = true;
            a.since = Some(since);
        }
        Ok(None) => return a,
        Err(e) => {
            a.error = Some(e);
            return a;
        }
    }
    let d = Drive::new(g, &cfg.backup_dir);
    match d.about() {
        Ok(q) => a.quota = Some(q),
        Err(e) => a.error = Some(e.msg),
    }
    let prefix = super::Place::gdrive(g).site_prefix(&cfg.site_id);
    match crate::bucket::Bucket::list(&d, &prefix, Some("/")) {
        Ok(l) => {
            let copies = l.objects.iter().filter(|o| {
                o.key
                    .strip_prefix(&prefix)
                    .is_some_and(super::history::is_copy_name)
            });
            let (n, bytes) = copies.fold((0u64, 0u64), |(n, b), o| {
                (n.saturating_add(1), b.saturating_add(o.size))
            });
            a.copies = Some((n, bytes));
        }
        Err(e) => a.error = a.error.take().or(Some(e.msg)),
    }
    // The copies kept (GDRIVE_RETENTION_DAYS of them, 3 at least) of the size of the
    // last archive, against the space left.
    let last = crate::status::read(&cfg.backup_dir)
        .ok()
        .flatten()
        .and_then(|s| s.size_bytes);
    if let (Some(q), Some((count, _)), Some(size)) = (a.quota, a.copies, last)
        && let Some(limit) = q.limit
    {
        let kept = u64::from(g.retention_days.max(3));
        let more = kept.saturating_sub(count).saturating_mul(size);
        let free = limit.saturating_sub(q.usage);
        if more > free {
            a.warning = Some(format!(
                "the {kept} copies kept (GDRIVE_RETENTION_DAYS) need about {} more, and Google \
                 Drive has {} left: free space there, or lower GDRIVE_RETENTION_DAYS",
                crate::units::human_size(more, 1),
                crate::units::human_size(free, 1)
            ));
        }
    }
    a
}

/// Why a logout failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutError {
    /// Google refused or could not be asked to revoke: nothing was removed.
    Revoke(String),
    /// The token file could not be removed.
    Remove(String),
}

impl std::fmt::Display for LogoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogoutError::Revoke(e) | LogoutError::Remove(e) => f.write_str(e),
        }
    }
}

/// Forgets the token on this Pi; with `revoke`, first revokes the grant at Google (which
/// disconnects every Pi using the same Google account and client). What was done.
pub fn logout(
    cfg: &Config,
    g: &GdriveSettings,
    revoke: bool,
    log: &Log,
) -> Result<String, LogoutError> {
    let dir = &cfg.backup_dir;
    let token = match google_oauth::read_token(dir) {
        Ok(t) => t,
        // A damaged file is removed all the same (it connects nothing).
        Err(e) => {
            log.warn(&format!(
                "gdrive: {GDRIVE_TOKEN_FILE} is damaged ({e}): removed"
            ));
            None
        }
    };
    let mut done = Vec::new();
    if revoke {
        match &token {
            Some(t) => {
                google_oauth::revoke(&g.oauth, &t.refresh_token).map_err(|e| {
                    LogoutError::Revoke(format!(
                        "revoking at Google failed ({}): nothing was removed",
                        e.msg
                    ))
                })?;
                done.push(
                    "the grant is revoked at Google: every Pi connected with the same Google \
                     account and OAuth client is disconnected too",
                );
            }
            None => done.push("nothing to revoke (no token on this Pi)"),
        }
    }
    match std::fs::remove_file(dir.join(GDRIVE_TOKEN_FILE)) {
        Ok(()) => done.push("the token on this Pi is removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            done.push("this Pi was not connected")
        }
        Err(e) => {
            return Err(LogoutError::Remove(format!(
                "cannot remove {GDRIVE_TOKEN_FILE}: {e}"
            )));
        }
    }
    let _ = crate::fsutil::fsync_dir(dir);
    log.info(&format!("gdrive: logout ({})", done.join("; ")));
    Ok(done.join("; "))
}
