//! `/api/offsite/…`: the HTTP face of recover.rs (CONTRACT §7; docs/format.md,
//! "Recovery over the API"). The site is always the Pi's SITE_ID and the copies the
//! plain ones: an `.age` copy needs the site's identity, which never goes to the Pi's
//! daemon (`neopro-backup recover --identity FILE`, over SSH).
//!
//! - `GET /api/offsite/backups`: the site's copies in the bucket, newest first.
//! - `POST /api/offsite/recover/:name` `{"dryRun":true}`: the restore dry run of that
//!   copy (restore_api's JSON) plus what the recovery would fetch and create. One dry
//!   run at a time (it reads the copy from the bucket, twice with the videos' plan).
//! - `POST /api/offsite/recover/:name` `{"dryRun":false}`: 202 `{"job":…}` at once; the
//!   recovery runs in a thread of its own (it counts in `running`, so the shutdown
//!   waits for it or cancels it), and `GET /api/offsite/recover` reports it.
//! - `POST /api/offsite/new-start` `{"confirm":true}`: this Pi starts a new history under
//!   SITE_ID (`recover --new-start`): its held copies go out, nothing is removed.
//! - 409 while a recovery, a backup or a restore of this daemon runs (and, from the
//!   job, when recover.rs finds the lock of a backup run from the command line).

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nanoserde::{DeJson, SerJson};

use crate::clock;
use crate::fsutil::{Lock, LockWait};
use crate::http::percent::percent_decode;
use crate::http::server::Response;
use crate::offsite;
use crate::recover::{self, DryOutcome, Failure, FetchError, Outcome, Progress, VideosStep};
use crate::restore::Abort;
use crate::serve::reply::{bad_name, error, failed, json, jstr, method_not_allowed, with_members};
use crate::serve::restore_api;
use crate::serve::state::{BACKUP_STACK, Shared};
use crate::status::Log;
use crate::store;

/// The one recovery job of this daemon (the last one, kept for its report).
static JOB: Mutex<Option<Arc<Job>>> = Mutex::new(None);
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);
/// A dry run is reading the bucket.
static DRY_RUNNING: AtomicBool = AtomicBool::new(false);

const SSH_HINT: &str = "Une copie chiffrée (ENCRYPT_TO) ne peut être déchiffrée que par la \
clé age du site, qui ne va jamais sur le boîtier : connectez-vous en SSH et lancez \
`sudo neopro-backup recover ARCHIVE --identity FICHIER` (FICHIER : la clé age du site).";

fn job_slot() -> MutexGuard<'static, Option<Arc<Job>>> {
    JOB.lock().unwrap_or_else(|p| p.into_inner())
}

/// The routes under `/api/offsite/` (auth and origin already checked by the router;
/// `m` is the method, HEAD already made GET).
pub fn route(shared: &Arc<Shared>, m: &str, path: &str, body: &[u8]) -> Response {
    match path {
        "/api/offsite/backups" if m == "GET" => list(shared),
        "/api/offsite/backups" => method_not_allowed("GET"),
        "/api/offsite/recover" if m == "GET" => report(),
        "/api/offsite/recover" => method_not_allowed("GET"),
        "/api/offsite/new-start" if m == "POST" => new_start(shared, body),
        "/api/offsite/new-start" => method_not_allowed("POST"),
        _ => match path.strip_prefix("/api/offsite/recover/") {
            Some(_) if m != "POST" => method_not_allowed("POST"),
            Some(raw) => match percent_decode(raw).filter(|n| recover::is_remote_name(n)) {
                Some(name) => post(shared, &name, body),
                None => bad_name(),
            },
            None => error(404, "Route inconnue"),
        },
    }
}

fn no_offsite() -> Response {
    json(
        404,
        format!(
            "{{\"error\":{},\"offsite\":false}}",
            jstr(
                "Aucune copie distante configurée sur ce boîtier (S3_ENDPOINT, S3_BUCKET, \
                 S3_ACCESS_KEY et S3_SECRET_KEY, ou GDRIVE_CLIENT_ID et GDRIVE_CLIENT_SECRET, \
                 dans /etc/neopro/backup.conf)"
            )
        ),
    )
}

