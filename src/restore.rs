//! Restore (issue 5): being written; see src/restore.rs history.

use std::path::Path;

use crate::config::Config;
use crate::daemon::Shared;
use crate::httpd::Response;

pub fn http(_shared: &Shared, _name: &str, _body: &[u8]) -> Response {
    crate::http::error(501, "Restauration pas encore disponible")
}

pub fn cli(_cfg: &Config, _archive: &Path, _dry_run: bool, _only: Option<Vec<String>>) -> u8 {
    eprintln!("neopro-backup: restore is not available yet");
    2
}
