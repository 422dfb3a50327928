//! Telling someone (docs/format.md, Offsite): PING_URL gets healthchecks.io-style pings
//! (`PING_URL/start` when a backup starts, `PING_URL` on success, `PING_URL/fail` on
//! failure), ALERT_WEBHOOK a JSON POST on each failed run, and ON_FAILURE_CMD runs with
//! the status JSON on its standard input; with SMTP_URL, a mail in French on every failed
//! run and on the first success after a failure (email.rs).
//!
//! An alert that cannot be delivered is logged and that is all: it never changes the
//! outcome of the backup, and every step is bounded in time (HTTP timeouts of seconds,
//! the command is killed after a minute). Logs show only the scheme and host of a URL:
//! the path of a webhook or ping URL is usually its secret.

pub mod email;
pub mod mail;

use std::thread::JoinHandle;
use std::time::Duration;

use nanoserde::SerJson;

use crate::config::Config;
use crate::http::client::{self, Payload, Timeouts, Url};
use crate::status::{Log, Status};

/// How long ON_FAILURE_CMD may run.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of its output goes to the log.
const CMD_OUTPUT_MAX: usize = 2048;

/// The JSON POSTed to ALERT_WEBHOOK. `text` makes it readable as-is by Slack- and
/// Mattermost-style incoming webhooks.
#[derive(SerJson)]
struct Webhook {
    event: String,
    site: String,
    host: String,
    text: String,
    status: Status,
}

fn post(url: &Url, content_type: &str, body: &[u8]) -> Result<(), String> {
    let headers = [("Content-Type".to_string(), content_type.to_string())];
    let r = client::request(
        "POST",
        url,
        &headers,
        Payload::bytes(body),
        64 * 1024,
        Timeouts::ALERT,
    )?;
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        Err(format!("{} answered HTTP {}", url.origin(), r.status))
    }
}

/// `PING_URL` with `/start` or `/fail` appended (none for success).
fn ping_url(base: &Url, suffix: &str) -> Url {
    let (path, query) = match base.path.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (base.path.as_str(), String::new()),
    };
    base.with_path(format!("{}{suffix}{query}", path.trim_end_matches('/')))
}

/// The start ping, in flight.
pub type StartPing = JoinHandle<Result<(), String>>;

/// Sends `PING_URL/start` in the background; `finish` waits for it, so the start is
/// always seen before the result.
pub fn start(cfg: &Config) -> Option<StartPing> {
    let url = ping_url(cfg.alerts.ping.as_ref()?, "/start");
    std::thread::Builder::new()
        .name("ping".into())
        .spawn(move || post(&url, "text/plain; charset=utf-8", b""))
        .ok()
}

/// After a run: the success or failure ping, and on failure the webhook and the
/// command. Every failure to deliver is logged, nothing else.
pub fn finish(cfg: &Config, status: &Status, log: &Log, start: Option<StartPing>) {
    let a = &cfg.alerts;
    if let Some(h) = start
        && let Ok(Err(e)) = h.join()
    {
        log.warn(&format!("alert: start ping failed: {e}"));
    }
    if let Some(base) = &a.ping {
        let (url, body) = if status.success {
            (
                ping_url(base, ""),
                format!(
                    "{} ({})",
                    status.archive.as_deref().unwrap_or("?"),
                    status.size.as_deref().unwrap_or("?")
                ),
            )
        } else {
            (
                ping_url(base, "/fail"),
                status.error.clone().unwrap_or_default(),
            )
        };
        if let Err(e) = post(&url, "text/plain; charset=utf-8", body.as_bytes()) {
            log.warn(&format!("alert: ping failed: {e}"));
        }
    }
    if let Some(e) = &a.email {
        email::notify(cfg, e, status, log);
    }
    if status.success {
        return;
    }
    if let Some(url) = &a.webhook {
        let host = crate::host::hostname();
        let hook = Webhook {
            event: "backup_failed".into(),
            text: failed_text(&cfg.site_id, &host, status),
            site: cfg.site_id.clone(),
            host,
            status: status.clone(),
        };
        match post(url, "application/json", hook.serialize_json().as_bytes()) {
            Ok(()) => log.info(&format!("alert: webhook {} notified", url.origin())),
            Err(e) => log.warn(&format!("alert: webhook failed: {e}")),
        }
    }
    if let Some(cmd) = &a.on_failure_cmd {
        match run_command(cmd, status.to_json().as_bytes()) {
            Ok((Some(0), out)) => {
                log.info(&format!("alert: ON_FAILURE_CMD done{out}"));
            }
            Ok((code, out)) => log.warn(&format!(
                "alert: ON_FAILURE_CMD exited with {}{out}",
                code.map_or("a signal".to_string(), |c| format!("status {c}"))
            )),
            Err(e) => log.warn(&format!("alert: ON_FAILURE_CMD: {e}")),
        }
    }
}

