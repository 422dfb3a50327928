//! Configuration: the keys of docs/format.md, Configuration, read from the environment first and then from
//! a `KEY=VALUE` file (the same file serves as systemd's `EnvironmentFile=`).
//!
//! Every bad value is an error that names the key, the value and what is expected; no
//! value is ever silently replaced by a default.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/neopro/backup.conf";

/// The bucket folder of the shared videos, `S3_PREFIX/videos/` (docs/format.md, Videos
/// offsite): no site may take that name as its SITE_ID.
pub const VIDEOS_DIR: &str = "videos";

/// The bucket folder of the fleet's index, `S3_PREFIX/fleet-index/` (docs/format.md,
/// Fleet, The index): a copy of each site's status and last drill, so that the fleet
/// dashboard reads what changed and nothing else.
pub const FLEET_INDEX_DIR: &str = "fleet-index";

/// The names under S3_PREFIX that are not sites (docs/format.md, Offsite): a SITE_ID
/// (set, or the hostname) equal to one of them sends no copy, whatever else is set.
pub const RESERVED_SITE_IDS: &[&str] = &[VIDEOS_DIR, FLEET_INDEX_DIR];

/// Why `site` cannot be a folder of its own in the bucket, if it cannot.
pub fn reserved_site_id(site: &str) -> Option<String> {
    RESERVED_SITE_IDS.contains(&site).then(|| {
        format!(
            "SITE_ID \"{site}\" (set, or this Pi's hostname) is reserved in the bucket (S3_PREFIX/{site}/ is not a site's folder): no offsite copy is sent until SITE_ID names this site; local backups go on"
        )
    })
}

/// Every key this program reads, so that a typo in the file can be pointed out.
pub const KEYS: &[&str] = &[
    "NEOPRO_DIR",
    "BACKUP_DIR",
    "SITE_CONF",
    "RETENTION_DAYS",
    "BACKUP_TIME",
    "LISTEN",
    "API_TOKEN",
    "FRAME_ANCESTORS",
    "INCLUDE_VIDEOS",
    "SERVICES",
    "RESTART_CMD",
    // Offsite copies and alerts (docs/format.md, Offsite).
    "S3_ENDPOINT",
    "S3_BUCKET",
    "S3_REGION",
    "S3_PREFIX",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "SITE_ID",
    "S3_RETENTION_DAYS",
    "ENCRYPT_TO",
    "VIDEOS_OFFSITE",
    "ALERT_WEBHOOK",
    "PING_URL",
    "ON_FAILURE_CMD",
    "SMTP_URL",
    "ALERT_EMAIL_TO",
    "ALERT_EMAIL_FROM",
    // The operator's fleet dashboard (docs/format.md, Fleet, Restore drills).
    "FLEET_DRILL_MAX_DAYS",
    // Google Drive, the club's own (docs/format.md, Google Drive).
    "GDRIVE_CLIENT_ID",
    "GDRIVE_CLIENT_SECRET",
    "GDRIVE_FOLDER",
    "GDRIVE_RETENTION_DAYS",
];

/// Keys whose values are secrets: never echoed, and removed from the environment that
/// child processes inherit.
pub const SECRET_KEYS: &[&str] = &[
    "S3_SECRET_KEY",
    "API_TOKEN",
    "SMTP_URL",
    "GDRIVE_CLIENT_SECRET",
];

/// Google's API root (`/drive/v3/…`, `/upload/drive/v3/…`); NEOPRO_GDRIVE_API_URL
/// replaces it in tests only (docs/format.md, Google Drive).
pub const GDRIVE_API_URL: &str = "https://www.googleapis.com";
/// Google's OAuth root (`/device/code`, `/token`, `/revoke`); NEOPRO_GOOGLE_OAUTH_URL
/// replaces it in tests only.
pub const GOOGLE_OAUTH_URL: &str = "https://oauth2.googleapis.com";

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
    /// Origins (besides the page's own) allowed to frame the page (`scheme://host[:port]`).
    pub frame_ancestors: Vec<String>,
    pub include_videos: bool,
    pub services: Vec<String>,
    /// Command run after a successful restore (e.g. `systemctl restart neopro-app`).
    pub restart_cmd: Option<String>,
    /// Lines of the config file that name no known key (reported as warnings).
    pub unknown_keys: Vec<String>,
    /// Other warnings about the configuration (a secret in a world-readable file).
    pub warnings: Vec<String>,
    /// This Pi's name in the bucket and in alerts (SITE_ID, default the hostname).
    pub site_id: String,
    /// Offsite copies; `None` while S3_ENDPOINT is unset.
    pub offsite: Option<OffsiteSettings>,
    /// Copies to the club's Google Drive; `None` while GDRIVE_CLIENT_ID is unset.
    pub gdrive: Option<GdriveSettings>,
    pub alerts: Alerts,
    /// `fleet` and `fleet serve` flag a site whose last restore drill is older than this
    /// many days (FLEET_DRILL_MAX_DAYS).
    pub fleet_drill_max_days: u32,
}

