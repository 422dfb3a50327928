//! The HTTP API (docs/format.md, API): routes and JSON shapes. Every route calls the same
//! domain functions as the CLI (backup::run, store::build, archive::verify, …).
//!
//! Guards, in order: the Host must be an IP literal, `localhost` or this machine's name
//! (defeats DNS rebinding from a page the kiosk browser opens); /api and /metrics need
//! the bearer token when API_TOKEN is set (constant-time comparison); a state-changing
//! request from another origin is 403.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::sync::atomic::Ordering;

use nanoserde::{DeJson, SerJson};

use crate::backup::archive;
use crate::fsutil;
use crate::http::percent::percent_decode;
use crate::http::server::{Body, Request, Response};
use crate::serve::reply::{
    JSON, bad_name, error, failed, json, jstr, method_not_allowed, not_found_backup, open_archive,
};
use crate::serve::state::Shared;
use crate::serve::{download, gdrive_api, guard, metrics, page, recover_api, restore_api};
use crate::status;
use crate::store;

/// The archive name in a path segment, when it is one (else the 400 response).
pub fn archive_param(raw: &str) -> Result<String, Response> {
    let name = percent_decode(raw).ok_or_else(bad_name)?;
    if store::is_archive_name(&name) {
        Ok(name)
    } else {
        Err(bad_name())
    }
}

/// `ok`, with the server's clock in `Date` (RFC 9110, 6.6.1: a monitoring probe sees a
/// Pi whose clock is off; the field tests read a fake clock there).
pub fn healthz() -> Response {
    Response::new(200, "text/plain; charset=utf-8", b"ok".to_vec()).with_header(
        "Date",
        &crate::serve::download::http_date(crate::clock::now_unix()),
    )
}

/// The quick lane, the same for `serve` and `fleet serve`: answers the server gives on
/// the connection's own thread, never queued behind busy handlers (long verifies,
/// restores, the first read of a slow bucket): `GET /healthz`.
pub fn quick(req: &Request) -> Option<Response> {
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    (get && req.path == "/healthz" && guard::host_allowed(req.header("Host"))).then(healthz)
}

/// The routing table.
pub fn route(shared: &std::sync::Arc<Shared>, req: &Request) -> Response {
    if !guard::host_allowed(req.header("Host")) {
        return error(403, "Hôte non autorisé");
    }
    let path = req.path.as_str();
    // HEAD is GET without the body (the server leaves the body out).
    let m = match req.method.as_str() {
        "HEAD" => "GET",
        m => m,
    };
    let protected = path.starts_with("/api/") || path == "/api" || path == "/metrics";
    if protected && !guard::authorized(shared, req) {
        return error(401, "Authentification requise").with_header("WWW-Authenticate", "Bearer");
    }
    let changes_state = !matches!(m, "GET" | "HEAD" | "OPTIONS");
    if changes_state && guard::cross_origin(req) {
        return error(403, "Origine non autorisée");
    }
    let sub = path.strip_prefix("/api/backups");
    match (m, path, sub) {
        ("GET", "/healthz", _) => healthz(),
        (_, "/healthz", _) => method_not_allowed("GET"),
        ("GET", "/", _) => page::serve(page::PAGE_GZ, req, &page::csp(&shared.cfg.frame_ancestors)),
        (_, "/", _) => method_not_allowed("GET"),
        ("GET", "/metrics", _) => metrics::metrics(shared),
        (_, "/metrics", _) => method_not_allowed("GET"),
        ("GET", _, Some("")) => list(shared),
        (_, _, Some("")) => method_not_allowed("GET"),
        ("POST", _, Some("/create")) => create(shared),
        (_, _, Some("/create")) => method_not_allowed("POST"),
        ("GET", _, Some("/auto-status")) => auto_status(shared),
        (_, _, Some("/auto-status")) => method_not_allowed("GET"),
        ("POST", _, Some("/auto-toggle")) => auto_toggle(shared, req),
        (_, _, Some("/auto-toggle")) => method_not_allowed("POST"),
        (_, _, Some(rest)) if rest.starts_with("/download/") => {
            if m != "GET" {
                return method_not_allowed("GET");
            }
            with_name(&rest["/download/".len()..], |n| {
                download::download(shared, req, n)
            })
        }
        (_, _, Some(rest)) if rest.starts_with("/verify/") => {
            if m != "POST" {
                return method_not_allowed("POST");
            }
            with_name(&rest["/verify/".len()..], |n| verify(shared, n))
        }
        (_, _, Some(rest)) if rest.starts_with("/restore/") => {
            if m != "POST" {
                return method_not_allowed("POST");
            }
            with_name(&rest["/restore/".len()..], |n| {
                restore_api::http(shared, n, &req.body)
            })
        }
        (_, _, Some(rest)) if rest.starts_with('/') && rest.len() > 1 => {
            if m != "DELETE" {
                return method_not_allowed("DELETE");
            }
            with_name(&rest[1..], |n| delete(shared, n))
        }
        (_, _, None) if path.starts_with("/api/offsite/") => {
            recover_api::route(shared, m, path, &req.body)
        }
        (_, _, None) if path == "/api/gdrive" || path.starts_with("/api/gdrive/") => {
            gdrive_api::route(shared, m, path, &req.query, &req.body)
        }
        _ => error(404, "Route inconnue"),
    }
}

