//! `POST /api/backups/restore/:filename`: the HTTP face of restore.rs. The body needs
//! a JSON boolean `dryRun` (a destructive call never guesses); the answer's JSON shapes
//! are in docs/format.md ("Restore").

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use nanoserde::{DeJson, SerJson};

use crate::http::server::Response;

use crate::fsutil::LockWait;
use crate::restore::videos::{self, VideoJob, VideoPlan};
use crate::restore::{self, Abort, Done, DryReport, FILES, FileResult, Job};
use crate::serve::reply::{error, failed, json, open_archive};
use crate::serve::state::Shared;
use crate::store;
use crate::videos::inventory;

#[derive(DeJson)]
struct RestoreRequest {
    #[nserde(rename = "dryRun")]
    dry_run: Option<bool>,
    only: Option<Vec<String>>,
    videos: Option<bool>,
}

/// The body of POST /api/backups/restore/:filename: `{"dryRun": bool}` is required (a
/// JSON boolean), because a restore overwrites files and must never happen by accident;
/// `"only": ["site.conf", …]` is optional.
#[cfg(test)]
fn parse_body(body: &[u8]) -> Result<(bool, Option<Vec<String>>), ()> {
    parse_full(body).and_then(|(d, only, videos)| if videos { Err(()) } else { Ok((d, only)) })
}

