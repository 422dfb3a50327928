//! Wall clock and time zone arithmetic: civil dates, local offsets, formatting and parsing.
//!
//! Everything here except `now_unix` and `Tz::local` is pure, so that the schedule,
//! retention and names can be tested with any clock (1970, 2099, a DST night).
//! The zone comes from TZ or /etc/localtime (tz-rs reads the TZif data itself, so a
//! static musl binary needs no libc locale support).

use std::time::{SystemTime, UNIX_EPOCH};

/// A time zone: the rules for turning a Unix time into local time.
#[derive(Clone)]
pub struct Tz {
    zone: Option<tz::TimeZone>,
}

impl Tz {
    /// The zone of this machine (TZ, then /etc/localtime); UTC when neither can be read.
    pub fn local() -> Tz {
        // tz-rs 0.7's TimeZone::local() reads /etc/localtime only and ignores TZ.
        // Like glibc: a set but unusable TZ means UTC, not /etc/localtime.
        let zone = match std::env::var("TZ") {
            Ok(v) if !v.is_empty() => tz::TimeZone::from_posix_tz(&v).ok(),
            _ => tz::TimeZone::local().ok(),
        };
        Tz { zone }
    }

    #[cfg(test)]
    pub fn utc() -> Tz {
        Tz { zone: None }
    }

    /// A zone from TZif bytes (e.g. /usr/share/zoneinfo/Europe/Paris), for tests and tools.
    #[cfg(test)]
    pub fn from_tzif(bytes: &[u8]) -> Result<Tz, String> {
        tz::TimeZone::from_tz_data(bytes)
            .map(|z| Tz { zone: Some(z) })
            .map_err(|e| format!("invalid time zone data: {e}"))
    }

    /// Offset from UTC in seconds and the zone abbreviation ("CET") at `unix`.
    pub fn offset(&self, unix: i64) -> (i32, String) {
        match &self.zone {
            Some(z) => match z.find_local_time_type(unix) {
                Ok(t) => (t.ut_offset(), t.time_zone_designation().to_string()),
                Err(_) => (0, "UTC".to_string()),
            },
            None => (0, "UTC".to_string()),
        }
    }

    /// Offset from UTC in seconds at `unix` (no allocation: called per video).
    pub fn offset_secs(&self, unix: i64) -> i32 {
        match &self.zone {
            Some(z) => z.find_local_time_type(unix).map_or(0, |t| t.ut_offset()),
            None => 0,
        }
    }

    /// Local (naive) seconds of `unix`: the Unix time shifted by the local offset.
    pub fn to_naive(&self, unix: i64) -> i64 {
        unix + i64::from(self.offset_secs(unix))
    }

