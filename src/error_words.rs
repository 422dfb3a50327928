//! Error codes with plain French words (docs/format.md, Error codes).
//!
//! The errors a site reports are the engine's own text, in English and technical: "No
//! space left on device (os error 28)", "PUT s3://…: cannot connect to …", "cannot create
//! BACKUP_DIR /x: Not a directory (os error 20)". The people who read the page, the
//! mails and the fleet are club volunteers reading French. So every error gets:
//! - a stable snake_case code, [`code_of`] the raw text (the status stores it beside the
//!   error: `error_code`, `offsite.error_code`), and
//! - the French words a volunteer understands, [`words`] of the code, with what to do
//!   when that is short.
//!
//! The raw text always stays beside the words ("Détail technique : …"): it is what a
//! technician needs. A code this version does not know (a newer Pi's status read by an
//! older fleet) has no words: the reader then shows the raw error alone.
//!
//! The translation lives here only: the pages get the words in the JSON they read
//! (`error_words`), never from a copy of this table in JavaScript.

/// Every code [`code_of`] can answer, and the two the fleet gives rows without a
/// readable status (`no_status`, `status_unreadable`). Each has [`words`], and each is
/// in docs/format.md's table (both checked by the tests, the only readers).
#[cfg_attr(not(test), allow(dead_code))]
pub const CODES: &[&str] = &[
    "disk_full",
    "read_only",
    "not_a_directory",
    "not_a_regular_file",
    "permission_denied",
    "io_error",
    "not_found",
    "busy",
    "cancelled",
    "offsite_unreachable",
    "offsite_certificate",
    "offsite_denied",
    "offsite_no_bucket",
    "offsite_server",
    "offsite_held",
    "other_install",
    "gdrive_auth",
    "gdrive_full",
    "gdrive_held",
    "site_id_reserved",
    "clock",
    "no_status",
    "status_unreadable",
    "unknown",
];

/// How much of a message is looked at: every message the product writes is far
/// shorter (a path, a key, one sentence); a longer one is judged on its beginning.
const LOOK_MAX: usize = 16 * 1024;