/// A secret value (S3_SECRET_KEY): its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

/// The S3 keys of docs/format.md, Offsite.
#[derive(Debug, Clone)]
pub struct OffsiteSettings {
    pub endpoint: crate::http::client::Url,
    pub bucket: String,
    pub region: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub access_key: String,
    pub secret_key: Secret,
    pub retention_days: u32,
    /// age X25519 recipients (`age1…`); empty: copies are not encrypted.
    pub encrypt_to: Vec<String>,
    /// VIDEOS_OFFSITE: the videos go to the bucket too, content-addressed
    /// (docs/format.md, Videos offsite).
    pub videos: bool,
}

/// The Google Drive keys of docs/format.md, Google Drive.
#[derive(Debug, Clone)]
pub struct GdriveSettings {
    /// The club's OAuth client, of type "TVs and Limited Input devices".
    pub client_id: String,
    pub client_secret: Secret,
    /// GDRIVE_FOLDER: the folder of My Drive the copies go under (`FOLDER/SITE_ID/`).
    pub folder: String,
    pub retention_days: u32,
    /// age X25519 recipients (ENCRYPT_TO); empty: copies are not encrypted.
    pub encrypt_to: Vec<String>,
    /// Google's API and OAuth roots (GDRIVE_API_URL, GOOGLE_OAUTH_URL; tests only:
    /// NEOPRO_GDRIVE_API_URL, NEOPRO_GOOGLE_OAUTH_URL).
    pub api: crate::http::client::Url,
    pub oauth: crate::http::client::Url,
}

/// ALERT_WEBHOOK, PING_URL, ON_FAILURE_CMD, and the email keys.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    pub webhook: Option<crate::http::client::Url>,
    pub ping: Option<crate::http::client::Url>,
    pub on_failure_cmd: Option<String>,
    /// SMTP_URL, ALERT_EMAIL_FROM, ALERT_EMAIL_TO; `None` while SMTP_URL is unset.
    pub email: Option<Email>,
}

/// Where alert mails go (docs/format.md, Offsite: "Email alerts").
#[derive(Debug, Clone)]
pub struct Email {
    pub url: crate::smtp::SmtpUrl,
    pub from: String,
    pub to: Vec<String>,
}

/// The email keys: all three, or none (SMTP_URL unset).
fn email_keys(src: &Lookup) -> Result<Option<Email>, ConfigError> {
    let get = |k: &str| src.get(k).map(str::trim).filter(|v| !v.is_empty());
    let Some(raw) = get("SMTP_URL") else {
        if let Some(k) = ["ALERT_EMAIL_TO", "ALERT_EMAIL_FROM"]
            .into_iter()
            .find(|k| get(k).is_some())
        {
            return Err(ConfigError(format!(
                "{k} is set but SMTP_URL is not: set SMTP_URL (smtps://user:password@host:465 or smtp://user:password@host:587) or remove {k}"
            )));
        }
        return Ok(None);
    };
    let url = crate::smtp::SmtpUrl::parse(raw).map_err(|e| bad("SMTP_URL", &shown_url(raw), &e))?;
    let Some(to) = get("ALERT_EMAIL_TO") else {
        return Err(ConfigError(
            "SMTP_URL is set but ALERT_EMAIL_TO is not: set the addresses that get the alerts (comma-separated)".into(),
        ));
    };
    let to = crate::smtp::parse_address_list(to).map_err(|e| bad("ALERT_EMAIL_TO", to, &e))?;
    let Some(from) = get("ALERT_EMAIL_FROM") else {
        return Err(ConfigError(
            "SMTP_URL is set but ALERT_EMAIL_FROM is not: set the sender address of the alerts"
                .into(),
        ));
    };
    crate::smtp::check_address(from).map_err(|e| bad("ALERT_EMAIL_FROM", from, &e))?;
    Ok(Some(Email {
        url,
        from: from.to_string(),
        to,
    }))
}

