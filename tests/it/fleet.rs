//! `fleet serve`, the central dashboard (docs/format.md, Fleet), against a real S3
//! server: SeaweedFS on loopback (scripts/seaweedfs.sh; NEOPRO_TEST_S3 and
//! NEOPRO_TEST_FILER say where), never a mock. The bucket is filled through SeaweedFS's
//! filer, not through our own S3 client. Between the dashboard and SeaweedFS sits a
//! small TCP relay of the test's own that records the request line of every connection
//! (our client opens one per request), so the tests see exactly which requests a read
//! of the bucket costs, and can make the bucket unreachable.
//!
//! Each test works under a prefix of its own in the one bucket. Ignored in a plain
//! `cargo test` (no server there); run them with
//! `NEOPRO_TEST_S3=… NEOPRO_TEST_FILER=… cargo test --test fleet -- --include-ignored`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::{Answer, Relay, http};
use common::s3::*;
use common::*;

const API_TOKEN: &str = "fleet-token-never-shown-0123456789";

fn archive_name(days_ago: i64) -> String {
    let t = iso_utc(now_unix() - days_ago * 86_400);
    format!("backup-{}{}{}-030000.tar.gz", &t[..4], &t[5..7], &t[8..10])
}

/// A running `fleet serve`, killed when dropped.
struct Dashboard {
    daemon: Daemon,
    addr: String,
    _tree: Tree,
}

