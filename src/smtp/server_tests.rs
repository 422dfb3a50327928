//! Tests against a real SMTP server (tests/smtp/server.py, aiosmtpd): STARTTLS and
//! implicit TLS, AUTH PLAIN and LOGIN, refusals and timeouts.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use super::message::*;
use super::url::*;
use super::*;
use crate::clock;
use nanoserde::DeJson;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

// ----- against a real server -----

const USER: &str = "alerte@club.fr";
/// With `:`, `/`, `@` and a non-ASCII letter: percent-encoded in the URL.
const PASSWORD: &str = "pa:ss/wörd@1";
const PASSWORD_IN_URL: &str = "pa%3Ass%2Fw%C3%B6rd%401";
const TIMEOUT: Duration = Duration::from_secs(15);

/// Fails under CI=true, else says why the test does nothing.
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
    let py = repo().join(".xtools/smtp-venv/bin/python");
    if py.exists() {
        Some(py)
    } else {
        unavailable("no SMTP test server: run scripts/smtp-venv.sh (aiosmtpd from PyPI)");
        None
    }
}

/// A fresh folder for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d =
            std::env::temp_dir().join(format!("neopro-smtp-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test PKI: a CA, a server certificate it signed for localhost and 127.0.0.1,
/// and another CA that signed nothing of ours. Made once per test process by the
/// parent; a child (see `in_child`) gets its folder in NEOPRO_SMTP_TEST_PKI.
fn pki() -> Option<&'static Path> {
    static PKI: OnceLock<Option<TempDir>> = OnceLock::new();
    if let Some(d) = std::env::var_os("NEOPRO_SMTP_TEST_PKI") {
        static CHILD: OnceLock<PathBuf> = OnceLock::new();
        return Some(CHILD.get_or_init(|| PathBuf::from(d)).as_path());
    }
    PKI.get_or_init(|| {
        let d = TempDir::new("pki");
        let script = "set -e
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
              -keyout ca.key -out ca.pem -days 2 -subj /CN=neopro-smtp-test-ca
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
              -keyout srv.key -out srv.csr -subj /CN=localhost
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
            openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
              -out srv.pem -days 2 -extfile ext.cnf
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
              -keyout other.key -out other.pem -days 2 -subj /CN=other-ca";
        match Command::new("sh")
            .args(["-c", script])
            .current_dir(&d.0)
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => Some(d),
            Ok(o) => panic!(
                "openssl failed making the test PKI: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => {
                unavailable(&format!("no openssl to make the test certificates: {e}"));
                None
            }
        }
    })
    .as_ref()
    .map(|d| d.0.as_path())
}

/// The TLS configuration is read once per process from SSL_CERT_FILE, and setting
/// an environment variable in a threaded test process is unsound: so a TLS test
/// runs its body in a child process of this test binary, with SSL_CERT_FILE set
/// to the CA given. Returns true in the child (run the body), false in the parent
/// after checking that the child ran that one test and passed.
#[cfg(feature = "tls")]
fn in_child(test: &str, ca: &str) -> bool {
    if std::env::var("NEOPRO_SMTP_TEST_CHILD").is_ok_and(|t| t == test) {
        return true;
    }
    let Some(pki) = pki() else { return false };
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, m)| m);
    let full = format!("{module}::{test}");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(exe)
        .args([full.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env("NEOPRO_SMTP_TEST_CHILD", test)
        .env("NEOPRO_SMTP_TEST_PKI", pki)
        .env("SSL_CERT_FILE", pki.join(ca))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the test binary: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- child {full}:\n{stdout}{stderr}---");
    assert!(out.status.success(), "{full} failed in its child process");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{full}: the child did not run exactly that test"
    );
    false
}

