//! The maximum age of a stream's events (KurrentDB's `$maxAge`, contract
//! rule 30): how a `Duration` becomes what every backend keeps, so that
//! they agree to the microsecond.

use std::time::Duration;

/// The longest maximum age a store keeps: 500 years of 365.25 days
/// (15,778,800,000 s). A longer one is kept as this one, which hides no
/// event written within the last 500 years; so nothing overflows, on any
/// backend (the memory store keeps nanoseconds in 64 bits, PostgreSQL
/// subtracts it from the server's clock).
///
/// ```
/// use hindsight::{max_age_micros, MAX_AGE_LIMIT};
/// use std::time::Duration;
/// assert_eq!(max_age_micros(Duration::MAX), max_age_micros(MAX_AGE_LIMIT));
/// ```
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(500 * 31_557_600);

/// A maximum age as every store keeps it, in whole microseconds: rounded
/// up, at least 1 (a zero age is kept as one microsecond: every event
/// written before is hidden at once), at most [`MAX_AGE_LIMIT`]'s. Never
/// panics, for any `Duration`. Backends call it so that an age means the
/// same on each.
///
/// ```
/// use hindsight::max_age_micros;
/// use std::time::Duration;
/// assert_eq!(max_age_micros(Duration::from_millis(200)), 200_000);
/// assert_eq!(max_age_micros(Duration::from_nanos(1_001)), 2); // rounded up
/// assert_eq!(max_age_micros(Duration::ZERO), 1);
/// ```
#[doc(alias = "$maxAge")]
pub fn max_age_micros(age: Duration) -> u64 {
    let age = age.min(MAX_AGE_LIMIT);
    // At most 1.6e16 µs: the conversion and the addition cannot overflow.
    let micros = age.as_micros() as u64 + u64::from(age.subsec_nanos() % 1_000 != 0);
    micros.max(1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{max_age_micros, MAX_AGE_LIMIT};
    use std::time::Duration;

    /// Zero and sub-microsecond ages round up to one microsecond; whole
    /// microseconds stay as they are.
    #[test]
    fn small_ages_round_up_to_whole_microseconds() {
        assert_eq!(max_age_micros(Duration::ZERO), 1);
        assert_eq!(max_age_micros(Duration::from_nanos(1)), 1);
        assert_eq!(max_age_micros(Duration::from_nanos(999)), 1);
        assert_eq!(max_age_micros(Duration::from_nanos(1_000)), 1);
        assert_eq!(max_age_micros(Duration::from_nanos(1_001)), 2);
        assert_eq!(max_age_micros(Duration::new(3, 500)), 3_000_001);
    }

    /// Ages past the limit, up to `Duration::MAX`, are kept as the limit,
    /// and the limit in nanoseconds fits the memory store's 64 bits.
    #[test]
    fn huge_ages_clamp_to_the_limit_without_overflow() {
        let limit = 500 * 31_557_600 * 1_000_000;
        assert_eq!(max_age_micros(MAX_AGE_LIMIT), limit);
        assert_eq!(
            max_age_micros(MAX_AGE_LIMIT + Duration::from_nanos(1)),
            limit
        );
        assert_eq!(max_age_micros(Duration::MAX), limit);
        assert!(limit.checked_mul(1_000).is_some());
    }
}
