//! The API's answers: JSON bodies with the right type, French error messages, and the
//! one way a handler opens an archive (a regular file in BACKUP_DIR, never a link).

use nanoserde::SerJson;

use crate::fsutil;
use crate::http::server::Response;
use crate::serve::state::Shared;

pub const JSON: &str = "application/json; charset=utf-8";

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

pub fn bad_name() -> Response {
    error(400, "Nom de fichier invalide")
}

pub fn not_found_backup() -> Response {
    error(404, "Backup non trouvé")
}

/// Opens BACKUP_DIR/name as a regular file, never through a symlink.
pub fn open_archive(
    shared: &Shared,
    name: &str,
) -> Result<(std::fs::File, std::fs::Metadata), Response> {
    fsutil::open_regular_nofollow(&shared.cfg.backup_dir.join(name)).map_err(|_| not_found_backup())
}
