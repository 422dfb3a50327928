//! Configuration: the keys of CONTRACT §2, read from the environment first and then from
//! a `KEY=VALUE` file (the same file serves as systemd's `EnvironmentFile=`).
//!
//! Every bad value is an error that names the key, the value and what is expected; no
//! value is ever silently replaced by a default.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/neopro/backup.conf";

/// Every key this program reads, so that a typo in the file can be pointed out.
pub const KEYS: &[&str] = &[
    "NEOPRO_DIR",
    "BACKUP_DIR",
    "SITE_CONF",
    "RETENTION_DAYS",
    "BACKUP_TIME",
    "LISTEN",
    "API_TOKEN",
    "INCLUDE_VIDEOS",
    "SERVICES",
    "RESTART_CMD",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub neopro_dir: PathBuf,
    pub backup_dir: PathBuf,
    pub site_conf: PathBuf,
    pub retention_days: u32,
    /// Hour and minute of the daily backup, local time.
    pub backup_time: (u32, u32),
    pub listen: SocketAddr,
    pub api_token: Option<String>,
    pub include_videos: bool,
    pub services: Vec<String>,
    /// Command run after a successful restore (e.g. `systemctl restart neopro-app`).
    pub restart_cmd: Option<String>,
    /// Lines of the config file that name no known key (reported as warnings).
    pub unknown_keys: Vec<String>,
}

/// A configuration error: always exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError(format!("invalid {key}={value:?}: expected {expected}"))
}

/// Parses the text of a config file into key/value pairs.
pub fn parse_file(text: &str, origin: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError(format!(
                "{}:{}: expected KEY=VALUE, found {:?}",
                origin.display(),
                i + 1,
                raw
            )));
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError(format!(
                "{}:{}: {:?} is not a valid key name",
                origin.display(),
                i + 1,
                key
            )));
        }
        let value = value.trim();
        let value = match value.as_bytes() {
            [q @ (b'"' | b'\''), .., last] if last == q && value.len() >= 2 => {
                &value[1..value.len() - 1]
            }
            [b'"' | b'\'', ..] => {
                return Err(ConfigError(format!(
                    "{}:{}: unterminated quote in the value of {key}",
                    origin.display(),
                    i + 1
                )));
            }
            _ => value,
        };
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Where the values come from: the environment and the config file.
pub struct Sources {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
    unknown_keys: Vec<String>,
}

