//! The daily schedule, as pure functions of (now, BACKUP_TIME, time zone), and the state
//! machine that the daemon's loop feeds with the wall clock once a second at most and
//! once a minute at least.
//!
//! Rules (docs/format.md, The schedule):
//! - the run of a day is the first instant whose local time is BACKUP_TIME; when
//!   BACKUP_TIME falls in the hour skipped in spring, it is the instant the clock jumps
//!   (local time is then just past BACKUP_TIME); in the hour repeated in autumn, it is
//!   the first of the two, and the second never runs again;
//! - a jump of the clock forward past the next run runs it once; a jump backward never
//!   runs a day twice (the next run only moves forward, unless the clock went back by
//!   more than two days, e.g. from a bogus 2099 to the real date);
//! - nothing runs while the clock does not look sane (a Pi boots in 1970 until NTP).

use crate::clock::{self, Tz};

/// The run instant of the local day `day` (days since 1970-01-01).
pub fn instance(day: i64, hhmm: (u32, u32), tz: &Tz) -> i64 {
    let naive = day * 86_400 + i64::from(hhmm.0) * 3600 + i64::from(hhmm.1) * 60;
    if let Some(&first) = tz.unix_of_naive(naive).first() {
        return first;
    }
    // In a gap: the first instant whose local time is past `naive`.
    let (mut lo, mut hi) = (naive - 86_400 * 2, naive + 86_400);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if tz.to_naive(mid) >= naive {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The first run strictly after `t`.
pub fn next_after(t: i64, hhmm: (u32, u32), tz: &Tz) -> i64 {
    let day = tz.to_naive(t).div_euclid(86_400);
    (day - 1..day + 3)
        .map(|d| instance(d, hhmm, tz))
        .find(|&i| i > t)
        .unwrap_or(t + 86_400)
}

/// 2025-01-01T00:00:00Z: no real backup can be older than this program.
pub const MIN_SANE: i64 = 1_735_689_600;

/// An archive dated more than this far in the future is a clock excursion: it never
/// stops the schedule and never counts as a fresh success (docs/format.md, The schedule).
pub const FUTURE_IGNORED: i64 = 24 * 3600;

/// Whether the wall clock can be trusted: systemd-timesyncd says it is synchronized, or
/// it is past this program's minimum date and not earlier than the newest archive.
/// (All local naive seconds.) An archive dated more than `FUTURE_IGNORED` ahead is
/// ignored here: left by a clock that was wrong (a bad NTP answer, a wrong RTC), it
/// would otherwise stop every backup until that date.
pub fn clock_sane(now: i64, newest_archive: Option<i64>, timesync_flag: bool) -> bool {
    let newest = newest_archive.filter(|&n| n - now <= FUTURE_IGNORED);
    timesync_flag || (now >= MIN_SANE && newest.is_none_or(|n| now + 3600 >= n))
}

/// Why the clock looks wrong, for auto-status, the page and /metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockWarning {
    /// The clock reads a date before this program existed (a Pi boots in 1970 until
    /// NTP answers): scheduled backups wait.
    NotSet { now: String },
    /// An archive is dated more than an hour ahead of the clock (up to `FUTURE_IGNORED`
    /// ahead the schedule waits for the clock to pass it; further ahead it is ignored).
    FutureArchive { name: String },
    /// The last success is dated in the future (more than an hour ahead).
    FutureSuccess { stamp: String },
}

impl ClockWarning {
    /// In English, for the log and the CLI.
    pub fn english(&self) -> String {
        match self {
            ClockWarning::NotSet { now } => format!(
                "the clock reads {now}, before this program existed: it is not set yet (no \
                 NTP answer); scheduled backups wait for it"
            ),
            ClockWarning::FutureArchive { name } => format!(
                "{name} is dated in the future: the clock was wrong when it was made, or \
                 is wrong now"
            ),
            ClockWarning::FutureSuccess { stamp } => format!(
                "the last success is dated {stamp}, in the future: the clock was wrong then, \
                 or is wrong now; it does not count as a fresh backup"
            ),
        }
    }

    /// In French, for the page (the API's messages are in French).
    pub fn french(&self) -> String {
        match self {
            ClockWarning::NotSet { now } => format!(
                "L'horloge du boîtier indique {now} : elle n'est pas encore à l'heure (pas de \
                 réponse NTP). Les backups automatiques attendent."
            ),
            ClockWarning::FutureArchive { name } => format!(
                "{name} est daté dans le futur : l'horloge du boîtier était fausse quand \
                 il a été fait, ou l'est maintenant."
            ),
            ClockWarning::FutureSuccess { stamp } => format!(
                "Le dernier backup réussi est daté du {stamp}, dans le futur : l'horloge du \
                 boîtier était fausse, ou l'est maintenant. Il ne compte pas comme récent."
            ),
        }
    }
}

/// The clock warning, if any. `now`: Unix seconds; `newest_archive`: (name, local time
/// in the name); `last_success`: (timestamp as written, Unix seconds).
pub fn clock_warning(
    now: i64,
    tz: &Tz,
    newest_archive: Option<(&str, i64)>,
    last_success: Option<(&str, i64)>,
) -> Option<ClockWarning> {
    let naive = tz.to_naive(now);
    if naive < MIN_SANE {
        return Some(ClockWarning::NotSet {
            now: clock::plain(naive),
        });
    }
    if let Some((stamp, t)) = last_success
        && t - now > crate::status::FUTURE_SLACK
    {
        return Some(ClockWarning::FutureSuccess {
            stamp: stamp.to_string(),
        });
    }
    match newest_archive {
        Some((name, t)) if t - naive > 3600 => Some(ClockWarning::FutureArchive {
            name: name.to_string(),
        }),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do; look again after this many seconds (1..=60).
    Sleep(i64),
    /// The run is due (and the clock is sane, and the schedule is on).
    Run,
    /// The run is due but the clock does not look sane yet.
    WaitClock,
}

/// The state of the daily schedule.
#[derive(Debug)]
pub struct Scheduler {
    pub next: i64,
    hhmm: (u32, u32),
}

impl Scheduler {
    /// `catch_up`: run `delay` seconds after start rather than at the next BACKUP_TIME.
    pub fn new(now: i64, hhmm: (u32, u32), tz: &Tz, catch_up: bool, delay: i64) -> Scheduler {
        let next = if catch_up {
            now + delay
        } else {
            next_after(now, hhmm, tz)
        };
        Scheduler { next, hhmm }
    }

    pub fn tick(&mut self, now: i64, tz: &Tz, enabled: bool, sane: bool) -> Tick {
        if self.next - now > 2 * 86_400 + 3600 {
            // The clock went back by days (e.g. from 2099 to today): plan from now.
            self.next = next_after(now, self.hhmm, tz);
        }
        if now < self.next {
            return Tick::Sleep((self.next - now).clamp(1, 60));
        }
        if !enabled {
            // Switched off: this run is skipped, not saved for later.
            self.next = next_after(now, self.hhmm, tz);
            return Tick::Sleep((self.next - now).clamp(1, 60));
        }
        if !sane { Tick::WaitClock } else { Tick::Run }
    }

    /// After a run (or a skipped one): the next is the first run after both `now` and
    /// the run just done, so a day never runs twice.
    pub fn done(&mut self, now: i64, tz: &Tz) {
        self.next = next_after(now.max(self.next), self.hhmm, tz);
    }

    /// The schedule was switched back on: plan from now, without catching up.
    pub fn replan(&mut self, now: i64, tz: &Tz) {
        self.next = next_after(now, self.hhmm, tz);
    }
}

/// When the daemon starts: is a catch-up run due? (No success yet, the last run failed,
/// the last success is older than one period, or it is dated more than an hour in the
/// future — the clock was wrong then or is wrong now; the run still waits for a sane
/// clock.)
pub fn catch_up_due(now: i64, last_success: Option<i64>, last_run_failed: bool) -> bool {
    match last_success {
        None => true,
        Some(t) => last_run_failed || now - t > 86_400 || t - now > 3600,
    }
}

/// `Wed 2024-12-18 03:00:00 CET`.
pub fn describe(t: i64, tz: &Tz) -> String {
    clock::systemd_style(t, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{iso_local, naive_secs, parse_iso};

    fn paris() -> Tz {
        let Ok(bytes) = std::fs::read("/usr/share/zoneinfo/Europe/Paris") else {
            panic!("tzdata is needed for this test (apt-get install tzdata)");
        };
        Tz::from_tzif(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(s: &str) -> i64 {
        parse_iso(s).unwrap_or_else(|| panic!("bad time {s}"))
    }

    #[test]
    fn ordinary_days() {
        let tz = paris();
        let n = next_after(at("2024-12-18T02:59:59+01:00"), (3, 0), &tz);
        assert_eq!(iso_local(n, &tz), "2024-12-18T03:00:00+01:00");
        assert_eq!(describe(n, &tz), "Wed 2024-12-18 03:00:00 CET");
        let n = next_after(at("2024-12-18T03:00:00+01:00"), (3, 0), &tz);
        assert_eq!(iso_local(n, &tz), "2024-12-19T03:00:00+01:00");
        let n = next_after(at("2024-12-31T23:30:00+01:00"), (0, 15), &tz);
        assert_eq!(iso_local(n, &tz), "2025-01-01T00:15:00+01:00");
    }

    #[test]
    fn across_dst_changes() {
        let tz = paris();
        // The night of 2025-03-29 → 30: 03:00 exists (CEST), 23 h after the day before.
        let sat = next_after(at("2025-03-29T01:00:00+01:00"), (3, 0), &tz);
        let sun = next_after(sat, (3, 0), &tz);
        assert_eq!(iso_local(sun, &tz), "2025-03-30T03:00:00+02:00");
        assert_eq!(sun - sat, 23 * 3600);
        // October: 25 h.
        let sat = next_after(at("2025-10-25T01:00:00+02:00"), (3, 0), &tz);
        let sun = next_after(sat, (3, 0), &tz);
        assert_eq!(iso_local(sun, &tz), "2025-10-26T03:00:00+01:00");
        assert_eq!(sun - sat, 25 * 3600);
        assert_eq!(describe(sun, &tz), "Sun 2025-10-26 03:00:00 CET");
    }

    #[test]
    fn backup_time_in_the_skipped_hour_runs_when_the_clock_jumps() {
        let tz = paris();
        let n = next_after(at("2025-03-30T00:00:00+01:00"), (2, 30), &tz);
        assert_eq!(iso_local(n, &tz), "2025-03-30T03:00:00+02:00");
        let after = next_after(n, (2, 30), &tz);
        assert_eq!(iso_local(after, &tz), "2025-03-31T02:30:00+02:00");
    }

    #[test]
    fn backup_time_in_the_repeated_hour_runs_once() {
        let tz = paris();
        let first = next_after(at("2025-10-26T00:00:00+02:00"), (2, 30), &tz);
        assert_eq!(iso_local(first, &tz), "2025-10-26T02:30:00+02:00");
        let mut s = Scheduler::new(first - 10, (2, 30), &tz, false, 0);
        assert_eq!(s.tick(first, &tz, true, true), Tick::Run);
        s.done(first + 5, &tz);
        // One hour later the wall clock reads 02:30 again: no second run.
        let again = first + 3600;
        assert!(matches!(s.tick(again, &tz, true, true), Tick::Sleep(_)));
        assert_eq!(iso_local(s.next, &tz), "2025-10-27T02:30:00+01:00");
    }

    #[test]
    fn clock_jump_forward_runs_once_and_backward_never_twice() {
        let tz = Tz::utc();
        // Boot in 1970: the schedule waits for a sane clock.
        let mut s = Scheduler::new(60, (3, 0), &tz, false, 0);
        assert_eq!(s.tick(4 * 3600, &tz, true, false), Tick::WaitClock);
        // NTP jumps to 2025-06-01 12:00: the missed run happens once.
        let now = at("2025-06-01T12:00:00Z");
        assert_eq!(s.tick(now, &tz, true, true), Tick::Run);
        s.done(now + 2, &tz);
        assert_eq!(iso_local(s.next, &tz), "2025-06-02T03:00:00+00:00");
        assert!(matches!(s.tick(now + 10, &tz, true, true), Tick::Sleep(_)));
        // Run at 03:00, then the clock steps back 30 minutes: not again.
        let run = s.next;
        assert_eq!(s.tick(run, &tz, true, true), Tick::Run);
        s.done(run + 1, &tz);
        assert!(matches!(
            s.tick(run - 1800, &tz, true, true),
            Tick::Sleep(_)
        ));
        assert!(matches!(s.tick(run + 60, &tz, true, true), Tick::Sleep(_)));
        assert_eq!(s.next, run + 86_400);
    }

    #[test]
    fn clock_back_from_2099_replans() {
        let tz = Tz::utc();
        let mut s = Scheduler::new(at("2099-01-01T00:00:00Z"), (3, 0), &tz, false, 0);
        let now = at("2025-06-01T12:00:00Z");
        assert!(matches!(s.tick(now, &tz, true, true), Tick::Sleep(_)));
        assert_eq!(iso_local(s.next, &tz), "2025-06-02T03:00:00+00:00");
    }

    #[test]
    fn disabled_skips_and_catch_up() {
        let tz = Tz::utc();
        let now = at("2025-06-01T12:00:00Z");
        let mut s = Scheduler::new(now, (3, 0), &tz, true, 30);
        assert_eq!(s.next, now + 30);
        assert_eq!(s.tick(now + 30, &tz, false, true), Tick::Sleep(60));
        assert_eq!(iso_local(s.next, &tz), "2025-06-02T03:00:00+00:00");
        assert!(catch_up_due(now, None, false));
        assert!(catch_up_due(now, Some(now - 90_000), false));
        assert!(catch_up_due(now, Some(now - 60), true));
        assert!(!catch_up_due(now, Some(now - 3600), false));
        assert!(
            catch_up_due(now, Some(now + 86_400 * 365), false),
            "success dated 2099"
        );
    }

    fn zone(name: &str) -> Tz {
        let path = format!("/usr/share/zoneinfo/{name}");
        let Ok(bytes) = std::fs::read(&path) else {
            panic!("tzdata is needed for this test (apt-get install tzdata): {path}");
        };
        Tz::from_tzif(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_gap_in_a_zone_far_east_of_utc() {
        // Pacific/Apia (UTC+13) sprang forward from 03:00 to 04:00 on 2012-09-30: a
        // 03:30 run happens when the clock jumps, 04:00+14.
        let tz = zone("Pacific/Apia");
        let n = next_after(at("2012-09-30T00:00:00+13:00"), (3, 30), &tz);
        assert_eq!(iso_local(n, &tz), "2012-09-30T04:00:00+14:00");
        assert_eq!(n, at("2012-09-29T14:00:00Z"));
        // A gap before 1970 (negative Unix times): New York sprang forward from 02:00 to
        // 03:00 on 1969-04-27.
        let ny = zone("America/New_York");
        let n = next_after(at("1969-04-27T00:00:00-05:00"), (2, 30), &ny);
        assert_eq!(iso_local(n, &ny), "1969-04-27T03:00:00-04:00");
        // And Paris' gap through `instance` directly.
        let paris = paris();
        let day = naive_secs(2025, 3, 30, 0, 0, 0) / 86_400;
        assert_eq!(instance(day, (2, 30), &paris), at("2025-03-30T01:00:00Z"));
    }

    #[test]
    fn sleeps_are_the_time_left_capped_at_a_minute() {
        let tz = Tz::utc();
        let now = at("2025-06-01T02:59:30Z");
        let mut s = Scheduler::new(now, (3, 0), &tz, false, 0);
        assert_eq!(s.next, at("2025-06-01T03:00:00Z"));
        assert_eq!(s.tick(now, &tz, true, true), Tick::Sleep(30));
        assert_eq!(s.tick(now + 29, &tz, true, true), Tick::Sleep(1));
        assert_eq!(s.tick(now - 3600, &tz, true, true), Tick::Sleep(60));
        // Switched off while due: skipped, and the sleep is to the next run (30 s).
        let mut s = Scheduler::new(now, (3, 0), &tz, false, 0);
        s.next = now - 10;
        assert_eq!(s.tick(now, &tz, false, true), Tick::Sleep(30));
        assert_eq!(s.next, at("2025-06-01T03:00:00Z"));
        // A catch-up in 5 s sleeps 5 s.
        let mut s = Scheduler::new(now, (3, 0), &tz, true, 5);
        assert_eq!(s.tick(now, &tz, true, true), Tick::Sleep(5));
        assert_eq!(s.tick(now + 5, &tz, true, true), Tick::Run);
    }

    #[test]
    fn the_clock_back_by_up_to_two_days_and_an_hour_keeps_the_plan() {
        let tz = Tz::utc();
        let run = at("2025-06-10T03:00:00Z");
        for (back, replans) in [
            (86_400, false),
            (2 * 86_400, false),
            (2 * 86_400 + 3600, false),
            (2 * 86_400 + 3601, true),
            (3 * 86_400, true),
        ] {
            let mut s = Scheduler::new(run - 60, (3, 0), &tz, false, 0);
            assert_eq!(s.next, run);
            let now = run - back;
            let t = s.tick(now, &tz, true, true);
            let want = if replans {
                next_after(now, (3, 0), &tz)
            } else {
                run
            };
            assert_eq!(s.next, want, "clock back so that the run is {back} s away");
            assert_eq!(t, Tick::Sleep(60));
        }
    }

    #[test]
    fn replan_plans_from_now_and_done_never_goes_back() {
        let tz = Tz::utc();
        let now = at("2025-06-01T12:00:00Z");
        // A catch-up planned in an hour; switched off and on: the daily run instead.
        let mut s = Scheduler::new(now, (3, 0), &tz, true, 3600);
        assert_eq!(s.next, now + 3600);
        s.replan(now, &tz);
        assert_eq!(s.next, at("2025-06-02T03:00:00Z"));
        // Replanning from a later now moves on.
        s.replan(at("2025-06-02T03:00:00Z"), &tz);
        assert_eq!(s.next, at("2025-06-03T03:00:00Z"));
        // done() at a time before the planned run keeps the day after it.
        let mut s = Scheduler::new(now, (3, 0), &tz, false, 0);
        s.done(now - 86_400, &tz);
        assert_eq!(s.next, at("2025-06-03T03:00:00Z"));
    }

    #[test]
    fn catch_up_boundaries() {
        let now = at("2025-06-01T12:00:00Z");
        // Exactly one day old: not yet due; one second more: due.
        assert!(!catch_up_due(now, Some(now - 86_400), false));
        assert!(catch_up_due(now, Some(now - 86_401), false));
        // Exactly an hour ahead: tolerated; one second more: due.
        assert!(!catch_up_due(now, Some(now + 3600), false));
        assert!(catch_up_due(now, Some(now + 3601), false));
        // A fresh success and a failed run after it: due.
        assert!(catch_up_due(now, Some(now), true));
        assert!(!catch_up_due(now, Some(now), false));
    }

    #[test]
    fn sane_clock_boundaries() {
        let min_sane = at("2025-01-01T00:00:00Z");
        assert!(clock_sane(min_sane, None, false));
        assert!(!clock_sane(min_sane - 1, None, false));
        let t = at("2025-06-01T12:00:00Z");
        // An archive a few minutes (up to an hour) in the future: the clock is sane.
        assert!(clock_sane(t, Some(t + 300), false));
        assert!(clock_sane(t, Some(t + 3600), false));
        assert!(!clock_sane(t, Some(t + 3601), false));
        assert!(clock_sane(t, Some(t + 86_400), true), "timesync wins");
    }

    #[test]
    fn sanity() {
        let t = at("2025-06-01T12:00:00Z");
        assert!(!clock_sane(0, None, false));
        assert!(clock_sane(0, None, true));
        assert!(clock_sane(t, Some(t - 86_400), false));
        assert!(!clock_sane(t, Some(t + 7200), false));
        assert!(!clock_sane(t, Some(t + 86_400), false));
        // An archive of 2099 never stops the schedule by itself.
        assert!(clock_sane(t, Some(at("2099-01-01T03:00:00Z")), false));
        assert!(clock_sane(t, Some(t + 86_401), false));
        let _ = naive_secs(2025, 1, 1, 0, 0, 0);
    }

    #[test]
    fn clock_warnings() {
        let tz = Tz::utc();
        let t = at("2025-06-01T12:00:00Z");
        assert_eq!(clock_warning(t, &tz, None, None), None);
        let w = clock_warning(60, &tz, None, None);
        assert!(matches!(w, Some(ClockWarning::NotSet { .. })), "{w:?}");
        let far = at("2099-01-01T03:00:00Z");
        let w = clock_warning(t, &tz, Some(("backup-20990101-030000.tar.gz", far)), None);
        assert!(w.is_some_and(|w| w.english().contains("backup-20990101")));
        assert_eq!(clock_warning(t, &tz, Some(("x", t + 3600)), None), None);
        let w = clock_warning(t, &tz, None, Some(("2099-01-01T03:00:00+00:00", far)));
        assert!(w.is_some_and(|w| w.french().contains("2099-01-01")));
        assert_eq!(clock_warning(t, &tz, None, Some(("now", t + 60))), None);
        // The bounds themselves are fine: the first sane second, a success exactly
        // FUTURE_SLACK ahead.
        assert_eq!(clock_warning(MIN_SANE, &tz, None, None), None);
        let w = clock_warning(MIN_SANE - 1, &tz, None, None);
        assert!(matches!(w, Some(ClockWarning::NotSet { .. })), "{w:?}");
        let slack = crate::status::FUTURE_SLACK;
        assert_eq!(clock_warning(t, &tz, None, Some(("s", t + slack))), None);
        let w = clock_warning(t, &tz, None, Some(("s", t + slack + 1)));
        assert!(
            matches!(w, Some(ClockWarning::FutureSuccess { .. })),
            "{w:?}"
        );
    }
}