/// The same, with `"videos": true` (a JSON boolean; not with `only`): the videos of the
/// archive fetched from the bucket instead of the configuration files.
fn parse_full(body: &[u8]) -> Result<(bool, Option<Vec<String>>, bool), ()> {
    let text = std::str::from_utf8(body).map_err(|_| ())?;
    match crate::json::parse::<RestoreRequest>(text) {
        Ok(RestoreRequest {
            dry_run: Some(d),
            only,
            videos,
        }) => {
            let videos = videos.unwrap_or(false);
            if videos && only.is_some() {
                return Err(());
            }
            Ok((d, only, videos))
        }
        _ => Err(()),
    }
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct DryFileJson {
    name: String,
    path: String,
    state: String,
    #[nserde(rename = "archiveSize")]
    archive_size: Option<u64>,
    #[nserde(rename = "currentSize")]
    current_size: Option<u64>,
    problem: Option<String>,
}

#[derive(SerJson)]
struct MissingVideoJson {
    path: String,
    size: u64,
}

#[derive(SerJson)]
struct ResizedVideoJson {
    path: String,
    #[nserde(rename = "archiveSize")]
    archive_size: u64,
    #[nserde(rename = "currentSize")]
    current_size: u64,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct VideosJson {
    inventory: bool,
    listed: u64,
    missing: Vec<MissingVideoJson>,
    #[nserde(rename = "changedSize")]
    changed_size: Vec<ResizedVideoJson>,
    #[nserde(rename = "inArchive")]
    in_archive: u64,
    error: Option<String>,
}

#[derive(SerJson)]
struct DryRunJson {
    success: bool,
    #[nserde(rename = "dryRun")]
    dry_run: bool,
    archive: String,
    message: String,
    #[nserde(rename = "wouldRestore")]
    would_restore: Vec<String>,
    files: Vec<DryFileJson>,
    videos: VideosJson,
}

pub(super) fn dry_json(name: &str, r: &DryReport) -> String {
    let show = |p: &[u8]| {
        let mut s = String::new();
        inventory::escape_path(p, &mut s);
        s
    };
    let would: Vec<String> = r
        .items
        .iter()
        .filter(|i| i.to_write())
        .map(|i| i.name.to_string())
        .collect();
    let problems = r.items.iter().filter(|i| i.problem.is_some()).count();
    let mut message = if would.is_empty() {
        "Essai : aucun fichier ne serait modifié.".to_string()
    } else {
        format!(
            "Essai : {} fichier(s) seraient restaurés ({}), rien n'a été modifié.",
            would.len(),
            would.join(", ")
        )
    };
    if problems > 0 {
        message.push_str(&format!(
            " {problems} fichier(s) ne pourraient pas être restaurés."
        ));
    }
    let v = r.videos.as_ref();
    DryRunJson {
        success: true,
        dry_run: true,
        archive: name.to_string(),
        message,
        would_restore: would,
        files: r
            .items
            .iter()
            .map(|i| DryFileJson {
                name: i.name.to_string(),
                path: i.target.display().to_string(),
                state: i.state.as_str().to_string(),
                archive_size: i.archive_size,
                current_size: i.current_size,
                problem: i.problem.clone(),
            })
            .collect(),
        videos: VideosJson {
            inventory: v.is_some(),
            listed: v.map_or(0, |v| v.listed as u64),
            missing: v.map_or_else(Vec::new, |v| {
                v.missing
                    .iter()
                    .map(|(p, s)| MissingVideoJson {
                        path: show(p),
                        size: *s,
                    })
                    .collect()
            }),
            changed_size: v.map_or_else(Vec::new, |v| {
                v.resized
                    .iter()
                    .map(|(p, a, n)| ResizedVideoJson {
                        path: show(p),
                        archive_size: *a,
                        current_size: *n,
                    })
                    .collect()
            }),
            in_archive: r.archived_videos as u64,
            error: r.videos_error.clone(),
        },
    }
    .serialize_json()
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct FileResultJson {
    name: String,
    path: String,
    result: String,
    error: Option<String>,
}

#[derive(SerJson)]
struct RestartJson {
    command: String,
    ok: bool,
    output: String,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct RestoreJson {
    success: bool,
    #[nserde(rename = "dryRun")]
    dry_run: bool,
    archive: String,
    message: String,
    restored: Vec<String>,
    unchanged: Vec<String>,
    skipped: Vec<String>,
    failed: Vec<String>,
    #[nserde(rename = "safetyBackup")]
    safety_backup: Option<String>,
    files: Vec<FileResultJson>,
    #[nserde(rename = "restartNeeded")]
    restart_needed: bool,
    restart: Option<RestartJson>,
    error: Option<String>,
    details: Option<String>,
}

/// The JSON of a real restore: 200 when every file was restored, else 500.
pub(super) fn done_json(name: &str, d: &Done) -> (u16, String) {
    let restored = d.restored();
    let failed = d.failed();
    let ok = failed.is_empty();
    let mut message = if !ok {
        format!(
            "Restauration incomplète : {} fichier(s) restauré(s), {} en échec ({}).",
            restored.len(),
            failed.len(),
            failed.join(", ")
        )
    } else if restored.is_empty() {
        "Rien à restaurer : les fichiers sont déjà identiques à l'archive.".to_string()
    } else {
        format!(
            "Restauration terminée : {} fichier(s) restauré(s) ({}).",
            restored.len(),
            restored.join(", ")
        )
    };
    if let Some(s) = &d.safety_backup {
        message.push_str(&format!(" Sauvegarde de sécurité : {s}."));
    }
    if !restored.is_empty() {
        message.push_str(match &d.restart {
            Some(r) if r.ok => " neopro-app a été redémarré.",
            Some(_) => " Le redémarrage de neopro-app a échoué : redémarrez-le manuellement.",
            None => " Redémarrez neopro-app pour appliquer la configuration.",
        });
    }
    let details: Vec<String> = d
        .files
        .iter()
        .filter_map(|(n, _, r)| match r {
            FileResult::Failed(e) => Some(format!("{n} : {e}")),
            _ => None,
        })
        .collect();
    let body = RestoreJson {
        success: ok,
        dry_run: false,
        archive: name.to_string(),
        message,
        unchanged: d.names(|r| *r == FileResult::Unchanged),
        skipped: d.names(|r| *r == FileResult::Skipped),
        restored,
        failed: failed.clone(),
        safety_backup: d.safety_backup.clone(),
        files: d
            .files
            .iter()
            .map(|(n, t, r)| FileResultJson {
                name: n.to_string(),
                path: t.display().to_string(),
                result: r.as_str().to_string(),
                error: match r {
                    FileResult::Failed(e) => Some(e.clone()),
                    _ => None,
                },
            })
            .collect(),
        restart_needed: d.files.iter().any(|(_, _, r)| *r == FileResult::Restored)
            && !d.restart.as_ref().is_some_and(|r| r.ok),
        restart: d.restart.as_ref().map(|r| RestartJson {
            command: r.command.clone(),
            ok: r.ok,
            output: r.output.clone(),
        }),
        error: (!ok).then(|| {
            format!(
                "Restauration incomplète : {} fichier(s) en échec",
                failed.len()
            )
        }),
        details: (!ok).then(|| details.join("; ")),
    };
    (if ok { 200 } else { 500 }, body.serialize_json())
}

/// POST /api/backups/restore/:filename (the name is already checked by the router).
pub fn http(shared: &Shared, name: &str, body: &[u8]) -> Response {
    let Ok((dry, only, videos)) = parse_full(body) else {
        return error(
            400,
            "Paramètre \"dryRun\" requis (true pour un essai, false pour restaurer)",
        );
    };
    if videos {
        return http_videos(shared, name, dry);
    }
    let files = match restore::select(only.as_deref()) {
        Ok(f) => f,
        Err(_) => {
            return error(
                400,
                &format!(
                    "Paramètre \"only\" invalide : fichiers possibles {}",
                    FILES.join(", ")
                ),
            );
        }
    };
    let (file, _) = match open_archive(shared, name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let job = Job {
        cfg: &shared.cfg,
        tz: &shared.tz,
        name: name.to_string(),
        expected_top: Some(store::stem_of(name).to_string()),
        files,
        cancel: &shared.cancel,
    };
    // A real restore is seen by the shutdown, which waits for (or cancels) the safety
    // backup; compression (that backup) wants the worker's big stack.
    let out = shared.worker("restore", !dry, || {
        if dry {
            match restore::dry_run(&job, file) {
                Ok(r) => json(200, dry_json(name, &r)),
                Err(e) => failed(500, "Archive refusée", &e),
            }
        } else {
            match restore::run(&job, file, LockWait::Try) {
                Ok(d) => {
                    let (status, body) = done_json(name, &d);
                    json(status, body)
                }
                Err(Abort::Busy) => failed(
                    409,
                    "Un backup est déjà en cours",
                    "Réessayez dans quelques instants",
                ),
                Err(Abort::Refused(e)) => {
                    failed(500, "Archive refusée : rien n'a été restauré", &e)
                }
                Err(Abort::Failed(e)) => {
                    failed(500, "Échec de la restauration : rien n'a été restauré", &e)
                }
            }
        }
    });
    match out {
        Some(r) => r,
        None => failed(
            500,
            "Échec de la restauration",
            "le traitement n'a pas pu démarrer",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_needs_a_json_boolean() {
        assert_eq!(parse_body(br#"{"dryRun":true}"#), Ok((true, None)));
        assert_eq!(parse_body(br#"{"dryRun": false}"#), Ok((false, None)));
        assert_eq!(
            parse_body(br#"{"dryRun":false,"only":["site.conf"]}"#),
            Ok((false, Some(vec!["site.conf".to_string()])))
        );
        for bad in [
            &b""[..],
            b"{}",
            b"null",
            br#"{"dryRun":"false"}"#,
            br#"{"dryRun":0}"#,
            br#"{"dryRun":null}"#,
            br#"{"dry_run":false}"#,
            b"\xff",
        ] {
            assert!(parse_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_full(br#"{"dryRun":true,"videos":true}"#),
            Ok((true, None, true))
        );
        for bad in [
            &br#"{"dryRun":true,"videos":"true"}"#[..],
            br#"{"dryRun":true,"videos":true,"only":["site.conf"]}"#,
            br#"{"videos":true}"#,
        ] {
            assert!(parse_full(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}

#[derive(SerJson)]
struct FetchJson {
    path: String,
    size: u64,
    reason: String,
}

#[derive(SerJson)]
struct ProblemJson {
    path: String,
    problem: String,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct VideoResultJson {
    path: String,
    ok: bool,
    error: Option<String>,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct VideosRestoreJson {
    success: bool,
    #[nserde(rename = "dryRun")]
    dry_run: bool,
    videos: bool,
    archive: String,
    message: String,
    listed: u64,
    unchanged: u64,
    fetch: Vec<FetchJson>,
    #[nserde(rename = "fetchBytes")]
    fetch_bytes: u64,
    #[nserde(rename = "freeBytes")]
    free_bytes: Option<u64>,
    problems: Vec<ProblemJson>,
    results: Vec<VideoResultJson>,
}

pub(super) fn videos_json(
    name: &str,
    dry: bool,
    p: &VideoPlan,
    results: &[(Vec<u8>, Result<u64, String>)],
) -> (u16, String) {
    let failed = results.iter().filter(|r| r.1.is_err()).count();
    let ok = failed == 0 && p.problems.is_empty();
    let message = if dry {
        format!(
            "Essai : {} vidéo(s) seraient récupérées ({}), {} déjà présente(s) ; rien n'a été modifié.",
            p.fetch.len(),
            crate::units::human_size(p.bytes, 1),
            p.unchanged
        )
    } else if ok {
        format!(
            "Vidéos restaurées : {} récupérée(s), {} déjà présente(s).",
            results.len(),
            p.unchanged
        )
    } else {
        format!(
            "Restauration des vidéos incomplète : {} récupérée(s), {} en échec, {} problème(s).",
            results.len() - failed,
            failed,
            p.problems.len()
        )
    };
    let body = VideosRestoreJson {
        success: ok,
        dry_run: dry,
        videos: true,
        archive: name.to_string(),
        message,
        listed: p.listed as u64,
        unchanged: p.unchanged as u64,
        fetch: p
            .fetch
            .iter()
            .map(|f| FetchJson {
                path: videos::shown(&f.rel),
                size: f.size,
                reason: f.why.as_str().to_string(),
            })
            .collect(),
        fetch_bytes: p.bytes,
        free_bytes: p.free,
        problems: p
            .problems
            .iter()
            .map(|(r, e)| ProblemJson {
                path: videos::shown(r),
                problem: e.clone(),
            })
            .collect(),
        results: results
            .iter()
            .map(|(r, res)| VideoResultJson {
                path: videos::shown(r),
                ok: res.is_ok(),
                error: res.as_ref().err().cloned(),
            })
            .collect(),
    };
    (if ok || dry { 200 } else { 500 }, body.serialize_json())
}

/// `{"dryRun": bool, "videos": true}`: the videos of the archive from the bucket
/// (restore/videos.rs). Encrypted videos need the age identity: the CLI's --identity.
fn http_videos(shared: &Shared, name: &str, dry: bool) -> Response {
    let (file, _) = match open_archive(shared, name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let job = VideoJob {
        cfg: &shared.cfg,
        tz: &shared.tz,
        name: name.to_string(),
        expected_top: Some(store::stem_of(name).to_string()),
        identities: Vec::new(),
        cancel: &shared.cancel,
        progress: None,
    };
    let out = shared.worker("restore-videos", !dry, || {
        if dry {
            match videos::plan(&job, file) {
                Ok(p) => {
                    let (st, body) = videos_json(name, true, &p, &[]);
                    json(st, body)
                }
                Err(e) => failed(500, "Archive refusée", &e),
            }
        } else {
            match videos::run(&job, file, LockWait::Try) {
                Ok(d) => {
                    let (st, body) = videos_json(name, false, &d.plan, &d.results);
                    json(st, body)
                }
                Err(e) => failed(
                    500,
                    "Échec de la restauration des vidéos : rien n'a été récupéré",
                    &e,
                ),
            }
        }
    });
    match out {
        Some(r) => r,
        None => failed(
            500,
            "Échec de la restauration des vidéos",
            "le traitement n'a pas pu démarrer",
        ),
    }
}
