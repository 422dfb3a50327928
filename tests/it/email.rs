//! Email alerts end to end (docs/format.md, Offsite: "Email alerts"): the built binary
//! runs backups that fail and succeed, with SMTP_URL pointing at a real SMTP server
//! (tests/smtp/server.py, aiosmtpd from PyPI in .xtools/smtp-venv, `make smtp-venv`)
//! on a free port, with AUTH. What the server received is read back: envelope, decoded
//! French subject and body, headers. The server is on loopback, where smtp:// speaks in
//! clear by design (docs/format.md); STARTTLS and implicit TLS against the same server
//! are the client's own tests (src/smtp/server_tests.rs).
//! Without the venv or openssl the tests say so and pass, except under CI=true.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const USER: &str = "alerte@club.fr";
const PASSWORD: &str = "s3cret:pass@word";
const PASSWORD_IN_URL: &str = "s3cret%3Apass%40word";

fn unavailable(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} (CI=true: this test must run)");
    }
    eprintln!("SKIPPED: {what}");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_python() -> Option<PathBuf> {
    let py = repo().join(".xtools/smtp-venv/bin/python3");
    if py.exists() {
        Some(py)
    } else {
        unavailable("no .xtools/smtp-venv (run `make smtp-venv`)");
        None
    }
}

