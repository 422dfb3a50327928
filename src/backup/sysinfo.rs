//! system-info.txt: time, hostname, uptime, disk use of NEOPRO_DIR and service states,
//! read from /proc and statvfs; the only process started is one `systemctl is-active`
//! for all services together, when systemd runs (sd_booted) and systemctl exists.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::clock::{self, Tz};
use crate::fsutil;
use crate::units::human_size;

fn uptime() -> String {
    let Ok(s) = std::fs::read_to_string("/proc/uptime") else {
        return "unknown".to_string();
    };
    let Some(secs) = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
    else {
        return "unknown".to_string();
    };
    let secs = secs as u64;
    format!(
        "{}d {:02}h {:02}m ({secs} s)",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60
    )
}

fn find_in_path(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The state of each service (`active`, `inactive`, `failed`, … or `unknown`).
pub fn service_states(services: &[String]) -> Vec<(String, String)> {
    let unknown = || {
        services
            .iter()
            .map(|s| (s.clone(), "unknown".to_string()))
            .collect()
    };
    if services.is_empty() {
        return Vec::new();
    }
    // sd_booted(): without /run/systemd/system, systemd is not PID 1 (a container, a
    // chroot) and systemctl can only fail — after costing a 6 MiB process.
    if !Path::new("/run/systemd/system").is_dir() {
        return unknown();
    }
    let Some(systemctl) = find_in_path("systemctl") else {
        return unknown();
    };
    let child = Command::new(systemctl)
        .arg("is-active")
        .arg("--")
        .args(services)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return unknown();
    };
    // systemctl can hang when D-Bus is stuck: give it 5 seconds.
    // It usually answers in a few ms: poll from 1 ms, backing off to 50 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return unknown();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = so.read_to_string(&mut out);
    }
    let states: Vec<&str> = out.lines().map(str::trim).collect();
    if states.len() != services.len() {
        return unknown();
    }
    services
        .iter()
        .zip(states)
        .map(|(s, st)| (s.clone(), st.to_string()))
        .collect()
}

/// The text of system-info.txt.
pub fn render(now: i64, tz: &Tz, neopro_dir: &Path, services: &[String]) -> String {
    let mut s = String::with_capacity(512);
    s.push_str(&format!("time: {}\n", clock::iso_local(now, tz)));
    s.push_str(&format!("hostname: {}\n", crate::host::hostname()));
    s.push_str(&format!("uptime: {}\n", uptime()));
    if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        s.push_str(&format!("kernel: {}\n", k.trim()));
    }
    if let Ok(m) = std::fs::read_to_string("/proc/device-tree/model") {
        s.push_str(&format!("model: {}\n", m.trim_end_matches('\0').trim()));
    }
    // The figures of `df`: "used" leaves out the blocks reserved for root (5 % of an
    // ext4 card), and the percentage is used / (used + available), rounded up.
    match fsutil::disk_use(neopro_dir) {
        Some(d) if d.total > 0 => {
            s.push_str(&format!(
                "disk ({}): {} used of {}, {} free ({}% used)\n",
                neopro_dir.display(),
                human_size(d.used, 1),
                human_size(d.total, 1),
                human_size(d.avail, 1),
                d.percent()
            ));
        }
        _ => s.push_str(&format!("disk ({}): unknown\n", neopro_dir.display())),
    }
    for (svc, state) in service_states(services) {
        s.push_str(&format!("service {svc}: {state}\n"));
    }
    s.push_str(&format!("neopro-backup: {}\n", env!("CARGO_PKG_VERSION")));
    s
}
