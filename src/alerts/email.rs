//! Email alerts: a mail on every failed run and one on the first success after a
//! failure (texts in mail.rs), sent with smtp/ after the backup lock is released.
//!
//! A mail that cannot be sent (server down, AUTH refused, timeout) is logged and kept in
//! `BACKUP_DIR/alert-mail.json`; it is sent before the next alert, oldest first, and at
//! most `MAX_UNSENT` wait there (older ones are dropped, with a log line). The same file
//! remembers since when the runs fail, so that the recovery mail is sent once. It is
//! rewritten only when it changes: a healthy Pi never writes it.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::time::Duration;

use nanoserde::{DeJson, SerJson};

use crate::alerts::mail;
use crate::clock::{self, Tz};
use crate::config::{Config, Email};
use crate::fsutil;
use crate::smtp;
use crate::status::{Log, Status};
use crate::store::MAIL_STATE_FILE;

/// The whole exchange with the SMTP server, per mail.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Mails kept for a later try at most.
const MAX_UNSENT: usize = 5;

#[derive(SerJson, DeJson, Default, Clone, PartialEq, Debug)]
pub struct MailState {
    /// When the current series of failures began (the status timestamp), if failing.
    pub failing_since: Option<String>,
    /// Mails not sent yet, oldest first: (subject, body).
    pub unsent: Vec<(String, String)>,
}

/// The mail this run calls for, if any, and the state after it (pure).
pub fn next_mail(
    state: &MailState,
    status: &Status,
    site: &str,
    archives: usize,
    page_url: Option<&str>,
    tz: &Tz,
) -> (Option<(String, String)>, MailState) {
    let mut st = state.clone();
    let shown = |iso: &str| clock::parse_iso(iso).map_or(iso.to_string(), |t| mail::date_fr(t, tz));
    let mail = if !status.success {
        if st.failing_since.is_none() {
            st.failing_since = Some(status.timestamp.clone());
        }
        let last = status.last_success.as_deref().map(shown);
        Some(mail::failure_mail(
            site,
            status.error.as_deref().unwrap_or(""),
            status.error_code.as_deref(),
            last.as_deref(),
            archives,
            page_url,
        ))
    } else {
        st.failing_since.take().map(|since| {
            mail::recovery_mail(
                site,
                &shown(&status.timestamp),
                Some(&shown(&since)),
                archives,
                page_url,
            )
        })
    };
    (mail, st)
}

fn read_state(dir: &std::path::Path) -> MailState {
    std::fs::read_to_string(dir.join(MAIL_STATE_FILE))
        .ok()
        .and_then(|t| crate::json::parse::<MailState>(&t).ok())
        .unwrap_or_default()
}

/// The page's address when it can be reached from the network (LISTEN not loopback).
fn page_url(cfg: &Config) -> Option<String> {
    let addr = cfg.listen;
    if addr.ip().is_loopback() {
        return None;
    }
    let host = if addr.ip().is_unspecified() {
        format!("{}.local", crate::host::hostname())
    } else {
        addr.ip().to_string()
    };
    Some(format!("http://{host}:{}/", addr.port()))
}

/// After a run, with the lock released: the mail it calls for, and any left unsent.
pub fn notify(cfg: &Config, email: &Email, status: &Status, log: &Log) {
    let dir = &cfg.backup_dir;
    let before = read_state(dir);
    let tz = Tz::local();
    let page = page_url(cfg);
    let (mail, mut st) = next_mail(
        &before,
        status,
        &cfg.site_id,
        usize::try_from(status.backups_count).unwrap_or(usize::MAX),
        page.as_deref(),
        &tz,
    );
    let Some(mail) = mail else {
        return; // nothing new to say: unsent mails wait for the next alert
    };
    st.unsent.push(mail);
    deliver(cfg, email, &before, st, log);
}

/// An offsite event alerted once (mail.rs, `offsite_mail`), sent like the others:
/// after the mails left unsent, kept for later when it cannot go.
pub fn notify_offsite(cfg: &Config, email: &Email, event: &str, detail: &str, log: &Log) {
    let page = page_url(cfg);
    let Some(mail) = mail::offsite_mail(event, &cfg.site_id, detail, page.as_deref()) else {
        return;
    };
    let before = read_state(&cfg.backup_dir);
    let mut st = before.clone();
    st.unsent.push(mail);
    deliver(cfg, email, &before, st, log);
}