/// A configuration error: always exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most characters of a value an error shows: a runaway line is cut, not echoed
/// whole.
const SHOWN_MAX_CHARS: usize = 64;

/// A value as errors show it: quoted, cut after `SHOWN_MAX_CHARS` characters.
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_MAX_CHARS) {
        None => format!("{value:?}"),
        Some((at, _)) => format!("{:?}… ({} bytes in all)", &value[..at], value.len()),
    }
}

fn bad(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError(format!(
        "invalid {}={}: expected {expected}",
        cut(key),
        shown(value)
    ))
}

/// A key name as errors show it (a "key" may be a whole runaway line).
fn cut(s: &str) -> &str {
    match s.char_indices().nth(SHOWN_MAX_CHARS) {
        None => s,
        Some((at, _)) => &s[..at],
    }
}

/// The most a config file may hold: a real one is a few hundred bytes.
pub const CONFIG_MAX_BYTES: u64 = 1024 * 1024;

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
                "{}:{}: expected KEY=VALUE, found {}",
                origin.display(),
                i + 1,
                shown(raw)
            )));
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError(format!(
                "{}:{}: {} is not a valid key name",
                origin.display(),
                i + 1,
                shown(key)
            )));
        }
        let value = value.trim();
        let value = match value.as_bytes() {
            [q @ (b'"' | b'\''), .., last] if last == q && value.len() >= 2 => {
                &value[1..value.len() - 1]
            }
            [b'"' | b'\'', ..] => {
                return Err(ConfigError(format!(
                    "{}:{}: unterminated quote in the value of {}",
                    origin.display(),
                    i + 1,
                    cut(key)
                )));
            }
            _ => value,
        };
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Where the values come from: the environment and the config file.
pub struct Lookup {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
    unknown_keys: Vec<String>,
    /// Said on stderr at every start (a secret in a world-readable file).
    warnings: Vec<String>,
}

