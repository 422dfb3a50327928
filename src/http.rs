//! The HTTP API of CONTRACT §5: routes and JSON shapes. Every route calls the same
//! domain functions as the CLI (backup::run, listing::build, archive::verify, …).
//!
//! Guards, in order: the Host must be an IP literal, `localhost` or this machine's name
//! (defeats DNS rebinding from a page the kiosk browser opens); /api and /metrics need
//! the bearer token when API_TOKEN is set (constant-time comparison); a state-changing
//! request from another origin is 403.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::sync::atomic::Ordering;

use nanoserde::{DeJson, SerJson};

use crate::archive;
use crate::clock;
use crate::daemon::Shared;
use crate::fsutil;
use crate::httpd::{Body, Request, Response};
use crate::listing;
use crate::status::{self, Status};

const JSON: &str = "application/json; charset=utf-8";

pub fn json(status: u16, body: String) -> Response {
    Response::new(status, JSON, body.into_bytes())
}

/// A JSON string literal.
pub fn jstr(s: &str) -> String {
    SerJson::serialize_json(&s.to_string())
}

pub fn error(status: u16, msg: &str) -> Response {
    json(status, format!("{{\"error\":{}}}", jstr(msg)))
}

fn bad_name() -> Response {
    error(400, "Nom de fichier invalide")
}

fn not_found_backup() -> Response {
    error(404, "Backup non trouvé")
}

/// Decodes %XX escapes once; `None` on a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The archive name in a path segment, when it is one (else the 400 response).
pub fn archive_param(raw: &str) -> Result<String, Response> {
    let decoded = percent_decode(raw).ok_or_else(bad_name)?;
    let name = String::from_utf8(decoded).map_err(|_| bad_name())?;
    if archive::is_archive_name(&name) {
        Ok(name)
    } else {
        Err(bad_name())
    }
}

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