/// tests/smtp/server.py (clear text, AUTH required) on a port it picks; stopped when
/// dropped.
struct Server {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Option<Server> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let py = venv_python()?;
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out = dir.join(format!("out-{n}"));
        let mut child = Command::new(py)
            .arg(repo().join("tests/smtp/server.py"))
            .args(["--mode", "plain", "--user", USER, "--password", PASSWORD])
            .arg("--dir")
            .arg(&out)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("server.py: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(p) = fs::read_to_string(out.join("port"))
                && let Ok(port) = p.trim().parse::<u16>()
            {
                return Some(Server { child, out, port });
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("server.py exited early: {st}");
            }
            assert!(Instant::now() < deadline, "server.py wrote no port in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mails received so far, parsed (mail-N.json), in order.
    fn mails(&self) -> Vec<Json> {
        (1..)
            .map_while(|i| fs::read_to_string(self.out.join(format!("mail-{i}.json"))).ok())
            .map(|t| parse_json(&t).unwrap_or_else(|e| panic!("mail JSON: {e}: {t}")))
            .collect()
    }

    fn auth_log(&self) -> String {
        fs::read_to_string(self.out.join("auth.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.local_addr().map(|a| a.port()).unwrap_or(1)
}

struct Setup {
    tree: Tree,
    servers: PathBuf,
}

fn setup(name: &str) -> Option<Setup> {
    let tree = Tree::new(name);
    let servers = tree.root.join("smtp");
    fs::create_dir_all(&servers).unwrap_or_else(|e| panic!("mkdir: {e}"));
    Some(Setup { tree, servers })
}

impl Setup {
    fn env(&self, port: u16) -> Vec<(String, String)> {
        vec![
            (
                "SMTP_URL".into(),
                format!("smtp://{USER}:{PASSWORD_IN_URL}@localhost:{port}"),
            ),
            (
                "ALERT_EMAIL_TO".into(),
                "president@club.fr, tech@club.fr".into(),
            ),
            ("ALERT_EMAIL_FROM".into(), "borne@club.fr".into()),
            ("SITE_ID".into(), "stade-municipal".into()),
        ]
    }

    fn run(&self, port: u16) -> Out {
        let env = self.env(port);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.tree.run_env(&env, &["run"])
    }

    /// Makes the next runs fail (the lock file is a folder) or succeed again.
    fn break_runs(&self, broken: bool) {
        let lock = self.tree.backups.join(".backup.lock");
        let _ = fs::remove_file(&lock);
        let _ = fs::remove_dir(&lock);
        if broken {
            fs::create_dir_all(&lock).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.tree.backups.join("backup.log")).unwrap_or_default()
    }
}

#[test]
fn a_mail_on_every_failure_and_one_on_recovery_in_french() {
    let Some(s) = setup("email-flow") else { return };
    let Some(server) = Server::start(&s.servers, &[]) else {
        return;
    };
    s.tree.backup(&[]);
    s.break_runs(true);
    let started = now_unix();
    let out = s.run(server.port);
    out.expect_code(1, "a failed run (the mail changes nothing)");
    let mails = server.mails();
    assert_eq!(
        mails.len(),
        1,
        "one mail for the failure\n{out}\n{}",
        s.log()
    );
    let m = &mails[0];
    assert_eq!(
        m.get("subject").str(),
        "Échec de la sauvegarde Neopro – stade-municipal"
    );
    assert_eq!(m.get("mail_from").str(), "borne@club.fr");
    let rcpt: Vec<&str> = m.get("rcpt_tos").arr().iter().map(Json::str).collect();
    assert_eq!(rcpt, ["president@club.fr", "tech@club.fr"]);
    assert_eq!(m.get("auth_login").str(), USER);
    assert_eq!(m.get("charset").str(), "utf-8");
    assert_eq!(m.get("content_type").str(), "text/plain");
    assert!(m.get("message_id").str().starts_with('<'));
    let date = m.get("date_epoch").u64() as i64;
    assert!(
        (started - 5..=now_unix() + 5).contains(&date),
        "Date header: {date}"
    );
    assert!(m.get("defects").arr().is_empty(), "no MIME defect");
    let body = m.get("body").str();
    assert!(body.contains("a échoué"), "{body}");
    assert!(body.contains("lock"), "the error in the body: {body}");
    // The error in French words, then the raw one (docs/format.md, Error codes).
    assert!(
        body.contains(
            "\nErreur : Un élément inattendu (dossier, tube ou périphérique) se trouve là où \
             un fichier est attendu."
        ) && body.contains("\nDétail technique : cannot lock "),
        "{body}"
    );
    assert!(body.contains("Dernière sauvegarde réussie :"), "{body}");
    assert!(
        body.contains("Archives présentes sur la borne : 1"),
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "{body}");
    assert!(s.log().contains("alert: mail"), "{}", s.log());

    s.run(server.port).expect_code(1, "a second failure");
    assert_eq!(server.mails().len(), 2, "every failed run mails");

    s.break_runs(false);
    s.run(server.port)
        .expect_code(0, "the first success after the failures");
    let mails = server.mails();
    assert_eq!(mails.len(), 3, "one recovery mail");
    assert_eq!(
        mails[2].get("subject").str(),
        "Sauvegarde Neopro rétablie – stade-municipal"
    );
    assert!(mails[2].get("body").str().contains("En échec depuis"));

    s.run(server.port).expect_code(0, "another success");
    assert_eq!(server.mails().len(), 3, "no mail while all is well");
    let raw_password_in_log = s.log().contains(PASSWORD) || s.log().contains(PASSWORD_IN_URL);
    assert!(!raw_password_in_log, "the password never reaches the log");
}

#[test]
fn a_server_down_or_refusing_auth_changes_nothing_but_a_log_line_and_the_mail_waits() {
    let Some(s) = setup("email-down") else { return };
    s.tree.backup(&[]);
    s.break_runs(true);
    let down = closed_port();
    let t0 = Instant::now();
    let out = s.run(down);
    out.expect_code(1, "the failed run still exits 1");
    assert!(t0.elapsed() < Duration::from_secs(30), "bounded in time");
    assert!(
        s.log().contains("mail not sent"),
        "a log line says the mail was not sent\n{}",
        s.log()
    );
    assert!(!s.tree.status().get("success").bool());
    assert!(
        s.tree.status().get("error").str().contains("lock"),
        "the status still says why the backup failed"
    );

    // AUTH refused: a log line, the mail kept.
    let Some(refusing) = Server::start(&s.servers, &["--refuse-auth"]) else {
        return;
    };
    let out = s.run(refusing.port);
    out.expect_code(1, "a refused AUTH changes no exit code");
    assert!(refusing.mails().is_empty());
    assert!(refusing.auth_log().contains("refused"), "AUTH was tried");
    assert!(!s.log().contains(PASSWORD), "no password in the log");
    drop(refusing);

    // The server is back: the waiting mails go first, then this run's.
    let Some(server) = Server::start(&s.servers, &[]) else {
        return;
    };
    s.break_runs(false);
    s.run(server.port)
        .expect_code(0, "a success once the server is back");
    let subjects: Vec<String> = server
        .mails()
        .iter()
        .map(|m| m.get("subject").str().to_string())
        .collect();
    assert_eq!(
        subjects.len(),
        3,
        "two waiting failure mails, then the recovery: {subjects:?}"
    );
    assert!(subjects[0].starts_with("Échec") && subjects[1].starts_with("Échec"));
    assert!(subjects[2].starts_with("Sauvegarde Neopro rétablie"));
}

#[test]
fn bad_email_keys_are_configuration_errors() {
    let t = Tree::new("email-config");
    for (env, needle) in [
        (
            vec![("SMTP_URL", "smtp://u:p@mail.example.org:587")],
            "ALERT_EMAIL_TO",
        ),
        (
            vec![
                ("SMTP_URL", "smtp://u:p@mail.example.org:587"),
                ("ALERT_EMAIL_TO", "a@b.fr"),
            ],
            "ALERT_EMAIL_FROM",
        ),
        (vec![("ALERT_EMAIL_TO", "a@b.fr")], "SMTP_URL"),
        (
            vec![
                ("SMTP_URL", "http://u:topsecret@mail.example.org"),
                ("ALERT_EMAIL_TO", "a@b.fr"),
                ("ALERT_EMAIL_FROM", "c@d.fr"),
            ],
            "SMTP_URL",
        ),
        (
            vec![
                ("SMTP_URL", "smtp://u:p@mail.example.org:587"),
                ("ALERT_EMAIL_TO", "not an address"),
                ("ALERT_EMAIL_FROM", "c@d.fr"),
            ],
            "ALERT_EMAIL_TO",
        ),
    ] {
        let out = t.run_env(&env, &["run"]);
        out.expect_code(2, needle);
        assert!(out.stderr.contains(needle), "{needle}\n{out}");
        assert!(!out.stderr.contains("topsecret"), "{out}");
    }
}
