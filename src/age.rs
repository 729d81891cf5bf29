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
    let micros = age.as_micros() as u64 + u64::from(!age.subsec_nanos().is_multiple_of(1_000));
    micros.max(1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{max_age_micros, MAX_AGE_LIMIT};
    use crate::{ExpectedVersion, MemoryStore, Start, StreamId, StreamVersion, TestClock};
    use crate::{Selector, Transaction};
    use std::time::{Duration, SystemTime};

    /// A memory store on a test clock at 1,000 s after the epoch, with one
    /// event in `stream` written then.
    fn store_with_one_event(stream: StreamId) -> (MemoryStore<u32>, TestClock) {
        let clock = TestClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryStore::builder().clock(clock.clone()).build();
        store
            .insert(Transaction::single(stream, ExpectedVersion::Any, 0))
            .unwrap();
        (store, clock)
    }

    fn visible(store: &MemoryStore<u32>, stream: StreamId) -> usize {
        let by_stream = store.read_stream(stream, StreamVersion(0)).count();
        let by_all = store.read_all(Start::Beginning).count();
        assert_eq!(by_stream, by_all, "stream and log reads agree");
        by_stream
    }

    /// An event exactly `max_age` old is visible; a nanosecond older, it is
    /// hidden ("older than now minus the age").
    #[test]
    fn an_event_exactly_max_age_old_is_visible_and_a_nanosecond_older_is_not() {
        let stream = StreamId::new();
        let (store, clock) = store_with_one_event(stream);
        store
            .set_max_age(stream, Some(Duration::from_secs(30)))
            .unwrap();
        clock.advance(Duration::from_secs(30));
        assert_eq!(visible(&store, stream), 1);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(visible(&store, stream), 0);
        // The head and the stream's existence are untouched.
        assert_eq!(store.stream_head(stream).unwrap().version, StreamVersion(0));
    }

    /// A zero age is kept as one microsecond: an event is hidden once the
    /// clock is more than a microsecond past it; a sub-microsecond age
    /// rounds up the same way.
    #[test]
    fn a_zero_max_age_is_one_microsecond() {
        for age in [Duration::ZERO, Duration::from_nanos(1)] {
            let stream = StreamId::new();
            let (store, clock) = store_with_one_event(stream);
            store.set_max_age(stream, Some(age)).unwrap();
            assert_eq!(visible(&store, stream), 1);
            clock.advance(Duration::from_micros(1));
            assert_eq!(visible(&store, stream), 1);
            clock.advance(Duration::from_nanos(1));
            assert_eq!(visible(&store, stream), 0);
        }
    }

    /// `Duration::MAX` neither panics nor overflows, and hides nothing even
    /// with the clock at the last time the store keeps (2262).
    #[test]
    fn the_longest_max_age_hides_nothing() {
        let stream = StreamId::new();
        let (store, clock) = store_with_one_event(stream);
        store.set_max_age(stream, Some(Duration::MAX)).unwrap();
        clock.set(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::MAX));
        assert_eq!(visible(&store, stream), 1);
    }

    /// A read compares every event with one clock reading, taken when it
    /// first reaches an event of a stream with an age: an event that ages
    /// past the limit during the read stays in it; the next read hides it.
    #[test]
    fn a_read_takes_one_clock_reading() {
        let stream = StreamId::new();
        let (store, clock) = store_with_one_event(stream);
        clock.advance(Duration::from_secs(10));
        store
            .insert(Transaction::single(stream, ExpectedVersion::Any, 1))
            .unwrap();
        store
            .set_max_age(stream, Some(Duration::from_secs(30)))
            .unwrap();
        let mut read = store.read_all(Start::Beginning);
        assert_eq!(read.next().map(|e| *e.payload()), Some(0));
        clock.advance(Duration::from_secs(35));
        assert_eq!(read.next().map(|e| *e.payload()), Some(1));
        assert_eq!(visible(&store, stream), 0);
    }

    /// Age is evaluated when a reader reaches an event: a read and a
    /// subscription made while the event was young skip it once the clock
    /// has passed its age; a longer age later shows it again.
    #[test]
    fn readers_evaluate_age_when_they_reach_an_event() {
        let stream = StreamId::new();
        let (store, clock) = store_with_one_event(stream);
        store
            .set_max_age(stream, Some(Duration::from_secs(30)))
            .unwrap();
        let mut by_all = store.read_all(Start::Beginning);
        let mut by_stream = store.read_stream(stream, StreamVersion(0));
        let mut all = store.subscribe(Selector::all());
        let mut one = store.subscribe(Selector::stream(stream));
        clock.advance(Duration::from_secs(31));
        assert!(by_all.next().is_none());
        assert!(by_stream.next().is_none());
        store
            .insert(Transaction::single(stream, ExpectedVersion::Any, 1))
            .unwrap();
        for subscription in [&mut all, &mut one] {
            let first = subscription.try_next().unwrap().map(|e| *e.payload());
            assert_eq!(first, Some(1), "the old event is skipped");
        }
        store
            .set_max_age(stream, Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(visible(&store, stream), 2);
    }

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
