//! The fake Google of the tests (tests/gdrive/fake_google.py, tests/gdrive/README.md):
//! started on a free port for one test, stopped with it (its stdin is ours: it exits on
//! EOF even when the test panics), driven through its `/_test/…` endpoints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Guard;
use super::json::{Json, parse_json};
use super::net::{Answer, http};

/// The OAuth client the tests configure.
pub const CLIENT_ID: &str = "123-neopro.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-test-secret-never-shown";

pub struct FakeGoogle {
    _child: Guard,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl FakeGoogle {
    /// A fresh fake on a port the system picks; waits for its ready line.
    pub fn start() -> FakeGoogle {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/gdrive/fake_google.py"))
            .args(["--port", "0", "--exit-on-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the fake Google (python3): {e}"));
        let out = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("the fake Google said nothing: {e}"));
        let url = line
            .trim()
            .strip_prefix("fake-google listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of the fake: {line:?}"))
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        FakeGoogle {
            _child: Guard(child),
            url,
            addr,
        }
    }

    /// The environment that points the binary at this fake, with the Drive keys.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("NEOPRO_GDRIVE_API_URL", self.url.as_str()),
            ("NEOPRO_GOOGLE_OAUTH_URL", self.url.as_str()),
            ("GDRIVE_CLIENT_ID", CLIENT_ID),
            ("GDRIVE_CLIENT_SECRET", CLIENT_SECRET),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn post(&self, path: &str, json: &str) -> Answer {
        http(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            json.as_bytes(),
        )
    }

    pub fn get_json(&self, path: &str) -> Json {
        let a = http(&self.addr, "GET", path, &[], b"");
        let text = String::from_utf8_lossy(&a.body).to_string();
        assert_eq!(a.status, 200, "GET {path}: {text}");
        parse_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The next `times` requests of `op` fail with `fault` (a JSON object).
    pub fn fault(&self, op: &str, fault: &str, times: u32) {
        let a = self.post(
            "/_test/fault",
            &format!(r#"{{"op":"{op}","fault":{fault},"times":{times}}}"#),
        );
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    }

    pub fn config(&self, json: &str) {
        assert_eq!(self.post("/_test/config", json).status, 200);
    }

    pub fn approve(&self, user_code: &str) {
        let a = self.post(
            "/_test/approve",
            &format!(r#"{{"user_code":"{user_code}"}}"#),
        );
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    }

    pub fn deny(&self, user_code: &str) {
        assert_eq!(
            self.post("/_test/deny", &format!(r#"{{"user_code":"{user_code}"}}"#))
                .status,
            200
        );
    }

    /// Every request the fake received (not the /_test ones), as it logged them.
    pub fn requests(&self) -> Json {
        self.get_json("/_test/requests")
    }

    /// Writes the request log to `path` and checks it against Drive v3's discovery
    /// document with tests/gdrive/check_requests.py (the venv's python, which knows where
    /// google-api-python-client keeps drive.v3.json). Panics with what does not match.
    pub fn check_requests(&self, path: &Path) {
        let a = http(&self.addr, "GET", "/_test/requests", &[], b"");
        std::fs::write(path, &a.body).unwrap_or_else(|e| panic!("{e}"));
        let out = super::output(
            Command::new(venv_python())
                .arg(repo().join("tests/gdrive/check_requests.py"))
                .arg(path),
        );
        assert_eq!(
            out.code, 0,
            "requests not in Drive v3's discovery document:\n{out}"
        );
    }
}

/// The python of `make deps-gdrive` (.xtools/gdrive-venv), with Google's client.
pub fn venv_python() -> PathBuf {
    let p = repo().join(".xtools/gdrive-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make deps-gdrive` (Google's Python client, for the fidelity checks)",
        p.display()
    );
    p
}