impl Lookup {
    /// Reads the real environment and the config file. An explicit `--config` path must
    /// exist; the default path may be absent.
    pub fn gather(config_path: Option<&Path>) -> Result<Lookup, ConfigError> {
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .collect();
        let (path, explicit) = match config_path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let read = crate::fsutil::read_small(&path, false, CONFIG_MAX_BYTES);
        let (text, mode) = match read {
            Ok((bytes, mode)) => (
                String::from_utf8(bytes).map_err(|_| {
                    ConfigError(format!(
                        "{}: the config file is not valid UTF-8",
                        path.display()
                    ))
                })?,
                mode,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => (String::new(), 0),
            Err(e) => {
                return Err(ConfigError(format!(
                    "cannot read the config file {}: {e}",
                    path.display()
                )));
            }
        };
        let mut lookup = Lookup::from_parts(env, &text, &path)?;
        // A secret in a file every user of the Pi can read (the kiosk browser, a
        // player plug-in) is a leak waiting to happen: say so, every time.
        let secrets: Vec<&str> = SECRET_KEYS
            .iter()
            .copied()
            .filter(|k| lookup.file.get(*k).is_some_and(|v| !v.is_empty()))
            .collect();
        if mode & 0o004 != 0 && !secrets.is_empty() && crate::fsutil::reachable_by_others(&path) {
            lookup.warnings.push(format!(
                "{} holds {} and is readable by every user (mode {:04o}): chmod 600 (or 640 \
                 root:<service group>) it",
                path.display(),
                secrets.join(" and "),
                mode & 0o7777
            ));
        }
        Ok(lookup)
    }

    pub fn from_parts(
        env: HashMap<String, String>,
        file_text: &str,
        origin: &Path,
    ) -> Result<Lookup, ConfigError> {
        let mut file = HashMap::new();
        let mut unknown_keys = Vec::new();
        for (k, v) in parse_file(file_text, origin)? {
            if !KEYS.contains(&k.as_str()) {
                unknown_keys.push(k.clone());
            }
            file.insert(k, v);
        }
        Ok(Lookup {
            env,
            file,
            unknown_keys,
            warnings: Vec::new(),
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .or_else(|| self.file.get(key))
            .map(String::as_str)
    }
}

fn path_key(src: &Lookup, key: &str, default: &str) -> Result<PathBuf, ConfigError> {
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

/// A URL value as errors may show it: scheme and host only (paths and user info of
/// webhook and ping URLs often carry tokens).
fn shown_url(v: &str) -> String {
    let (scheme, rest) = v.split_once("://").unwrap_or(("", v));
    // All up to the last '@' may be user info: a password may hold '/', '?' or '#'.
    let after_user = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = after_user.split(['/', '?', '#']).next().unwrap_or("");
    let cut = host.len() < rest.len() || rest.contains('@');
    match (scheme.is_empty(), cut) {
        (true, _) if v.len() > 12 || v.contains('@') => "(value not shown)".to_string(),
        (true, _) => v.to_string(),
        (false, true) => format!("{scheme}://{host}/…"),
        (false, false) => v.to_string(),
    }
}

fn url_key(
    src: &Lookup,
    key: &str,
    path_allowed: bool,
) -> Result<Option<crate::http::client::Url>, ConfigError> {
    let Some(v) = src.get(key).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let url = crate::http::client::Url::parse(v.trim())
        .map_err(|expected| bad(key, &shown_url(v), &expected))?;
    if !path_allowed && url.path.contains('?') {
        return Err(bad(key, &shown_url(v), "a URL without ?query"));
    }
    Ok(Some(url))
}

/// `http(s)://host[:port]`: a host name, an IPv4 address or a bracketed IPv6 one, as a
/// CSP source for `frame-ancestors`; nothing else (no path, no wildcard, no quote).
pub fn valid_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host_ok, port) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((v6, after)) => (
            v6.parse::<std::net::Ipv6Addr>().is_ok()
                && (after.is_empty() || after.starts_with(':')),
            after.strip_prefix(':'),
        ),
        None => {
            let (host, port) = rest
                .split_once(':')
                .map_or((rest, None), |(h, p)| (h, Some(p)));
            let label_ok = |l: &str| {
                (1..=63).contains(&l.len())
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            (host.len() <= 253 && host.split('.').all(label_ok), port)
        }
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    host_ok && port.is_none_or(|p| digits(p) && p.parse::<u16>().is_ok_and(|n| n > 0))
}

fn days_key(src: &Lookup, key: &str, default: &str) -> Result<u32, ConfigError> {
    let v = src.get(key).unwrap_or(default);
    match v.parse::<u32>() {
        Ok(n) if (1..=3650).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(bad(key, v, "a whole number of days from 1 to 3650")),
    }
}

/// `[A-Za-z0-9._-]`, 1 to 64 characters, not starting with `.` or `-`.
pub fn valid_site_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// S3 bucket naming rules: 3 to 63 of `[a-z0-9.-]`, starting and ending with a letter
/// or digit.
fn valid_bucket(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn valid_prefix(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 200
            && s.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            }))
}

fn site_id_key(src: &Lookup) -> Result<String, ConfigError> {
    match src.get("SITE_ID").filter(|v| !v.is_empty()) {
        Some(v) if valid_site_id(v) => Ok(v.to_string()),
        Some(v) => Err(bad(
            "SITE_ID",
            v,
            "1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
        )),
        None => {
            // The hostname, made fit for an object key.
            let h: String = crate::host::hostname()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let h = h.trim_start_matches(['.', '-']);
            let h = &h[..h.len().min(64)];
            Ok(if h.is_empty() {
                "unknown".to_string()
            } else {
                h.to_string()
            })
        }
    }
}

/// VIDEOS_OFFSITE: a boolean that needs S3_ENDPOINT. (A reserved SITE_ID stops the
/// offsite copies, not the configuration: `reserved_site_id`.)
fn videos_offsite_key(src: &Lookup, s3: bool, gdrive: bool) -> Result<bool, ConfigError> {
    let v = src.get("VIDEOS_OFFSITE").unwrap_or("false");
    let on = parse_bool(v).ok_or_else(|| bad("VIDEOS_OFFSITE", v, "true or false"))?;
    if on && !s3 && gdrive {
        return Err(ConfigError(
            "VIDEOS_OFFSITE=true needs S3_ENDPOINT: the videos go to an S3 bucket, \
             deduplicated across the clubs; Google Drive takes the archives only (a club's \
             15 GB would not hold its videos twice)"
                .to_string(),
        ));
    }
    if on && !s3 {
        return Err(ConfigError(
            "VIDEOS_OFFSITE=true needs S3_ENDPOINT (and the other S3 keys): the videos go to the bucket"
                .to_string(),
        ));
    }
    Ok(on)
}

/// ENCRYPT_TO: age recipients, for the S3 and Drive copies alike.
fn encrypt_to_key(src: &Lookup) -> Result<Vec<String>, ConfigError> {
    Ok(match src.get("ENCRYPT_TO") {
        None => Vec::new(),
        Some(v) => {
            let list: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            let ok = list.len() <= 16
                && list
                    .iter()
                    .all(|r| r.parse::<age::x25519::Recipient>().is_ok());
            if !ok {
                return Err(bad(
                    "ENCRYPT_TO",
                    v,
                    "age X25519 public keys (age1…, as printed by age-keygen), space-separated, at most 16",
                ));
            }
            list
        }
    })
}

/// A root URL from a test-only environment variable, else `default`.
fn test_root(var: &str, default: &str) -> Result<crate::http::client::Url, ConfigError> {
    let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let text = v.as_deref().unwrap_or(default).trim();
    crate::http::client::Url::parse(text).map_err(|expected| bad(var, &shown_url(text), &expected))
}

/// The Google Drive keys: `None` while GDRIVE_CLIENT_ID is unset.
fn gdrive_keys(src: &Lookup) -> Result<Option<GdriveSettings>, ConfigError> {
    let Some(client_id) = src
        .get("GDRIVE_CLIENT_ID")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        if src
            .get("GDRIVE_CLIENT_SECRET")
            .is_some_and(|v| !v.is_empty())
        {
            return Err(ConfigError(
                "GDRIVE_CLIENT_SECRET is set but GDRIVE_CLIENT_ID is missing: both come from \
                 the club's OAuth client (README, Google Drive)"
                    .to_string(),
            ));
        }
        return Ok(None);
    };
    let printable =
        |v: &str| (1..=512).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic());
    if !printable(client_id) {
        return Err(bad(
            "GDRIVE_CLIENT_ID",
            client_id,
            "the OAuth client id (…apps.googleusercontent.com)",
        ));
    }
    let secret = src
        .get("GDRIVE_CLIENT_SECRET")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ConfigError(
                "GDRIVE_CLIENT_ID is set but GDRIVE_CLIENT_SECRET is missing: expected the \
                 OAuth client's secret"
                    .to_string(),
            )
        })?;
    if !printable(secret) {
        return Err(ConfigError(
            "invalid GDRIVE_CLIENT_SECRET (value not shown): expected printable characters \
             without spaces"
                .to_string(),
        ));
    }
    let folder = src.get("GDRIVE_FOLDER").unwrap_or("neopro-backups").trim();
    let folder_ok = (1..=100).contains(&folder.len())
        && folder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._- ".contains(&b))
        && !folder.starts_with(['.', ' '])
        && !folder.ends_with(' ');
    if !folder_ok {
        return Err(bad(
            "GDRIVE_FOLDER",
            folder,
            "a folder name of letters, digits, spaces, '.', '_' or '-' (one level)",
        ));
    }
    Ok(Some(GdriveSettings {
        client_id: client_id.to_string(),
        client_secret: Secret::new(secret.to_string()),
        folder: folder.to_string(),
        retention_days: days_key(src, "GDRIVE_RETENTION_DAYS", "30")?,
        encrypt_to: encrypt_to_key(src)?,
        api: test_root("NEOPRO_GDRIVE_API_URL", GDRIVE_API_URL)?,
        oauth: test_root("NEOPRO_GOOGLE_OAUTH_URL", GOOGLE_OAUTH_URL)?,
    }))
}