/// The code of a raw error message (`unknown` when nothing in it is recognised). Pure,
/// total, case-insensitive; looks at the first 16 KiB at most.
pub fn code_of(raw: &str) -> &'static str {
    let mut end = raw.len().min(LOOK_MAX);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    let text = raw[..end].to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let errno = last_errno(&text);
    let errno_in = |set: &[u32]| errno.is_some_and(|e| set.contains(&e));

    // The product's own sentences first: they say exactly what happened.
    if has(&["offsite copies held"]) {
        return "offsite_held";
    }
    if has(&["another install ("]) {
        return "other_install";
    }
    if has(&["is reserved in the bucket"]) {
        return "site_id_reserved";
    }
    // Google Drive (bucket/gdrive.rs, bucket/google_oauth.rs, offsite/gdrive.rs).
    if has(&["google drive copies held"]) {
        return "gdrive_held";
    }
    if has(&["invalid_grant", "google drive is not connected"]) {
        return "gdrive_auth";
    }
    if has(&["storagequotaexceeded", "google drive is full"]) {
        return "gdrive_full";
    }
    if has(&["no status in the bucket"]) {
        return "no_status";
    }
    if has(&["status unreadable"]) {
        return "status_unreadable";
    }
    if has(&[
        "requesttimetooskewed",
        "clock is more than",
        "the clock reads",
        "dated in the future",
        "in the future: the clock",
    ]) {
        return "clock";
    }
    // What the S3 server answered (bucket/s3.rs, `explain`: "HTTP 403 AccessDenied: …").
    if has(&["nosuchbucket"]) {
        return "offsite_no_bucket";
    }
    if has(&[
        "accessdenied",
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "authorizationheadermalformed",
        "http 401",
        "http 403",
    ]) {
        return "offsite_denied";
    }
    if http_5xx(&text) {
        return "offsite_server";
    }
    // The connection (http/client.rs).
    if has(&[
        "certificate is not trusted",
        "invalid peer certificate",
        "no ca certificates found",
        "no usable ca certificate",
    ]) {
        return "offsite_certificate";
    }
    let on_the_wire = has(&["sending to ", "reading the answer of "]);
    if has(&[
        "cannot connect to ",
        "cannot resolve ",
        "timed out",
        "connection refused",
        "connection reset",
        "network is unreachable",
        "no route to host",
        "host is unreachable",
        "name resolution",
        "failed to lookup address",
        "name or service not known",
        "connection closed before",
        "no complete answer",
    ]) || errno_in(&[101, 103, 104, 110, 111, 113])
        || (on_the_wire && errno_in(&[11, 32]))
    {
        return "offsite_unreachable";
    }
    // The local disk and files.
    if errno_in(&[28, 122]) || has(&["no space left", "enospc", "disk quota exceeded"]) {
        return "disk_full";
    }
    if errno_in(&[30]) || has(&["read-only file system", "erofs"]) {
        return "read_only";
    }
    // ENOTDIR; and EEXIST when a folder is created where a file stands (BACKUP_DIR
    // itself a regular file: "cannot create BACKUP_DIR /x: File exists (os error 17)").
    if errno_in(&[20])
        || has(&["not a directory"])
        || (errno_in(&[17]) && has(&["cannot create "]) && !has(&["temporary file"]))
    {
        return "not_a_directory";
    }
    // fsutil's words for a FIFO, a device, a folder or a link where a file should be
    // ("is a FIFO (named pipe), not a regular file"), and EISDIR.
    if errno_in(&[21]) || has(&["not a regular file", "is a directory"]) {
        return "not_a_regular_file";
    }
    if errno_in(&[1, 13]) || has(&["permission denied", "operation not permitted"]) {
        return "permission_denied";
    }
    if errno_in(&[5]) || has(&["input/output error"]) {
        return "io_error";
    }
    if errno_in(&[2]) || has(&["no such file or directory"]) {
        return "not_found";
    }
    if has(&[
        "already running",
        "another backup is running",
        "déjà en cours",
    ]) {
        return "busy";
    }
    if has(&["cancelled (shutdown)", "backup cancelled"]) {
        return "cancelled";
    }
    "unknown"
}

/// The number of the last "(os error N)" in `text` (lower case): the innermost cause.
fn last_errno(text: &str) -> Option<u32> {
    const MARK: &str = "(os error ";
    let at = text.rfind(MARK)?;
    let rest = &text[at + MARK.len()..];
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    if digits == 0 || digits > 4 || !rest[digits..].starts_with(')') {
        return None;
    }
    rest[..digits].parse().ok()
}

/// Whether `text` (lower case) holds "http 5NN": an S3 answer of a server in trouble.
fn http_5xx(text: &str) -> bool {
    let b = text.as_bytes();
    text.match_indices("http 5").any(|(i, m)| {
        let at = i + m.len();
        let digit = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
        digit(at) && digit(at + 1) && !digit(at + 2)
    })
}