/// Where the page's recovery reads, as `recover` without `--from`: the S3 bucket when it
/// is set, else Google Drive; `None` when neither is.
fn source(shared: &Shared) -> Option<(recover::Source, Box<dyn crate::bucket::Bucket>)> {
    let src = recover::Source::pick(&shared.cfg, None).ok()?;
    Some((src, offsite::store(&shared.cfg, src)?))
}

#[derive(SerJson)]
struct RemoteJson {
    name: String,
    #[nserde(rename = "sizeBytes")]
    size_bytes: u64,
    date: String,
    encrypted: bool,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct ListJson {
    site: String,
    location: String,
    backups: Vec<RemoteJson>,
    /// Why this Pi's offsite copies are held (a site's history it has no part in:
    /// offsite/history.rs), or null.
    held: Option<String>,
}

/// `GET /api/offsite/backups`: `{"site","location","backups":[{"name","sizeBytes",
/// "date","encrypted"}]}`, newest first.
fn list(shared: &Shared) -> Response {
    let Some((src, b)) = source(shared) else {
        return no_offsite();
    };
    let Some(place) = src.place(&shared.cfg) else {
        return no_offsite();
    };
    let site = shared.cfg.site_id.clone();
    match recover::list(&*b, &place, &site) {
        Ok(l) => json(
            200,
            ListJson {
                location: b.describe(&place.site_prefix(&site)),
                site,
                backups: l
                    .iter()
                    .map(|r| RemoteJson {
                        name: r.name.clone(),
                        size_bytes: r.size,
                        date: r.date(),
                        encrypted: r.encrypted,
                    })
                    .collect(),
                held: offsite::history::held(&shared.cfg),
            }
            .serialize_json(),
        ),
        Err(e) if src == recover::Source::Gdrive => {
            failed(502, "Lecture de Google Drive impossible", &e.msg)
        }
        Err(e) => failed(502, "Lecture du bucket impossible", &e.msg),
    }
}

#[derive(DeJson)]
struct NewStartRequest {
    confirm: Option<bool>,
}

/// `POST /api/offsite/new-start` `{"confirm":true}` (required: it changes where the
/// copies go): `recover --new-start` on the page.
fn new_start(shared: &Shared, body: &[u8]) -> Response {
    if shared.cfg.offsite.is_none() && shared.cfg.gdrive.is_none() {
        return no_offsite();
    }
    let confirmed = std::str::from_utf8(body)
        .ok()
        .and_then(|t| crate::json::parse::<NewStartRequest>(t).ok())
        .and_then(|r| r.confirm);
    if confirmed != Some(true) {
        return error(
            400,
            "Corps attendu : {\"confirm\": true} (un nouveau départ change l'endroit où vont les copies)",
        );
    }
    let log = Log::new(&shared.cfg.backup_dir, &shared.tz);
    match offsite::history::new_start(&shared.cfg, &log) {
        Ok(()) => {
            offsite::wake();
            json(
                200,
                format!(
                    "{{\"success\":true,\"site\":{}}}",
                    jstr(&shared.cfg.site_id)
                ),
            )
        }
        Err(e) => failed(500, "Nouveau départ impossible", &e),
    }
}

#[derive(DeJson)]
struct RecoverRequest {
    #[nserde(rename = "dryRun")]
    dry_run: Option<bool>,
    videos: Option<bool>,
}

/// `{"dryRun": bool}` (a JSON boolean, required), `"videos": bool` (optional, default
/// true: the videos are fetched after the files, as `recover` does).
fn parse_body(body: &[u8]) -> Result<(bool, bool), ()> {
    let text = std::str::from_utf8(body).map_err(|_| ())?;
    match crate::json::parse::<RecoverRequest>(text) {
        Ok(RecoverRequest {
            dry_run: Some(d),
            videos,
        }) => Ok((d, videos.unwrap_or(true))),
        _ => Err(()),
    }
}

fn post(shared: &Arc<Shared>, name: &str, body: &[u8]) -> Response {
    let Ok((dry, videos)) = parse_body(body) else {
        return error(
            400,
            "Paramètre \"dryRun\" requis (true pour un essai, false pour récupérer)",
        );
    };
    if name.ends_with(".age") {
        return json(
            400,
            format!(
                "{{\"success\":false,\"encrypted\":true,\"error\":{},\"details\":{}}}",
                jstr("Archive chiffrée : elle se récupère en SSH"),
                jstr(SSH_HINT)
            ),
        );
    }
    if recover::Source::pick(&shared.cfg, None).is_err() {
        return no_offsite();
    }
    if let Some(j) = job_slot().as_ref().filter(|j| j.running()) {
        return busy_job(j);
    }
    if dry {
        dry_run(shared, name, videos)
    } else {
        start(shared, name, videos)
    }
}

fn busy_job(j: &Job) -> Response {
    json(
        409,
        format!(
            "{{\"success\":false,\"error\":{},\"details\":{},\"job\":{}}}",
            jstr("Une récupération est déjà en cours"),
            jstr(&format!(
                "{} depuis {} : suivez-la (GET /api/offsite/recover)",
                j.name, j.started
            )),
            j.id
        ),
    )
}

/// Clears a flag when dropped.
struct Clear<'a>(&'a AtomicBool);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn request<'a>(
    shared: &'a Shared,
    from: recover::Source,
    name: &str,
    videos: bool,
    progress: &'a Progress,
) -> recover::Request<'a> {
    recover::Request {
        cfg: &shared.cfg,
        site: shared.cfg.site_id.clone(),
        named: Some(name.to_string()),
        identities: Vec::new(),
        videos,
        tz: &shared.tz,
        cancel: &shared.cancel,
        progress,
        wait: LockWait::Try,
        // S3 when set, else Drive (docs/format.md, Recovery over the API).
        from,
    }
}

