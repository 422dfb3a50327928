//! Retention, as a pure function: archives + now → which to delete (docs/format.md,
//! Retention).
//!
//! An archive's age is read from the local time in its name (what the user sees, and
//! what survives a copy that resets mtime). The rules, whatever the clock says (a Pi has
//! no real-time clock: it may believe it is 1970 or 2099):
//! - the newest `KEEP_MIN` *valid* archives by that time are always kept, and so is the
//!   archive just written; an empty or foreign file named like an archive (not gzip) is
//!   never one of them;
//! - archives dated in the future (the clock was wrong when they were made, or is wrong
//!   now) are never "older than N days", so a 1970 clock deletes nothing;
//! - a run whose clock is more than `CLOCK_AHEAD_MAX` ahead of the newest valid archive
//!   before it deletes nothing at all: a jump to 2099, or days forward, must not cost
//!   data. (After a real absence of more than two days this costs one day of retention:
//!   the next run, a day later, deletes as usual.)

pub const KEEP_MIN: usize = 3;

/// How far ahead of the newest earlier valid archive the clock may be for a run to
/// delete anything.
pub const CLOCK_AHEAD_MAX: i64 = 48 * 3600;

/// One file named like an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// Local (naive) time from the name.
    pub naive: i64,
    /// A non-empty regular file that starts with the gzip magic (`store::Format::valid`).
    pub valid: bool,
}

/// What retention decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Names to delete, oldest first.
    pub delete: Vec<String>,
    /// Set when nothing is deleted because the clock is more than `CLOCK_AHEAD_MAX`
    /// ahead of this archive (the newest valid one before this run).
    pub clock_ahead_of: Option<String>,
}

/// `now`: local (naive) seconds; `just_made`: the archive this run wrote.
pub fn plan(
    archives: &[Candidate],
    now: i64,
    retention_days: u32,
    just_made: Option<&str>,
) -> RetentionPlan {
    let earlier = archives
        .iter()
        .filter(|a| a.valid && Some(a.name.as_str()) != just_made && a.naive <= now)
        .max_by(|a, b| a.naive.cmp(&b.naive).then_with(|| a.name.cmp(&b.name)));
    if let Some(newest) = earlier
        && now - newest.naive > CLOCK_AHEAD_MAX
    {
        return RetentionPlan {
            delete: Vec::new(),
            clock_ahead_of: Some(newest.name.clone()),
        };
    }
    RetentionPlan {
        delete: keep_newest(archives, now, retention_days, just_made),
        clock_ahead_of: None,
    }
}