fn with_name(raw: &str, f: impl FnOnce(&str) -> Response) -> Response {
    match archive_param(raw) {
        Ok(name) => f(&name),
        Err(r) => r,
    }
}

/// `GET /api/backups`: the same JSON as `store::build` (and `list --json`), with the
/// `backups` array cached (see `ListCache`); the status is read afresh every time, and
/// carries `error_words` beside its codes (`Status::to_json_with_words`).
fn list(shared: &Shared) -> Response {
    let dir = &shared.cfg.backup_dir;
    let listed = match store::cached_backups(dir, &shared.tz) {
        Ok(l) => l,
        Err(e) => return error(500, &format!("Impossible de lister les backups : {e}")),
    };
    // The status with the French words of its errors (error_words.rs): the page shows
    // them, and never translates by itself.
    let status = status::read(dir)
        .ok()
        .flatten()
        .map_or_else(|| "null".to_string(), |s| s.to_json_with_words());
    let tail = format!(
        ",\"status\":{status},\"total\":{},\"totalSize\":{}}}",
        listed.total, listed.total_size
    );
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), JSON.into())],
        body: Body::Parts(vec![
            std::sync::Arc::from(&b"{\"backups\":"[..]),
            listed.backups_json,
            std::sync::Arc::from(tail.into_bytes()),
        ]),
    }
}

#[derive(SerJson)]
struct Created {
    success: bool,
    message: String,
    output: String,
    archive: Option<String>,
}

fn create(shared: &Shared) -> Response {
    match shared.run_backup() {
        Err(_) => failed(
            409,
            "Un backup est déjà en cours",
            "Réessayez dans quelques instants",
        ),
        Ok(out) if out.status.success => json(
            200,
            Created {
                success: true,
                message: "Backup créé avec succès".into(),
                output: out.log.join("\n"),
                archive: out.status.archive,
            }
            .serialize_json(),
        ),
        Ok(out) => failed(
            500,
            "Échec de la création du backup",
            out.status.error.as_deref().unwrap_or_default(),
        ),
    }
}

