//! When delivery attempts happen (SPEC §11): the retry schedule, its jitter, and the
//! receiver's `Retry-After`.

use std::time::{Duration, SystemTime};

/// No delay, however large a receiver's `Retry-After`, goes beyond this; an endpoint
/// asking for more is treated as asking for a day.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The delay before each attempt; index 0 is the first attempt (immediate), so the
/// length is the maximum number of attempts.
pub fn default_schedule() -> Vec<Duration> {
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    [0, 30, 5 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

/// The delay before the next attempt once `attempts_made` attempts have been made, or
/// `None` when the schedule is exhausted.
///
/// `jitter` in `[0, 1)` comes from the caller (so tests are deterministic) and scales
/// the scheduled delay by a factor in `[0.9, 1.1)`, which keeps endpoints that failed
/// together from being retried together. A `retry_after` from the receiver can only
/// lengthen the delay; the result never exceeds [`MAX_DELAY`].
pub fn next_delay(
    schedule: &[Duration],
    attempts_made: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let base = *schedule.get(usize::try_from(attempts_made).ok()?)?;
    let jitter = if jitter.is_nan() {
        0.5
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let factor = 0.9 + 0.2 * jitter;
    let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base);
    let delay = retry_after.map_or(jittered, |ra| jittered.max(ra));
    Some(delay.min(MAX_DELAY))
}

/// A `Retry-After` header value: delta-seconds or an HTTP-date (a date in the past
/// means "now"). `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too long for u64 still means "a very long time"; the cap in
        // `next_delay` takes care of it.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn default_schedule_values() {
        assert_eq!(
            default_schedule(),
            vec![
                S(0),
                S(30),
                S(300),
                S(1800),
                S(3600),
                S(7200),
                S(10800),
                S(14400)
            ]
        );
    }

    #[test]
    fn exhausted_after_eight_attempts() {
        let schedule = default_schedule();
        for made in 0..8 {
            assert!(next_delay(&schedule, made, None, 0.5).is_some(), "{made}");
        }
        assert_eq!(next_delay(&schedule, 8, None, 0.5), None);
        assert_eq!(next_delay(&schedule, u32::MAX, None, 0.5), None);
        assert_eq!(next_delay(&[], 0, None, 0.5), None);
    }

    #[test]
    fn midpoint_jitter_is_the_schedule() {
        let schedule = default_schedule();
        for (made, expected) in schedule.iter().enumerate() {
            let got = next_delay(&schedule, made as u32, None, 0.5).unwrap();
            let diff = got.as_secs_f64() - expected.as_secs_f64();
            assert!(diff.abs() < 1e-6, "{made}: {got:?} vs {expected:?}");
        }
        assert_eq!(next_delay(&schedule, 0, None, 0.99), Some(Duration::ZERO));
    }

    #[test]
    fn jitter_bounds() {
        let schedule = default_schedule();
        let low = next_delay(&schedule, 2, None, 0.0).unwrap();
        assert_eq!(low, Duration::from_secs(270));
        let high = next_delay(&schedule, 2, None, 0.999_999).unwrap();
        assert!(high < Duration::from_secs(330) && high > Duration::from_secs(329));
        for i in 0..100 {
            let j = f64::from(i) / 100.0;
            let d = next_delay(&schedule, 1, None, j).unwrap();
            assert!(d >= S(27) && d < S(33), "{j}: {d:?}");
        }
        // Out-of-range jitter is clamped, never panics.
        assert_eq!(next_delay(&schedule, 1, None, -3.0), Some(S(27)));
        assert!(next_delay(&schedule, 1, None, 7.0).unwrap() <= S(33));
        assert!(next_delay(&schedule, 1, None, f64::NAN).is_some());
        assert!(next_delay(&schedule, 1, None, f64::INFINITY).is_some());
    }

    #[test]
    fn retry_after_only_lengthens() {
        let schedule = default_schedule();
        assert_eq!(next_delay(&schedule, 1, Some(S(600)), 0.5), Some(S(600)));
        let d = next_delay(&schedule, 1, Some(S(5)), 0.5).unwrap();
        assert!(d >= S(29) && d <= S(31), "{d:?}");
        // Even the immediate first slot waits if the receiver asked for it.
        assert_eq!(next_delay(&schedule, 0, Some(S(7)), 0.5), Some(S(7)));
    }

    #[test]
    fn delays_are_capped_at_a_day() {
        let schedule = default_schedule();
        assert_eq!(
            next_delay(&schedule, 1, Some(S(7 * 24 * 3600)), 0.5),
            Some(MAX_DELAY)
        );
        assert_eq!(next_delay(&[S(100 * 3600)], 0, None, 0.5), Some(MAX_DELAY));
        // Retry-After does not extend an exhausted schedule.
        assert_eq!(next_delay(&schedule, 8, Some(S(5)), 0.5), None);
    }

    #[test]
    fn parse_retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("7", now), Some(S(7)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(S(120)));
        assert_eq!(parse_retry_after("0", now), Some(S(0)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(S(u64::MAX))
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn parse_retry_after_http_date() {
        // 2015-10-21T07:28:00Z
        let now = SystemTime::UNIX_EPOCH + S(1_445_412_480);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(S(90))
        );
        // The obsolete forms HTTP still requires recipients to accept.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:30 GMT", now),
            Some(S(90))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:29:30 2015", now),
            Some(S(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Wed, 32 Oct 2015 07:00:00 GMT", now),
            None
        );
    }
}