/// The dry run, in this handler (on the big stack: the restore's checks), one at a time.
fn dry_run(shared: &Arc<Shared>, name: &str, videos: bool) -> Response {
    if DRY_RUNNING.swap(true, Ordering::SeqCst) {
        return failed(
            409,
            "Un essai de récupération est déjà en cours",
            "Réessayez quand il sera terminé",
        );
    }
    let _clear = Clear(&DRY_RUNNING);
    let Some((src, b)) = source(shared) else {
        return no_offsite();
    };
    let progress = Progress::default();
    let req = request(shared, src, name, videos, &progress);
    let out = shared.worker("recover-dry", false, || match recover::dry_run(&*b, &req) {
        Ok(d) => json(200, dry_body(&req, &d)),
        Err(f) => {
            let (status, body) = failure_body(&f);
            json(status, body)
        }
    });
    out.unwrap_or_else(|| {
        failed(
            500,
            "Échec de l'essai de récupération",
            "le traitement n'a pas pu démarrer",
        )
    })
}

fn strings(list: impl IntoIterator<Item = String>) -> String {
    list.into_iter().collect::<Vec<String>>().serialize_json()
}

#[derive(SerJson)]
struct SkippedJson {
    name: String,
    error: String,
}

fn skipped_json(skipped: &[(String, String)]) -> String {
    skipped
        .iter()
        .map(|(n, e)| SkippedJson {
            name: n.clone(),
            error: e.clone(),
        })
        .collect::<Vec<_>>()
        .serialize_json()
}

/// The videos' step: `{"state":"notAsked"|"none"|"failed"|"done","note","report"}`,
/// the report being restore_api's videos answer.
fn video_step<T>(step: &VideosStep<T>, report: impl Fn(&T) -> String) -> String {
    let (state, note, body) = match step {
        VideosStep::NotAsked => ("notAsked", None, None),
        VideosStep::None(why) => ("none", Some(why.as_str()), None),
        VideosStep::Failed(e) => ("failed", Some(e.as_str()), None),
        VideosStep::Done(t) => ("done", None, Some(report(t))),
    };
    format!(
        "{{\"state\":{},\"note\":{},\"report\":{}}}",
        jstr(state),
        note.map_or_else(|| "null".to_string(), jstr),
        body.unwrap_or_else(|| "null".to_string())
    )
}

/// The restore dry run's answer (restore_api's) plus what the recovery would fetch.
fn dry_body(req: &recover::Request, d: &DryOutcome) -> String {
    let name = d.archive.local_name();
    with_members(
        restore_api::dry_json(name, &d.report),
        &[
            ("fetched", jstr(&d.archive.name)),
            ("site", jstr(&req.site)),
            ("sizeBytes", d.archive.size.to_string()),
            ("date", jstr(&d.archive.date())),
            (
                "folders",
                strings(d.folders.iter().map(|f| f.display().to_string())),
            ),
            ("skipped", skipped_json(&d.skipped)),
            (
                "videoFetch",
                video_step(&d.videos, |p| {
                    restore_api::videos_json(name, true, p, &[]).1
                }),
            ),
        ],
    )
}