/// An offsite event that calls for an alert once, not every round (docs/format.md,
/// Offsite: a site's history): `offsite_held` or `offsite_other_install`. ALERT_WEBHOOK
/// gets `{"event","site","host","text","status"}` (the local status), the mail
/// recipients a mail in French. Delivery failures are logged, nothing else.
pub fn offsite(cfg: &Config, event: &str, text: &str, log: &Log) {
    let a = &cfg.alerts;
    if let Some(url) = &a.webhook {
        let host = crate::host::hostname();
        let hook = Webhook {
            event: event.to_string(),
            text: format!("neopro-backup on {} ({host}): {text}", cfg.site_id),
            site: cfg.site_id.clone(),
            host,
            status: crate::status::read(&cfg.backup_dir)
                .ok()
                .flatten()
                .unwrap_or_default(),
        };
        match post(url, "application/json", hook.serialize_json().as_bytes()) {
            Ok(()) => log.info(&format!(
                "alert: webhook {} notified ({event})",
                url.origin()
            )),
            Err(e) => log.warn(&format!("alert: webhook failed: {e}")),
        }
    }
    if let Some(e) = &a.email {
        email::notify_offsite(cfg, e, event, text, log);
    }
}

/// The webhook's `text` for a failed run: the error in French words, then the raw one
/// (docs/format.md, Error codes); the raw one alone when its code has no words here.
fn failed_text(site: &str, host: &str, status: &Status) -> String {
    let raw = status.error.as_deref().unwrap_or("unknown error");
    match crate::error_words::words_for(status.error_code.as_deref(), raw) {
        Some(w) => format!(
            "neopro-backup on {site} ({host}): backup failed. Erreur : {w} Détail technique : {raw}"
        ),
        None => format!("neopro-backup on {site} ({host}): backup failed: {raw}"),
    }
}

/// Runs `sh -c CMD` with `input` on stdin, without the secrets in its environment;
/// returns its exit code and a short excerpt of its output for the log.
fn run_command(cmd: &str, input: &[u8]) -> Result<(Option<i32>, String), String> {
    let r = crate::shell::run_shell(cmd, Some(input), CMD_TIMEOUT, CMD_OUTPUT_MAX)
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    if r.timed_out {
        return Err(format!(
            "killed after {} s without finishing",
            CMD_TIMEOUT.as_secs()
        ));
    }
    let text = r.output.trim();
    Ok((
        r.status.and_then(|s| s.code()),
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_urls() {
        let u = Url::parse("https://hc-ping.com/abc-123/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ping_url(&u, "/start").path, "/abc-123/start");
        assert_eq!(ping_url(&u, "").path, "/abc-123");
        let u = Url::parse("http://127.0.0.1:9/p?rid=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ping_url(&u, "/fail").path, "/p/fail?rid=1");
    }

    #[test]
    fn webhook_text_in_words_then_raw() {
        let mut st = Status {
            error: Some("cannot create BACKUP_DIR /x: Not a directory (os error 20)".into()),
            ..Status::default()
        };
        assert_eq!(
            failed_text("club", "pi", &st),
            "neopro-backup on club (pi): backup failed. Erreur : Un dossier attendu est en \
             fait un fichier (le dossier des backups ou l'un de ses parents). Vérifiez \
             BACKUP_DIR dans backup.conf. Détail technique : cannot create BACKUP_DIR /x: \
             Not a directory (os error 20)"
        );
        st.error_code = Some("disk_on_fire".into());
        assert_eq!(
            failed_text("club", "pi", &st),
            "neopro-backup on club (pi): backup failed: cannot create BACKUP_DIR /x: Not a \
             directory (os error 20)"
        );
    }

    #[test]
    fn command_gets_the_status_on_stdin() {
        let r = run_command("cat; echo; echo done >&2; exit 3", b"{\"a\":1}");
        let (code, out) = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, Some(3));
        assert!(out.contains("{\"a\":1}") && out.contains("done"), "{out}");
    }
}
