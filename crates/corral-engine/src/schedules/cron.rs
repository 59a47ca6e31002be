//! A schedule's timetable: a 5- or 6-field cron expression (seconds optional, as in
//! Appstrate) read in an IANA timezone. Daylight-saving changes follow Vixie cron
//! (through `croner`): a time that does not exist on a spring-forward day fires once,
//! right after the jump; a time that exists twice on a fall-back day fires once.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A parsed expression in its timezone.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Cron,
    tz: Tz,
}

/// What is wrong with an expression or a timezone, for a 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Timetable {
    pub fn parse(expression: &str, timezone: &str) -> Result<Timetable, Invalid> {
        let tz = Tz::from_str(timezone).map_err(|_| Invalid {
            field: "timezone",
            message: format!("{timezone:?} is not an IANA timezone (e.g. Europe/Paris, UTC)"),
        })?;
        let expr = expression.trim();
        let fields = expr.split_whitespace().count();
        if !expr.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(Invalid {
                field: "cron_expression",
                message: format!(
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 with \
                     seconds first; {expr:?} has {fields}"
                ),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| Invalid {
                field: "cron_expression",
                message: format!("invalid cron expression {expr:?}: {e}"),
            })?;
        let t = Timetable { cron, tz };
        // An expression that can never fire (e.g. 31 February) is refused up front.
        if t.next_after(Utc::now().timestamp_millis()).is_none() {
            return Err(Invalid {
                field: "cron_expression",
                message: format!("{expr:?} never fires"),
            });
        }
        Ok(t)
    }

    /// The first fire time strictly after `after_ms` (Unix ms), if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let utc = Utc.timestamp_millis_opt(after_ms).single()?;
        let local: DateTime<Tz> = utc.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.with_timezone(&Utc).timestamp_millis())
    }

    /// Fire times strictly after `after_ms` and at most `until_ms`.
    pub fn fires_between(&self, after_ms: i64, until_ms: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut t = after_ms;
        while let Some(n) = self.next_after(t) {
            if n > until_ms {
                break;
            }
            out.push(n);
            t = n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    fn local(t: &Timetable, ms: i64) -> String {
        Utc.timestamp_millis_opt(ms)
            .unwrap()
            .with_timezone(&t.tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }

    #[test]
    fn five_and_six_fields() {
        let t = Timetable::parse("0 9 * * 1-5", "UTC").unwrap();
        // Friday 2026-12-04 10:00 → Monday 09:00.
        assert_eq!(
            t.next_after(ms("2026-12-04T10:00:00Z")),
            Some(ms("2026-12-07T09:00:00Z"))
        );
        let t = Timetable::parse("*/2 * * * * *", "UTC").unwrap();
        assert_eq!(
            t.next_after(ms("2026-12-04T10:00:00Z")),
            Some(ms("2026-12-04T10:00:02Z"))
        );
        assert_eq!(
            t.fires_between(ms("2026-12-04T10:00:00Z"), ms("2026-12-04T10:00:10Z"))
                .len(),
            5
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "0 0 31 2 *"] {
            let e = Timetable::parse(bad, "UTC").unwrap_err();
            assert_eq!(e.field, "cron_expression", "{bad:?}: {}", e.message);
        }
        let e = Timetable::parse("0 9 * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(e.field, "timezone");
    }

    /// A 02:30 daily schedule across both changes of two zones: every day fires
    /// exactly once, the skipped 02:30 right after the jump.
    #[test]
    fn daily_0230_fires_once_a_day_across_dst() {
        for (zone, spring, fall) in [
            ("Europe/Paris", "2026-03-29", "2026-10-25"),
            ("America/New_York", "2026-03-08", "2026-11-01"),
        ] {
            let t = Timetable::parse("30 2 * * *", zone).unwrap();
            for day in [spring, fall] {
                // From the day before at noon UTC to the day after at noon UTC.
                let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
                let from = date.pred_opt().unwrap().and_hms_opt(12, 0, 0).unwrap();
                let to = date.succ_opt().unwrap().and_hms_opt(12, 0, 0).unwrap();
                let fires = t.fires_between(
                    from.and_utc().timestamp_millis(),
                    to.and_utc().timestamp_millis(),
                );
                let on_day: Vec<String> = fires
                    .iter()
                    .map(|f| local(&t, *f))
                    .filter(|l| l.starts_with(day))
                    .collect();
                assert_eq!(on_day.len(), 1, "{zone} {day}: {on_day:?}");
                if day == spring {
                    assert!(on_day[0].contains(" 03:"), "{zone} {day}: {on_day:?}");
                } else {
                    assert!(on_day[0].contains(" 02:30:00"), "{zone} {day}: {on_day:?}");
                }
            }
        }
    }

    /// An hourly schedule keeps firing through both changes: 23 fires on the short
    /// day, 25 on the long one (every real hour), never twice at one instant.
    #[test]
    fn hourly_follows_real_hours_across_dst() {
        let t = Timetable::parse("0 * * * *", "Europe/Paris").unwrap();
        let day = |d: &str| {
            let start = ms(&format!("{d}T00:00:00+01:00"));
            (start, start + 26 * 3_600_000)
        };
        let (from, to) = day("2026-03-29");
        let spring: Vec<_> = t
            .fires_between(from - 1, to)
            .into_iter()
            .filter(|f| local(&t, *f).starts_with("2026-03-29"))
            .collect();
        assert_eq!(spring.len(), 23);
        let from = ms("2026-10-25T00:00:00+02:00");
        let fall: Vec<_> = t
            .fires_between(from - 1, from + 26 * 3_600_000)
            .into_iter()
            .filter(|f| local(&t, *f).starts_with("2026-10-25"))
            .collect();
        let mut dedup = fall.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), fall.len());
        assert!(
            (24..=25).contains(&fall.len()),
            "{} fires: {:?}",
            fall.len(),
            fall.iter().map(|f| local(&t, *f)).collect::<Vec<_>>()
        );
    }
}
