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

/// A refused or failed action: `{"success":false,"error":…,"details":…}` (the backup
/// and restore answers of docs/format.md, API).
pub fn failed(status: u16, error: &str, details: &str) -> Response {
    #[derive(SerJson)]
    struct Failed {
        success: bool,
        error: String,
        details: String,
    }
    let body = Failed {
        success: false,
        error: error.to_string(),
        details: details.to_string(),
    };
    json(status, body.serialize_json())
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

/// 405, with the methods the path takes (every GET route also answers HEAD).
pub fn method_not_allowed(allow: &str) -> Response {
    let allow = if allow == "GET" { "GET, HEAD" } else { allow };
    error(405, "Méthode non autorisée").with_header("Allow", allow)
}

/// `body` (a JSON object) with `extra` members added at its end.
pub fn with_members(mut body: String, extra: &[(&str, String)]) -> String {
    if !body.ends_with('}') {
        return body;
    }
    body.pop();
    for (k, v) in extra {
        if body.len() > 1 {
            body.push(',');
        }
        body.push_str(&jstr(k));
        body.push(':');
        body.push_str(v);
    }
    body.push('}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::server::Body;

    #[test]
    fn a_failure_says_success_false_with_its_error_and_details() {
        let r = failed(409, "Un backup est déjà en cours", "Réessayez \"bientôt\"");
        assert_eq!(r.status, 409);
        assert_eq!(r.headers, [("Content-Type".to_string(), JSON.to_string())]);
        let Body::Bytes(body) = r.body else {
            panic!("a failure is one JSON document");
        };
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"success":false,"error":"Un backup est déjà en cours","details":"Réessayez \"bientôt\""}"#
        );
    }
}