/// Everything older than `retention_days` but the newest `KEEP_MIN` valid archives and
/// `just_made`, oldest first.
fn keep_newest(
    archives: &[Candidate],
    now: i64,
    retention_days: u32,
    just_made: Option<&str>,
) -> Vec<String> {
    let mut sorted: Vec<&Candidate> = archives.iter().collect();
    // Newest first; names break ties so the result never depends on input order.
    sorted.sort_by(|a, b| b.naive.cmp(&a.naive).then_with(|| b.name.cmp(&a.name)));
    let kept: Vec<&str> = sorted
        .iter()
        .filter(|a| a.valid)
        .take(KEEP_MIN)
        .map(|a| a.name.as_str())
        .collect();
    let max_age = i64::from(retention_days) * 86_400;
    let mut delete: Vec<String> = sorted
        .into_iter()
        .filter(|a| {
            !kept.contains(&a.name.as_str())
                && Some(a.name.as_str()) != just_made
                && now - a.naive > max_age
        })
        .map(|a| a.name.clone())
        .collect();
    delete.reverse();
    delete
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::naive_secs;
    use crate::store::{name_time, stem_for};

    fn day(y: i64, m: u32, d: u32) -> i64 {
        naive_secs(y, m, d, 3, 0, 0)
    }

    fn at(t: i64) -> Candidate {
        Candidate {
            name: format!("{}.tar.gz", stem_for(t)),
            naive: t,
            valid: true,
        }
    }

    fn daily(from: i64, n: i64) -> Vec<Candidate> {
        (0..n).map(|i| at(from + i * 86_400)).collect()
    }

    fn to_delete(a: &[Candidate], now: i64, days: u32, just: Option<&str>) -> Vec<String> {
        plan(a, now, days, just).delete
    }

    /// The age rule alone, without the clock rule (for clocks far from the archives).
    fn age_rule(a: &[Candidate], now: i64, days: u32, just: Option<&str>) -> Vec<String> {
        keep_newest(a, now, days, just)
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
    fn clock_far_ahead_of_the_newest_archive_deletes_nothing() {
        let mut a = daily(day(2024, 12, 1), 10);
        let made = at(day(2099, 1, 1));
        a.push(made.clone());
        let p = plan(&a, day(2099, 1, 1) + 5, 7, Some(&made.name));
        assert!(p.delete.is_empty(), "{p:?}");
        assert_eq!(
            p.clock_ahead_of.as_deref(),
            Some("backup-20241210-030000.tar.gz")
        );
        // Two days and a bit forward: still nothing; just under 48 h: the usual rule.
        let last = day(2024, 12, 10);
        assert!(
            plan(&a, last + CLOCK_AHEAD_MAX + 1, 7, None)
                .clock_ahead_of
                .is_some()
        );
        let p = plan(&a, last + CLOCK_AHEAD_MAX, 7, None);
        assert!(p.clock_ahead_of.is_none() && p.delete.len() == 4, "{p:?}");
    }

    #[test]
    fn clock_in_1970_deletes_nothing() {
        let mut a = daily(day(2024, 12, 1), 10);
        a.push(Candidate {
            name: "backup-19700101-000012.tar.gz".into(),
            naive: 12,
            valid: true,
        });
        assert!(to_delete(&a, 60, 7, Some("backup-19700101-000012.tar.gz")).is_empty());
    }

    #[test]
    fn future_dated_archives_are_kept_and_just_made_is_never_deleted() {
        let mut a = daily(day(2024, 12, 1), 5); // Dec 1 .. Dec 5
        a.push(at(day(2099, 1, 1)));
        a.push(at(day(2025, 6, 1)));
        // Now is Dec 6: 2099 and 2025 are in the future, never old, and two of the
        // newest 3; Dec 1 was "just made" (a clock that went back) and stays too.
        let del = to_delete(
            &a,
            day(2024, 12, 6),
            1,
            Some("backup-20241201-030000.tar.gz"),
        );
        assert_eq!(
            del,
            [
                "backup-20241202-030000.tar.gz",
                "backup-20241203-030000.tar.gz",
                "backup-20241204-030000.tar.gz"
            ]
        );
    }

    #[test]
    fn empty_or_foreign_files_never_count_among_the_newest_three() {
        let mut a: Vec<Candidate> = [1, 2, 3, 6].iter().map(|&d| at(day(2024, 12, d))).collect();
        for d in [4, 5] {
            let mut junk = at(day(2024, 12, d));
            junk.valid = false;
            a.push(junk);
        }
        // The 3 kept are the valid Dec 6, 3 and 2; junk never counts among them, and
        // like any file named as an archive it goes when it is old.
        let del = to_delete(&a, day(2024, 12, 7), 1, None);
        assert_eq!(
            del,
            [
                "backup-20241201-030000.tar.gz",
                "backup-20241204-030000.tar.gz",
                "backup-20241205-030000.tar.gz"
            ]
        );
    }

    // The clock in these two is days past the newest archive: the age rule alone.
    #[test]
    fn exactly_retention_days_old_is_kept_one_second_more_is_not() {
        // Four archives, so that the oldest is not among the newest three.
        let a = daily(day(2024, 12, 1), 4); // Dec 1 .. Dec 4, 03:00
        let oldest = "backup-20241201-030000.tar.gz";
        // Exactly 7 days old: not "older than 7 days".
        assert!(age_rule(&a, day(2024, 12, 8), 7, None).is_empty());
        // One second more: removed.
        assert_eq!(age_rule(&a, day(2024, 12, 8) + 1, 7, None), [oldest]);
        // The same with RETENTION_DAYS=1.
        assert!(age_rule(&a, day(2024, 12, 2), 1, None).is_empty());
        assert_eq!(age_rule(&a, day(2024, 12, 2) + 1, 1, None), [oldest]);
    }

    #[test]
    fn a_few_minutes_in_the_future_is_never_old_and_input_order_does_not_matter() {
        let mut a = daily(day(2024, 12, 1), 3);
        // Made by a clock five minutes fast, now long ago by the real clock... but it
        // is dated five minutes ahead of `now`: never "older than N days".
        let now = day(2024, 12, 20);
        a.push(Candidate {
            name: "backup-20241220-030500.tar.gz".into(),
            naive: now + 300,
            valid: true,
        });
        let mut del = age_rule(&a, now, 7, None);
        assert_eq!(
            del,
            ["backup-20241201-030000.tar.gz"],
            "the oldest of four old-enough ones goes, the future one stays"
        );
        // Same answer whatever the order of the input, and the oldest comes first.
        a.reverse();
        assert_eq!(age_rule(&a, now, 7, None), del);
        let mut b = daily(day(2024, 11, 1), 8);
        b.reverse();
        del = age_rule(&b, day(2025, 1, 1), 7, None);
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
        assert!(to_delete(&a, day(2000, 1, 3) + 3600, 1, None).is_empty());
        assert!(to_delete(&[], 0, 1, None).is_empty());
    }
}
