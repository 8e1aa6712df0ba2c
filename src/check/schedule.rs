//! When to look at a connection next. Pure, with the randomness passed in, so it is testable.
//!
//! Refreshing at a jittered ~2/3 of the access token's lifetime (Vault's rule) keeps a margin of
//! a third of the lifetime for retries, and the jitter keeps a fleet of tokens issued in the
//! same second from coming due in the same second forever after.
//!
//! After a success the jitter is not drawn at random but derived from the millisecond the check
//! finished in (Fibonacci hashing: consecutive milliseconds land far apart, evenly over the
//! range). Checks finishing over a few milliseconds spread as random draws would, while those
//! finishing in the same millisecond (one group commit's) come due next to each other, so their
//! entries in the index of due times share a page instead of each dirtying one of its own.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;

/// The first wait of a degraded connection; it doubles on each further failure.
pub const BACKOFF_START: Duration = Duration::from_secs(60);
/// Never refresh more often than this, whatever lifetime a provider announces.
const MIN_INTERVAL: Duration = Duration::from_secs(5);

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `now + d`, at the latest representable time rather than an overflow panic.
fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now.checked_add_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The jitter of a healthy check, in [0, 1): the same for the same millisecond.
fn phase(now: DateTime<Utc>) -> f64 {
    // 2^64 divided by the golden ratio.
    const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;
    let hashed = (now.timestamp_millis() as u64).wrapping_mul(FIBONACCI);
    (hashed >> 11) as f64 / (1u64 << 53) as f64
}

/// After a healthy check: ahead of the access token's expiry, and at least every `check_interval`.
pub fn after_success(
    now: DateTime<Utc>,
    access_expires_at: Option<DateTime<Utc>>,
    check_interval: Duration,
) -> DateTime<Utc> {
    let jitter = phase(now);
    let interval = check_interval.mul_f64(0.9 + 0.1 * jitter);
    let wait = match access_expires_at.and_then(|at| (at - now).to_std().ok()) {
        Some(lifetime) => lifetime
            .mul_f64(2.0 / 3.0 + (3.0 / 4.0 - 2.0 / 3.0) * jitter)
            .min(interval),
        None if access_expires_at.is_some() => MIN_INTERVAL,
        None => interval,
    };
    later(now, wait.max(MIN_INTERVAL))
}

/// After the `failures`-th failure in a row that did not prove the grant gone: 1 min doubling
/// to `cap`, jittered, and never sooner than the provider asked (Retry-After), up to `cap`.
pub fn after_failure(
    now: DateTime<Utc>,
    failures: u32,
    cap: Duration,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> DateTime<Utc> {
    let doublings = failures.saturating_sub(1).min(20);
    let wait = BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(cap)
        .mul_f64(rng.gen_range(0.85..=1.0));
    let wait = retry_after.map_or(wait, |r| wait.max(r.min(cap)));
    later(now, wait)
}

/// A broken connection waits for its owner; an optional slow recheck catches a grant that
/// came back on its own (or a verdict that was wrong after all).
pub fn after_broken(
    now: DateTime<Utc>,
    recheck: Option<Duration>,
    rng: &mut impl Rng,
) -> DateTime<Utc> {
    match recheck {
        Some(r) => later(now, r.mul_f64(rng.gen_range(0.9..=1.0))),
        // "Never" on its own: reauthorization schedules the next check.
        None => later(now, Duration::from_secs(100 * 365 * 86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn refresh_lands_between_two_thirds_and_three_quarters_of_the_lifetime() {
        let day = Duration::from_secs(86_400);
        let mut seen = std::collections::BTreeSet::new();
        // A fleet issued in the same second whose checks finish over the next tenth of a second.
        for ms in 0..100 {
            let at = now() + TimeDelta::milliseconds(ms);
            let next = after_success(at, Some(now() + TimeDelta::hours(1)), day);
            let secs = (next - at).num_seconds();
            assert!((2399..=2700).contains(&secs), "{secs}");
            seen.insert(next.timestamp() / 30);
        }
        // Over all ten half-minutes of the range, as random draws would be.
        assert_eq!(seen.len(), 10, "spread: {seen:?}");
    }

    #[test]
    fn checks_finishing_together_come_due_together() {
        let day = Duration::from_secs(86_400);
        let expires = now() + TimeDelta::hours(1);
        let first = after_success(now(), Some(expires), day);
        let next = after_success(now() + TimeDelta::microseconds(100), Some(expires), day);
        assert!(
            next >= first && next - first < TimeDelta::seconds(1),
            "{first} {next}"
        );
    }

    #[test]
    fn tokens_without_expiry_are_tested_every_check_interval() {
        let day = Duration::from_secs(86_400);
        for ms in (0..1000).step_by(7) {
            let at = now() + TimeDelta::milliseconds(ms);
            let secs = (after_success(at, None, day) - at).num_seconds();
            assert!((77_760..=86_400).contains(&secs), "{secs}");
        }
        // A 60-day token is still tested daily.
        let long = now() + TimeDelta::days(60);
        let secs = (after_success(now(), Some(long), day) - now()).num_seconds();
        assert!(secs <= 86_400, "{secs}");
        // An already expired one is not hammered.
        let past = now() - TimeDelta::minutes(1);
        assert_eq!(
            after_success(now(), Some(past), day) - now(),
            TimeDelta::seconds(5)
        );
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_the_cap_and_honours_retry_after() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let cap = Duration::from_secs(3600);
        let wait = |n: u32, ra: Option<Duration>, rng: &mut rand::rngs::StdRng| {
            (after_failure(now(), n, cap, ra, rng) - now()).num_seconds()
        };
        assert!((51..=60).contains(&wait(1, None, &mut rng)));
        assert!((102..=120).contains(&wait(2, None, &mut rng)));
        assert!((204..=240).contains(&wait(3, None, &mut rng)));
        assert!((3060..=3600).contains(&wait(30, None, &mut rng)));
        assert_eq!(wait(1, Some(Duration::from_secs(900)), &mut rng), 900);
        // A provider cannot park a connection past the cap, however long it asks for.
        assert_eq!(wait(1, Some(Duration::MAX), &mut rng), 3600);
    }

    #[test]
    fn no_wait_overflows_the_calendar() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let end = DateTime::<Utc>::MAX_UTC;
        assert_eq!(after_failure(end, 3, Duration::MAX, None, &mut rng), end);
        assert_eq!(after_success(end, None, Duration::MAX), end);
        assert_eq!(after_broken(end, Some(Duration::MAX), &mut rng), end);
    }

    #[test]
    fn broken_connections_wait_for_the_recheck_or_for_ever() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let day = Duration::from_secs(86_400);
        let secs = (after_broken(now(), Some(day), &mut rng) - now()).num_seconds();
        assert!((77_760..=86_400).contains(&secs));
        assert!(after_broken(now(), None, &mut rng) > now() + TimeDelta::days(365 * 50));
    }
}