/// tests/smtp/server.py, started on a free port it picks; stopped when dropped.
struct Server {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Server {
    /// `mode`: starttls, implicit or plain; `extra`: more arguments.
    fn start(name: &str, mode: &str, extra: &[&str]) -> Option<Server> {
        let py = venv_python()?;
        let dir = TempDir::new(name);
        let mut c = Command::new(py);
        c.arg(repo().join("tests/smtp/server.py"))
            .args(["--mode", mode, "--user", USER, "--password", PASSWORD])
            .arg("--dir")
            .arg(dir.0.join("out"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("server.log")).ok()?);
        if mode != "plain" {
            let pki = pki()?;
            c.arg("--cert").arg(pki.join("srv.pem"));
            c.arg("--key").arg(pki.join("srv.key"));
        }
        let mut child = c.spawn().unwrap_or_else(|e| panic!("server.py: {e}"));
        let port_file = dir.0.join("out/port");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(p) = std::fs::read_to_string(&port_file)
                && let Ok(port) = p.trim().parse::<u16>()
            {
                return Some(Server { child, dir, port });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.0.join("server.log"));
                panic!("server.py exited ({status}): {}", log.unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "server.py wrote no port in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.0.join("out")
    }

    /// The received mails, in order: (envelope and parse, raw data).
    fn mails(&self) -> Vec<(Received, Vec<u8>)> {
        (1..)
            .map_while(|i| {
                let json = std::fs::read_to_string(self.out().join(format!("mail-{i}.json")));
                let json = json.ok()?;
                let r = crate::json::parse::<Received>(&json)
                    .unwrap_or_else(|e| panic!("mail-{i}.json: {e}: {json}"));
                let raw = std::fs::read(self.out().join(format!("mail-{i}.eml")))
                    .unwrap_or_else(|e| panic!("mail-{i}.eml: {e}"));
                Some((r, raw))
            })
            .collect()
    }

    /// `MECHANISM login ok|refused` per AUTH attempt.
    fn auth_log(&self) -> String {
        std::fs::read_to_string(self.out().join("auth.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What server.py wrote about a mail (Python's email package read it).
#[derive(DeJson, Debug)]
struct Received {
    mail_from: String,
    rcpt_tos: Vec<String>,
    tls: bool,
    /// Read by the TLS tests only.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls_version: String,
    auth_mechanism: String,
    auth_login: String,
    subject: String,
    from: String,
    to: String,
    date_epoch: i64,
    message_id: String,
    mime_version: String,
    content_type: String,
    charset: String,
    transfer_encoding: String,
    body: String,
    defects: Vec<String>,
}

fn url(scheme: &str, port: u16) -> SmtpUrl {
    let s = format!(
        "{scheme}://{}:{PASSWORD_IN_URL}@localhost:{port}",
        "alerte%40club.fr"
    );
    let mut u = SmtpUrl::parse(&s).unwrap_or_else(|e| panic!("{e}"));
    if scheme == "smtp" {
        // The test server is on loopback, where smtp:// means clear text: ask for
        // STARTTLS as smtp:// does to any other host.
        u.security = Security::StartTls;
    }
    u
}

fn recipients() -> Vec<String> {
    vec!["tresorier@club.fr".into(), "president@club.fr".into()]
}

/// An error must never show the password, in any form.
fn assert_no_secret(e: &str) {
    for secret in [
        PASSWORD,
        PASSWORD_IN_URL,
        &base64(PASSWORD.as_bytes()),
        &base64(format!("\0{USER}\0{PASSWORD}").as_bytes()),
    ] {
        assert!(!e.contains(secret), "the error shows a secret: {e}");
    }
}

/// Sends a French mail through `u`; checks what the server got; returns it.
fn send_and_check(server: &Server, u: &SmtpUrl) -> Received {
    let subject = "Échec de la sauvegarde Neopro – club de Saint-Étienne (ça n'a pas marché)";
    let long = format!("Erreur : {}", "le disque est plein, ".repeat(30));
    let body = format!(
        "Bonjour,\n\nLa sauvegarde a échoué.\n.hello\n.\n{long}\nDernière réussite : \
         mardi 17 décembre 2024 à 03:00\n-- \nneopro-backup\n"
    );
    let now = clock::now_unix();
    let msg = build_message(
        "neopro@club.fr",
        &recipients(),
        subject,
        &body,
        now,
        "pi-club",
    );
    let started = Instant::now();
    let r = send(u, "neopro@club.fr", &recipients(), &msg, TIMEOUT);
    assert_eq!(r, Ok(()), "sending through {u}");
    assert!(started.elapsed() < TIMEOUT);
    let mails = server.mails();
    assert_eq!(mails.len(), 1, "one mail received");
    let (got, raw) = mails.into_iter().next().unwrap_or_else(|| unreachable!());
    assert_eq!(got.mail_from, "neopro@club.fr");
    assert_eq!(got.rcpt_tos, recipients());
    assert_eq!(got.auth_login, USER);
    assert_eq!(got.subject, subject, "the RFC 2047 subject decodes back");
    assert_eq!(got.body, body, "the quoted-printable body decodes back");
    assert_eq!(got.from, "neopro@club.fr");
    assert_eq!(got.to, "tresorier@club.fr, president@club.fr");
    assert_eq!(got.date_epoch, now, "the Date header");
    assert!(
        got.message_id.starts_with('<') && got.message_id.ends_with("@pi-club>"),
        "{}",
        got.message_id
    );
    assert_eq!(got.mime_version, "1.0");
    assert_eq!(
        (got.content_type.as_str(), got.charset.as_str()),
        ("text/plain", "utf-8")
    );
    assert_eq!(got.transfer_encoding, "quoted-printable");
    assert!(got.defects.is_empty(), "parse defects: {:?}", got.defects);
    // The raw message as the server stored it, dot-stuffing removed.
    assert!(raw.is_ascii(), "7-bit message");
    let raw = String::from_utf8(raw).unwrap_or_else(|e| panic!("{e}"));
    assert!(raw.ends_with("\r\n"), "{raw:?}");
    let lines: Vec<&str> = raw
        .strip_suffix("\r\n")
        .unwrap_or(&raw)
        .split("\r\n")
        .collect();
    for l in &lines {
        assert!(
            !l.contains('\n') && !l.contains('\r'),
            "bare LF or CR: {l:?}"
        );
        assert!(l.len() <= 76, "a line of {} characters: {l:?}", l.len());
    }
    assert!(
        lines.contains(&".hello"),
        "the .hello line arrives as .hello"
    );
    assert!(lines.contains(&"."), "the . line arrives as .");
    assert!(
        lines.iter().any(|l| l.starts_with("Subject: =?UTF-8?B?")),
        "encoded subject"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Date: ") && l.ends_with(" +0000"))
    );
    got
}

#[test]
#[cfg(feature = "tls")]
fn smtp_starttls_auth_plain() {
    if !in_child("smtp_starttls_auth_plain", "ca.pem") {
        return;
    }
    let Some(server) = Server::start("plain-auth", "starttls", &[]) else {
        return;
    };
    let got = send_and_check(&server, &url("smtp", server.port));
    assert!(got.tls, "STARTTLS was used");
    assert!(got.tls_version.starts_with("TLSv1."), "{}", got.tls_version);
    assert_eq!(
        got.auth_mechanism, "PLAIN",
        "PLAIN is preferred when offered"
    );
}

#[test]
#[cfg(feature = "tls")]
fn smtp_starttls_auth_login() {
    if !in_child("smtp_starttls_auth_login", "ca.pem") {
        return;
    }
    let Some(server) = Server::start("login-auth", "starttls", &["--mechanisms", "LOGIN"]) else {
        return;
    };
    let got = send_and_check(&server, &url("smtp", server.port));
    assert!(got.tls);
    assert_eq!(got.auth_mechanism, "LOGIN");
}

#[test]
#[cfg(feature = "tls")]
fn smtp_implicit_tls() {
    if !in_child("smtp_implicit_tls", "ca.pem") {
        return;
    }
    let Some(server) = Server::start("implicit", "implicit", &[]) else {
        return;
    };
    let got = send_and_check(&server, &url("smtps", server.port));
    assert!(got.tls, "TLS from the first byte");
    assert_eq!(got.auth_mechanism, "PLAIN");
}

#[test]
#[cfg(feature = "tls")]
fn smtp_refused_auth_is_a_clear_error_without_the_password() {
    if !in_child(
        "smtp_refused_auth_is_a_clear_error_without_the_password",
        "ca.pem",
    ) {
        return;
    }
    let Some(server) = Server::start("refuse", "starttls", &["--refuse-auth"]) else {
        return;
    };
    let msg = build_message("neopro@club.fr", &recipients(), "s", "b", 0, "pi");
    let started = Instant::now();
    let r = send(
        &url("smtp", server.port),
        "neopro@club.fr",
        &recipients(),
        &msg,
        TIMEOUT,
    );
    let elapsed = started.elapsed();
    let e = r.err().unwrap_or_else(|| panic!("refused AUTH gave Ok"));
    assert!(
        e.contains("refused the user name or password") && e.contains("535"),
        "{e}"
    );
    assert_no_secret(&e);
    assert!(elapsed < TIMEOUT / 2, "took {elapsed:?}");
    assert_eq!(server.auth_log(), format!("PLAIN {USER} refused\n"));
    assert!(server.mails().is_empty());
}

#[test]
#[cfg(feature = "tls")]
fn smtp_untrusted_certificate_sends_nothing() {
    if !in_child("smtp_untrusted_certificate_sends_nothing", "other.pem") {
        return;
    }
    let Some(server) = Server::start("untrusted", "starttls", &[]) else {
        return;
    };
    let msg = build_message("neopro@club.fr", &recipients(), "s", "b", 0, "pi");
    let r = send(
        &url("smtp", server.port),
        "neopro@club.fr",
        &recipients(),
        &msg,
        TIMEOUT,
    );
    let e = r
        .err()
        .unwrap_or_else(|| panic!("an untrusted server got the mail"));
    assert!(
        e.contains("not trusted") && e.contains("SSL_CERT_FILE"),
        "{e}"
    );
    assert_no_secret(&e);
    assert_eq!(server.auth_log(), "", "no AUTH attempted");
    assert!(server.mails().is_empty());
}

#[test]
fn smtp_starttls_is_mandatory_off_loopback() {
    // A server without STARTTLS (it offers AUTH in clear): nothing may be sent.
    let Some(server) = Server::start("no-starttls", "plain", &[]) else {
        return;
    };
    let msg = build_message("neopro@club.fr", &recipients(), "s", "b", 0, "pi");
    let r = send(
        &url("smtp", server.port),
        "neopro@club.fr",
        &recipients(),
        &msg,
        TIMEOUT,
    );
    let e = r.err().unwrap_or_else(|| panic!("sent without STARTTLS"));
    assert!(e.contains("does not offer STARTTLS"), "{e}");
    assert_eq!(
        server.auth_log(),
        "",
        "the password never went out in clear"
    );
    assert!(server.mails().is_empty());
}

#[test]
fn smtp_loopback_in_clear() {
    let Some(server) = Server::start("clear", "plain", &[]) else {
        return;
    };
    let s = format!(
        "smtp://alerte%40club.fr:{PASSWORD_IN_URL}@127.0.0.1:{}",
        server.port
    );
    let u = SmtpUrl::parse(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u.security, Security::Clear);
    let got = send_and_check(&server, &u);
    assert!(!got.tls);
    assert_eq!(got.auth_mechanism, "PLAIN");
    // The alert's own French text arrives as written.
    let (subject, body) = crate::alerts::mail::failure_mail(
        "club-saint-étienne",
        "cannot create BACKUP_DIR /home/pi/neopro-backups: Not a directory (os error 20)",
        None,
        Some("mardi 17 décembre 2024 à 03:00"),
        0,
        Some("http://192.168.1.20:8081/"),
    );
    let msg = build_message("neopro@club.fr", &recipients(), &subject, &body, 0, "pi");
    assert_eq!(
        send(&u, "neopro@club.fr", &recipients(), &msg, TIMEOUT),
        Ok(())
    );
    let mails = server.mails();
    let (got, _) = mails.get(1).unwrap_or_else(|| panic!("no second mail"));
    assert_eq!((&got.subject, &got.body), (&subject, &body));
    assert!(got.body.contains("Dernière sauvegarde réussie : mardi"));
    // The error in French words, then the raw one (a real Postfix delivered only the
    // raw English text before).
    assert!(
        got.body
            .contains("Erreur : Un dossier attendu est en fait un fichier")
            && got.body.contains(
                "Détail technique : cannot create BACKUP_DIR /home/pi/neopro-backups: Not a \
                 directory (os error 20)"
            ),
        "{}",
        got.body
    );
}

#[test]
fn smtp_down_server_fails_fast() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
    };
    // The listener is closed: nothing listens on that port now.
    let u = SmtpUrl::parse(&format!("smtp://u:{PASSWORD_IN_URL}@127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let r = send(
        &u,
        "a@b.fr",
        &recipients(),
        b"Subject: x\r\n\r\nx\r\n",
        TIMEOUT,
    );
    let e = r
        .err()
        .unwrap_or_else(|| panic!("a closed port took the mail"));
    assert_eq!(
        e,
        format!(
            "cannot connect to 127.0.0.1:{port}: connection refused (no mail server listening there)"
        )
    );
    assert_no_secret(&e);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn smtp_silent_server_times_out() {
    // Accepts the connection and never says a word.
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = l.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let hold = std::thread::spawn(move || {
        // Holds the connection until the client closes it (read gives 0), 5 s at most.
        if let Ok((mut conn, _)) = l.accept() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = conn.read(&mut [0u8; 64]);
        }
    });
    let u = SmtpUrl::parse(&format!("smtp://127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let timeout = Duration::from_millis(800);
    let r = send(&u, "a@b.fr", &recipients(), b"x", timeout);
    let elapsed = started.elapsed();
    let e = r
        .err()
        .unwrap_or_else(|| panic!("a silent server took the mail"));
    // The exchange's own error (which step) or, had its thread been late on a busy
    // machine, send's bound. (The exchange's words are checked exactly, without
    // send's bound, by a_silent_peer_ends_the_read_at_the_deadline.)
    assert!(
        e == format!(
            "127.0.0.1:{port} (waiting for the answer to the greeting): no answer in time"
        ) || e.contains("no complete answer within 0.8 s"),
        "{e}"
    );
    assert!(
        elapsed >= timeout - timeout / 10 && elapsed < timeout + Duration::from_millis(300),
        "{elapsed:?}"
    );
    let _ = hold.join();
}

#[test]
fn smtp_refuses_bad_addresses_before_connecting() {
    let u = SmtpUrl::parse("smtp://127.0.0.1:9").unwrap_or_else(|e| panic!("{e}"));
    let e = send(&u, "not an address", &recipients(), b"x", TIMEOUT);
    assert!(e.is_err_and(|e| e.starts_with("sender:")));
    let e = send(
        &u,
        "a@b.fr",
        &["x@y\r\nRCPT TO:<z@w>".to_string()],
        b"x",
        TIMEOUT,
    );
    assert!(e.is_err_and(|e| e.starts_with("recipient:")));
    assert_eq!(
        send(&u, "a@b.fr", &[], b"x", TIMEOUT),
        Err("no recipient".into())
    );
}

/// A peer that takes the start of the TLS ClientHello of smtps:// and closes: the
/// handshake ends at once with a plain error, not at the deadline. (rustls reports
/// the end of the stream in a handshake as UnexpectedEof; an unauthenticated
/// close_notify alert there is only a warning, which it ignores.)
#[test]
#[cfg(feature = "tls")]
fn smtp_a_peer_that_closes_during_the_tls_handshake() {
    if !in_child("smtp_a_peer_that_closes_during_the_tls_handshake", "ca.pem") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = l.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let peer = std::thread::spawn(move || {
        if let Ok((mut conn, _)) = l.accept() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
            // The ClientHello's record header, then the end.
            let _ = conn.read_exact(&mut [0u8; 5]);
        }
    });
    let u = SmtpUrl::parse(&format!("smtps://127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let r = send(&u, "a@b.fr", &recipients(), b"x", TIMEOUT);
    assert_eq!(
        r,
        Err(format!(
            "127.0.0.1:{port} (TLS handshake): the server closed the connection"
        ))
    );
    assert!(started.elapsed() < TIMEOUT / 2, "{:?}", started.elapsed());
    let _ = peer.join();
}