fn offsite_keys(src: &Lookup) -> Result<Option<OffsiteSettings>, ConfigError> {
    let Some(endpoint) = url_key(src, "S3_ENDPOINT", false)? else {
        videos_offsite_key(
            src,
            false,
            src.get("GDRIVE_CLIENT_ID")
                .is_some_and(|v| !v.trim().is_empty()),
        )?;
        return Ok(None);
    };
    let required = |key: &str, what: &str| {
        src.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            ConfigError(format!(
                "S3_ENDPOINT is set but {key} is missing: expected {what}"
            ))
        })
    };
    let bucket = required("S3_BUCKET", "the bucket name")?;
    if !valid_bucket(bucket) {
        return Err(bad(
            "S3_BUCKET",
            bucket,
            "an S3 bucket name: 3 to 63 lowercase letters, digits, '.' or '-'",
        ));
    }
    let region = src.get("S3_REGION").unwrap_or("us-east-1");
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad(
            "S3_REGION",
            region,
            "a region name such as us-east-1 or eu-west-3",
        ));
    }
    let prefix = src.get("S3_PREFIX").unwrap_or("neopro");
    if !valid_prefix(prefix) {
        return Err(bad(
            "S3_PREFIX",
            prefix,
            "folder names of letters, digits, '.', '_' or '-' separated by '/', without a leading or trailing '/'",
        ));
    }
    let token_like =
        |v: &str| (1..=256).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic());
    let access_key = required("S3_ACCESS_KEY", "the access key id")?;
    if !token_like(access_key) {
        return Err(ConfigError(
            "invalid S3_ACCESS_KEY (value not shown): expected printable characters without spaces"
                .to_string(),
        ));
    }
    let secret = required("S3_SECRET_KEY", "the secret access key")?;
    if !token_like(secret) {
        return Err(ConfigError(
            "invalid S3_SECRET_KEY (value not shown): expected printable characters without spaces"
                .to_string(),
        ));
    }
    let encrypt_to = encrypt_to_key(src)?;
    Ok(Some(OffsiteSettings {
        endpoint,
        bucket: bucket.to_string(),
        region: region.to_string(),
        prefix: prefix.to_string(),
        access_key: access_key.to_string(),
        secret_key: Secret::new(secret.to_string()),
        retention_days: days_key(src, "S3_RETENTION_DAYS", "30")?,
        encrypt_to,
        videos: videos_offsite_key(src, true, false)?,
    }))
}