/// The French words of `code`, for a club volunteer: what happened and, when short,
/// what to do. `None` for a code this version does not know.
pub fn words(code: &str) -> Option<&'static str> {
    Some(match code {
        "disk_full" => {
            "La carte SD (ou le disque de sauvegarde) est pleine. Libérez de la place \
             (anciennes vidéos, anciens backups) ou réduisez RETENTION_DAYS."
        }
        "read_only" => {
            "La carte SD (ou le disque de sauvegarde) est en lecture seule : elle est \
             peut-être abîmée. Redémarrez le boîtier ; si cela revient, remplacez la carte."
        }
        "not_a_directory" => {
            "Un dossier attendu est en fait un fichier (le dossier des backups ou l'un de \
             ses parents). Vérifiez BACKUP_DIR dans backup.conf."
        }
        "not_a_regular_file" => {
            "Un élément inattendu (dossier, tube ou périphérique) se trouve là où un \
             fichier est attendu. Supprimez-le ou corrigez le chemin."
        }
        "permission_denied" => {
            "Accès refusé à un fichier ou un dossier : vérifiez les droits du service \
             neopro-backup."
        }
        "io_error" => {
            "Erreur de lecture ou d'écriture sur la carte SD (ou le disque) : elle est \
             peut-être abîmée. Pensez à la remplacer."
        }
        "not_found" => {
            "Un fichier ou un dossier attendu est introuvable. Vérifiez les chemins de \
             backup.conf et que le disque est bien branché."
        }
        "busy" => "Un autre backup était déjà en cours. Réessayez dans quelques minutes.",
        "cancelled" => {
            "Le backup a été interrompu (arrêt ou redémarrage du boîtier). Il sera refait."
        }
        "offsite_unreachable" => {
            "Le serveur des copies hors site est injoignable (pas d'Internet, serveur \
             arrêté ou adresse fausse). Les copies attendent sur le boîtier et partiront \
             d'elles-mêmes."
        }
        "offsite_certificate" => {
            "Le certificat du serveur des copies hors site n'est pas reconnu (ou l'horloge \
             du boîtier est fausse). Vérifiez S3_ENDPOINT et l'heure du boîtier."
        }
        "offsite_denied" => {
            "Le serveur des copies hors site refuse l'accès : vérifiez S3_ACCESS_KEY, \
             S3_SECRET_KEY et leurs droits sur le bucket."
        }
        "offsite_no_bucket" => {
            "Le bucket des copies hors site n'existe pas : créez-le ou corrigez S3_BUCKET."
        }
        "offsite_server" => {
            "Le serveur des copies hors site est en panne (erreur de son côté). Les \
             copies attendent sur le boîtier et partiront d'elles-mêmes."
        }
        "gdrive_auth" => {
            "Google Drive n'est pas (ou plus) connecté : l'autorisation manque, a été \
             retirée ou a expiré. Reconnectez-le depuis la page (« Connecter Google \
             Drive ») ou par neopro-backup gdrive login. Les copies attendent sur le \
             boîtier."
        }
        "gdrive_held" => {
            "Copies vers Google Drive suspendues : le Drive contient déjà des sauvegardes de \
             ce site que ce boîtier n'a pas envoyées. Récupérez-les (neopro-backup recover \
             --from gdrive) ou déclarez un nouveau départ (neopro-backup recover --new-start)."
        }
        "gdrive_full" => {
            "Le Google Drive du club est plein. Libérez de la place (ou réduisez \
             GDRIVE_RETENTION_DAYS) : les copies attendent sur le boîtier et partiront \
             d'elles-mêmes."
        }
        "offsite_held" => {
            "Copies hors site suspendues : le bucket contient déjà des sauvegardes de ce \
             site que ce boîtier n'a pas envoyées. Récupérez-les (neopro-backup recover) ou \
             déclarez un nouveau départ (neopro-backup recover --new-start)."
        }
        "other_install" => {
            "Deux boîtiers envoient leurs sauvegardes sous le même nom de site : donnez à \
             chacun son propre SITE_ID."
        }
        "site_id_reserved" => {
            "Le nom de site (SITE_ID) est un nom réservé : aucune copie hors site n'est \
             envoyée. Choisissez un autre SITE_ID dans backup.conf."
        }
        "clock" => {
            "L'horloge du boîtier est fausse : vérifiez qu'il a accès à Internet pour se \
             mettre à l'heure (NTP)."
        }
        "no_status" => "Ce site n'a encore envoyé aucun état dans le bucket.",
        "status_unreadable" => "L'état envoyé par ce site est illisible.",
        "unknown" => "Erreur inattendue (voir le détail technique).",
        _ => return None,
    })
}

/// The words of an error as a reader shows them: of `code` when the status carries
/// one, else of `code_of(raw)` (a status of an older version has no code). `None` when
/// the code is unknown to this version.
pub fn words_for(code: Option<&str>, raw: &str) -> Option<&'static str> {
    words(code.unwrap_or_else(|| code_of(raw)))
}

