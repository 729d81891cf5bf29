//! `MemoryStore::builder()`: a store with a chosen clock and event ids.

use crate::clock::Clock;
use crate::idempotency::DEFAULT_IDEMPOTENCY_WINDOW;
use crate::ids::EventIds;
use crate::log::Log;
use crate::store::{Inner, MemoryStore};
use crate::stream::StreamIndex;
use crate::sync::Arc;
use std::fmt;
use std::marker::PhantomData;

/// Builds a [`MemoryStore`] whose clock or event ids a test controls; see
/// [`MemoryStore::builder`]. Everything not set is as [`MemoryStore::new`]
/// makes it.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, TestClock, Transaction};
/// use std::time::{Duration, SystemTime};
///
/// let build = || {
///     MemoryStore::builder()
///         .clock(TestClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(7)))
///         .event_id_seed(42)
///         .build()
/// };
/// let (a, b) = (build(), build());
/// let stream = StreamId::new();
/// for store in [&a, &b] {
///     store.insert(Transaction::single(stream, ExpectedVersion::Any, "x")).unwrap();
/// }
/// // The same events, the same ids and times: reproducible snapshots.
/// let first = |store: &MemoryStore<&str>| {
///     let event = store.read_all(Start::Beginning).next().unwrap();
///     (event.event_id(), event.created_at())
/// };
/// assert_eq!(first(&a), first(&b));
/// ```
pub struct MemoryStoreBuilder<E> {
    /// Not a `sync::Arc`: no protocol of the store goes through it (and
    /// loom's `Arc` cannot hold a `dyn` value).
    clock: Option<std::sync::Arc<dyn Clock>>,
    event_id_seed: Option<u64>,
    idempotency_window: u64,
    events: PhantomData<fn() -> E>,
}

impl<E> MemoryStore<E> {
    /// A builder for a store with a chosen clock or seeded event ids;
    /// `MemoryStore::builder().build()` is `MemoryStore::new()`.
    pub fn builder() -> MemoryStoreBuilder<E> {
        MemoryStoreBuilder {
            clock: None,
            event_id_seed: None,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            events: PhantomData,
        }
    }
}

impl<E> MemoryStoreBuilder<E> {
    /// Takes every transaction's `created_at` from `clock` instead of the
    /// system clock (for instance a [`TestClock`](crate::TestClock) the test
    /// moves). Whatever the clock returns, `created_at` never decreases
    /// along position order ([contract](crate::contract) rule 26).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(std::sync::Arc::new(clock));
        self
    }

    /// Derives event ids from `seed` instead of a random per-store prefix:
    /// every store built with the same seed gives the event at position `p`
    /// the same id, so snapshots of what a test wrote are reproducible.
    /// Ids stay unique within the store (rule 1); two stores built with one
    /// seed share ids, so do not mix their events in one place.
    pub fn event_id_seed(mut self, seed: u64) -> Self {
        self.event_id_seed = Some(seed);
        self
    }

    /// How many of a stream's last versions are searched for a re-sent
    /// event id when the write expects `Any` or `StreamExists`
    /// ([contract](crate::contract) rule 29); [`DEFAULT_IDEMPOTENCY_WINDOW`]
    /// (1,024) unless set. A re-send whose first event is older than that
    /// is not recognised, and writes again. Writes with an exact
    /// expectation (`Exact`, `ExactPosition`, `NoStream`) are recognised
    /// however old, at the place they name. Costs about 60 bytes per id
    /// kept, for streams written with ids only; 0 keeps none.
    ///
    /// ```
    /// use hindsight::{EventData, EventId, ExpectedVersion, MemoryStore, Position, StreamId, Transaction, Uuid};
    /// let store = MemoryStore::builder().idempotency_window(1).build();
    /// let stream = StreamId::new();
    /// let id = |n| EventId::from_uuid(Uuid::from_u128(n));
    /// let send = |n| store.insert(Transaction::new()
    ///     .append_with(stream, ExpectedVersion::Any, [EventData::new(n).with_event_id(id(n))]));
    /// send(1).unwrap();
    /// send(1).unwrap(); // recognised: version 0 is the stream's last
    /// send(2).unwrap();
    /// send(1).unwrap(); // out of the window: written again
    /// assert_eq!(store.head(), Some(Position(2)));
    /// ```
    #[doc(alias = "idempotency")]
    pub fn idempotency_window(mut self, versions: u64) -> Self {
        self.idempotency_window = versions;
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore<E> {
        let ids = match self.event_id_seed {
            Some(seed) => EventIds::seeded(seed),
            None => EventIds::new(),
        };
        MemoryStore::from_inner(Arc::new(Inner {
            log: Log::new(ids),
            streams: StreamIndex::new(),
            clock: self.clock,
            removed: crate::sync::AtomicU8::new(0),
            idempotency_window: self.idempotency_window,
        }))
    }
}

impl<E> fmt::Debug for MemoryStoreBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("custom_clock", &self.clock.is_some())
            .field("event_id_seed", &self.event_id_seed)
            .field("idempotency_window", &self.idempotency_window)
            .finish()
    }
}
