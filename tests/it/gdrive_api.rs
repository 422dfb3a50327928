//! « Connecter Google Drive » over the daemon's API (docs/format.md, "Google Drive over
//! the API"; CONTRACT §8): `GET /api/gdrive`, `POST /api/gdrive/login` and `POST
//! /api/gdrive/logout`, against the fake Google of tests/gdrive (fake_google.py, the
//! standard library's Python on 127.0.0.1, one per test). The volunteer's approval on
//! the phone is the fake's `/_test/approve`; every wait is on a state, never a sleep.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::google::FakeGoogle;
use common::net::{Answer, ClosedPort, http};
use common::*;

const TOKEN: &str = "gdrive-api-token-0123456789abcdef";
const CLIENT_ID: &str = "123-test.apps.googleusercontent.com";

/// The fake Google (common::google) polled every second (Google's default is 5).
struct Fake(FakeGoogle);

impl Fake {
    fn start() -> Fake {
        let fake = FakeGoogle::start();
        fake.config(r#"{"interval":1}"#);
        Fake(fake)
    }

    fn control(&self, path: &str, body: &str) -> Answer {
        let a = http(
            &self.0.addr,
            if body.is_empty() { "GET" } else { "POST" },
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(a.status, 200, "{path}: {a}");
        a
    }

    /// The requests made to the fake's Google routes, in order.
    fn requests(&self) -> Json {
        self.0.requests()
    }

    /// The daemon's environment: Drive configured on this fake, the API token.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GDRIVE_CLIENT_ID", CLIENT_ID.into()),
            ("GDRIVE_CLIENT_SECRET", "test-secret".into()),
            ("GDRIVE_FOLDER", "neopro-test".into()),
            ("SITE_ID", "club-drive".into()),
            ("NEOPRO_GDRIVE_API_URL", self.0.url.clone()),
            ("NEOPRO_GOOGLE_OAUTH_URL", self.0.url.clone()),
            ("NEOPRO_GDRIVE_BACKOFF_MS", "1".into()),
            ("API_TOKEN", TOKEN.into()),
        ]
    }
}

