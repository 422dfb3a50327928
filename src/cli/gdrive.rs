//! `neopro-backup gdrive login | status [--json] | logout [--revoke]` (docs/format.md,
//! Google Drive): printing only; the work is offsite/gdrive_account.rs.

use std::process::ExitCode;

use nanoserde::SerJson;
use std::sync::atomic::AtomicBool;

use crate::clock::Tz;
use crate::config::{Config, GdriveSettings};
use crate::offsite::gdrive_account::{self, LoginEnd};
use crate::status::Log;
use crate::units::human_size;

/// `gdrive status --json` (docs/format.md, Google Drive).
#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct StatusJson {
    connected: bool,
    since: Option<String>,
    folder: String,
    quota_limit: Option<u64>,
    quota_usage: Option<u64>,
    copies: Option<u64>,
    copies_bytes: Option<u64>,
    pending: u64,
    last_upload: Option<String>,
    last_error: Option<String>,
    error: Option<String>,
    warning: Option<String>,
}

fn settings(cfg: &Config) -> Result<&GdriveSettings, ExitCode> {
    cfg.gdrive.as_ref().ok_or_else(|| {
        eprintln!(
            "neopro-backup: Google Drive is not configured: set GDRIVE_CLIENT_ID and \
             GDRIVE_CLIENT_SECRET (README, Google Drive)"
        );
        ExitCode::from(2)
    })
}

/// `gdrive login`: 0 connected, 1 refused, expired or failed, 2 not configured.
pub fn login(cfg: &Config) -> ExitCode {
    let g = match settings(cfg) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let tz = Tz::local();
    let log = Log::new(&cfg.backup_dir, &tz);
    let code = match gdrive_account::start(g) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("neopro-backup: gdrive login: cannot ask Google for a code: {e}");
            return ExitCode::from(1);
        }
    };
    let minutes = code.expires_in.div_ceil(60);
    println!(
        "On a phone or a computer, open:\n\n    {}\n",
        code.verification_url
    );
    println!("and enter the code:\n\n    {}\n", code.user_code);
    println!(
        "The code is valid for {minutes} minute(s). Sign in with the club's Google account \
         and allow access to the files neopro-backup creates. Waiting for the approval…"
    );
    let never = AtomicBool::new(false);
    match gdrive_account::finish(cfg, g, &code, &never, &log) {
        LoginEnd::Connected => {
            println!(
                "Connected: the copies go to {}/{}/ in this account's Google Drive.",
                g.folder, cfg.site_id
            );
            ExitCode::SUCCESS
        }
        end => {
            eprintln!("neopro-backup: gdrive login: {}", end.words());
            ExitCode::from(1)
        }
    }
}

/// `gdrive status`: 0 connected (a warning does not change it), 1 not connected or
/// Drive unreadable, 2 not configured.
pub fn status(cfg: &Config, json: bool) -> ExitCode {
    let g = match settings(cfg) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let a = gdrive_account::account(cfg, g);
    let pending = crate::offsite::gdrive::pending(&cfg.backup_dir).len();
    let last = crate::offsite::gdrive::summary(cfg).unwrap_or_default();
    if json {
        let j = StatusJson {
            connected: a.connected,
            since: a.since.clone(),
            folder: a.folder.clone(),
            quota_limit: a.quota.and_then(|q| q.limit),
            quota_usage: a.quota.map(|q| q.usage),
            copies: a.copies.map(|c| c.0),
            copies_bytes: a.copies.map(|c| c.1),
            pending: pending as u64,
            last_upload: last.last_upload.clone(),
            last_error: last.error.clone(),
            error: a.error.clone(),
            warning: a.warning.clone(),
        };
        println!("{}", j.serialize_json());
    } else {
        if a.connected {
            println!(
                "Google Drive: connected since {}",
                a.since.as_deref().unwrap_or("?")
            );
        } else {
            println!("Google Drive: not connected (neopro-backup gdrive login)");
        }
        println!("folder: {}", a.folder);
        if let Some(q) = a.quota {
            match q.limit {
                Some(l) => println!(
                    "space: {} used of {}, {} left",
                    human_size(q.usage, 1),
                    human_size(l, 1),
                    human_size(l.saturating_sub(q.usage), 1)
                ),
                None => println!("space: {} used, no limit", human_size(q.usage, 1)),
            }
        }
        if let Some((n, bytes)) = a.copies {
            println!("copies of this site: {n} ({})", human_size(bytes, 1));
        }
        println!("waiting to be sent: {pending}");
        if let Some(t) = &last.last_upload {
            println!("last copy sent: {t}");
        }
        if let Some(e) = &last.error {
            println!("last error: {e}");
        }
        if let Some(e) = &a.error {
            println!("cannot read Google Drive: {e}");
        }
        if let Some(w) = &a.warning {
            println!("WARNING: {w}");
        }
    }
    if a.connected && a.error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `gdrive logout [--revoke]`: 0 done, 1 failed, 2 not configured.
pub fn logout(cfg: &Config, revoke: bool) -> ExitCode {
    let g = match settings(cfg) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let log = Log::new(&cfg.backup_dir, &Tz::local());
    match gdrive_account::logout(cfg, g, revoke, &log) {
        Ok(done) => {
            println!("Google Drive: {done}.");
            if !revoke {
                println!(
                    "(The grant itself stays at Google: --revoke withdraws it, which \
                     disconnects every Pi using the same Google account and client.)"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("neopro-backup: gdrive logout: {e}");
            ExitCode::from(1)
        }
    }
}
