//! `neopro-backup fleet`: every site's last status, read from the bucket
//! (`S3_PREFIX/<site>/last-backup-status.json`, which each Pi sends after its copies):
//! site, last success, age, size, pending copies, and a mark on the sites whose last
//! success is over 25 hours old (or unknown, or dated in the future).

use nanoserde::{DeJson, SerJson};

use crate::clock;
use crate::config::Config;
use crate::offsite;
use crate::status::Status;

/// A site is stale past this age of its last success.
pub const STALE_HOURS: i64 = 25;

#[derive(Debug, Clone, SerJson, PartialEq)]
#[nserde(serialize_none_as_null)]
pub struct Site {
    pub site: String,
    /// Timestamp of the last successful backup.
    pub last_success: Option<String>,
    /// Hours since then (one decimal), by this machine's clock.
    pub age_hours: Option<f64>,
    pub size: Option<String>,
    pub size_bytes: Option<u64>,
    /// Copies the site had not sent when it sent its status.
    pub pending: u64,
    /// Whether the site's last run succeeded.
    pub last_run_success: Option<bool>,
    pub error: Option<String>,
    /// Last success over 25 h ago, unknown, or in the future.
    pub stale: bool,
}

#[derive(SerJson)]
pub struct Fleet {
    pub sites: Vec<Site>,
    pub stale: u64,
}

/// One row from a site's status (pure: `now` is a parameter).
pub fn site_row(site: &str, status: Option<&Status>, now: i64) -> Site {
    let Some(st) = status else {
        return Site {
            site: site.to_string(),
            last_success: None,
            age_hours: None,
            size: None,
            size_bytes: None,
            pending: 0,
            last_run_success: None,
            error: Some("no status in the bucket".into()),
            stale: true,
        };
    };
    let last_success = st.last_success_stamp().map(str::to_string);
    let t = last_success.as_deref().and_then(clock::parse_iso);
    let age = t.map(|t| now - t);
    Site {
        site: site.to_string(),
        age_hours: age.map(|a| (a as f64 / 360.0).round() / 10.0),
        last_success,
        size: st.size.clone(),
        size_bytes: st.size_bytes,
        pending: st.offsite.as_ref().map_or(0, |o| o.pending),
        last_run_success: Some(st.success),
        error: st
            .error
            .clone()
            .or_else(|| st.offsite.as_ref().and_then(|o| o.error.clone())),
        stale: age.is_none_or(|a| !(-3600..=STALE_HOURS * 3600).contains(&a)),
    }
}

/// Reads the bucket. `Err` is a message for stderr (exit 1).
pub fn build(cfg: &Config, now: i64) -> Result<Fleet, String> {
    let Some(o) = &cfg.offsite else {
        return Err("S3_ENDPOINT is not set".into());
    };
    let client = offsite::client(o);
    let root = if o.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", o.prefix)
    };
    let listing = client.list(&root, Some("/")).map_err(|e| e.msg)?;
    let mut sites = Vec::new();
    for p in &listing.prefixes {
        let site = p
            .strip_prefix(&root)
            .unwrap_or(p)
            .trim_end_matches('/')
            .to_string();
        // S3_PREFIX/videos/ holds the shared videos (offsite/videos.rs), not a site.
        if site.is_empty() || site == offsite::videos::VIDEOS_DIR {
            continue;
        }
        let key = format!("{p}{}", offsite::STATUS_OBJECT);
        let status = match client.get(&key).map_err(|e| e.msg)? {
            Some(bytes) => Status::deserialize_json(&String::from_utf8_lossy(&bytes)).ok(),
            None => None,
        };
        let mut row = site_row(&site, status.as_ref(), now);
        if status.is_none() && row.size.is_none() {
            // Copies without a status: say at least how big the newest one is.
            if let Ok(l) = client.list(p, None)
                && let Some(newest) = l
                    .objects
                    .iter()
                    .filter(|ob| ob.key.contains("backup-"))
                    .max_by(|a, b| a.key.cmp(&b.key))
            {
                row.size = Some(crate::units::human_size(newest.size, 1));
                row.size_bytes = Some(newest.size);
            }
        }
        sites.push(row);
    }
    sites.sort_by(|a, b| a.site.cmp(&b.site));
    let stale = sites.iter().filter(|s| s.stale).count() as u64;
    Ok(Fleet { sites, stale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status;

    #[test]
    fn rows_and_staleness() {
        let t = "2024-12-18T03:00:00+01:00";
        let now = clock::parse_iso(t).unwrap_or_default();
        let ok = Status {
            timestamp: t.into(),
            success: true,
            size: Some("1.2 MB".into()),
            offsite: Some(status::Offsite {
                pending: 1,
                ..Default::default()
            }),
            ..Status::default()
        };
        let r = site_row("a", Some(&ok), now + 3 * 3600);
        assert_eq!((r.stale, r.age_hours, r.pending), (false, Some(3.0), 1));
        assert!(site_row("a", Some(&ok), now + 26 * 3600).stale);
        assert!(site_row("a", Some(&ok), now - 86_400).stale);
        let failed = Status {
            success: false,
            error: Some("disk full".into()),
            last_success: Some(t.into()),
            ..ok.clone()
        };
        let r = site_row("b", Some(&failed), now + 3600);
        assert_eq!(r.last_success.as_deref(), Some(t));
        assert!(!r.stale && r.last_run_success == Some(false));
        assert!(site_row("c", None, now).stale);
        let f = Fleet {
            sites: vec![r, site_row("c", None, now)],
            stale: 1,
        };
        assert!(
            f.serialize_json()
                .contains(r#""site":"c","last_success":null"#)
        );
    }
}