impl Sources {
    /// Reads the real environment and the config file. An explicit `--config` path must
    /// exist; the default path may be absent.
    pub fn gather(config_path: Option<&Path>) -> Result<Sources, ConfigError> {
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .collect();
        let (path, explicit) = match config_path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
                ConfigError(format!(
                    "{}: the config file is not valid UTF-8",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(e) => {
                return Err(ConfigError(format!(
                    "cannot read the config file {}: {e}",
                    path.display()
                )));
            }
        };
        Sources::from_parts(env, &text, &path)
    }

    pub fn from_parts(
        env: HashMap<String, String>,
        file_text: &str,
        origin: &Path,
    ) -> Result<Sources, ConfigError> {
        let mut file = HashMap::new();
        let mut unknown_keys = Vec::new();
        for (k, v) in parse_file(file_text, origin)? {
            if !KEYS.contains(&k.as_str()) {
                unknown_keys.push(k.clone());
            }
            file.insert(k, v);
        }
        Ok(Sources {
            env,
            file,
            unknown_keys,
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .or_else(|| self.file.get(key))
            .map(String::as_str)
    }
}

fn path_key(src: &Sources, key: &str, default: &str) -> Result<PathBuf, ConfigError> {
    let v = src.get(key).unwrap_or(default);
    if v.is_empty() || !v.starts_with('/') {
        return Err(bad(key, v, "an absolute path"));
    }
    Ok(PathBuf::from(v))
}

/// Parses `HH:MM` (24-hour clock).
pub fn parse_hhmm(v: &str) -> Option<(u32, u32)> {
    let (h, m) = v.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn valid_unit_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-:\\".contains(&b))
}

impl Config {
    pub fn load(config_path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::gather(config_path)?)
    }

    pub fn from_sources(src: &Sources) -> Result<Config, ConfigError> {
        let retention_days = {
            let v = src.get("RETENTION_DAYS").unwrap_or("7");
            match v.parse::<u32>() {
                Ok(n) if (1..=3650).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(bad(
                        "RETENTION_DAYS",
                        v,
                        "a whole number of days from 1 to 3650",
                    ));
                }
            }
        };
        let backup_time = {
            let v = src.get("BACKUP_TIME").unwrap_or("03:00");
            parse_hhmm(v)
                .ok_or_else(|| bad("BACKUP_TIME", v, "a local time HH:MM, 00:00 to 23:59"))?
        };
        let listen = {
            let v = src.get("LISTEN").unwrap_or("127.0.0.1:8081");
            v.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "LISTEN",
                    v,
                    "an IP address and port, e.g. 127.0.0.1:8081 or [::1]:8081",
                )
            })?
        };
        let api_token = match src.get("API_TOKEN") {
            None | Some("") => None,
            Some(t) if t.len() < 16 || t.bytes().any(|b| !b.is_ascii_graphic()) => {
                // Never echo the token itself.
                return Err(ConfigError(
                    "invalid API_TOKEN: expected at least 16 printable characters without spaces"
                        .to_string(),
                ));
            }
            Some(t) => Some(t.to_string()),
        };
        let include_videos = {
            let v = src.get("INCLUDE_VIDEOS").unwrap_or("false");
            parse_bool(v).ok_or_else(|| bad("INCLUDE_VIDEOS", v, "true or false"))?
        };
        let services = {
            let v = src
                .get("SERVICES")
                .unwrap_or("neopro-app neopro-sync-agent nginx");
            let list: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            if list.len() > 32 || !list.iter().all(|s| valid_unit_name(s)) {
                return Err(bad(
                    "SERVICES",
                    v,
                    "space-separated systemd unit names (letters, digits, @ . _ - :), at most 32",
                ));
            }
            list
        };
        let restart_cmd = src
            .get("RESTART_CMD")
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string);
        Ok(Config {
            neopro_dir: path_key(src, "NEOPRO_DIR", "/home/pi/neopro")?,
            backup_dir: path_key(src, "BACKUP_DIR", "/home/pi/neopro-backups")?,
            site_conf: path_key(src, "SITE_CONF", "/etc/neopro/site.conf")?,
            retention_days,
            backup_time,
            listen,
            api_token,
            include_videos,
            services,
            restart_cmd,
            unknown_keys: src.unknown_keys.clone(),
        })
    }

    /// The `serve` rule: a token is required unless the API listens on loopback only.
    pub fn check_listen_security(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.api_token.is_none() {
            return Err(ConfigError(format!(
                "LISTEN={} is not a loopback address: set API_TOKEN (at least 16 characters) \
                 so that the API is not open to the network",
                self.listen
            )));
        }
        Ok(())
    }

    pub fn configuration_json(&self) -> PathBuf {
        self.neopro_dir.join("webapp/configuration.json")
    }

    pub fn sync_agent_env(&self) -> PathBuf {
        self.neopro_dir.join("sync-agent/.env")
    }

    pub fn videos_dir(&self) -> PathBuf {
        self.neopro_dir.join("videos")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(env: &[(&str, &str)], file: &str) -> Result<Config, ConfigError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(&Sources::from_parts(env, file, Path::new("test.conf"))?)
    }

    #[test]
    fn defaults() {
        let c = cfg(&[], "")
            .map_err(|e| e.0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.retention_days, 7);
        assert_eq!(c.backup_time, (3, 0));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(c.services, ["neopro-app", "neopro-sync-agent", "nginx"]);
        assert!(!c.include_videos && c.api_token.is_none());
    }

    #[test]
    fn env_wins_over_file_and_quotes_and_comments_work() {
        let file =
            "# comment\nRETENTION_DAYS=\"14\"\nexport BACKUP_TIME='04:30'\n\nINCLUDE_VIDEOS=yes\n";
        let c = cfg(&[("RETENTION_DAYS", "3")], file).map_err(|e| e.0);
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.retention_days, 3);
        assert_eq!(c.backup_time, (4, 30));
        assert!(c.include_videos);
    }

    #[test]
    fn bad_values_name_key_value_and_expectation() {
        for (k, v) in [
            ("RETENTION_DAYS", "seven"),
            ("RETENTION_DAYS", "0"),
            ("RETENTION_DAYS", "-1"),
            ("BACKUP_TIME", "25:00"),
            ("BACKUP_TIME", "3h"),
            ("LISTEN", "localhost"),
            ("INCLUDE_VIDEOS", "maybe"),
            ("NEOPRO_DIR", "relative/dir"),
            ("SERVICES", "nginx;rm -rf /"),
        ] {
            let Err(e) = cfg(&[(k, v)], "") else {
                panic!("{k}={v} was accepted");
            };
            assert!(
                e.0.contains(k) && e.0.contains(v) && e.0.contains("expected"),
                "{e}"
            );
        }
    }

    #[test]
    fn token_is_never_echoed_and_required_off_loopback() {
        let Err(e) = cfg(&[("API_TOKEN", "short secret")], "") else {
            panic!("weak token accepted");
        };
        assert!(!e.0.contains("short secret"));
        let c = cfg(&[("LISTEN", "0.0.0.0:8081")], "").map_err(|e| e.0);
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert!(c.check_listen_security().is_err());
    }

    #[test]
    fn malformed_file_lines_are_errors() {
        assert!(cfg(&[], "JUSTAWORD\n").is_err());
        assert!(cfg(&[], "RETENTION_DAYS=\"7\n").is_err());
        let c = cfg(&[], "TYPO_DAYS=3\n").map_err(|e| e.0);
        assert_eq!(
            c.unwrap_or_else(|e| panic!("{e}")).unknown_keys,
            ["TYPO_DAYS"]
        );
    }
}