    /// Every Unix time whose local time is `naive`, in increasing order: none in a
    /// skipped hour (spring forward), two in a repeated one (fall back).
    pub fn unix_of_naive(&self, naive: i64) -> Vec<i64> {
        let mut offsets = vec![
            self.offset(naive - 86_400).0,
            self.offset(naive).0,
            self.offset(naive + 86_400).0,
        ];
        offsets.sort_unstable();
        offsets.dedup();
        let mut out: Vec<i64> = offsets
            .into_iter()
            .map(|o| naive - i64::from(o))
            .filter(|&t| self.to_naive(t) == naive)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Seconds since the Unix epoch, by the wall clock (which may be wrong on a Pi).
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A broken-down calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds of a naive date-time counted like Unix time.
pub fn naive_secs(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> i64 {
    days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
}

/// `Wed, 18 Dec 2024 03:00:00`, in UTC: the date of HTTP headers (with ` GMT`, RFC 9110)
/// and of mail headers (with ` +0000`, RFC 5322).
pub fn day_and_time_utc(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(unix);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02}",
        DAYS[c.weekday as usize % 7],
        c.day,
        MONTHS[(c.month as usize).saturating_sub(1) % 12],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// The calendar date and time of naive seconds.
pub fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// Whether a calendar date exists.
pub fn valid_date(year: i64, month: u32, day: u32) -> bool {
    if !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let len = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    day <= len[(month - 1) as usize]
}

fn offset_str(offset: i32) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

/// `2024-12-18T03:00:00+01:00`: local time with its offset.
pub fn iso_local(unix: i64, tz: &Tz) -> String {
    let off = tz.offset_secs(unix);
    let c = civil(unix + i64::from(off));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        offset_str(off)
    )
}

/// `2024-12-18T02:00:00.000Z`, as JavaScript's `toISOString()` prints it.
pub fn iso_utc_millis(unix: i64, millis: u32) -> String {
    let c = civil(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, millis
    )
}

/// `2024-12-18 03:00:00` of naive seconds.
pub fn plain(naive: i64) -> String {
    let c = civil(naive);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `Wed 2024-12-18 03:00:00 CET`, as `systemctl list-timers` prints a time.
pub fn systemd_style(unix: i64, tz: &Tz) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let (off, abbr) = tz.offset(unix);
    let naive = unix + i64::from(off);
    let c = civil(naive);
    format!("{} {} {}", DAYS[c.weekday as usize], plain(naive), abbr)
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into Unix seconds.
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(num(s.get(0..4)?)?);
    let month = num(s.get(5..7)?)?;
    let day = num(s.get(8..10)?)?;
    let hour = num(s.get(11..13)?)?;
    let minute = num(s.get(14..16)?)?;
    let second = num(s.get(17..19)?)?;
    if !valid_date(year, month, day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = frac.get(digits..)?;
    }
    let offset = if rest == "Z" {
        0
    } else {
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        if rest.len() != 6 || rest.as_bytes()[3] != b':' {
            return None;
        }
        let oh = i64::from(num(rest.get(1..3)?)?);
        let om = i64::from(num(rest.get(4..6)?)?);
        sign * (oh * 3600 + om * 60)
    };
    Some(naive_secs(year, month, day, hour, minute, second) - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_over_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let c = civil(days * 86_400 + 3723);
            assert_eq!(days_from_civil(c.year, c.month, c.day), days);
            assert!(valid_date(c.year, c.month, c.day));
            assert_eq!((c.hour, c.minute, c.second), (1, 2, 3));
        }
        assert_eq!(civil(0).weekday, 4, "1970-01-01 was a Thursday");
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn iso_formats_and_parses_back() {
        let tz = Tz::utc();
        assert_eq!(iso_local(0, &tz), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso_utc_millis(1_734_487_200, 5), "2024-12-18T02:00:00.005Z");
        assert_eq!(parse_iso("2024-12-18T03:00:00+01:00"), Some(1_734_487_200));
        assert_eq!(parse_iso("2024-12-18T02:00:00.000Z"), Some(1_734_487_200));
        assert_eq!(parse_iso("2024-02-30T02:00:00Z"), None);
        assert_eq!(parse_iso("2024-12-18 02:00:00Z"), None);
        assert_eq!(parse_iso("garbage"), None);
        assert_eq!(parse_iso("2024-12-18T02:00:00+1:00"), None);
    }

    #[test]
    fn paris_offsets_and_gaps() {
        let Ok(bytes) = std::fs::read("/usr/share/zoneinfo/Europe/Paris") else {
            panic!("tzdata is needed for this test (apt-get install tzdata)");
        };
        let Ok(tz) = Tz::from_tzif(&bytes) else {
            panic!("Europe/Paris did not parse");
        };
        let t = parse_iso("2024-12-18T03:00:00+01:00").unwrap_or_default();
        assert_eq!(systemd_style(t, &tz), "Wed 2024-12-18 03:00:00 CET");
        assert_eq!(iso_local(t, &tz), "2024-12-18T03:00:00+01:00");
        // 2025-03-30 02:30 does not exist in Paris; 2025-10-26 02:30 happens twice.
        assert!(
            tz.unix_of_naive(naive_secs(2025, 3, 30, 2, 30, 0))
                .is_empty()
        );
        assert_eq!(
            tz.unix_of_naive(naive_secs(2025, 10, 26, 2, 30, 0)).len(),
            2
        );
        assert_eq!(tz.unix_of_naive(naive_secs(2025, 7, 1, 3, 0, 0)).len(), 1);
    }

    fn zone(name: &str) -> Tz {
        let path = format!("/usr/share/zoneinfo/{name}");
        let Ok(bytes) = std::fs::read(&path) else {
            panic!("tzdata is needed for this test (apt-get install tzdata): {path}");
        };
        Tz::from_tzif(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn naive_seconds_and_dates() {
        assert_eq!(naive_secs(2024, 12, 18, 3, 4, 5), 1_734_491_045);
        assert_eq!(naive_secs(1969, 7, 20, 20, 17, 40), -14_182_940);
        assert_eq!(naive_secs(1970, 1, 1, 0, 0, 59), 59);
        let c = civil(1_734_491_045);
        assert_eq!(
            (
                c.year, c.month, c.day, c.hour, c.minute, c.second, c.weekday
            ),
            (2024, 12, 18, 3, 4, 5, 3)
        );
        for (y, m, d, ok) in [
            (2024, 2, 29, true),
            (2023, 2, 29, false),
            (2023, 2, 28, true),
            (2000, 2, 29, true),
            (1900, 2, 29, false),
            (2100, 2, 29, false),
            (2024, 4, 31, false),
            (2024, 4, 30, true),
            (2024, 12, 31, true),
            (2024, 1, 31, true),
            (2024, 1, 32, false),
            (2024, 0, 1, false),
            (2024, 13, 1, false),
            (2024, 6, 0, false),
        ] {
            assert_eq!(valid_date(y, m, d), ok, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn the_last_day_of_a_400_year_era() {
        // Feb 29 of a year divisible by 400 is the era's day 146 096, where the civil
        // algorithm's century corrections meet (the round-trip sweep steps over it).
        for (y, before, after) in [
            (2000, (2, 28), (3, 1)),
            (1600, (2, 28), (3, 1)),
            (2400, (2, 28), (3, 1)),
        ] {
            let d = days_from_civil(y, 2, 29);
            let c = civil(d * 86_400);
            assert_eq!((c.year, c.month, c.day), (y, 2, 29), "{y}-02-29");
            let c = civil((d - 1) * 86_400);
            assert_eq!((c.year, c.month, c.day), (y, before.0, before.1));
            let c = civil((d + 1) * 86_400);
            assert_eq!((c.year, c.month, c.day), (y, after.0, after.1));
        }
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }

    #[test]
    fn offsets_east_and_west_with_minutes() {
        let t = 1_750_000_000; // 2025-06-15T15:06:40Z
        assert_eq!(iso_local(t, &Tz::utc()), "2025-06-15T15:06:40+00:00");
        assert_eq!(
            iso_local(t, &zone("Asia/Kolkata")),
            "2025-06-15T20:36:40+05:30"
        );
        assert_eq!(
            iso_local(t, &zone("America/St_Johns")),
            "2025-06-15T12:36:40-02:30"
        );
        assert_eq!(
            iso_local(t, &zone("America/New_York")),
            "2025-06-15T11:06:40-04:00"
        );
        assert_eq!(
            systemd_style(t, &zone("America/New_York")),
            "Sun 2025-06-15 11:06:40 EDT"
        );
        assert_eq!(systemd_style(t, &Tz::utc()), "Sun 2025-06-15 15:06:40 UTC");
        assert_eq!(Tz::utc().offset(t), (0, "UTC".to_string()));
        assert_eq!(zone("Asia/Kolkata").offset(t), (19_800, "IST".to_string()));
        assert_eq!(zone("America/St_Johns").offset_secs(t), -9000);
        assert_eq!(zone("America/St_Johns").to_naive(t), t - 9000);
        assert_eq!(
            plain(naive_secs(2024, 2, 29, 23, 59, 58)),
            "2024-02-29 23:59:58"
        );
        assert_eq!(iso_utc_millis(-1, 999), "1969-12-31T23:59:59.999Z");
        // A time that exists once, in a zone west of UTC.
        let ny = zone("America/New_York");
        assert_eq!(
            ny.unix_of_naive(naive_secs(2025, 6, 15, 11, 6, 40)),
            [t],
            "the one instant of an ordinary local time"
        );
        // New York's repeated hour (2025-11-02 01:30 EDT, then EST): both, in order.
        let two = ny.unix_of_naive(naive_secs(2025, 11, 2, 1, 30, 0));
        assert_eq!(
            two.iter().map(|&u| iso_local(u, &ny)).collect::<Vec<_>>(),
            ["2025-11-02T01:30:00-04:00", "2025-11-02T01:30:00-05:00"]
        );
    }

    #[test]
    fn now_is_the_wall_clock() {
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        assert!((now_unix() - sys).abs() <= 1, "{} vs {sys}", now_unix());
    }

    #[test]
    fn iso_parsing_rejects_every_malformed_part() {
        let base = "2024-12-18T03:04:05";
        assert_eq!(parse_iso(&format!("{base}Z")), Some(1_734_491_045));
        assert_eq!(parse_iso(&format!("{base}+00:00")), Some(1_734_491_045));
        assert_eq!(
            parse_iso(&format!("{base}-02:30")),
            Some(1_734_491_045 + 9000)
        );
        assert_eq!(
            parse_iso(&format!("{base}+05:30")),
            Some(1_734_491_045 - 19_800)
        );
        assert_eq!(parse_iso(&format!("{base}.5Z")), Some(1_734_491_045));
        assert_eq!(
            parse_iso(&format!("{base}.123456+01:00")),
            Some(1_734_487_445)
        );
        assert_eq!(
            parse_iso("2024-12-31T23:59:60Z"),
            Some(1_735_689_600),
            "a leap second"
        );
        for bad in [
            "2024-12-18T03:04:05",
            "2024-12-18T03:04:5Z",
            "2024/12-18T03:04:05Z",
            "2024-12/18T03:04:05Z",
            "2024-12-18 03:04:05Z",
            "2024-12-18T03-04:05Z",
            "2024-12-18T03:04-05Z",
            "2024-12-18T24:00:00Z",
            "2024-12-18T23:60:00Z",
            "2024-12-18T23:59:61Z",
            "2024-13-18T03:04:05Z",
            "2024-12-32T03:04:05Z",
            "2024-12-18T03:04:05.Z",
            "2024-12-18T03:04:05z",
            "2024-12-18T03:04:05*01:00",
            "2024-12-18T03:04:05+0100",
            "2024-12-18T03:04:05+01:000",
            "2024-12-18T03:04:05+01-00",
            "2024-12-18T03:04:05+1a:00",
            "2024-12-18T03:04:05ZZ",
            "+024-12-18T03:04:05Z",
            "2024-1a-18T03:04:05Z",
            "2024-12-18T0a:04:05Z",
            "2024-12-18T03:04:05+01:0a",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad:?}");
        }
    }

    /// Prints the zone `Tz::local` finds, for the test below (which runs this test
    /// binary again with another TZ: the environment of this process stays untouched).
    #[test]
    fn child_prints_the_local_zone() {
        if std::env::var_os("NEOPRO_CLOCK_CHILD").is_some() {
            println!("ZONE={}=", iso_local(1_750_000_000, &Tz::local()));
        }
    }

    fn local_zone_with(tz: Option<&str>) -> String {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let mut c = std::process::Command::new(exe);
        c.args([
            "--exact",
            "clock::tests::child_prints_the_local_zone",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NEOPRO_CLOCK_CHILD", "1")
        .env_remove("TZ");
        if let Some(tz) = tz {
            c.env("TZ", tz);
        }
        let out = c.output().unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split("ZONE=")
            .nth(1)
            .and_then(|r| r.split('=').next())
            .unwrap_or_else(|| panic!("no zone printed: {text}"))
            .to_string()
    }

    #[test]
    fn the_zone_comes_from_tz_first_and_a_bad_tz_is_utc() {
        assert_eq!(
            local_zone_with(Some("Europe/Paris")),
            "2025-06-15T17:06:40+02:00"
        );
        assert_eq!(local_zone_with(Some("UTC-3")), "2025-06-15T18:06:40+03:00");
        assert_eq!(
            local_zone_with(Some("Not/A_Zone")),
            "2025-06-15T15:06:40+00:00"
        );
        // Unset or empty: /etc/localtime, whatever this host has (tests/engine.rs checks
        // it with a /etc/localtime of Tokyo).
        assert_eq!(local_zone_with(Some("")), local_zone_with(None));
    }

    /// Prints `now_unix`, for the test below (run with a faked wall clock).
    #[test]
    fn child_prints_now() {
        if std::env::var_os("NEOPRO_CLOCK_CHILD").is_some() {
            println!("NOW={}=", now_unix());
        }
    }

    #[test]
    fn a_wall_clock_before_1970_is_negative() {
        // libfaketime (Debian's faketime) sets the child's wall clock to 1969.
        let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
        if !std::path::Path::new(lib).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{lib} is missing: apt-get install faketime"
            );
            eprintln!("SKIPPED: {lib} is missing (apt-get install faketime)");
            return;
        }
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "clock::tests::child_prints_now",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("NEOPRO_CLOCK_CHILD", "1")
            .env("LD_PRELOAD", lib)
            .env("FAKETIME", "@1969-12-31 23:00:00")
            .env("TZ", "UTC")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let now: i64 = text
            .split("NOW=")
            .nth(1)
            .and_then(|r| r.split('=').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no time printed: {text}"));
        assert!(
            (-3600..-3500).contains(&now),
            "1969-12-31T23:00Z is -3600, got {now}"
        );
    }
}