fn host_allowed(host: Option<&str>) -> bool {
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
    let me = crate::sysinfo::hostname().to_ascii_lowercase();
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

fn cross_origin(req: &Request) -> bool {
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

fn authorized(shared: &Shared, req: &Request) -> bool {
    let Some(token) = shared.cfg.api_token.as_deref() else {
        return true;
    };
    let Some(given) = req
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    ct_eq(given.trim().as_bytes(), token.as_bytes())
}

fn method_not_allowed(allow: &str) -> Response {
    error(405, "Méthode non autorisée").with_header("Allow", allow)
}

/// The routing table.
pub fn route(shared: &Shared, req: &Request) -> Response {
    if !host_allowed(req.header("Host")) {
        return error(403, "Hôte non autorisé");
    }
    let path = req.path.as_str();
    let m = req.method.as_str();
    let protected = path.starts_with("/api/") || path == "/api" || path == "/metrics";
    if protected && !authorized(shared, req) {
        return error(401, "Authentification requise").with_header("WWW-Authenticate", "Bearer");
    }
    let changes_state = !matches!(m, "GET" | "HEAD" | "OPTIONS");
    if changes_state && cross_origin(req) {
        return error(403, "Origine non autorisée");
    }
    let sub = path.strip_prefix("/api/backups");
    match (m, path, sub) {
        ("GET", "/healthz", _) => Response::new(200, "text/plain; charset=utf-8", b"ok".to_vec()),
        (_, "/healthz", _) => method_not_allowed("GET"),
        ("GET", "/", _) => Response::new(200, "text/html; charset=utf-8", crate::ui::PAGE.as_bytes().to_vec())
            .with_header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors *",
            ),
        (_, "/", _) => method_not_allowed("GET"),
        ("GET", "/metrics", _) => metrics(shared),
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
            with_name(&rest["/download/".len()..], |n| download(shared, n))
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
            with_name(&rest["/restore/".len()..], |n| crate::restore::http(shared, n, &req.body))
        }
        (_, _, Some(rest)) if rest.starts_with('/') && rest.len() > 1 => {
            if m != "DELETE" {
                return method_not_allowed("DELETE");
            }
            with_name(&rest[1..], |n| delete(shared, n))
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

/// `GET /api/backups`: the same JSON as `listing::build` (and `list --json`), with the
/// `backups` array cached (see `ListCache`); the status is read afresh every time.
fn list(shared: &Shared) -> Response {
    let dir = &shared.cfg.backup_dir;
    let listed = match cached_backups(dir, &shared.tz) {
        Ok(l) => l,
        Err(e) => return error(500, &format!("Impossible de lister les backups : {e}")),
    };
    let status = status::read(dir).ok().flatten().serialize_json();
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

/// The `backups` array of the list, serialized, with the folder state it was made from.
///
/// Listing stats every archive: with 1,000 archives that is 1,000 `statx` calls a request
/// (7 ms on a slow VM, more on an SD card), which the admin panel may ask for every few
/// seconds and several tabs at once. The array is reused while BACKUP_DIR itself is
/// unchanged (same inode, mtime and ctime: every create, rename, delete or new symlink in
/// the folder changes them) and for at most `LIST_CACHE_TTL`, which also bounds how late
/// an in-place change (a `touch`) and the `age` strings can be. A folder changed less
/// than a second before it was read is not cached at all: a second change within the
/// same timestamp tick would not move its mtime.
struct ListCache {
    dir: std::path::PathBuf,
    key: DirKey,
    made: std::time::Instant,
    backups_json: std::sync::Arc<[u8]>,
    total: u64,
    total_size: u64,
}

struct Listed {
    backups_json: std::sync::Arc<[u8]>,
    total: u64,
    total_size: u64,
}

type DirKey = (u64, u64, i64, i64, i64, i64);

const LIST_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

static LIST_CACHE: std::sync::Mutex<Option<ListCache>> = std::sync::Mutex::new(None);

/// One listing at a time: when the cached array expires under load, every handler in
/// flight would otherwise stat every archive at once, each with its own copy in memory.
static LIST_REBUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The folder's identity and change times, and whether it is old enough to cache.
fn dir_key(dir: &std::path::Path) -> Option<(DirKey, bool)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).ok()?;
    let settled = m
        .modified()
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= std::time::Duration::from_secs(1));
    let key = (
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
    Some((key, settled))
}

/// The cached array, when it was made from this folder in this state not long ago.
fn cache_hit(dir: &std::path::Path, key: Option<(DirKey, bool)>) -> Option<Listed> {
    let (k, _) = key?;
    let cache = LIST_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let c = cache.as_ref()?;
    (c.key == k && c.dir == dir && c.made.elapsed() < LIST_CACHE_TTL).then(|| Listed {
        backups_json: std::sync::Arc::clone(&c.backups_json),
        total: c.total,
        total_size: c.total_size,
    })
}

fn cached_backups(dir: &std::path::Path, tz: &clock::Tz) -> std::io::Result<Listed> {
    if let Some(l) = cache_hit(dir, dir_key(dir)) {
        return Ok(l);
    }
    let _one = LIST_REBUILD.lock().unwrap_or_else(|p| p.into_inner());
    // Another handler may have made it while this one waited.
    let key = dir_key(dir);
    if let Some(l) = cache_hit(dir, key) {
        return Ok(l);
    }
    let made = std::time::Instant::now();
    let archives = archive::list(dir)?;
    let naive_now = tz.to_naive(clock::now_unix());
    let entries: Vec<listing::Entry> = archives
        .iter()
        .map(|a| listing::entry(a, naive_now))
        .collect();
    // Sized up front (an entry is ~160 bytes): no trail of ever larger buffers.
    let mut out = nanoserde::SerJsonState::new(String::with_capacity(entries.len() * 192 + 2));
    entries.ser_json(0, &mut out);
    let listed = Listed {
        backups_json: out.out.into_bytes().into(),
        total: archives.len() as u64,
        total_size: archives.iter().map(|a| a.size).sum(),
    };
    if let Some((k, true)) = key {
        *LIST_CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Some(ListCache {
            dir: dir.to_path_buf(),
            key: k,
            made,
            backups_json: std::sync::Arc::clone(&listed.backups_json),
            total: listed.total,
            total_size: listed.total_size,
        });
    }
    Ok(listed)
}

#[derive(SerJson)]
struct Created {
    success: bool,
    message: String,
    output: String,
    archive: Option<String>,
}

#[derive(SerJson)]
struct Failed {
    success: bool,
    error: String,
    details: String,
}

fn create(shared: &Shared) -> Response {
    match shared.run_backup() {
        Err(_) => json(
            409,
            Failed {
                success: false,
                error: "Un backup est déjà en cours".into(),
                details: "Réessayez dans quelques instants".into(),
            }
            .serialize_json(),
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
        Ok(out) => json(
            500,
            Failed {
                success: false,
                error: "Échec de la création du backup".into(),
                details: out.status.error.unwrap_or_default(),
            }
            .serialize_json(),
        ),
    }
}

/// Opens BACKUP_DIR/name as a regular file, never through a symlink.
pub fn open_archive(
    shared: &Shared,
    name: &str,
) -> Result<(std::fs::File, std::fs::Metadata), Response> {
    fsutil::open_regular_nofollow(&shared.cfg.backup_dir.join(name)).map_err(|_| not_found_backup())
}

fn download(shared: &Shared, name: &str) -> Response {
    match open_archive(shared, name) {
        Err(r) => r,
        Ok((f, meta)) => Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/gzip".into()),
                (
                    "Content-Disposition".into(),
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            body: Body::File(f, meta.len()),
        },
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

fn verify(shared: &Shared, name: &str) -> Response {
    let (f, _) = match open_archive(shared, name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = archive::verify(f, Some(archive::stem_of(name)));
    json(
        200,
        VerifyJson {
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
        .serialize_json(),
    )
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

fn auto_status(shared: &Shared) -> Response {
    let enabled = shared.enabled.load(Ordering::SeqCst);
    json(
        200,
        AutoStatus {
            enabled,
            active: enabled && shared.scheduler_alive.load(Ordering::SeqCst),
            next_run: shared
                .next_run()
                .map(|t| crate::schedule::describe(t, &shared.tz)),
            logs: status::tail(&shared.cfg.backup_dir, 20),
        }
        .serialize_json(),
    )
}

#[derive(DeJson)]
struct Toggle {
    enable: Option<bool>,
}

fn auto_toggle(shared: &Shared, req: &Request) -> Response {
    let text = std::str::from_utf8(&req.body).unwrap_or("");
    let enable = match Toggle::deserialize_json(text) {
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

fn metrics(shared: &Shared) -> Response {
    let dir = &shared.cfg.backup_dir;
    let st = status::read(dir).ok().flatten();
    // The same cached listing as GET /api/backups: no stat of every archive per scrape.
    let (count, bytes) =
        cached_backups(dir, &shared.tz).map_or((0, 0), |l| (l.total, l.total_size));
    let last_success = st.as_ref().and_then(Status::last_success_unix).unwrap_or(0);
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "neopro_backup_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful backup (0: none).",
        last_success.to_string(),
    );
    metric(
        "neopro_backup_last_run_success",
        "gauge",
        "1 if the last run succeeded, 0 if it failed or none ran.",
        u8::from(st.as_ref().is_some_and(|s| s.success)).to_string(),
    );
    metric(
        "neopro_backup_last_duration_seconds",
        "gauge",
        "Duration of the last run.",
        format!(
            "{:.3}",
            st.as_ref().map_or(0.0, |s| s.duration_ms as f64 / 1000.0)
        ),
    );
    metric(
        "neopro_backup_last_size_bytes",
        "gauge",
        "Size of the last archive.",
        st.as_ref()
            .and_then(|s| s.size_bytes)
            .unwrap_or(0)
            .to_string(),
    );
    metric(
        "neopro_backup_archives",
        "gauge",
        "Archives in BACKUP_DIR.",
        count.to_string(),
    );
    metric(
        "neopro_backup_archives_bytes",
        "gauge",
        "Total size of the archives in BACKUP_DIR.",
        bytes.to_string(),
    );
    metric(
        "neopro_backup_failures_total",
        "counter",
        "Failed runs seen by this daemon since it started.",
        shared.failures.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "neopro_backup_next_run_timestamp_seconds",
        "gauge",
        "Unix time of the next scheduled run (0: schedule off).",
        shared.next_run().unwrap_or(0).to_string(),
    );
    metric(
        "neopro_backup_schedule_enabled",
        "gauge",
        "1 if the automatic daily backup is on.",
        u8::from(shared.enabled.load(Ordering::SeqCst)).to_string(),
    );
    metric(
        "neopro_backup_offsite_pending",
        "gauge",
        "Offsite copies waiting to be sent.",
        crate::offsite::summary(&shared.cfg)
            .map_or(0, |o| o.pending)
            .to_string(),
    );
    metric(
        "neopro_backup_http_connections",
        "gauge",
        "Open HTTP connections.",
        shared.stats.connections.load(Ordering::Relaxed).to_string(),
    );
    Response::new(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        out.into_bytes(),
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

    #[test]
    fn the_cached_list_is_the_same_json_as_list_json() {
        let dir = std::env::temp_dir().join(format!("neopro-http-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for n in [
            "backup-20241218-030000.tar.gz",
            "backup-20241217-030000.tar.gz",
        ] {
            std::fs::write(dir.join(n), b"x".repeat(1500)).unwrap_or_else(|e| panic!("{e}"));
        }
        let _ =
            std::os::unix::fs::symlink("/etc/passwd", dir.join("backup-20241216-030000.tar.gz"));
        let tz = clock::Tz::utc();
        for _ in 0..2 {
            let l = cached_backups(&dir, &tz).unwrap_or_else(|e| panic!("{e}"));
            let ours = format!(
                "{{\"backups\":{},\"status\":null,\"total\":{},\"totalSize\":{}}}",
                String::from_utf8_lossy(&l.backups_json),
                l.total,
                l.total_size
            );
            let reference = listing::build(&dir, clock::now_unix(), &tz)
                .unwrap_or_else(|e| panic!("{e}"))
                .serialize_json();
            assert_eq!(ours, reference);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

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
    }
}