fn delete(shared: &Shared, name: &str) -> Response {
    let dir = &shared.cfg.backup_dir;
    // Check the entry itself (not what a symlink points to); unlink never follows links.
    match std::fs::symlink_metadata(dir.join(name)) {
        Ok(m) if m.file_type().is_file() => {}
        _ => return not_found_backup(),
    }
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => {
            let _ = fsutil::fsync_dir(dir);
            status::Log::new(dir, &shared.tz).info(&format!("deleted {name} (API)"));
            json(
                200,
                r#"{"success":true,"message":"Backup supprimé"}"#.to_string(),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => not_found_backup(),
        Err(e) => error(500, &format!("Suppression impossible : {e}")),
    }
}

#[derive(SerJson)]
struct FileJson {
    name: String,
    sha256: String,
    ok: bool,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct VerifyJson {
    ok: bool,
    files: Vec<FileJson>,
    error: Option<String>,
}

/// `verify`: the contract's `{"ok","files","error"}`; an archive of the old
/// auto-backup.sh adds `"format":"old"` and a `note` (docs/format.md, Old-format
/// archives).
fn verify(shared: &Shared, name: &str) -> Response {
    let (f, _) = match open_archive(shared, name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = archive::verify(f, Some(store::stem_of(name)));
    let old = r.old_format;
    let unchecked = old && r.ok && r.error.is_none();
    let mut body = VerifyJson {
        ok: r.ok,
        files: r
            .files
            .into_iter()
            .map(|f| FileJson {
                name: f.name,
                sha256: f.sha256,
                ok: f.ok,
            })
            .collect(),
        error: r.error,
    }
    .serialize_json();
    if old && body.ends_with('}') {
        let note = if unchecked {
            "Ancien format (sans MANIFEST.sha256) : gzip et tar lus jusqu'au bout, sans empreinte à comparer."
        } else {
            "Ancien format."
        };
        body.pop();
        body.push_str(&format!(",\"format\":\"old\",\"note\":{}}}", jstr(note)));
    }
    json(200, body)
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct AutoStatus {
    enabled: bool,
    active: bool,
    #[nserde(rename = "nextRun")]
    next_run: Option<String>,
    logs: String,
}

/// `auto-status`: the contract's four members, and `clockWarning` (French) after them
/// only while the clock looks wrong (docs/format.md, API).
fn auto_status(shared: &Shared) -> Response {
    let enabled = shared.enabled.load(Ordering::SeqCst);
    let mut body = AutoStatus {
        enabled,
        active: enabled && shared.scheduler_alive.load(Ordering::SeqCst),
        next_run: shared
            .next_run()
            .map(|t| crate::schedule::describe(t, &shared.tz)),
        logs: status::tail(&shared.cfg.backup_dir, 20),
    }
    .serialize_json();
    if let Some(w) = crate::serve::state::clock_warning(shared)
        && body.ends_with('}')
    {
        body.pop();
        body.push_str(&format!(",\"clockWarning\":{}}}", jstr(&w.french())));
    }
    json(200, body)
}

#[derive(DeJson)]
struct Toggle {
    enable: Option<bool>,
}

fn auto_toggle(shared: &Shared, req: &Request) -> Response {
    let text = std::str::from_utf8(&req.body).unwrap_or("");
    let enable = match crate::json::parse::<Toggle>(text) {
        Ok(Toggle { enable: Some(b) }) => b,
        _ => return error(400, "Paramètre \"enable\" requis"),
    };
    if let Err(e) = shared.set_enabled(enable) {
        return error(500, &format!("Impossible d'enregistrer le choix : {e}"));
    }
    let word = if enable { "activé" } else { "désactivé" };
    status::Log::new(&shared.cfg.backup_dir, &shared.tz).info(&format!(
        "automatic backup {} (API)",
        if enable { "on" } else { "off" }
    ));
    json(
        200,
        format!(
            "{{\"success\":true,\"message\":\"Backup automatique {word}\",\"enabled\":{enable}}}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_paths() {
        assert!(archive_param("backup-20241218-030000.tar.gz").is_ok());
        assert!(archive_param("backup-20241218-03000%30.tar.gz").is_ok());
        for bad in [
            "..%2F..%2Fetc%2Fpasswd",
            "%2e%2e%2fbackup-20241218-030000.tar.gz",
            "backup-20241218-030000.tar.gz%00",
            "%252e%252e%252f",
            "backup-20241218-030000.tar.gz%2",
            "%ff",
            "",
        ] {
            assert!(archive_param(bad).is_err(), "{bad}");
        }
    }
}