/// Sends the mails of `st.unsent`, oldest first, until one fails; saves the state when
/// it differs from `before`.
fn deliver(cfg: &Config, email: &Email, before: &MailState, mut st: MailState, log: &Log) {
    let dir = &cfg.backup_dir;
    let host = crate::host::hostname();
    let mut sent = 0;
    for (subject, body) in &st.unsent {
        let msg = smtp::build_message(
            &email.from,
            &email.to,
            subject,
            body,
            clock::now_unix(),
            &host,
        );
        match smtp::send(&email.url, &email.from, &email.to, &msg, SEND_TIMEOUT) {
            Ok(()) => {
                sent += 1;
                log.info(&format!(
                    "alert: mail \"{subject}\" sent to {}",
                    email.to.join(", ")
                ));
            }
            Err(e) => {
                log.warn(&format!(
                    "alert: mail not sent ({e}); it will be sent with the next alert"
                ));
                break;
            }
        }
    }
    st.unsent.drain(..sent);
    if st.unsent.len() > MAX_UNSENT {
        let dropped = st.unsent.len() - MAX_UNSENT;
        st.unsent.drain(..dropped);
        log.warn(&format!("alert: {dropped} old unsent mail(s) dropped"));
    }
    if st != *before
        && let Err(e) =
            fsutil::atomic_write(dir, MAIL_STATE_FILE, st.serialize_json().as_bytes(), 0o600)
    {
        log.warn(&format!("alert: cannot write {MAIL_STATE_FILE}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(success: bool, ts: &str) -> Status {
        Status {
            timestamp: ts.into(),
            success,
            error: (!success).then(|| "disque plein".to_string()),
            last_success: Some("2024-12-17T03:00:00+01:00".into()),
            ..Status::default()
        }
    }

    #[test]
    fn a_mail_per_failure_and_one_on_recovery() {
        let tz = Tz::utc();
        let ok = MailState::default();
        let (m, st) = next_mail(
            &ok,
            &status(true, "2024-12-18T03:00:00+01:00"),
            "club",
            3,
            None,
            &tz,
        );
        assert!(
            m.is_none() && st == ok,
            "a healthy run sends nothing, writes nothing"
        );
        let (m, st1) = next_mail(
            &ok,
            &status(false, "2024-12-18T03:00:00+01:00"),
            "club",
            3,
            None,
            &tz,
        );
        let (subject, body) = m.unwrap_or_default();
        assert!(subject.starts_with("Échec"), "{subject}");
        assert!(
            body.contains("disque plein") && body.contains("17 décembre 2024"),
            "{body}"
        );
        assert_eq!(
            st1.failing_since.as_deref(),
            Some("2024-12-18T03:00:00+01:00")
        );
        let (m, st2) = next_mail(
            &st1,
            &status(false, "2024-12-19T03:00:00+01:00"),
            "club",
            3,
            None,
            &tz,
        );
        assert!(
            m.is_some_and(|(s, _)| s.starts_with("Échec")),
            "every failure mails"
        );
        assert_eq!(
            st2.failing_since, st1.failing_since,
            "the series keeps its start"
        );
        let (m, st3) = next_mail(
            &st2,
            &status(true, "2024-12-20T03:00:00+01:00"),
            "club",
            4,
            None,
            &tz,
        );
        let (subject, body) = m.unwrap_or_default();
        assert!(
            subject.starts_with("Sauvegarde Neopro rétablie"),
            "{subject}"
        );
        assert!(body.contains("18 décembre 2024"), "failing since: {body}");
        assert_eq!(st3.failing_since, None);
        let (m, _) = next_mail(
            &st3,
            &status(true, "2024-12-21T03:00:00+01:00"),
            "club",
            4,
            None,
            &tz,
        );
        assert!(m.is_none(), "only the first success after a failure mails");
    }
}
