//! `fleet serve`: the central dashboard of every site (docs/format.md, Fleet). A second
//! daemon, for the operator's machine rather than a Pi: it needs only read access to
//! the bucket (ListObjectsV2 and GET), and serves
//! - `GET /`: a self-contained French page (fleet.html), worst sites first;
//! - `GET /api/fleet`: the JSON the page shows;
//! - `GET /metrics`: one Prometheus series per site and measure;
//! - `GET /healthz`.
//!
//! The bucket is read at most once per cache period (30 s, `NEOPRO_FLEET_CACHE_SECS`),
//! by one thread at a time, and each read is rendered once: a page view or a scrape
//! costs no request to the bucket and no re-rendering, only a copy of shared bytes.
//! When the view is older than the period, the request that notices starts a new read
//! in the background and is answered from the previous view at once; only the very
//! first request waits for a read (the others wait with it). A failed read keeps the
//! previous view, flagged with the error.
//!
//! Guards as for `serve`: a Host that is not an IP address, `localhost` or this
//! machine's name is 403; with API_TOKEN, `/api/*` and `/metrics` need the bearer token;
//! a listen address off loopback needs API_TOKEN (checked by the command line).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nanoserde::SerJson;

use crate::bucket::counted::{KINDS, Requests};
use crate::clock;
use crate::config::{Config, OffsiteSettings};
use crate::http::server::{self, Body, Request, Response};
use crate::offsite;
use crate::offsite::fleet::{self, Cost, Fleet, STATES, Site};
use crate::offsite::fleet_read::Reader;
use crate::serve::guard;
use crate::serve::page;
use crate::serve::prom::{self, Kind, Text};
use crate::serve::reply::{JSON, error, jstr};

/// The page, with the style and helper it shares with the Pi's page, gzip-compressed
/// (build.rs, page.rs).
pub const PAGE_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fleet.html.gz"));

