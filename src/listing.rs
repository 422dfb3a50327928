//! The list of backups as the admin panel sees it: the JSON of `GET /api/backups`,
//! also printed by `list --json`, and the human table of `list`.

use std::io;
use std::path::Path;

use nanoserde::SerJson;

use crate::archive::{self, ArchiveInfo};
use crate::clock::{self, Tz};
use crate::status::{self, Status};

#[derive(SerJson)]
pub struct Entry {
    pub name: String,
    pub size: String,
    #[nserde(rename = "sizeBytes")]
    pub size_bytes: u64,
    pub date: String,
    pub created: String,
    pub age: String,
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
pub struct List {
    pub backups: Vec<Entry>,
    pub status: Option<Status>,
    pub total: u64,
    #[nserde(rename = "totalSize")]
    pub total_size: u64,
}

/// "0 jours", "1 jour", "12 jours": whole days since the time in the name (never negative).
pub fn age_days(naive_then: i64, naive_now: i64) -> String {
    let d = ((naive_now - naive_then) / 86_400).max(0);
    if d == 1 {
        "1 jour".to_string()
    } else {
        format!("{d} jours")
    }
}

pub fn entry(a: &ArchiveInfo, naive_now: i64) -> Entry {
    Entry {
        name: a.name.clone(),
        size: archive::human_size(a.size, 2),
        size_bytes: a.size,
        date: clock::plain(a.naive),
        created: clock::iso_utc_millis(a.mtime, a.mtime_ms),
        age: age_days(a.naive, naive_now),
    }
}

/// The list of BACKUP_DIR, newest first, with the last status (null when unreadable).
pub fn build(dir: &Path, now: i64, tz: &Tz) -> io::Result<List> {
    let archives = archive::list(dir)?;
    let naive_now = tz.to_naive(now);
    Ok(List {
        total: archives.len() as u64,
        total_size: archives.iter().map(|a| a.size).sum(),
        backups: archives.iter().map(|a| entry(a, naive_now)).collect(),
        status: status::read(dir).ok().flatten(),
    })
}

/// The table printed by `list`.
pub fn table(list: &List) -> String {
    if list.backups.is_empty() {
        return "no backups\n".to_string();
    }
    let mut s = format!("{:<31} {:>10}  {:<19}  {}\n", "NAME", "SIZE", "DATE", "AGE");
    for b in &list.backups {
        s.push_str(&format!(
            "{:<31} {:>10}  {:<19}  {}\n",
            b.name, b.size, b.date, b.age
        ));
    }
    s.push_str(&format!(
        "{} backup(s), {}\n",
        list.total,
        archive::human_size(list.total_size, 2)
    ));
    s
}
