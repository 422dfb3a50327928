//! `SMTP_URL` and the address keys: parsing and checking, never showing the password.

use std::fmt;
use std::net::IpAddr;

use crate::http::percent::percent_decode;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://` to any host but loopback: STARTTLS, mandatory.
    StartTls,
    /// `smtp://` to a loopback host: clear text, no STARTTLS.
    Clear,
}

/// A parsed `SMTP_URL`. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub security: Security,
    /// Host name, IPv4 literal, or IPv6 literal without brackets (lower case).
    pub host: String,
    pub port: u16,
    /// User name for AUTH (percent-decoded); `None`: no AUTH.
    pub user: Option<String>,
    pub(super) password: String,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// `smtps://user@host:465`: what logs and errors show (never the password).
impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::Implicit => "smtps",
            _ => "smtp",
        };
        let user = self
            .user
            .as_deref()
            .map_or(String::new(), |u| format!("{u}@"));
        write!(f, "{scheme}://{user}{}", self.hostport())
    }
}

impl SmtpUrl {
    /// Parses `smtps://…` or `smtp://…`. The error says what was expected (for
    /// "invalid SMTP_URL=…: expected …") and never repeats the value.
    pub fn parse(s: &str) -> Result<SmtpUrl, String> {
        const FORM: &str = "an smtps://user:password@host[:465] or \
                            smtp://user:password@host[:587] URL";
        let (implicit, rest) = if let Some(r) = s.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err(FORM.into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(format!("{FORM}, with no path, ?query or #fragment"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, String::new()),
            Some(u) => {
                let (name, pw) = u
                    .split_once(':')
                    .ok_or_else(|| format!("{FORM} (user and password both, or neither)"))?;
                let name = percent_decode(name)
                    .ok_or_else(|| format!("{FORM} (bad %-escape in the user name)"))?;
                let pw = percent_decode(pw)
                    .ok_or_else(|| format!("{FORM} (bad %-escape in the password)"))?;
                if name.is_empty() || pw.is_empty() {
                    return Err(format!("{FORM} (user and password both, or neither)"));
                }
                (Some(name), pw)
            }
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("{FORM} (with a valid [IPv6] host)"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{FORM} (with a valid [IPv6] host)"));
            }
            match after {
                "" => (h, None),
                a => (
                    h,
                    Some(
                        a.strip_prefix(':')
                            .ok_or_else(|| format!("{FORM} (with a valid port)"))?,
                    ),
                ),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        if !host_ok {
            return Err(format!("{FORM} (with a valid host name)"));
        }
        let port = match port {
            None if implicit => 465,
            None => 587,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{FORM} (with a valid port)")),
            },
        };
        let host = host.to_ascii_lowercase();
        let security = if implicit {
            Security::Implicit
        } else if is_loopback(&host) {
            Security::Clear
        } else {
            Security::StartTls
        };
        if security != Security::Clear && cfg!(not(feature = "tls")) {
            return Err(format!(
                "{} (this build has no TLS, built without the `tls` feature: only \
                 smtp:// to a loopback host, 127.0.0.1 or localhost, works without it)",
                if implicit {
                    "an smtp:// URL"
                } else {
                    "a loopback smtp:// URL"
                }
            ));
        }
        Ok(SmtpUrl {
            security,
            host,
            port,
            user,
            password,
        })
    }

    /// `host:port`, `[v6]:port`.
    pub fn hostport(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `127.0.0.0/8`, `::1` and the name `localhost`: what may be spoken to in clear.
pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || matches_v4_mapped_loopback(&ip))
}

pub(super) fn matches_v4_mapped_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// Checks a mail address for the envelope and the headers: ASCII `local@domain`, no
/// spaces, quotes, angle brackets or control characters (no SMTPUTF8 here).
pub fn check_address(a: &str) -> Result<(), String> {
    let ok = |c: u8| c.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&c);
    match a.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && a.len() <= 254
                && !domain.contains('@')
                && a.bytes().all(ok)
                && !domain.starts_with(['.', '-'])
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => Err(format!("{a:?} is not a mail address like name@example.org")),
    }
}

/// `ALERT_EMAIL_TO`: comma-separated addresses, each checked; at least one.
pub fn parse_address_list(s: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err("at least one mail address".into());
    }
    for a in &list {
        check_address(a)?;
    }
    Ok(list)
}
