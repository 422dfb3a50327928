//! `GET /metrics`: the Prometheus text exposition of the daemon's state (last run,
//! archives, schedule, HTTP counters, offsite queue).

use std::sync::atomic::Ordering;

use crate::http::server::Response;
use crate::serve::prom::{CONTENT_TYPE, Kind, Text};
use crate::serve::state::Shared;
use crate::status;
use crate::store::cached_backups;

pub fn metrics(shared: &Shared) -> Response {
    let dir = &shared.cfg.backup_dir;
    let st = status::read(dir).ok().flatten();
    // The same cached listing as GET /api/backups: no stat of every archive per scrape.
    let (count, bytes) =
        cached_backups(dir, &shared.tz).map_or((0, 0), |l| (l.total, l.total_size));
    // A success dated in the future (made while the clock was wrong) is not a fresh one:
    // it would hold an age-based alert off for years (docs/format.md, Metrics).
    let now = crate::clock::now_unix();
    let last_success = st
        .as_ref()
        .and_then(|s| s.credible_success_unix(now))
        .unwrap_or(0);
    let clock_warning = crate::serve::state::clock_warning(shared);
    let mut out = Text::new();
    let mut metric = |name: &str, kind: Kind, help: &str, value: String| {
        out.one(name, kind, help, value);
    };
    metric(
        "neopro_backup_last_success_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last successful backup (0: none, or only one dated in the future).",
        last_success.to_string(),
    );
    metric(
        "neopro_backup_last_run_success",
        Kind::Gauge,
        "1 if the last run succeeded, 0 if it failed or none ran.",
        u8::from(st.as_ref().is_some_and(|s| s.success)).to_string(),
    );
    metric(
        "neopro_backup_last_duration_seconds",
        Kind::Gauge,
        "Duration of the last run.",
        format!(
            "{:.3}",
            st.as_ref().map_or(0.0, |s| s.duration_ms as f64 / 1000.0)
        ),
    );
    metric(
        "neopro_backup_last_size_bytes",
        Kind::Gauge,
        "Size of the last archive.",
        st.as_ref()
            .and_then(|s| s.size_bytes)
            .unwrap_or(0)
            .to_string(),
    );
    metric(
        "neopro_backup_archives",
        Kind::Gauge,
        "Archives in BACKUP_DIR.",
        count.to_string(),
    );
    metric(
        "neopro_backup_archives_bytes",
        Kind::Gauge,
        "Total size of the archives in BACKUP_DIR.",
        bytes.to_string(),
    );
    metric(
        "neopro_backup_failures_total",
        Kind::Counter,
        "Failed runs seen by this daemon since it started.",
        shared.failures.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "neopro_backup_next_run_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the next scheduled run (0: schedule off).",
        shared.next_run().unwrap_or(0).to_string(),
    );
    metric(
        "neopro_backup_schedule_enabled",
        Kind::Gauge,
        "1 if the automatic daily backup is on.",
        u8::from(shared.enabled.load(Ordering::SeqCst)).to_string(),
    );
    // The offsite state, read once for the gauges below.
    let offsite = crate::offsite::summary(&shared.cfg);
    metric(
        "neopro_backup_offsite_pending",
        Kind::Gauge,
        "Offsite copies waiting to be sent.",
        offsite.as_ref().map_or(0, |o| o.pending).to_string(),
    );
    // Offsite totals (archives, and videos with VIDEOS_OFFSITE), from
    // offsite-state.json: the `run` command's uploads count too.
    let (archives, archive_bytes, videos, video_bytes) = crate::offsite::sent_totals(&shared.cfg);
    for (name, help, value) in [
        (
            "neopro_backup_offsite_sent_archives_total",
            "Archive copies sent to the bucket.",
            archives,
        ),
        (
            "neopro_backup_offsite_sent_archive_bytes_total",
            "Bytes of archive copies sent to the bucket.",
            archive_bytes,
        ),
        (
            "neopro_backup_offsite_sent_videos_total",
            "Videos uploaded to the bucket (VIDEOS_OFFSITE).",
            videos,
        ),
        (
            "neopro_backup_offsite_sent_video_bytes_total",
            "Bytes of videos uploaded to the bucket (VIDEOS_OFFSITE).",
            video_bytes,
        ),
    ] {
        metric(name, Kind::Counter, help, value.to_string());
    }
    // Google Drive's queue (offsite/gdrive.rs), when Drive is set.
    if let Some(g) = crate::offsite::gdrive::summary(&shared.cfg) {
        let (archives, bytes) = crate::offsite::gdrive::sent_totals(&shared.cfg);
        metric(
            "neopro_backup_gdrive_pending",
            Kind::Gauge,
            "Copies waiting to be sent to Google Drive.",
            g.pending.to_string(),
        );
        metric(
            "neopro_backup_gdrive_sent_archives_total",
            Kind::Counter,
            "Archive copies sent to Google Drive.",
            archives.to_string(),
        );
        metric(
            "neopro_backup_gdrive_sent_archive_bytes_total",
            Kind::Counter,
            "Bytes of archive copies sent to Google Drive.",
            bytes.to_string(),
        );
        metric(
            "neopro_backup_gdrive_error",
            Kind::Gauge,
            "1 while the last attempt to send to Google Drive failed (the status's gdrive.error says why).",
            u8::from(g.error.is_some()).to_string(),
        );
    }
    metric(
        "neopro_backup_offsite_poisoned_objects",
        Kind::Gauge,
        "Shared video objects found not to hold the video their name says (another site wrote them first), routed around with this site's own copy.",
        offsite.as_ref().map_or(0, |o| o.poisoned).to_string(),
    );
    metric(
        "neopro_backup_offsite_held",
        Kind::Gauge,
        "1 while every offsite write is held: the bucket holds backups of this SITE_ID that this install did not send (recover, or declare a new start).",
        u8::from(offsite.as_ref().is_some_and(|o| o.held)).to_string(),
    );
    metric(
        "neopro_backup_offsite_other_install",
        Kind::Gauge,
        "1 when another install was found sending backups under this SITE_ID.",
        u8::from(offsite.as_ref().is_some_and(|o| o.other_install.is_some())).to_string(),
    );
    metric(
        "neopro_backup_clock_warning",
        Kind::Gauge,
        "1 when the clock looks wrong: not set (1970), or an archive or the last success dated in the future.",
        u8::from(clock_warning.is_some()).to_string(),
    );
    metric(
        "neopro_backup_http_connections",
        Kind::Gauge,
        "Open HTTP connections.",
        shared.stats.connections.load(Ordering::Relaxed).to_string(),
    );
    Response::new(200, CONTENT_TYPE, out.finish().into_bytes())
}