#[derive(SerJson)]
struct FailureJson {
    success: bool,
    error: String,
    details: String,
    skipped: Vec<SkippedJson>,
}

/// A recovery that did not get to the restore: its HTTP status and its body.
fn failure_body(f: &Failure) -> (u16, String) {
    let (status, what, skipped): (u16, &str, &[(String, String)]) = match f {
        Failure::Config(_) => (500, "Configuration incomplète", &[]),
        Failure::NoArchive { .. } => (404, "Aucune copie de ce site dans le bucket", &[]),
        Failure::NotFound(_) => (404, "Archive absente du bucket", &[]),
        Failure::Busy(_) => (409, "Un backup ou une récupération est déjà en cours", &[]),
        Failure::Fetch { error, skipped } => (
            match error {
                FetchError::Identity(_) => 400,
                FetchError::Store(_) => 502,
                FetchError::Damaged(_) | FetchError::Local(_) => 500,
            },
            match error {
                FetchError::Identity(_) => "Archive chiffrée : elle se récupère en SSH",
                FetchError::Store(_) => "Lecture du bucket impossible",
                FetchError::Damaged(_) => "Archive endommagée dans le bucket",
                FetchError::Local(_) => "Écriture impossible sur le boîtier",
            },
            skipped,
        ),
    };
    let details = match f {
        Failure::Fetch {
            error: FetchError::Identity(_),
            ..
        } => SSH_HINT.to_string(),
        _ => f.message(),
    };
    let body = FailureJson {
        success: false,
        error: what.to_string(),
        details,
        skipped: skipped
            .iter()
            .map(|(n, e)| SkippedJson {
                name: n.clone(),
                error: e.clone(),
            })
            .collect(),
    };
    (status, body.serialize_json())
}

/// A real recovery's answer: the restore's (restore_api's) plus what was fetched and
/// made, and the videos' outcome. True when everything came back.
fn outcome_body(out: &Outcome) -> (bool, String) {
    let name = out.archive.local_name();
    let restore = match &out.restore {
        Ok(d) => restore_api::done_json(name, d).1,
        Err(a) => {
            let (what, details) = match a {
                Abort::Busy => (
                    "Un backup est en cours : les fichiers n'ont pas été restaurés",
                    "Relancez la récupération quand il sera terminé (l'archive est déjà sur le boîtier)",
                ),
                Abort::Refused(e) => ("Archive refusée : rien n'a été restauré", e.as_str()),
                Abort::Failed(e) => (
                    "Échec de la restauration : rien n'a été restauré",
                    e.as_str(),
                ),
            };
            format!(
                "{{\"success\":false,\"dryRun\":false,\"archive\":{},\"error\":{},\"details\":{}}}",
                jstr(name),
                jstr(what),
                jstr(details)
            )
        }
    };
    let (folders, folders_error) = match &out.folders {
        Ok(made) => (made.as_slice(), None),
        Err(e) => (&[][..], Some(e.as_str())),
    };
    let body = with_members(
        restore,
        &[
            ("fetched", jstr(&out.archive.name)),
            ("downloaded", out.fetched.downloaded.to_string()),
            ("fetchedBytes", out.fetched.bytes.to_string()),
            (
                "folders",
                strings(folders.iter().map(|f| f.display().to_string())),
            ),
            (
                "foldersError",
                folders_error.map_or_else(|| "null".to_string(), jstr),
            ),
            ("skipped", skipped_json(&out.skipped)),
            (
                "videoFetch",
                video_step(&out.videos, |d| {
                    restore_api::videos_json(name, false, &d.plan, &d.results).1
                }),
            ),
            ("complete", out.ok().to_string()),
        ],
    );
    (out.ok(), body)
}

/// A recovery started over the API.
struct Job {
    id: u64,
    /// The name asked for.
    name: String,
    site: String,
    /// When it started (the Pi's local time, ISO 8601).
    started: String,
    progress: Progress,
    /// Set when it ended: everything came back, the answer (JSON), when.
    end: Mutex<Option<(bool, String, String)>>,
}

