//! [eventually](https://crates.io/crates/eventually) 0.4's in-memory event
//! store, `eventually::inmemory::EventStore` (defined in
//! `eventually-util-0.4.0/src/inmemory/store.rs`), through the benchmark
//! traits.
//!
//! # How the adapter maps onto eventually
//!
//! The adapter calls the `eventually::store::EventStore` trait, the layer
//! eventually's own `Repository` calls (`Repository::get` streams the
//! aggregate's events, `Repository::add` appends them,
//! `eventually-core-0.4.0/src/repository.rs`). Every future the in-memory
//! store returns is ready on its first poll: it takes a `parking_lot`
//! `RwLock`, bumps an atomic counter and sends on a tokio 0.2 broadcast
//! channel, none of which needs a runtime. So `futures_executor::block_on`
//! drives it on the calling thread, and the benches need no tokio.
//!
//! - **Streams.** The store is generic over its id type; [`Contender::Stream`]
//!   is a `u64`, and index `i` is the id `i`.
//! - **[`Contender::append`].** `EventStore::append(id, Expected::Any,
//!   events)`. `append` takes `&mut self` (`eventually-core-0.4.0/src/
//!   store.rs:129-134`), although the in-memory store only needs shared
//!   access: its state sits behind `Arc`s and a clone is another handle on
//!   the same store, which is how an application gives each task its own
//!   `Repository`. Each thread appends through its own clone, made on its
//!   first append to a given store and kept in a thread-local, so the
//!   timed append pays for no clone (four shared reference counts to bump
//!   and drop) that a long-lived worker would not pay either.
//! - **[`Contender::read_stream`].** `EventStore::stream(id, Select::All)`,
//!   consumed one event at a time. The store copies the stream's whole
//!   `Vec` under the read lock before filtering it (`store.rs:238-254`).
//!
//! # Semantics it lacks
//!
//! Only [`Contender`] is implemented. Line numbers below are in
//! `eventually-util-0.4.0/src/inmemory/store.rs` unless said otherwise.
//!
//! - **Expected versions are checked, but not atomically.** `append` reads
//!   the stream's last version under the read lock (lines 167-173),
//!   releases it, compares that with `Expected::Exact` (175-179), numbers
//!   the new events from it (181-182), and only then takes the write lock
//!   to push them (198-202). Two writers expecting the same version can
//!   both succeed, and two `Any` appends to one stream can both number
//!   their events from the same version. In 2-thread experiments (2
//!   cores, ten runs), 0 to 269 of about 5,500-9,800 `Exact` appends per
//!   run were accepted at a version the other writer had already taken,
//!   and two writers each appending 50 batches of 10,000 events to one
//!   stream left 0 to 410,000 of the 1,000,000 events with a duplicate
//!   version. No event is lost: the push itself is under the write lock.
//!   Versions are `u32`.
//! - **No multi-stream transactions.** `append` takes one stream id
//!   (`eventually-core-0.4.0/src/store.rs:129-134`); nothing writes to two
//!   streams atomically. So no [`MultiStream`].
//! - **No global commit order, so no [`GlobalRead`].** An event's global
//!   position, its `sequence_number`, is taken with a `fetch_add` per
//!   event (line 185) before the event is visible, outside the write lock
//!   that makes it visible (198-202). `stream_all` copies every event of
//!   every stream and sorts the copy by sequence number (270-283). So
//!   (1) while writers run, a read can see position n+1 without n (0 to 5
//!   of 2,000 `stream_all` reads per run, taken during two writers'
//!   appends, had such a hole), and `Select::From(n)`, the way to read
//!   "what comes next", then skips the late event for good; (2) two
//!   concurrent appends to one stream can store their batches in the
//!   opposite order to their sequence numbers, so the global order
//!   disagrees with the stream's order (0 to 3 batches per run in the
//!   same-stream experiment above); (3) the counter is an
//!   `AtomicU32` that wraps silently after 2^32 events (line 83).
//! - **No catch-up subscription, so no [`Subscribe`].**
//!   `EventSubscriber::subscribe_all` returns a receiver of a tokio
//!   broadcast channel (lines 130-140): live events only, sent after the
//!   write lock is released (209-215), into a bounded buffer of 128 events
//!   by default (line 25). A subscriber that falls further behind gets
//!   `Err(Lagged(n))` and the n oldest events are gone (200 appends ahead
//!   of a subscriber: its first item is `Lagged(72)`, then position 72).
//!   Concurrent writers broadcast in the order they release the lock, not
//!   in sequence-number order: with two writers appending 50-event
//!   batches, up to 6,158 of 50,000 live deliveries per run came after a
//!   higher sequence number. eventually's own catch-up, `subscription::Transient::resume`
//!   (`eventually-core-0.4.0/src/subscription.rs:192-250`), subscribes,
//!   then reads `stream_all` from its checkpoint, and drops any event
//!   whose sequence number is below the checkpoint (line 234). That drops
//!   an event whose position was taken early but which became visible
//!   late, as above, and re-delivers the checkpointed event itself:
//!   `Projector` checkpoints the number of the event it has just processed
//!   (`eventually-util-0.4.0/src/inmemory/projector.rs:111`), so after
//!   events 0, 1, 2 a `resume` starts again at 2. Building a gap-free,
//!   once-only subscription on top (a reorder buffer by sequence number,
//!   plus re-reading `stream_all` after every `Lagged`) would be a new
//!   subscription system written here, not eventually's.
//!
//! [`MultiStream`]: crate::harness::contender::MultiStream
//! [`GlobalRead`]: crate::harness::contender::GlobalRead
//! [`Subscribe`]: crate::harness::contender::Subscribe