impl Dashboard {
    /// Starts `fleet serve --listen 127.0.0.1:0` (a port the system picks) over
    /// `endpoint`/`prefix` and waits for its "serving on" line.
    fn start(endpoint: &str, prefix: &str, extra: &[(&str, &str)]) -> Dashboard {
        let t = Tree::bare("fleet-serve");
        let mut c = t.command(&["fleet", "serve", "--listen", "127.0.0.1:0"]);
        let env = with(
            &bucket_env(endpoint),
            &[("S3_PREFIX", prefix), ("NEOPRO_FLEET_CACHE_SECS", "3600")],
        );
        c.envs(with(&env, extra));
        let daemon = Daemon::spawn(c, "fleet serve");
        Dashboard {
            addr: daemon.addr.clone(),
            daemon,
            _tree: t,
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.daemon.req("GET", path, headers, b"")
    }

    fn fleet(&self, headers: &[(&str, &str)]) -> Json {
        let Answer {
            status: st, body, ..
        } = self.get("/api/fleet", headers);
        let text = String::from_utf8_lossy(&body).to_string();
        assert_eq!(st, 200, "{text}");
        parse_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn metrics(&self, headers: &[(&str, &str)]) -> String {
        let Answer {
            status: st,
            head,
            body,
            ..
        } = self.get("/metrics", headers);
        assert_eq!(st, 200);
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        String::from_utf8_lossy(&body).to_string()
    }
}

/// The value of one series in a Prometheus text (panics when absent).
fn series(text: &str, name: &str, site: &str) -> String {
    let want = format!("{name}{{site=\"{site}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no {want} in\n{text}"))
}

fn sites_of(j: &Json) -> Vec<String> {
    j.get("sites")
        .arr()
        .iter()
        .map(|s| s.get("site").str().to_string())
        .collect()
}

/// Five sites, one of each kind, plus objects that are not sites.
fn fill_mixed(prefix: &str) {
    let p = |site: &str, name: &str| format!("{prefix}/{site}/{name}");
    for (i, n) in [100usize, 200, 300].iter().enumerate() {
        put_object(&p("club-ok", &archive_name(i as i64)), &vec![1u8; *n]);
    }
    put_object(
        &p("club-ok", &format!("{}.age", archive_name(5))),
        &[2u8; 50],
    );
    put_object(
        &p("club-ok", "last-backup-status.json"),
        site_status_json(true, 2, 0).as_bytes(),
    );
    put_object(&p("club-failed", &archive_name(1)), &[3u8; 70]);
    put_object(
        &p("club-failed", "last-backup-status.json"),
        site_status_json(false, 20, 0).as_bytes(),
    );
    put_object(&p("club-stale", &archive_name(3)), &[4u8; 10]);
    put_object(
        &p("club-stale", "last-backup-status.json"),
        site_status_json(true, 50, 0).as_bytes(),
    );
    put_object(
        &p("club-pending", "last-backup-status.json"),
        site_status_json(true, 1, 2).as_bytes(),
    );
    put_object(&p("club-never", &archive_name(0)), &[5u8; 40]);
    put_object(&p("club-never", &archive_name(1)), &[5u8; 60]);
    // Not sites: shared video objects (nested), a loose object.
    put_object(&format!("{prefix}/videos/sha256/ab/abcdef"), b"video");
    put_object(&format!("{prefix}/README"), b"hello");
}

#[test]
#[ignore = "needs SeaweedFS: NEOPRO_TEST_S3=… cargo test --test fleet -- --include-ignored"]
fn worst_first_counts_metrics_and_one_read_for_every_view() {
    let prefix = unique_prefix("mixed");
    fill_mixed(&prefix);
    let relay = Relay::start(&s3_addr());
    let d = Dashboard::start(&relay.url(), &prefix, &[]);

    let j = d.fleet(&[]);
    // Failed first, then stale (never seen before 50 h old), then pending, then ok.
    assert_eq!(
        sites_of(&j),
        [
            "club-failed",
            "club-never",
            "club-stale",
            "club-pending",
            "club-ok"
        ]
    );
    let c = j.get("counts");
    assert_eq!(
        [
            c.get("total").u64(),
            c.get("failed").u64(),
            c.get("stale").u64(),
            c.get("pending").u64(),
            c.get("ok").u64()
        ],
        [5, 1, 2, 1, 1]
    );
    assert!(j.get("error").is_null());
    assert_eq!(j.get("stale_hours").u64(), 25);
    let site = |name: &str| {
        j.get("sites")
            .arr()
            .iter()
            .find(|s| s.get("site").str() == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let ok = site("club-ok");
    assert_eq!(
        (ok.get("archives").u64(), ok.get("archives_bytes").u64()),
        (4, 650)
    );
    assert_eq!(ok.get("state").str(), "ok");
    assert_eq!(ok.get("newest_archive").str(), archive_name(0));
    let failed = site("club-failed");
    assert_eq!(failed.get("error").str(), "disk full");
    assert!(!failed.get("last_run_success").bool());
    let never = site("club-never");
    assert!(never.get("last_success").is_null() && never.get("last_run_success").is_null());
    assert_eq!(
        (never.get("archives").u64(), never.get("size_bytes").u64()),
        (2, 40)
    );
    assert_eq!(site("club-pending").get("pending").u64(), 2);

    // Two listings (the fleet's index, then the whole prefix) and one GET per status:
    // nothing else, and only reads.
    let first = relay.requests();
    assert_eq!(
        first.iter().filter(|r| r.contains("list-type=2")).count(),
        2,
        "{first:#?}"
    );
    let gets: Vec<&String> = first
        .iter()
        .filter(|r| r.contains("last-backup-status.json"))
        .collect();
    assert_eq!(gets.len(), 4, "{first:#?}");
    assert_eq!(first.len(), 6, "{first:#?}");
    assert!(first.iter().all(|r| r.starts_with("GET ")), "{first:#?}");

    // Every view after that comes from the cache.
    let m = d.metrics(&[]);
    for _ in 0..10 {
        d.fleet(&[]);
        let Answer { status: st, .. } = d.get("/", &[]);
        assert_eq!(st, 200);
    }
    assert_eq!(d.metrics(&[]), m);
    assert_eq!(relay.requests().len(), 6, "a view read the bucket again");

    // One series per site for each of the contract's three metrics.
    for name in [
        "neopro_fleet_site_last_success_timestamp_seconds",
        "neopro_fleet_site_last_run_success",
        "neopro_fleet_site_archives",
    ] {
        assert_eq!(
            m.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count(),
            5,
            "{name}:\n{m}"
        );
    }
    assert_eq!(series(&m, "neopro_fleet_site_archives", "club-ok"), "4");
    assert_eq!(
        series(&m, "neopro_fleet_site_last_run_success", "club-ok"),
        "1"
    );
    assert_eq!(
        series(&m, "neopro_fleet_site_last_run_success", "club-failed"),
        "0"
    );
    assert_eq!(
        series(
            &m,
            "neopro_fleet_site_last_success_timestamp_seconds",
            "club-never"
        ),
        "0"
    );
    let stale_ts: i64 = series(
        &m,
        "neopro_fleet_site_last_success_timestamp_seconds",
        "club-stale",
    )
    .parse()
    .unwrap_or(0);
    assert!(
        (now_unix() - 50 * 3600 - stale_ts).abs() < 120,
        "{stale_ts}"
    );
    assert_eq!(series(&m, "neopro_fleet_site_stale", "club-stale"), "1");
    assert!(m.contains("\nneopro_fleet_bucket_up 1\n"), "{m}");
    assert!(m.contains("\nneopro_fleet_sites 5\n"), "{m}");
    assert!(!m.contains("videos") && !m.contains("README"), "{m}");

    // The page: French, self-contained, with a CSP.
    let Answer {
        status: st,
        head,
        body,
        ..
    } = d.get("/", &[]);
    let page = String::from_utf8_lossy(&body);
    assert_eq!(st, 200);
    assert!(head.contains("text/html"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'"),
        "{head}"
    );
    assert!(page.contains("<html lang=\"fr\">") && page.contains("Filtrer par nom de site"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http") && !page.contains("url("),
        "the page loads something from elsewhere"
    );
    // To a browser, the same page gzip-compressed.
    let gz = d.get("/", &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(gz.header("Content-Encoding"), Some("gzip"), "{}", gz.head);
    assert_eq!(crate::common::net::gunzip(&gz.body), body);
    // Guards.
    let Answer { status: st, .. } = d.get("/api/fleet", &[("Host", "evil.example")]);
    assert_eq!(st, 403);
    let Answer {
        status: st,
        head,
        body: _,
        ..
    } = http(&d.addr, "POST", "/api/fleet", &[], b"");
    assert!(st == 405 && head.contains("Allow: GET, HEAD"), "{head}");
    let Answer { status: st, .. } = http(
        &d.addr,
        "POST",
        "/api/fleet",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(st, 403);
    let Answer { status: st, .. } = d.get("/nope", &[]);
    assert_eq!(st, 404);
    let Answer {
        status: st, body, ..
    } = d.get("/healthz", &[]);
    assert!(st == 200 && body == b"ok");
}

#[test]
#[ignore = "needs SeaweedFS: NEOPRO_TEST_S3=… cargo test --test fleet -- --include-ignored"]
fn token_and_loopback_rules() {
    let prefix = unique_prefix("token");
    put_object(
        &format!("{prefix}/club-a/last-backup-status.json"),
        site_status_json(true, 1, 0).as_bytes(),
    );
    let d = Dashboard::start(&s3_endpoint(), &prefix, &[("API_TOKEN", API_TOKEN)]);
    for path in ["/api/fleet", "/metrics"] {
        let Answer {
            status: st,
            head,
            body: _,
            ..
        } = d.get(path, &[]);
        assert!(
            st == 401 && head.contains("WWW-Authenticate: Bearer"),
            "{path}: {head}"
        );
        let Answer { status: st, .. } =
            d.get(path, &[("Authorization", "Bearer wrong-token-0123456789")]);
        assert_eq!(st, 401, "{path}");
        let Answer {
            status: st, body, ..
        } = d.get(path, &[("Authorization", &format!("bearer {API_TOKEN}"))]);
        assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
    }
    // The page itself is public: it asks for the token.
    let Answer {
        status: st, body, ..
    } = d.get("/", &[]);
    assert!(st == 200 && String::from_utf8_lossy(&body).contains("Jeton d'accès requis"));
    assert_eq!(
        sites_of(&d.fleet(&[("Authorization", &format!("Bearer {API_TOKEN}"))])),
        ["club-a"]
    );
    drop(d);

    let t = Tree::bare("fleet-rules");
    let env = bucket_env(&s3_endpoint());
    // Off loopback without a token: refused before anything listens.
    let out = run(&t, &env, &["fleet", "serve", "--listen", "0.0.0.0:0"]);
    out.expect_code(2, "fleet serve off loopback without API_TOKEN");
    assert!(out.stderr.contains("API_TOKEN"), "{out}");
    // No bucket configured.
    let out = t.run(&["fleet", "serve"]);
    out.expect_code(2, "fleet serve without S3");
    assert!(out.stderr.contains("S3_ENDPOINT"), "{out}");
    let out = run(&t, &env, &["fleet", "serve", "--listen", "nowhere"]);
    out.expect_code(2, "a bad --listen");
    assert!(out.stderr.contains("invalid --listen"), "{out}");
    let out = run(&t, &env, &["fleet", "serve", "--json"]);
    out.expect_code(2, "--json");
}

#[test]
#[ignore = "needs SeaweedFS: NEOPRO_TEST_S3=… cargo test --test fleet -- --include-ignored"]
fn one_read_at_a_time_refreshed_after_the_period_and_kept_when_the_bucket_fails() {
    let prefix = unique_prefix("cache");
    put_object(
        &format!("{prefix}/club-a/last-backup-status.json"),
        site_status_json(true, 1, 0).as_bytes(),
    );
    let relay = Relay::start(&s3_addr());
    let d = Dashboard::start(&relay.url(), &prefix, &[("NEOPRO_FLEET_CACHE_SECS", "1")]);
    // Eight views at once on a cold cache: one read of the bucket serves them all.
    let addr = d.addr.clone();
    let views: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || http(&addr, "GET", "/api/fleet", &[], b"").status)
        })
        .collect();
    for v in views {
        assert_eq!(v.join().unwrap_or(0), 200);
    }
    let lists = || {
        relay
            .requests()
            .iter()
            .filter(|r| r.contains("list-type=2"))
            .count()
    };
    // One read: the listing of the fleet's index, then the whole prefix.
    assert_eq!(lists(), 2, "{:#?}", relay.requests());
    // A new site shows once the period is over.
    put_object(
        &format!("{prefix}/club-b/last-backup-status.json"),
        site_status_json(false, 30, 0).as_bytes(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let j = d.fleet(&[]);
        if sites_of(&j) == ["club-b", "club-a"] {
            break;
        }
        assert!(Instant::now() < deadline, "club-b never showed: {j:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = lists();
    assert!(before >= 2);
    // The bucket becomes unreachable: the last view stays, flagged.
    relay.set_down(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let j = loop {
        let j = d.fleet(&[]);
        if !j.get("error").is_null() {
            break j;
        }
        assert!(Instant::now() < deadline, "the failed read never showed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sites_of(&j), ["club-b", "club-a"]);
    let m = d.metrics(&[]);
    assert!(m.contains("\nneopro_fleet_bucket_up 0\n"), "{m}");
    assert_eq!(
        series(&m, "neopro_fleet_site_last_run_success", "club-b"),
        "0"
    );
    drop(d);
    // A dashboard that has never read the bucket says why.
    let d = Dashboard::start(&relay.url(), &prefix, &[]);
    let Answer {
        status: st, body, ..
    } = d.get("/api/fleet", &[]);
    let text = String::from_utf8_lossy(&body);
    assert!(
        st == 502 && text.contains("Lecture du seau impossible"),
        "{st} {text}"
    );
    let m = d.metrics(&[]);
    assert!(
        m.contains("\nneopro_fleet_bucket_up 0\n") && !m.contains("site=\""),
        "{m}"
    );
}

#[test]
#[ignore = "needs SeaweedFS: NEOPRO_TEST_S3=… cargo test --test fleet -- --include-ignored"]
fn every_page_of_the_listing_is_counted() {
    // 2 × 650 archives: the listing takes two pages (1,000 keys each at most).
    let prefix = unique_prefix("pages");
    let p = prefix.as_str();
    let keys: Vec<String> = ["club-a", "club-b"]
        .iter()
        .flat_map(|site| {
            (0..650).map(move |i| {
                let t = iso_utc(1_700_000_000 - i * 86_400);
                format!(
                    "{p}/{site}/backup-{}{}{}-030000.tar.gz",
                    &t[..4],
                    &t[5..7],
                    &t[8..10]
                )
            })
        })
        .collect();
    let keys = Arc::new(keys);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                for k in keys.iter().skip(w).step_by(8) {
                    put_object(k, b"0123456789");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap_or_else(|_| panic!("an upload failed"));
    }
    put_object(
        &format!("{prefix}/club-b/last-backup-status.json"),
        site_status_json(true, 1, 0).as_bytes(),
    );
    let relay = Relay::start(&s3_addr());
    let d = Dashboard::start(&relay.url(), &prefix, &[]);
    let j = d.fleet(&[]);
    let arr = j.get("sites").arr();
    assert_eq!(sites_of(&j), ["club-a", "club-b"]);
    for s in arr {
        assert_eq!(s.get("archives").u64(), 650, "{s:?}");
        assert_eq!(s.get("archives_bytes").u64(), 6500, "{s:?}");
    }
    let lists: Vec<String> = relay
        .requests()
        .into_iter()
        .filter(|r| r.contains("list-type=2") && !r.contains("fleet-index"))
        .collect();
    assert_eq!(lists.len(), 2, "{lists:#?}");
    assert!(lists[1].contains("continuation-token="), "{lists:#?}");
}

/// Issue 21, finding 7: `fleet serve` has the same health lane as `serve`. A bucket that
/// accepts connections and never answers holds every handler (16 requests wait for the
/// first read of the bucket); `/healthz` still answers at once. (No SeaweedFS needed.)
#[test]
fn healthz_answers_while_every_handler_waits_on_a_bucket_that_never_answers() {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let endpoint = format!(
        "http://{}",
        l.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    l.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    // The black hole: takes connections and holds them, unanswered, until the test is
    // done (a minute at most).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = Arc::clone(&done);
    let hole = std::thread::spawn(move || {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until
            && held.len() < 256
            && !done2.load(std::sync::atomic::Ordering::SeqCst)
        {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        held.len()
    });
    let d = Dashboard::start(&endpoint, "hole", &[]);
    let addr = d.addr.clone();
    // More waiting readers than handlers.
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let a = addr.clone();
            std::thread::spawn(move || http(&a, "GET", "/api/fleet", &[], b""))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let started = Instant::now();
        let Answer { status, body, .. } = http(&addr, "GET", "/healthz", &[], b"");
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "/healthz took {:?}",
            started.elapsed()
        );
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let held = hole.join().unwrap_or(0);
    assert!(held >= 1, "the dashboard never reached the bucket");
    drop(d);
    for w in waiters {
        let _ = w.join();
    }
}

/// The value of a series with one label `kind` (panics when absent).
fn by_kind(text: &str, name: &str, kind: &str) -> u64 {
    let want = format!("{name}{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {want} in\n{text}"))
}

/// Issue 23: a refresh costs what changed. Two Pis that send through the binary (their
/// statuses and their copies in the fleet's index), and a site of a Pi not upgraded
/// (its status put through the filer, nothing in the index). Once read, a refresh makes
/// listing requests and one conditional GET (304) for the old site; a Pi's new backup
/// costs one GET (its index copy) and one listing of its folder. The dashboard's own
/// counts (/metrics) are checked against the requests the relay saw.
#[test]
#[ignore = "needs SeaweedFS: NEOPRO_TEST_S3=… cargo test --test fleet -- --include-ignored"]
fn a_refresh_reads_what_changed_and_counts_its_requests() {
    let prefix = unique_prefix("refresh");
    let pis: Vec<(Tree, Vec<(String, String)>)> = ["club-a", "club-b"]
        .iter()
        .map(|site| (Tree::new(&format!("refresh-{site}")), s3_env(&prefix, site)))
        .collect();
    for (t, env) in &pis {
        run(t, env, &["run"]).expect_code(0, "run with offsite");
    }
    let index_copy = format!("{prefix}/fleet-index/status/club-a.json");
    assert_eq!(
        object(&index_copy),
        object(&format!("{prefix}/club-a/last-backup-status.json")),
        "the Pi copies its status to the index"
    );
    put_object(
        &format!("{prefix}/club-old/last-backup-status.json"),
        site_status_json(true, 2, 0).as_bytes(),
    );
    put_object(&format!("{prefix}/club-old/{}", archive_name(0)), b"x");
    let relay = Relay::start(&s3_addr());
    let d = Dashboard::start(&relay.url(), &prefix, &[("NEOPRO_FLEET_CACHE_SECS", "1")]);
    let first = d.fleet(&[]);
    assert_eq!(sites_of(&first).len(), 3, "{first:?}");
    let generated = first.get("generated").u64();
    // Wait for a refresh (a later `generated`): it is quiet.
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.fleet(&[]).get("generated").u64() <= generated + 1 {
        assert!(Instant::now() < deadline, "no refresh");
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = d.metrics(&[]);
    let last = |kind: &str| by_kind(&m, "neopro_fleet_last_read_requests", kind);
    assert_eq!(
        (
            last("get"),
            last("get_not_modified"),
            last("head"),
            last("put")
        ),
        (0, 1, 0, 0),
        "{m}"
    );
    // Index, then the site folders: two listings (one page each).
    assert_eq!(last("list"), 2, "{m}");
    // What the relay saw agrees with what the dashboard counts.
    let total = |m: &str, kind: &str| by_kind(m, "neopro_fleet_bucket_requests_total", kind);
    let gets_seen = || {
        relay
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && !r.contains("list-type=2"))
            .count() as u64
    };
    let m = d.metrics(&[]);
    let counted = total(&m, "get") + total(&m, "get_not_modified");
    let seen = gets_seen();
    assert!(
        counted == seen || counted + 1 == seen,
        "{counted} counted, {seen} seen"
    );
    // club-a backs up again: one GET more (its index copy), whatever the reads between.
    let gets_before = total(&m, "get");
    let (t, env) = &pis[0];
    run(t, env, &["run"]).expect_code(0, "second run");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = d.fleet(&[]);
        let a = j
            .get("sites")
            .arr()
            .iter()
            .find(|s| s.get("site").str() == "club-a")
            .map(|s| s.get("archives").u64());
        if a == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "club-a's second copy never showed: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = d.metrics(&[]);
    assert_eq!(total(&m, "get"), gets_before + 1, "{m}");
    // The strip of each row: 30 nights, tonight's copy.
    let j = d.fleet(&[]);
    for s in j.get("sites").arr() {
        let nights = s.get("nights").str();
        assert_eq!(nights.len(), 30, "{s:?}");
        assert!(nights.ends_with('1'), "{s:?}");
    }
}