#[cfg(test)]
impl Config {
    /// Every key at its default, for the unit tests of other rooms.
    pub fn defaults() -> Config {
        match Lookup::from_parts(HashMap::new(), "", Path::new("test.conf"))
            .and_then(|l| Config::from_sources(&l))
        {
            Ok(c) => c,
            Err(e) => panic!("the default configuration: {}", e.0),
        }
    }
}

impl Config {
    pub fn load(config_path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_sources(&Lookup::gather(config_path)?)
    }

    pub fn from_sources(src: &Lookup) -> Result<Config, ConfigError> {
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
        let frame_ancestors = {
            let v = src.get("FRAME_ANCESTORS").unwrap_or("");
            let list: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            if list.len() > 16 || !list.iter().all(|o| valid_origin(o)) {
                return Err(bad(
                    "FRAME_ANCESTORS",
                    v,
                    "space-separated origins scheme://host[:port] (http or https, no path), \
                     at most 16; the page's own origin is always allowed",
                ));
            }
            list
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
        let alerts = Alerts {
            webhook: url_key(src, "ALERT_WEBHOOK", true)?,
            ping: url_key(src, "PING_URL", false)?,
            on_failure_cmd: src
                .get("ON_FAILURE_CMD")
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string),
            email: email_keys(src)?,
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
            frame_ancestors,
            include_videos,
            services,
            restart_cmd,
            unknown_keys: src.unknown_keys.clone(),
            warnings: src.warnings.clone(),
            site_id: site_id_key(src)?,
            offsite: offsite_keys(src)?,
            gdrive: gdrive_keys(src)?,
            alerts,
            fleet_drill_max_days: days_key(src, "FLEET_DRILL_MAX_DAYS", "8")?,
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

    /// VIDEOS_OFFSITE is on (which implies S3_ENDPOINT).
    pub fn videos_offsite(&self) -> bool {
        self.offsite.as_ref().is_some_and(|o| o.videos)
    }
}

#[cfg(test)]
mod tests;