impl Job {
    fn running(&self) -> bool {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    fn finish(&self, ok: bool, body: String, tz: &clock::Tz) {
        let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        if end.is_none() {
            *end = Some((ok, body, clock::iso_local(clock::now_unix(), tz)));
        }
    }
}

/// Marks the job failed if its thread ends without an answer (a panic), and counts the
/// recovery out of `running`.
struct JobThread {
    job: Arc<Job>,
    shared: Arc<Shared>,
    /// The answer, once there is one.
    result: Option<(bool, String)>,
}

impl Drop for JobThread {
    fn drop(&mut self) {
        // Counted out first: a client that sees the job ended may start another at once.
        self.shared.running.fetch_sub(1, Ordering::SeqCst);
        let (ok, body) = self.result.take().unwrap_or_else(|| {
            (
                false,
                failed_json(
                    "La récupération s'est arrêtée sans résultat (erreur interne)",
                    "voir le journal",
                ),
            )
        });
        self.job.finish(ok, body, &self.shared.tz);
    }
}

fn failed_json(error: &str, details: &str) -> String {
    format!(
        "{{\"success\":false,\"error\":{},\"details\":{}}}",
        jstr(error),
        jstr(details)
    )
}

/// Whether a `recover` from the command line holds its lock now.
fn recover_locked(shared: &Shared) -> bool {
    matches!(
        Lock::acquire(
            &shared.cfg.backup_dir.join(store::RECOVER_LOCK_FILE),
            LockWait::Try
        ),
        Ok(None)
    )
}

/// Starts the recovery in a thread of its own: 202 `{"job":…}`.
fn start(shared: &Arc<Shared>, name: &str, videos: bool) -> Response {
    let mut slot = job_slot();
    if let Some(j) = slot.as_ref().filter(|j| j.running()) {
        return busy_job(j);
    }
    if shared.running.load(Ordering::SeqCst) > 0 {
        return failed(
            409,
            "Un backup ou une restauration est en cours",
            "Réessayez quand il sera terminé",
        );
    }
    if recover_locked(shared) {
        return failed(
            409,
            "Une récupération est déjà en cours",
            "neopro-backup recover tourne sur ce boîtier (en SSH) : attendez qu'il ait fini",
        );
    }
    let job = Arc::new(Job {
        id: NEXT_JOB.fetch_add(1, Ordering::SeqCst),
        name: name.to_string(),
        site: shared.cfg.site_id.clone(),
        started: clock::iso_local(clock::now_unix(), &shared.tz),
        progress: Progress::default(),
        end: Mutex::new(None),
    });
    shared.running.fetch_add(1, Ordering::SeqCst);
    let guard = JobThread {
        job: Arc::clone(&job),
        shared: Arc::clone(shared),
        result: None,
    };
    let videos_too = videos;
    let spawned = std::thread::Builder::new()
        .name("recover".into())
        .stack_size(BACKUP_STACK)
        .spawn(move || {
            let mut g = guard;
            let (shared, job) = (Arc::clone(&g.shared), Arc::clone(&g.job));
            let Some((src, b)) = source(&shared) else {
                return;
            };
            let log = Log::new(&shared.cfg.backup_dir, &shared.tz);
            log.info(&format!("recover: {} asked over the API", job.name));
            let req = request(&shared, src, &job.name, videos_too, &job.progress);
            let (ok, body) = match recover::run(&*b, &req) {
                Ok(out) => outcome_body(&out),
                Err(f) => (false, failure_body(&f).1),
            };
            log.info(&format!(
                "recover: {} {} (API)",
                job.name,
                if ok { "done" } else { "failed or incomplete" }
            ));
            g.result = Some((ok, body));
        });
    match spawned {
        // The guard went down with the closure: `running` is counted out again.
        Err(e) => failed(
            500,
            "Échec de la récupération",
            &format!("le traitement n'a pas pu démarrer : {e}"),
        ),
        Ok(_) => {
            let id = job.id;
            *slot = Some(job);
            json(202, format!("{{\"job\":{id}}}"))
        }
    }
}

#[derive(SerJson)]
struct ProgressJson {
    #[nserde(rename = "archiveBytes")]
    archive_bytes: u64,
    #[nserde(rename = "archiveTotal")]
    archive_total: u64,
    #[nserde(rename = "videosDone")]
    videos_done: u64,
    #[nserde(rename = "videosTotal")]
    videos_total: u64,
    #[nserde(rename = "videoBytesDone")]
    video_bytes_done: u64,
    #[nserde(rename = "videoBytesTotal")]
    video_bytes_total: u64,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
struct ReportJson {
    job: u64,
    state: String,
    archive: String,
    site: String,
    started: String,
    ended: Option<String>,
    progress: ProgressJson,
}

/// `GET /api/offsite/recover`: the last job of this daemon (`{"job":null,"state":"none"}`
/// when there has been none), its progress, then its answer in `result`.
fn report() -> Response {
    let Some(j) = job_slot().clone() else {
        return json(
            200,
            r#"{"job":null,"state":"none","result":null}"#.to_string(),
        );
    };
    let end = j.end.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let p = &j.progress;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let body = ReportJson {
        job: j.id,
        state: match &end {
            None => "running",
            Some((true, _, _)) => "done",
            Some((false, _, _)) => "failed",
        }
        .to_string(),
        archive: j.name.clone(),
        site: j.site.clone(),
        started: j.started.clone(),
        ended: end.as_ref().map(|e| e.2.clone()),
        progress: ProgressJson {
            archive_bytes: load(&p.archive_bytes),
            archive_total: load(&p.archive_total),
            videos_done: load(&p.videos.done),
            videos_total: load(&p.videos.total),
            video_bytes_done: load(&p.videos.bytes_done),
            video_bytes_total: load(&p.videos.bytes_total),
        },
    }
    .serialize_json();
    let result = end.map_or_else(|| "null".to_string(), |e| e.1);
    json(200, with_members(body, &[("result", result)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_needs_a_json_boolean_and_takes_videos() {
        assert_eq!(parse_body(br#"{"dryRun":true}"#), Ok((true, true)));
        assert_eq!(
            parse_body(br#"{"dryRun":false,"videos":false}"#),
            Ok((false, false))
        );
        for bad in [
            &b""[..],
            b"{}",
            b"null",
            br#"{"dryRun":"false"}"#,
            br#"{"dryRun":0}"#,
            br#"{"dryRun":true,"videos":"no"}"#,
            b"\xff",
        ] {
            assert!(parse_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn members_are_added_at_the_end_of_an_object() {
        assert_eq!(
            with_members(
                r#"{"a":1}"#.into(),
                &[("b", "2".into()), ("c", jstr("x\""))]
            ),
            r#"{"a":1,"b":2,"c":"x\""}"#
        );
        assert_eq!(
            with_members("{}".into(), &[("b", "2".into())]),
            r#"{"b":2}"#
        );
        assert_eq!(with_members("[1]".into(), &[("b", "2".into())]), "[1]");
    }

    #[test]
    fn the_videos_step_says_its_state_and_why() {
        let none: VideosStep<u8> = VideosStep::None("old archive".into());
        assert_eq!(
            video_step(&none, |_| unreachable!()),
            r#"{"state":"none","note":"old archive","report":null}"#
        );
        let done: VideosStep<u8> = VideosStep::Done(3);
        assert_eq!(
            video_step(&done, |n| format!("{{\"n\":{n}}}")),
            r#"{"state":"done","note":null,"report":{"n":3}}"#
        );
    }

    #[test]
    fn a_failure_says_why_with_the_status_a_client_can_act_on() {
        let busy = failure_body(&Failure::Busy("a backup is running".into()));
        assert_eq!(busy.0, 409);
        assert!(busy.1.contains("a backup is running"), "{}", busy.1);
        let id = failure_body(&Failure::Fetch {
            error: FetchError::Identity("x.age is encrypted".into()),
            skipped: vec![("b.tar.gz".into(), "truncated".into())],
        });
        assert_eq!(id.0, 400);
        assert!(id.1.contains("--identity FICHIER"), "{}", id.1);
        assert!(
            id.1.contains(r#""skipped":[{"name":"b.tar.gz","error":"truncated"}]"#),
            "{}",
            id.1
        );
        let store = failure_body(&Failure::Fetch {
            error: FetchError::Store("connection refused".into()),
            skipped: vec![],
        });
        assert_eq!(store.0, 502);
    }
}