/// The cache period: NEOPRO_FLEET_CACHE_SECS (1 to 3600), default 30.
pub fn cache_period() -> Duration {
    let secs = std::env::var("NEOPRO_FLEET_CACHE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|d| (1..=3600).contains(d))
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// One read of the bucket, rendered.
pub struct View {
    /// Unix time of the read.
    at: i64,
    took: Duration,
    cost: Cost,
    /// `{"total":…,"failed":…,…}`.
    counts: String,
    /// The `sites` array, worst first, in parts of about `PART` bytes (a large view
    /// is never copied whole, nor grown by doubling).
    sites_json: Vec<Arc<[u8]>>,
    /// The per-site series, a part per family.
    series: Vec<Arc<[u8]>>,
    sites: usize,
}

fn render(mut f: Fleet, at: i64, took: Duration, cost: Cost) -> View {
    let mut sites: Vec<Site> = std::mem::take(&mut f.sites);
    // Series by name (stable for Prometheus), the page's list worst first.
    let series = site_series(&sites);
    fleet::worst_first(&mut sites);
    let mut counts = format!("{{\"total\":{}", sites.len());
    for st in STATES {
        let n = sites.iter().filter(|s| s.state == st).count();
        counts.push_str(&format!(",\"{st}\":{n}"));
    }
    counts.push_str(&format!(",\"drill_flagged\":{}}}", f.drill_flagged));
    View {
        at,
        took,
        cost,
        counts,
        sites_json: json_parts(&sites),
        series,
        sites: sites.len(),
    }
}

/// The size of a part of a rendered view.
const PART: usize = 256 * 1024;

/// `sites` as a JSON array, in parts of about `PART` bytes.
fn json_parts(sites: &[Site]) -> Vec<Arc<[u8]>> {
    let mut parts = Vec::new();
    let mut buf = String::with_capacity(PART + 8 * 1024);
    buf.push('[');
    for (i, s) in sites.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str(&s.serialize_json());
        if buf.len() >= PART {
            parts.push(Arc::from(buf.as_bytes()));
            buf.clear();
        }
    }
    buf.push(']');
    parts.push(Arc::from(buf.as_bytes()));
    parts
}

/// The per-site metrics (docs/format.md, Fleet), a part per family.
fn site_series(sites: &[Site]) -> Vec<Arc<[u8]>> {
    type Value = fn(&Site) -> String;
    let families: [(&str, &str, Value); 10] = [
        (
            "neopro_fleet_site_last_success_timestamp_seconds",
            "Unix time of the site's last successful backup (0: none known).",
            |s| s.last_success_unix.unwrap_or(0).to_string(),
        ),
        (
            "neopro_fleet_site_last_run_success",
            "1 if the site's last run succeeded, 0 if it failed or its status is missing.",
            |s| u8::from(s.last_run_success == Some(true)).to_string(),
        ),
        (
            "neopro_fleet_site_archives",
            "Archive copies of the site in the bucket.",
            |s| s.archives.to_string(),
        ),
        (
            "neopro_fleet_site_archives_bytes",
            "Total size of the site's archive copies in the bucket.",
            |s| s.archives_bytes.to_string(),
        ),
        (
            "neopro_fleet_site_offsite_pending",
            "Copies the site had not sent yet when it sent its status.",
            |s| s.pending.to_string(),
        ),
        (
            "neopro_fleet_site_poisoned_objects",
            "Shared video objects the site found not to hold the video their name says (routed around with its own copy; the operator should remove them).",
            |s| s.poisoned.to_string(),
        ),
        (
            "neopro_fleet_site_claimed_twice",
            "1 if the site's status says another install also sends backups under its SITE_ID.",
            |s| u8::from(s.claimed_twice).to_string(),
        ),
        (
            "neopro_fleet_site_stale",
            "1 if the site's last success is over 25 hours old or unknown.",
            |s| u8::from(s.stale).to_string(),
        ),
        (
            "neopro_fleet_site_last_drill_success",
            "1 if the site's last restore drill (fleet drill) passed, 0 if it failed, never ran or cannot be read.",
            |s| u8::from(s.drill.ok == Some(true)).to_string(),
        ),
        (
            "neopro_fleet_site_last_drill_timestamp_seconds",
            "Unix time of the site's last restore drill, passed or failed (0: none known).",
            |s| s.drill.when_unix.unwrap_or(0).to_string(),
        ),
    ];
    let mut parts = Vec::new();
    for (name, help, value) in families {
        let mut out = Text::new();
        let mut family = out.family(name, Kind::Gauge, help);
        for s in sites {
            family.sample(&[("site", &s.site)], value(s));
        }
        parts.push(Arc::from(out.finish().as_bytes()));
    }
    parts
}

#[derive(Default)]
struct Slot {
    view: Option<Arc<View>>,
    /// When the view (or the last failure) stops being fresh.
    fresh_until: Option<Instant>,
    building: bool,
    /// The last read's error, cleared by a success.
    error: Option<String>,
}

/// The bucket's view, read at most once per period, by one thread at a time.
pub struct FleetCache {
    offsite: OffsiteSettings,
    /// What was read of each site, so that a read costs what changed (fleet_read.rs).
    reader: Mutex<Reader>,
    /// The reader's count of requests, by kind.
    requests: Arc<Requests>,
    period: Duration,
    /// FLEET_DRILL_MAX_DAYS.
    drill_max_days: u32,
    slot: Mutex<Slot>,
    done: Condvar,
}

impl FleetCache {
    pub fn new(offsite: OffsiteSettings, period: Duration, drill_max_days: u32) -> FleetCache {
        let reader = Reader::new();
        FleetCache {
            offsite,
            requests: Arc::clone(&reader.total),
            reader: Mutex::new(reader),
            period,
            drill_max_days,
            slot: Mutex::new(Slot::default()),
            done: Condvar::new(),
        }
    }

    /// The current view and the last read's error; `Err` when no read has succeeded yet.
    pub fn get(self: &Arc<Self>) -> Result<(Arc<View>, Option<String>), String> {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let fresh = s.fresh_until.is_some_and(|t| Instant::now() < t);
            if let Some(v) = s.view.clone() {
                if !fresh && !s.building {
                    s.building = true;
                    let me = Arc::clone(self);
                    let spawned = std::thread::Builder::new()
                        .name("fleet-read".into())
                        .spawn(move || me.read());
                    if spawned.is_err() {
                        s.building = false;
                    }
                }
                return Ok((v, s.error.clone()));
            }
            if s.building {
                s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if fresh {
                // The first read failed a moment ago: say so rather than insist.
                return Err(s.error.clone().unwrap_or_default());
            }
            s.building = true;
            drop(s);
            self.read();
            s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Every request made to the bucket so far, by kind (`KINDS`): never waits for a
    /// read under way.
    fn requests(&self) -> [u64; 6] {
        self.requests.get()
    }

    /// Reads the bucket and publishes the result (the caller set `building`).
    fn read(&self) {
        let started = Instant::now();
        let now = clock::now_unix();
        let got = self.reader.lock().unwrap_or_else(|p| p.into_inner()).read(
            &offsite::bucket(&self.offsite),
            &self.offsite,
            now,
            self.drill_max_days,
        );
        let took = started.elapsed();
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match got {
            Ok((f, cost)) => {
                let v = render(f, now, took, cost);
                let [list, get, same, ..] = cost.requests;
                eprintln!(
                    "neopro-backup fleet: read {} site(s) in {} ms: {} request(s) ({list} \
                     listing, {get} GET, {same} not modified); listings {} ms ({} object(s) \
                     of a whole listing), {} status(es) and {} drill record(s) read in {} ms",
                    v.sites,
                    took.as_millis(),
                    cost.requests.iter().sum::<u64>(),
                    cost.listing.as_millis(),
                    cost.objects,
                    cost.status_gets,
                    cost.drill_gets,
                    cost.statuses.as_millis()
                );
                s.view = Some(Arc::new(v));
                s.error = None;
            }
            Err(e) => {
                eprintln!("neopro-backup fleet: cannot read the bucket: {e}");
                s.error = Some(e);
            }
        }
        // A failed first read is retried after a few seconds, not a whole period.
        let wait = if s.view.is_some() {
            self.period
        } else {
            self.period.min(Duration::from_secs(5))
        };
        s.fresh_until = Some(Instant::now() + wait);
        s.building = false;
        self.done.notify_all();
        drop(s);
        // The read's temporaries and the previous view are freed: give the heap back
        // (at 10,000 sites a read moves tens of MiB).
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free heap pages to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// `GET /api/fleet`.
fn api(cache: &Arc<FleetCache>) -> Response {
    let (v, err) = match cache.get() {
        Ok(x) => x,
        Err(e) => return error(502, &format!("Lecture du seau impossible : {e}")),
    };
    let head = format!(
        "{{\"generated\":{},\"error\":{},\"stale_hours\":{},\"drill_max_days\":{},\"counts\":{},\"sites\":",
        v.at,
        err.as_deref().map_or("null".to_string(), jstr),
        fleet::STALE_HOURS,
        cache.drill_max_days,
        v.counts
    );
    let mut parts: Vec<Arc<[u8]>> = Vec::with_capacity(v.sites_json.len() + 2);
    parts.push(Arc::from(head.into_bytes()));
    parts.extend(v.sites_json.iter().cloned());
    parts.push(Arc::from(&b"}"[..]));
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), JSON.into())],
        body: Body::Parts(parts),
    }
}

/// `GET /metrics`: the fleet's gauges, then the per-site series of the view.
fn metrics(cache: &Arc<FleetCache>) -> Response {
    let got = cache.get();
    let (up, v) = match &got {
        Ok((v, err)) => (err.is_none(), Some(v)),
        Err(_) => (false, None),
    };
    let mut head = Text::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        head.one(name, Kind::Gauge, help, value);
    };
    gauge(
        "neopro_fleet_bucket_up",
        "1 if the last read of the bucket succeeded.",
        u8::from(up).to_string(),
    );
    gauge(
        "neopro_fleet_last_read_timestamp_seconds",
        "Unix time of the last successful read of the bucket (0: none yet).",
        v.map_or(0, |v| v.at).to_string(),
    );
    gauge(
        "neopro_fleet_last_read_duration_seconds",
        "How long the last successful read of the bucket took.",
        format!("{:.3}", v.map_or(0.0, |v| v.took.as_secs_f64())),
    );
    gauge(
        "neopro_fleet_bucket_objects",
        "Objects under the prefix at the last read.",
        v.map_or(0, |v| v.cost.objects).to_string(),
    );
    gauge(
        "neopro_fleet_sites",
        "Sites in the bucket at the last read.",
        v.map_or(0, |v| v.sites).to_string(),
    );
    let totals = cache.requests();
    let mut family = head.family(
        "neopro_fleet_bucket_requests_total",
        Kind::Counter,
        "Requests made to the bucket since the dashboard started, by kind (get_not_modified: a status read again that had not changed, answered 304).",
    );
    for (kind, n) in KINDS.iter().zip(totals) {
        family.sample(&[("kind", kind)], n);
    }
    let mut family = head.family(
        "neopro_fleet_last_read_requests",
        Kind::Gauge,
        "Requests the last successful read of the bucket made, by kind.",
    );
    let last = v.map_or([0; 6], |v| v.cost.requests);
    for (kind, n) in KINDS.iter().zip(last) {
        family.sample(&[("kind", kind)], n);
    }
    let mut parts: Vec<Arc<[u8]>> = vec![Arc::from(head.finish().into_bytes())];
    if let Some(v) = v {
        parts.extend(v.series.iter().cloned());
    }
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), prom::CONTENT_TYPE.into())],
        body: Body::Parts(parts),
    }
}