fn daemon(t: &Tree, env: &[(&'static str, String)]) -> Daemon {
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start(t, &refs)
}

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

fn get(d: &Daemon, path: &str) -> Answer {
    d.get_with_token(path, TOKEN)
}

fn post(d: &Daemon, path: &str, body: &str) -> Answer {
    d.post_json_with_token(path, TOKEN, body)
}

/// `GET /api/gdrive`, which must answer 200.
fn state(d: &Daemon) -> Json {
    let a = get(d, "/api/gdrive");
    assert_eq!(a.status, 200, "{a}");
    a.json()
}

/// Polls `GET /api/gdrive` until the login is no longer `waiting`; returns the answer.
fn wait_login_end(d: &Daemon, limit: u64) -> Json {
    let mut last = None;
    wait_for("the login to end", limit, || {
        let s = state(d);
        let waiting = s.get("login").get("state").str() == "waiting";
        last = Some(s);
        !waiting
    });
    last.unwrap_or_else(|| panic!("no state"))
}

/// `POST /api/gdrive/login`, which must answer 202 with a code; the code.
fn login(d: &Daemon) -> String {
    let a = post(d, "/api/gdrive/login", "");
    assert_eq!(a.status, 202, "{a}");
    let j = a.json();
    assert_eq!(
        j.keys(),
        ["userCode", "verificationUrl", "expiresIn"],
        "{a}"
    );
    assert!(
        j.get("verificationUrl").str().starts_with("https://"),
        "{a}"
    );
    j.get("userCode").str().to_string()
}

fn token_file(t: &Tree) -> std::path::PathBuf {
    t.backups.join("gdrive-token.json")
}

#[test]
fn a_pi_connects_to_drive_over_the_api_and_logs_out_with_a_revoke() {
    let fake = Fake::start();
    let t = Tree::new("gdrive-api-connect");
    let d = daemon(&t, &fake.env());

    // The same guards as every /api route.
    assert_eq!(d.get("/api/gdrive").status, 401);
    assert_eq!(d.post("/api/gdrive/login", b"").status, 401);
    assert_eq!(
        d.post("/api/gdrive/logout", b"{\"revoke\":false}").status,
        401
    );
    let cross = d.req(
        "POST",
        "/api/gdrive/login",
        &[
            ("Authorization", &auth()),
            ("Origin", "http://evil.example"),
        ],
        b"",
    );
    assert_eq!(cross.status, 403, "{cross}");
    let wrong = d.req(
        "GET",
        "/api/gdrive/login",
        &[("Authorization", &auth())],
        b"",
    );
    assert_eq!(wrong.status, 405, "{wrong}");
    assert_eq!(wrong.header("Allow"), Some("POST"));
    let wrong = d.req("DELETE", "/api/gdrive", &[("Authorization", &auth())], b"");
    assert_eq!(wrong.status, 405, "{wrong}");
    assert_eq!(get(&d, "/api/gdrive/other").status, 404);
    assert!(
        fake.requests().arr().is_empty(),
        "refused requests reached Google"
    );

    // Before: configured, not connected, no login, and no request to Google.
    let s = state(&d);
    assert!(
        s.get("configured").bool() && !s.get("connected").bool(),
        "{s:?}"
    );
    assert!(s.get("since").is_null());
    assert_eq!(s.get("folder").str(), "neopro-test/club-drive/");
    assert_eq!(s.get("login").get("state").str(), "none");
    assert_eq!(s.get("pending").u64(), 0);
    assert_eq!(s.get("status").get("pending").u64(), 0);
    assert!(
        s.try_get("quota").is_none(),
        "quota without ?quota=1: {s:?}"
    );
    assert!(
        fake.requests().arr().is_empty(),
        "GET /api/gdrive asked Google"
    );

    // The login: 202 with the code, then the state says waiting with the same code.
    let before = now_unix();
    let code = login(&d);
    let s = state(&d);
    let l = s.get("login");
    assert_eq!(l.get("state").str(), "waiting", "{s:?}");
    assert_eq!(l.get("userCode").str(), code);
    let expires = l.get("expiresAt").u64() as i64;
    assert!(
        (before + 1800..=now_unix() + 1800).contains(&expires),
        "expiresAt {expires}"
    );
    assert!(!token_file(&t).exists());

    // Approved on the phone: connected, the token kept 0600.
    fake.control("/_test/approve", &format!("{{\"user_code\":\"{code}\"}}"));
    let s = wait_login_end(&d, 30);
    assert_eq!(s.get("login").get("state").str(), "connected", "{s:?}");
    assert!(s.get("login").get("error").is_null());
    assert!(s.get("connected").bool(), "{s:?}");
    assert!(s.get("since").str().ends_with('Z'), "{s:?}");
    let meta = std::fs::metadata(token_file(&t)).unwrap_or_else(|e| panic!("token file: {e}"));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let kept = parse_json(&std::fs::read_to_string(token_file(&t)).unwrap_or_default())
        .unwrap_or_else(|e| panic!("token file: {e}"));
    let refresh = kept.get("refresh_token").str().to_string();
    assert!(refresh.starts_with("1//fake-"), "{refresh}");
    // The refresh token never goes out over the API.
    assert!(!get(&d, "/api/gdrive?quota=1").text().contains(&refresh));

    // ?quota=1: what Drive says (the fake's 15 GiB, nothing sent yet).
    let a = get(&d, "/api/gdrive?quota=1");
    assert_eq!(a.status, 200, "{a}");
    let q = a.json();
    assert_eq!(q.get("quota").get("limit").u64(), 16_106_127_360, "{a}");
    assert_eq!(q.get("quota").get("usage").u64(), 0);
    assert_eq!(q.get("copies").u64(), 0);
    assert_eq!(q.get("copiesBytes").u64(), 0);
    assert!(q.get("driveError").is_null(), "{a}");
    assert!(q.get("warning").is_null(), "{a}");
    let ops: Vec<String> = fake
        .requests()
        .arr()
        .iter()
        .map(|r| r.get("path").str().to_string())
        .collect();
    assert!(ops.contains(&"/drive/v3/about".to_string()), "{ops:?}");

    // Malformed logout bodies: 400, nothing removed.
    for bad in [
        "",
        "{}",
        "null",
        r#"{"revoke":"true"}"#,
        r#"{"revoke":1}"#,
        "[true]",
    ] {
        let a = post(&d, "/api/gdrive/logout", bad);
        assert_eq!(a.status, 400, "{bad}: {a}");
        assert!(a.error().contains("revoke"), "{a}");
    }
    assert!(token_file(&t).exists());

    // Logout with the revoke: the grant is dead at Google, the token gone here.
    let a = post(&d, "/api/gdrive/logout", r#"{"revoke":true}"#);
    assert_eq!(a.status, 200, "{a}");
    assert!(a.json().get("done").str().contains("revoked"), "{a}");
    assert!(!token_file(&t).exists());
    let refreshed = http(
        &fake.0.addr,
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!(
            "client_id={CLIENT_ID}&client_secret=test-secret&grant_type=refresh_token&refresh_token={}",
            refresh.replace('/', "%2F")
        )
        .as_bytes(),
    );
    assert_eq!(refreshed.status, 400, "{refreshed}");
    assert!(refreshed.text().contains("invalid_grant"), "{refreshed}");
    let s = state(&d);
    assert!(!s.get("connected").bool(), "{s:?}");
    assert_eq!(s.get("login").get("state").str(), "none");
    // Nothing more to revoke: fine, and said.
    let a = post(&d, "/api/gdrive/logout", r#"{"revoke":false}"#);
    assert_eq!(a.status, 200, "{a}");
    assert!(a.json().get("done").str().contains("not connected"), "{a}");
}

#[test]
fn a_refused_login_says_denied_and_keeps_nothing() {
    let fake = Fake::start();
    let t = Tree::new("gdrive-api-deny");
    let d = daemon(&t, &fake.env());
    let code = login(&d);
    fake.control("/_test/deny", &format!("{{\"user_code\":\"{code}\"}}"));
    let s = wait_login_end(&d, 30);
    let l = s.get("login");
    assert_eq!(l.get("state").str(), "denied", "{s:?}");
    assert!(l.get("error").str().contains("refused"), "{s:?}");
    assert!(l.get("userCode").is_null());
    assert!(!s.get("connected").bool());
    assert!(!token_file(&t).exists());
}

#[test]
fn a_code_not_approved_in_time_says_expired() {
    let fake = Fake::start();
    fake.control("/_test/config", r#"{"device_expires_in":2,"interval":1}"#);
    let t = Tree::new("gdrive-api-expire");
    let d = daemon(&t, &fake.env());
    let a = post(&d, "/api/gdrive/login", "");
    assert_eq!(a.status, 202, "{a}");
    assert_eq!(a.json().get("expiresIn").u64(), 2);
    let s = wait_login_end(&d, 30);
    assert_eq!(s.get("login").get("state").str(), "expired", "{s:?}");
    assert!(!token_file(&t).exists());
}

#[test]
fn a_new_login_cancels_the_one_before_and_sigterm_cancels_a_waiting_one() {
    let fake = Fake::start();
    let t = Tree::new("gdrive-api-cancel");
    let mut d = daemon(&t, &fake.env());
    let first = login(&d);
    let second = login(&d);
    assert_ne!(first, second);
    d.wait_log("gdrive: login cancelled", Duration::from_secs(10));
    let s = state(&d);
    assert_eq!(s.get("login").get("state").str(), "waiting");
    assert_eq!(s.get("login").get("userCode").str(), second);
    // SIGTERM while the second waits: the daemon stops at once, the login with it.
    let t0 = Instant::now();
    let (st, _, log) = d.terminate(Duration::from_secs(10));
    assert!(st.success(), "{st}\n{log}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(
        log.matches("gdrive: login cancelled").count(),
        2,
        "both logins cancelled:\n{log}"
    );
    assert!(!token_file(&t).exists());
}

#[test]
fn without_drive_configured_the_api_says_so() {
    let t = Tree::new("gdrive-api-none");
    let d = Daemon::start(&t, &[("API_TOKEN", TOKEN)]);
    let s = state(&d);
    assert!(!s.get("configured").bool(), "{s:?}");
    assert!(s.get("status").is_null() && s.get("folder").is_null());
    assert_eq!(s.get("login").get("state").str(), "none");
    let a = post(&d, "/api/gdrive/login", "");
    assert_eq!(a.status, 404, "{a}");
    assert!(
        a.error().starts_with("Google Drive n'est pas configuré"),
        "{a}"
    );
    let a = post(&d, "/api/gdrive/logout", r#"{"revoke":false}"#);
    assert_eq!(a.status, 404, "{a}");
    let a = post(&d, "/api/gdrive/logout", "{\"revoke\":");
    assert_eq!(a.status, 400, "{a}");
}

#[test]
fn google_unreachable_is_a_502_that_says_so() {
    let closed = ClosedPort::new();
    let t = Tree::new("gdrive-api-down");
    let down = format!("http://127.0.0.1:{}", closed.port);
    let env = vec![
        ("GDRIVE_CLIENT_ID", CLIENT_ID.to_string()),
        ("GDRIVE_CLIENT_SECRET", "test-secret".into()),
        ("NEOPRO_GDRIVE_API_URL", down.clone()),
        ("NEOPRO_GOOGLE_OAUTH_URL", down),
        ("NEOPRO_GDRIVE_BACKOFF_MS", "1".into()),
        ("API_TOKEN", TOKEN.into()),
    ];
    let d = daemon(&t, &env);
    let a = post(&d, "/api/gdrive/login", "");
    assert_eq!(a.status, 502, "{a}");
    let j = a.json();
    assert_eq!(j.get("error").str(), "Google injoignable");
    assert!(!j.get("details").str().is_empty(), "{a}");
    assert_eq!(state(&d).get("login").get("state").str(), "none");
    // A revoke that cannot reach Google removes nothing.
    common::write_file(
        &token_file(&t),
        format!(
            "{{\"version\":1,\"client_id\":\"{CLIENT_ID}\",\"refresh_token\":\"1//fake-9\",\
             \"scope\":\"https://www.googleapis.com/auth/drive.file\",\
             \"connected\":\"2025-01-02T03:04:05Z\"}}"
        )
        .as_bytes(),
    );
    assert!(state(&d).get("connected").bool());
    let a = post(&d, "/api/gdrive/logout", r#"{"revoke":true}"#);
    assert_eq!(a.status, 502, "{a}");
    assert!(
        token_file(&t).exists(),
        "removed although the revoke failed"
    );
}

/// Connects `d` over the API, approved at once on the fake.
fn connect(d: &Daemon, fake: &Fake) {
    let code = login(d);
    fake.control("/_test/approve", &format!("{{\"user_code\":\"{code}\"}}"));
    let s = wait_login_end(d, 30);
    assert_eq!(s.get("login").get("state").str(), "connected", "{s:?}");
}

/// A club with Google Drive alone whose SD card died: on the new card, connected from
/// the page, the page's recovery lists the site's copies on Drive, holds the new card's
/// copies (it has no part in that history) and gets the newest back, byte-exact.
#[test]
fn a_drive_only_club_gets_its_card_back_from_the_page() {
    let fake = Fake::start();
    let env = fake.env();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let old = Tree::new("gdrive-api-old-card");
    {
        let d = daemon(&old, &env);
        connect(&d, &fake);
    }
    old.run_env(&refs, &["run"])
        .expect_code(0, "run on the old card");
    let name = archives(&old.backups)
        .pop()
        .unwrap_or_else(|| panic!("no archive"));

    // The new card: nothing of its own; Drive connected from the page.
    let blank = blank_card("gdrive-api-new-card");
    let d = daemon(&blank, &env);
    connect(&d, &fake);
    let list = get(&d, "/api/offsite/backups");
    assert_eq!(list.status, 200, "{list}");
    let j = list.json();
    assert_eq!(j.get("site").str(), "club-drive");
    assert_eq!(
        j.get("location").str(),
        "gdrive://neopro-test/club-drive/",
        "{list}"
    );
    let listed: Vec<&str> = j
        .get("backups")
        .arr()
        .iter()
        .map(|b| b.get("name").str())
        .collect();
    assert_eq!(listed, [name.as_str()], "{list}");

    // Its first backup is kept here, and held from Drive: the page says so.
    blank
        .run_env(&refs, &["run"])
        .expect_code(0, "run on the new card");
    let held = get(&d, "/api/offsite/backups").json();
    assert!(held.get("held").str().contains("Google Drive"), "{held:?}");

    // The dry run changes nothing; the recovery brings the files back.
    let dry = post(
        &d,
        &format!("/api/offsite/recover/{name}"),
        r#"{"dryRun":true,"videos":false}"#,
    );
    assert_eq!(dry.status, 200, "{dry}");
    assert!(!blank.neopro.join("webapp/configuration.json").exists());
    let started = post(
        &d,
        &format!("/api/offsite/recover/{name}"),
        r#"{"dryRun":false,"videos":false}"#,
    );
    assert_eq!(started.status, 202, "{started}");
    let r = d.wait_recovery(TOKEN, started.json().get("job").u64(), 60);
    assert_eq!(r.get("state").str(), "done", "{r:?}");
    assert_eq!(
        std::fs::read(blank.archive_path(&name)).ok(),
        std::fs::read(old.archive_path(&name)).ok(),
        "the archive fetched from Drive"
    );
    for f in ["webapp/configuration.json", "sync-agent/.env"] {
        assert_eq!(
            std::fs::read(blank.neopro.join(f)).ok(),
            std::fs::read(old.neopro.join(f)).ok(),
            "{f}"
        );
    }
    // Recovered: the hold is lifted.
    let after = get(&d, "/api/offsite/backups").json();
    assert!(after.get("held").is_null(), "{after:?}");
}
