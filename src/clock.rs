//! Where a store's `created_at` comes from: the system clock, or a clock a
//! test sets and advances.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A source of wall-clock time for a store's `created_at` (see
/// [`MemoryStoreBuilder::clock`](crate::MemoryStoreBuilder::clock)).
///
/// Whatever a clock returns, even a time earlier than it returned before,
/// the store keeps `created_at` non-decreasing along position order
/// ([contract](crate::contract) rule 26): a transaction whose clock reading
/// is earlier than the one committed before it carries that earlier
/// transaction's time instead. Times before the Unix epoch read as the epoch;
/// the store keeps nanoseconds up to the year 2262.
///
/// `now` is called once per transaction that writes events, before its
/// positions are reserved, and never while a writer holds positions: it may
/// panic, which fails that insert (the panic propagates to the caller) and
/// leaves the store usable.
///
/// ```
/// use hindsight::{Clock, ExpectedVersion, MemoryStore, StreamId, Transaction};
/// use std::time::{Duration, SystemTime};
///
/// /// A clock stuck at one instant.
/// struct Frozen(SystemTime);
/// impl Clock for Frozen {
///     fn now(&self) -> SystemTime {
///         self.0
///     }
/// }
///
/// let noon = SystemTime::UNIX_EPOCH + Duration::from_secs(43_200);
/// let store = MemoryStore::builder().clock(Frozen(noon)).build();
/// store.insert(Transaction::single(StreamId::new(), ExpectedVersion::Any, 1)).unwrap();
/// assert_eq!(store.read_all(Default::default()).next().unwrap().created_at(), noon);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock (`CLOCK_REALTIME`): what a store uses unless
/// told otherwise.
///
/// ```
/// use hindsight::{Clock, SystemClock};
/// use std::time::SystemTime;
/// let before = SystemTime::now();
/// assert!(SystemClock.now() >= before);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock for tests: it reads what it was last set to, and moves only when
/// told. Clones share one time, so a test keeps a clone and moves the
/// store's clock from outside.
///
/// It keeps nanoseconds since the Unix epoch in one atomic word: `set`,
/// `advance` and `now` may be called from any thread. Times before the
/// epoch are kept as the epoch; [`advance`](Self::advance) saturates at the
/// largest time it can hold (about the year 2554).
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, TestClock, Transaction};
/// use std::time::{Duration, SystemTime};
///
/// let clock = TestClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
/// let store = MemoryStore::builder().clock(clock.clone()).build();
/// let stream = StreamId::new();
/// store.insert(Transaction::single(stream, ExpectedVersion::Any, "first")).unwrap();
/// clock.advance(Duration::from_secs(60));
/// store.insert(Transaction::single(stream, ExpectedVersion::Any, "a minute later")).unwrap();
///
/// let times: Vec<_> = store.read_all(Start::Beginning).map(|e| e.created_at()).collect();
/// assert_eq!(times[1].duration_since(times[0]).unwrap(), Duration::from_secs(60));
/// ```
#[derive(Clone)]
pub struct TestClock {
    nanos: Arc<AtomicU64>,
}

impl TestClock {
    /// A clock that reads `start` until it is set or advanced.
    pub fn new(start: SystemTime) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(nanos_of(start))),
        }
    }

    /// Makes every clone read `time` from now on; earlier than before is
    /// allowed (a clock stepping back), and the store still keeps
    /// `created_at` in position order.
    pub fn set(&self, time: SystemTime) {
        // Relaxed: the time is one self-contained value; whoever reads it
        // next needs no other memory ordered with it.
        self.nanos.store(nanos_of(time), Ordering::Relaxed);
    }

    /// Moves every clone forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: as in `set`. `fetch_update` never fails with a closure
        // that always returns `Some`.
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |nanos| {
                Some(nanos.saturating_add(by))
            });
    }

    /// The time the clock reads.
    pub fn now(&self) -> SystemTime {
        // Relaxed: as in `set`.
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        TestClock::now(self)
    }
}

impl fmt::Debug for TestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TestClock").field(&self.now()).finish()
    }
}

/// Nanoseconds since the Unix epoch, saturating (before it: 0).
fn nanos_of(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told_and_clones_share_it() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let clock = TestClock::new(start);
        let other = clock.clone();
        assert_eq!(clock.now(), start);
        other.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), start + Duration::from_millis(5));
        clock.set(start - Duration::from_secs(1));
        assert_eq!(other.now(), start - Duration::from_secs(1));
        // Before the epoch reads as the epoch; advancing saturates.
        clock.set(SystemTime::UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(clock.now(), SystemTime::UNIX_EPOCH);
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            clock.now(),
            SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::MAX)
        );
    }
}