/// The routing table.
pub fn route(cache: &Arc<FleetCache>, token: Option<&str>, req: &Request) -> Response {
    if !guard::host_allowed(req.header("Host")) {
        return error(403, "Hôte non autorisé");
    }
    let path = req.path.as_str();
    let protected = path.starts_with("/api/") || path == "/api" || path == "/metrics";
    if protected && !guard::token_ok(token, req) {
        return error(401, "Authentification requise").with_header("WWW-Authenticate", "Bearer");
    }
    let read = matches!(req.method.as_str(), "GET" | "HEAD");
    if !read && guard::cross_origin(req) {
        return error(403, "Origine non autorisée");
    }
    match (read, path) {
        (true, "/") => page::serve(PAGE_GZ, req, &page::csp(&[])),
        (true, "/api/fleet") => api(cache),
        (true, "/metrics") => metrics(cache),
        (true, "/healthz") => super::api::healthz(),
        (false, "/" | "/api/fleet" | "/metrics" | "/healthz") => {
            error(405, "Méthode non autorisée").with_header("Allow", "GET, HEAD")
        }
        _ => error(404, "Route inconnue"),
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Runs the dashboard until SIGTERM/SIGINT. The caller checked that `cfg.offsite` is
/// set and the listen rule. Returns the exit code.
pub fn serve(cfg: Config, listen: SocketAddr) -> u8 {
    // One malloc arena: a read runs in a thread of its own and frees what it made in
    // the arena the views are served from (two arenas each kept a read's worth of free
    // memory); blocks of 128 KiB and more (a view's parts, a listing page) are mapped
    // and given back when freed (glibc otherwise raises that threshold as they are
    // freed, and keeps them in the heap). At 10,000 sites this halves the peak.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc tunables; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    let Some(offsite) = cfg.offsite else {
        eprintln!("neopro-backup: fleet serve: S3_ENDPOINT is not set");
        return 2;
    };
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("neopro-backup: fleet serve: cannot listen on {listen}: {e}");
            return 1;
        }
    };
    // SAFETY: `on_signal` is an extern "C" fn that only stores an atomic (async-signal-
    // safe), SIG_IGN a valid disposition; signal() touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let addr = server::local_addr(&listener).map_or(listen.to_string(), |a| a.to_string());
    let period = cache_period();
    let where_ = format!(
        "s3://{}/{}",
        offsite.bucket,
        if offsite.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", offsite.prefix)
        }
    );
    let cache = Arc::new(FleetCache::new(offsite, period, cfg.fleet_drill_max_days));
    let token = cfg.api_token;
    let stop = Arc::new(AtomicBool::new(false));
    let http = {
        let stop = Arc::clone(&stop);
        let routes = Arc::new(server::Routes {
            // /healthz answers even while every handler waits on a slow bucket.
            quick: Box::new(super::api::quick),
            handler: Box::new(move |req| route(&cache, token.as_deref(), req)),
        });
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || server::serve(listener, routes, &stop, Arc::default()))
    };
    let Ok(http) = http else {
        eprintln!("neopro-backup: fleet serve: cannot start the HTTP thread");
        return 1;
    };
    eprintln!(
        "neopro-backup {} fleet dashboard serving on http://{addr} ({where_}, read at most every {} s)",
        env!("CARGO_PKG_VERSION"),
        period.as_secs()
    );
    while !SIGNALLED.load(Ordering::SeqCst) && !http.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = http.join();
    eprintln!("neopro-backup fleet: stopped");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_whole_under_its_csp() {
        let text = page::text(PAGE_GZ);
        assert_eq!(page::inline_only(&text, &page::csp(&[])), Ok(()));
    }

    #[test]
    fn one_series_per_site_and_measure() {
        let now = clock::parse_iso("2024-12-18T03:00:00+01:00").unwrap_or_default();
        let st = crate::status::Status {
            timestamp: "2024-12-18T03:00:00+01:00".into(),
            success: true,
            ..Default::default()
        };
        let mut a = fleet::site_row("club-a", Some(&st), now + 60);
        a.archives = 30;
        let rec = crate::offsite::drill_record::Record {
            version: 1,
            when: "2024-12-18T02:00:00Z".into(),
            archive: Some("backup-20241218-030000.tar.gz".into()),
            ok: true,
            error: None,
            videos: None,
        };
        a.drill = fleet::Drill::of(Ok(Some(rec)), now + 60, 8);
        let b = fleet::site_row("club\"b", None, now);
        let sites = [a, b];
        let parts = site_series(&sites);
        assert_eq!(parts.len(), 10);
        let text = String::from_utf8_lossy(&parts.concat()).to_string();
        // The JSON in parts is the array nanoserde writes whole.
        let many: Vec<Site> = (0..2000).map(|_| sites[0].clone()).collect();
        let json = json_parts(&many);
        assert!(json.len() > 1 && json.iter().all(|p| p.len() < PART + 8 * 1024));
        assert_eq!(json.concat(), many.serialize_json().into_bytes());
        assert_eq!(json_parts(&[]).concat(), b"[]");
        assert!(
            text.contains(&format!(
                "neopro_fleet_site_last_success_timestamp_seconds{{site=\"club-a\"}} {now}\n"
            )),
            "{text}"
        );
        assert!(text.contains("neopro_fleet_site_archives{site=\"club-a\"} 30\n"));
        assert!(text.contains("neopro_fleet_site_last_run_success{site=\"club\\\"b\"} 0\n"));
        assert!(text.contains("neopro_fleet_site_claimed_twice{site=\"club-a\"} 0\n"));
        assert!(text.contains("neopro_fleet_site_last_drill_success{site=\"club-a\"} 1\n"));
        assert!(text.contains(&format!(
            "neopro_fleet_site_last_drill_timestamp_seconds{{site=\"club-a\"}} {now}\n"
        )));
        // Never drilled: 0 and 0.
        assert!(text.contains("neopro_fleet_site_last_drill_success{site=\"club\\\"b\"} 0\n"));
        assert!(
            text.contains("neopro_fleet_site_last_drill_timestamp_seconds{site=\"club\\\"b\"} 0\n")
        );
        assert_eq!(text.matches("# TYPE ").count(), 10);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 20);
    }
}