/// `(Some(code), its words)`, for a row whose error this program makes itself (the
/// fleet's `no_status` and `status_unreadable`).
pub fn coded(code: &str) -> (Option<String>, Option<String>) {
    (Some(code.to_string()), words(code).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_words() {
        for c in CODES {
            let w = words(c).unwrap_or_else(|| panic!("no words for {c}"));
            assert!(w.ends_with('.') && w.len() < 300, "{c}: {w}");
            assert!(
                c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{c} is not snake_case"
            );
        }
        assert_eq!(
            words("unknown"),
            Some("Erreur inattendue (voir le détail technique).")
        );
        // A newer Pi's code: no words, the reader shows the raw error alone.
        assert_eq!(words("disk_on_fire"), None);
        assert_eq!(words(""), None);
    }

    #[test]
    fn every_code_is_in_the_docs_table() {
        let doc = include_str!("../docs/format.md");
        for c in CODES {
            assert!(
                doc.contains(&format!("\n| `{c}` | ")),
                "{c} not in docs/format.md"
            );
        }
    }

    /// Real messages, copied from the code (and the three of the issue).
    #[test]
    fn codes_of_real_messages() {
        let cases: &[(&str, &str)] = &[
            // The three.
            ("No space left on device (os error 28)", "disk_full"),
            (
                "PUT s3://neopro/club/backup-20241218-030000.tar.gz: cannot connect to \
                 http://192.168.1.9:8333: Connection refused (os error 111)",
                "offsite_unreachable",
            ),
            (
                "cannot create BACKUP_DIR /x: Not a directory (os error 20)",
                "not_a_directory",
            ),
            // BACKUP_DIR itself a regular file (backup/mod.rs, store::ensure_dir).
            (
                "cannot create BACKUP_DIR /t/not-a-dir: File exists (os error 17)",
                "not_a_directory",
            ),
            (
                "cannot create a temporary file in /b: File exists (os error 17)",
                "unknown",
            ),
            // backup/mod.rs, describe_io.
            (
                "copying /home/pi/neopro/webapp/configuration.json failed: no space left on \
                 the device holding /home/pi/neopro-backups (0 B free); earlier archives \
                 were kept — free some space or lower RETENTION_DAYS",
                "disk_full",
            ),
            (
                "writing the archive failed: Disk quota exceeded (os error 122)",
                "disk_full",
            ),
            (
                "cannot create a temporary file in /b: Read-only file system (os error 30)",
                "read_only",
            ),
            (
                "cannot create BACKUP_DIR /b: Permission denied (os error 13)",
                "permission_denied",
            ),
            (
                "cannot sync BACKUP_DIR: Operation not permitted (os error 1)",
                "permission_denied",
            ),
            (
                "copying video /v/a.mp4 failed: Input/output error (os error 5)",
                "io_error",
            ),
            (
                "cannot lock /b/.backup.lock: No such file or directory (os error 2)",
                "not_found",
            ),
            // A folder where the lock file should be (tests/it/email.rs).
            (
                "cannot lock /b/.backup.lock: Is a directory (os error 21)",
                "not_a_regular_file",
            ),
            // fsutil::open_regular.
            (
                "/home/pi/neopro/site.conf is a FIFO (named pipe), not a regular file",
                "not_a_regular_file",
            ),
            ("is a device, not a regular file", "not_a_regular_file"),
            ("backup cancelled (shutdown)", "cancelled"),
            (
                "scheduled backup skipped: a backup is already running",
                "busy",
            ),
            ("Un backup est déjà en cours", "busy"),
            // bucket/s3.rs, explain.
            (
                "PUT s3://b/club/x: HTTP 403 AccessDenied: access denied: the key lacks \
                 the permission for bucket b",
                "offsite_denied",
            ),
            (
                "GET s3://b/?list-type=2: HTTP 403 InvalidAccessKeyId: the server does not \
                 know S3_ACCESS_KEY",
                "offsite_denied",
            ),
            (
                "PUT s3://b/k: HTTP 403 SignatureDoesNotMatch: the server refused the \
                 request signature: check S3_SECRET_KEY (and S3_REGION)",
                "offsite_denied",
            ),
            (
                "GET s3://b/: HTTP 404 NoSuchBucket: bucket b does not exist: create it first",
                "offsite_no_bucket",
            ),
            ("PUT s3://b/k: HTTP 503: Slow Down", "offsite_server"),
            ("PUT s3://b/k: HTTP 500 InternalError", "offsite_server"),
            ("GET s3://b/k: HTTP 500", "offsite_server"),
            (
                "PUT s3://b/k: HTTP 403 RequestTimeTooSkewed: this machine's clock is more \
                 than 15 minutes off the server's: check NTP (timedatectl)",
                "clock",
            ),
            // http/client.rs.
            (
                "GET s3://b/k: cannot resolve s3.example: failed to lookup address \
                 information: Temporary failure in name resolution",
                "offsite_unreachable",
            ),
            (
                "PUT s3://b/k: reading the answer of http://10.0.0.9:8333: Resource \
                 temporarily unavailable (os error 11)",
                "offsite_unreachable",
            ),
            (
                "PUT s3://b/k: sending to http://10.0.0.9:8333: Connection reset by peer \
                 (os error 104)",
                "offsite_unreachable",
            ),
            (
                "PUT s3://b/k: cannot connect to https://s3.example: connection timed out",
                "offsite_unreachable",
            ),
            (
                "PUT s3://b/k: reading the answer of http://h:1: connection closed before \
                 an HTTP answer",
                "offsite_unreachable",
            ),
            (
                "GET s3://b/k: reading from https://s3.example: invalid peer certificate: \
                 UnknownIssuer (the server's certificate is not trusted: install its CA in \
                 the system store or point SSL_CERT_FILE at a bundle that holds it)",
                "offsite_certificate",
            ),
            // offsite/history.rs, hold_reason; offsite/mod.rs; config.
            (
                "offsite copies held: the bucket already holds 2 backup(s) of site club \
                 (newest backup-20241218-030000.tar.gz) that this Pi did not send; recover \
                 them (neopro-backup recover) or declare a new start (neopro-backup recover \
                 --new-start)",
                "offsite_held",
            ),
            (
                "another install (0123456789abcdef0123456789abcdef) also sends backups \
                 under this SITE_ID (this one is fedcba9876543210fedcba9876543210): give \
                 each Pi its own SITE_ID",
                "other_install",
            ),
            (
                "SITE_ID \"videos\" (set, or this Pi's hostname) is reserved in the bucket \
                 (S3_PREFIX/videos/ is not a site's folder): no offsite copy is sent until \
                 SITE_ID names this site; local backups go on",
                "site_id_reserved",
            ),
            (
                "the last success is dated 2099-01-01T03:00:00+01:00, in the future: the \
                 clock was wrong then, or is wrong now; it does not count as a fresh backup",
                "clock",
            ),
            // The fleet's own rows (offsite/fleet.rs).
            ("no status in the bucket", "no_status"),
            ("status unreadable: HTTP 500", "status_unreadable"),
            // Nothing recognised.
            ("", "unknown"),
            ("disque plein", "unknown"),
            ("MANIFEST.sha256 line 3 is malformed", "unknown"),
        ];
        for (raw, code) in cases {
            assert_eq!(code_of(raw), *code, "{raw}");
            assert!(CODES.contains(code), "{code} not in CODES");
        }
    }

    #[test]
    fn os_errors_are_read_exactly() {
        // "os error 2" is not "os error 20", "21" or "28"; the last one is the cause.
        assert_eq!(code_of("x (os error 2)"), "not_found");
        assert_eq!(code_of("x (os error 20)"), "not_a_directory");
        assert_eq!(code_of("x (os error 21)"), "not_a_regular_file");
        assert_eq!(code_of("x (os error 28)"), "disk_full");
        assert_eq!(code_of("x (os error 1)"), "permission_denied");
        assert_eq!(code_of("x (os error 13)"), "permission_denied");
        assert_eq!(code_of("x (OS ERROR 30)"), "read_only");
        assert_eq!(code_of("x (os error 99999)"), "unknown");
        assert_eq!(code_of("x (os error )"), "unknown");
        assert_eq!(code_of("x (os error 2"), "unknown");
        assert_eq!(code_of("(os error 2) then (os error 28)"), "disk_full");
        // EAGAIN alone (not on the wire) says nothing.
        assert_eq!(code_of("x (os error 11)"), "unknown");
        assert_eq!(code_of("HTTP 5"), "unknown");
        assert_eq!(code_of("HTTP 5000"), "unknown");
        assert_eq!(code_of("HTTP 404 NoSuchKey"), "unknown");
    }

    /// The fleet's rows (offsite/fleet.rs, `site_row`) carry the code and the words of
    /// the error they show.
    #[test]
    fn fleet_rows_carry_codes_and_words() {
        use crate::offsite::fleet::site_row;
        use crate::status::{Offsite, Status};
        let row = site_row("never", None, 0);
        assert_eq!(
            (row.error_code.as_deref(), row.error_words.as_deref()),
            (Some("no_status"), words("no_status"))
        );
        // An older Pi's status: no code, computed from its error.
        let failed = Status {
            error: Some("cannot create BACKUP_DIR /x: Not a directory (os error 20)".into()),
            offsite: Some(Offsite {
                error: Some("HTTP 503".into()),
                ..Offsite::default()
            }),
            ..Status::default()
        };
        let row = site_row("old", Some(&failed), 0);
        assert_eq!(
            (row.error_code.as_deref(), row.error_words.as_deref()),
            (Some("not_a_directory"), words("not_a_directory"))
        );
        // The offsite error when the run has none, with the code the status stored.
        let offsite_only = Status {
            error: None,
            offsite: Some(Offsite {
                error: Some("PUT s3://b/k: HTTP 403 AccessDenied".into()),
                error_code: Some("offsite_denied".into()),
                ..Offsite::default()
            }),
            ..Status::default()
        };
        let row = site_row("denied", Some(&offsite_only), 0);
        assert_eq!(
            (
                row.error.as_deref(),
                row.error_code.as_deref(),
                row.error_words.as_deref()
            ),
            (
                Some("PUT s3://b/k: HTTP 403 AccessDenied"),
                Some("offsite_denied"),
                words("offsite_denied")
            )
        );
        // A newer Pi's code: kept, without words (the page shows the raw error alone).
        let newer = Status {
            error: Some("disk on fire".into()),
            error_code: Some("disk_on_fire".into()),
            ..Status::default()
        };
        let row = site_row("newer", Some(&newer), 0);
        assert_eq!(
            (row.error_code.as_deref(), row.error_words),
            (Some("disk_on_fire"), None)
        );
        let ok = Status {
            success: true,
            ..Status::default()
        };
        let row = site_row("ok", Some(&ok), 0);
        assert_eq!((row.error_code, row.error_words), (None, None));
        // The rows without a readable status: offsite/fleet.rs, `rows`, checked with
        // the built binary and a real bucket (tests/it/error_words.rs).
    }

    #[test]
    fn long_or_odd_input_is_bounded_and_total() {
        // Much longer than what is looked at: judged on its beginning, no panic.
        let long = format!(
            "{}No space left on device (os error 28)",
            "é".repeat(20_000)
        );
        assert_eq!(code_of(&long), "unknown");
        let long = format!("No space left on device {}", "é".repeat(20_000));
        assert_eq!(code_of(&long), "disk_full");
        // A cut in the middle of a multi-byte character is moved back.
        for n in 0..8 {
            let s = format!("{}{}", "a".repeat(LOOK_MAX - n), "€".repeat(4));
            assert_eq!(code_of(&s), "unknown");
        }
        assert_eq!(code_of("\0\u{feff}\r\n"), "unknown");
        assert_eq!(words_for(None, "x (os error 28)"), words("disk_full"));
        assert_eq!(words_for(Some("disk_on_fire"), "x (os error 28)"), None);
        assert_eq!(
            coded("no_status"),
            (
                Some("no_status".to_string()),
                words("no_status").map(str::to_string)
            )
        );
    }
}
