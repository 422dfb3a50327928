//! Retention, as a pure function: archives + now → which to delete.
//!
//! An archive's age is read from the local time in its name (what the user sees, and
//! what survives a copy that resets mtime). The newest `KEEP_MIN` archives by that time
//! are always kept, and so is the archive just written, so that a clock that jumped to
//! 2099 cannot empty the folder; archives dated in the future (clock was wrong when they
//! were made, or is wrong now) are never "older than N days", so a 1970 clock deletes
//! nothing.

pub const KEEP_MIN: usize = 3;

/// `archives`: (name, local time from the name). `now`: local (naive) seconds.
/// Returns the names to delete, oldest first.
pub fn to_delete(
    archives: &[(String, i64)],
    now: i64,
    retention_days: u32,
    just_made: Option<&str>,
) -> Vec<String> {
    let mut sorted: Vec<&(String, i64)> = archives.iter().collect();
    // Newest first; names break ties so the result never depends on input order.
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let max_age = i64::from(retention_days) * 86_400;
    let mut out: Vec<String> = sorted
        .into_iter()
        .skip(KEEP_MIN)
        .filter(|(name, t)| Some(name.as_str()) != just_made && now - t > max_age)
        .map(|(name, _)| name.clone())
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{name_time, stem_for};
    use crate::clock::naive_secs;

    fn day(y: i64, m: u32, d: u32) -> i64 {
        naive_secs(y, m, d, 3, 0, 0)
    }

    fn daily(from: i64, n: i64) -> Vec<(String, i64)> {
        (0..n)
            .map(|i| {
                let t = from + i * 86_400;
                (format!("{}.tar.gz", stem_for(t)), t)
            })
            .collect()
    }

    #[test]
    fn keeps_seven_days() {
        let a = daily(day(2024, 12, 1), 18); // Dec 1 .. Dec 18
        let now = day(2024, 12, 18) + 60;
        let del = to_delete(&a, now, 7, None);
        // Older than 7 days: Dec 1 .. Dec 10 (Dec 11 03:00 is 7 days + 60 s old).
        assert_eq!(del.len(), 11, "{del:?}");
        assert_eq!(del[0], "backup-20241201-030000.tar.gz");
        assert_eq!(del[10], "backup-20241211-030000.tar.gz");
        assert_eq!(name_time(&del[0]), Some(day(2024, 12, 1)));
    }

    #[test]
    fn clock_in_2099_keeps_newest_three() {
        let a = daily(day(2024, 12, 1), 10);
        let del = to_delete(&a, day(2099, 1, 1), 7, None);
        assert_eq!(del.len(), 7);
        assert!(!del.contains(&"backup-20241210-030000.tar.gz".to_string()));
        assert!(!del.contains(&"backup-20241208-030000.tar.gz".to_string()));
    }

    #[test]
    fn clock_in_1970_deletes_nothing() {
        let mut a = daily(day(2024, 12, 1), 10);
        a.push(("backup-19700101-000012.tar.gz".into(), 12));
        assert!(to_delete(&a, 60, 7, Some("backup-19700101-000012.tar.gz")).is_empty());
    }

    #[test]
    fn future_dated_archives_are_kept_and_just_made_is_never_deleted() {
        let mut a = daily(day(2024, 12, 1), 5);
        a.push(("backup-20990101-030000.tar.gz".into(), day(2099, 1, 1)));
        // Now is 2025: the 2099 one is among the newest 3 and in the future anyway.
        let del = to_delete(
            &a,
            day(2025, 6, 1),
            7,
            Some("backup-20241201-030000.tar.gz"),
        );
        assert_eq!(
            del,
            [
                "backup-20241202-030000.tar.gz",
                "backup-20241203-030000.tar.gz"
            ]
        );
    }

    #[test]
    fn exactly_retention_days_old_is_kept_one_second_more_is_not() {
        // Four archives, so that the oldest is not among the newest three.
        let a = daily(day(2024, 12, 1), 4); // Dec 1 .. Dec 4, 03:00
        let oldest = "backup-20241201-030000.tar.gz";
        // Exactly 7 days old: not "older than 7 days".
        assert!(to_delete(&a, day(2024, 12, 8), 7, None).is_empty());
        // One second more: removed.
        assert_eq!(to_delete(&a, day(2024, 12, 8) + 1, 7, None), [oldest]);
        // The same with RETENTION_DAYS=1.
        assert!(to_delete(&a, day(2024, 12, 2), 1, None).is_empty());
        assert_eq!(to_delete(&a, day(2024, 12, 2) + 1, 1, None), [oldest]);
    }

    #[test]
    fn a_few_minutes_in_the_future_is_never_old_and_input_order_does_not_matter() {
        let mut a = daily(day(2024, 12, 1), 3);
        // Made by a clock five minutes fast, now long ago by the real clock... but it
        // is dated five minutes ahead of `now`: never "older than N days".
        let now = day(2024, 12, 20);
        a.push(("backup-20241220-030500.tar.gz".into(), now + 300));
        let mut del = to_delete(&a, now, 7, None);
        assert_eq!(
            del,
            ["backup-20241201-030000.tar.gz"],
            "the oldest of four old-enough ones goes, the future one stays"
        );
        // Same answer whatever the order of the input, and the oldest comes first.
        a.reverse();
        assert_eq!(to_delete(&a, now, 7, None), del);
        let mut b = daily(day(2024, 11, 1), 8);
        b.reverse();
        del = to_delete(&b, day(2025, 1, 1), 7, None);
        assert_eq!(
            del.first().map(String::as_str),
            Some("backup-20241101-030000.tar.gz")
        );
        assert_eq!(
            del.last().map(String::as_str),
            Some("backup-20241105-030000.tar.gz")
        );
        assert_eq!(del.len(), 5);
    }

    #[test]
    fn fewer_than_three_never_deleted() {
        let a = daily(day(2000, 1, 1), 3);
        assert!(to_delete(&a, day(2024, 1, 1), 1, None).is_empty());
        assert!(to_delete(&[], 0, 1, None).is_empty());
    }
}