use crate::harness::contender::Contender;
use crate::harness::Payload;
use eventually::inmemory::EventStore as InMemoryStore;
use eventually::store::{EventStore as _, Expected, Select};
use futures_executor::{block_on, block_on_stream};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The in-memory store's type, with the benchmark's ids and events.
type Store = InMemoryStore<u64, Payload>;

/// Numbers every [`Eventually`] made, so that a thread's cached handle is
/// known to belong to one store.
static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's handle for appending: the number of the [`Eventually`]
    /// it belongs to, and a clone of that store.
    static WRITER: RefCell<Option<(u64, Store)>> = const { RefCell::new(None) };
}

/// eventually's in-memory `EventStore` of [`Payload`]s, under benchmark.
///
/// Each thread appends through its own clone of the store, kept in a
/// thread-local from its first append until the thread ends, it appends to
/// another [`Eventually`], or this one is dropped on that thread. A clone
/// shares the store's data, so a thread that outlives the store and never
/// appends again keeps its events alive: the benchmarks append from
/// threads that end with each measurement.
pub struct Eventually {
    store: Store,
    number: u64,
}

impl Eventually {
    /// Runs `write` with the calling thread's handle on this store.
    fn with_writer<R>(&self, write: impl FnOnce(&mut Store) -> R) -> R {
        WRITER.with_borrow_mut(|writer| {
            let stale = match writer {
                Some((number, _)) => *number != self.number,
                None => true,
            };
            if stale {
                // A handle on another store: normally one dropped on this
                // thread already, whose `Drop` cleared it.
                *writer = Some((self.number, self.store.clone()));
            }
            let (_, store) = writer.as_mut().expect("just filled");
            write(store)
        })
    }
}

impl Drop for Eventually {
    fn drop(&mut self) {
        // Let go of this thread's handle, so the store's memory goes now.
        let handle = WRITER
            .try_with(|writer| {
                let mut writer = writer.borrow_mut();
                match &*writer {
                    Some((number, _)) if *number == self.number => writer.take(),
                    _ => None,
                }
            })
            .ok()
            .flatten();
        drop(handle);
    }
}

impl Contender for Eventually {
    const NAME: &'static str = "eventually";
    type Stream = u64;

    fn new() -> Self {
        Eventually {
            store: Store::default(),
            // Relaxed: only the numbers' uniqueness matters.
            number: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn stream(&self, index: u64) -> u64 {
        index
    }

    fn append(&self, stream: &u64, events: &[Payload]) {
        self.with_writer(|store| {
            block_on(store.append(*stream, Expected::Any, events.to_vec()))
                .expect("an Any append cannot conflict");
        });
    }

    fn read_stream(&self, stream: &u64, mut visit: impl FnMut(&Payload)) -> u64 {
        let events =
            block_on(self.store.stream(*stream, Select::All)).expect("in-memory reads never fail");
        let mut count = 0;
        for event in block_on_stream(events) {
            visit(&event.expect("in-memory reads never fail"));
            count += 1;
        }
        count
    }
}
