//! [eventcore](https://crates.io/crates/eventcore) 2.1's in-memory backend,
//! `eventcore_memory::InMemoryEventStore`, through the benchmark traits.
//!
//! # How the adapter maps onto eventcore
//!
//! The adapter calls the storage traits that eventcore's own command
//! executor and projection runner call, not the command layer above them.
//! Those traits (`EventStore`, `EventReader`) and their vocabulary
//! (`StreamWrites`, `StreamVersion`, `EventFilter`, `EventPage`,
//! `BatchSize`) live in the `eventcore-types` crate, which `eventcore`
//! does not re-export (`eventcore-2.1.0/src/lib.rs:157`), so the benches
//! depend on `eventcore-types = "2.1"` as well. Every future the in-memory
//! store returns is ready on its first poll (it takes a `std` mutex and
//! never awaits anything else), so `futures_executor::block_on` drives it
//! on the calling thread; no tokio runtime is needed.
//!
//! - **Events.** eventcore's `Event` trait requires an event to name its own
//!   stream (`fn stream_id(&self) -> &StreamId`,
//!   `eventcore-types-2.1.0/src/command.rs:116-132`), the way its own tests'
//!   events carry an `account_id: StreamId`. So each [`Payload`] is stored
//!   as a private `Recorded { stream, payload }`, and the stream id (a
//!   `String`) is cloned into every event.
//! - **Streams.** [`Contender::Stream`] is eventcore's `StreamId`, a
//!   validated `String` newtype; index `i` is the id `"stream-{i}"`.
//! - **[`Contender::append`].** eventcore has no "any version": every
//!   stream in a `StreamWrites` must be registered with an exact
//!   `StreamVersion` before events are appended to it
//!   (`eventcore-types-2.1.0/src/store.rs:47-112`), and there is no call
//!   that returns a stream's version. So the adapter does what the
//!   executor does before each append: it reads the whole stream with
//!   `EventStore::read_stream` and takes the number of events as the
//!   expected version (`eventcore-2.1.0/src/execute_pipeline.rs:259-263`,
//!   `eventcore-2.1.0/src/lib.rs:1050`), then calls
//!   `EventStore::append_events`. On a `VersionConflict` (another writer on
//!   the same stream got in between) it reads and tries again at once,
//!   for as long as it takes. That is kinder to eventcore than its
//!   executor, which sleeps 10 ms·2^attempt (±20 % jitter) on a tokio
//!   timer between attempts and gives up after 4 retries
//!   (`eventcore-2.1.0/src/lib.rs:445-451`,
//!   `eventcore-2.1.0/src/execute_pipeline.rs:308-347`). The read makes an append cost grow with the
//!   stream's length.
//! - **[`Contender::read_stream`].** `EventStore::read_stream`, consumed
//!   one item at a time as the executor consumes it.
//! - **[`MultiStream::append_exact`].** One `append_events` call with every
//!   stream registered at `StreamVersion(expected_len)`. eventcore's
//!   versions count events and a missing stream is at version 0, so
//!   `expected_len` maps onto it unchanged (0: the stream has no events,
//!   which in this store means it does not exist). Atomic: the store
//!   checks every expectation, then writes every event, under one mutex
//!   (`eventcore-memory-2.1.0/src/lib.rs:175-236`).
//! - **[`GlobalRead::read_all`].** `EventReader::read_events` with
//!   `EventFilter::all()` narrowed to this event type, paged
//!   [`POLL_BATCH`] events at a time after the last page's position: the
//!   query eventcore's projection pipeline issues
//!   (`eventcore-2.1.0/src/projection_pipeline.rs:177-189`).
//! - **[`Subscribe`].** eventcore has no push subscription: its projection
//!   runner polls `read_events` after the last position it processed, and
//!   between polls sleeps [`POLL_INTERVAL`] (100 ms) after a non-empty
//!   batch and [`EMPTY_POLL_BACKOFF`] (50 ms) after an empty one
//!   (`eventcore-2.1.0/src/projection.rs:43-54`,
//!   `projection_pipeline.rs:199-216`). [`EventcoreSubscription`] is that
//!   loop with those defaults, with `std::thread::sleep` in place of
//!   `tokio::time::sleep`. It leaves out two costs `run_projection` adds
//!   on top (so it flatters eventcore): a leadership lock taken at start
//!   (`projection.rs:605-609`) and a `CheckpointStore::save`, which takes
//!   the store's mutex, after every single event
//!   (`projection_pipeline.rs:221-233`).
//!
//! # Semantics it lacks
//!
//! - **Per-stream versions:** present (`StreamVersion` is the stream's event
//!   count, `eventcore-types-2.1.0/src/store.rs:415-432`), but not readable
//!   on their own: a writer learns a version only by reading every event of
//!   the stream.
//! - **Exact expectations:** present, and compulsory: there is no "any" and
//!   no "stream exists" expectation, and "no stream" and "empty stream" are
//!   the same version 0 (`store.rs:47-93`, `eventcore-memory-2.1.0/src/
//!   lib.rs:186-203`).
//! - **Atomic multi-stream transactions:** present (one mutex, all checks
//!   before any write, `eventcore-memory-2.1.0/src/lib.rs:175-236`).
//! - **One global commit order:** present in this backend but not promised
//!   by eventcore. `EventReader` promises only "this reader's delivery
//!   sequence", which "is not necessarily a shared distributed commit
//!   order", and `StreamPosition` "is not a distributed causality or
//!   universal commit-order guarantee" (`eventcore-types-2.1.0/src/
//!   projection.rs:90-97`, `projection.rs:638-643`). There are no global
//!   sequence numbers: a position is the event's UUIDv7 id. The in-memory
//!   store keeps a `Vec` in append order under its one mutex and draws each
//!   id with `Uuid::now_v7()` inside that mutex
//!   (`eventcore-memory-2.1.0/src/lib.rs:210-223`); uuid 1.x draws those
//!   from a process-wide mutex-guarded context that it guarantees is
//!   monotonic (`uuid-1.29.3/src/v7.rs:11-21`, `src/timestamp.rs:780-906`).
//!   So log order, id order and commit order agree here, and
//!   [`check_global_read`](crate::harness::contender::check_global_read) passes.
//!   Events that fail to deserialise as the requested type are silently
//!   dropped from a page (`eventcore-memory-2.1.0/src/lib.rs:319-325`).
//! - **Exactly-once, in-order subscriptions with catch-up:** only by
//!   polling. Catch-up from the beginning (`EventPage::first`) and resuming
//!   after a position work, and with the monotonic ids above every event is
//!   delivered once and in order. But nothing wakes a subscriber: a live
//!   event waits up to 50-100 ms for the next poll, a subscriber receives
//!   at most [`POLL_BATCH`] events per [`POLL_INTERVAL`] (10 000 events/s
//!   with the defaults), and every poll scans the global log from its
//!   first entry (below). `run_projection` in batch mode stops after one
//!   page of 1 000 events (`projection_pipeline.rs:199-204`).
//!
//! # What costs throughput
//!
//! - One `std::sync::Mutex` guards everything: streams, global log,
//!   checkpoints and snapshots (`eventcore-memory-2.1.0/src/lib.rs:72-74`).
//!   Readers take it exclusively too, so reads and writes all serialise.
//! - An append (`lib.rs:175-236`) clones the expected-version `HashMap`
//!   (with its `String` keys), and per event draws a UUIDv7 (a second,
//!   process-wide mutex, taken while the store's is held) and allocates
//!   three `String`s for the global log entry (stream id, event type, JSON).
//!   Before that, `StreamWrites::append` serialises each event to JSON
//!   (`serde_json::value::to_raw_value`) and boxes it as `Box<dyn Any>`
//!   (`eventcore-types-2.1.0/src/store.rs:88-112`); the event is kept twice,
//!   boxed per stream and as JSON in the global log. Stream keys are
//!   `String`s hashed with SipHash.
//! - A stream read (`lib.rs:101-138`) downcasts and clones every event
//!   (here including its `String` stream id) into a `Vec` under the mutex,
//!   then yields them through a boxed `dyn Stream`. Since an "any" append
//!   must read first, an append costs O(stream length) clones.
//! - `read_events` (`lib.rs:273-329`) walks the global log from its first
//!   entry on every call, comparing each entry's id with the cursor and its
//!   event type as a string, and deserialises each returned event from JSON
//!   (validating its `StreamId` again), all under the mutex. A page after
//!   position `p` therefore costs O(p), a full paged read O(n²/1 000), and
//!   a polling subscriber's cost grows with the whole log.

use crate::harness::contender::{Contender, GlobalRead, MultiStream, Subscribe, Subscription};
use crate::harness::Payload;
use eventcore_memory::InMemoryEventStore;
use eventcore_types::{
    BatchSize, Event, EventFilter, EventPage, EventReader, EventStore, EventStoreError, StreamId,
    StreamPosition, StreamVersion, StreamWrites,
};
use futures_executor::{block_on, block_on_stream};
use std::time::Duration;

/// Events per `read_events` page: the batch size eventcore's projection
/// pipeline asks for (`eventcore-2.1.0/src/projection_pipeline.rs:180-181`).
pub const POLL_BATCH: usize = 1000;

/// How long eventcore's projection runner sleeps after processing a
/// non-empty batch before it polls again (its default `poll_interval`,
/// `eventcore-2.1.0/src/projection.rs:46`).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long eventcore's projection runner sleeps after a poll that found
/// nothing (its default `empty_poll_backoff`,
/// `eventcore-2.1.0/src/projection.rs:47`).
pub const EMPTY_POLL_BACKOFF: Duration = Duration::from_millis(50);

/// eventcore's in-memory event store (see the module documentation for how
/// each benchmark operation maps onto its API).
pub struct Eventcore {
    /// The store under benchmark.
    store: InMemoryEventStore,
}

/// A [`Payload`] as an eventcore event: eventcore events name their own
/// stream.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Recorded {
    /// The stream the event belongs to.
    stream: StreamId,
    /// The benchmark's payload.
    payload: Payload,
}

impl Event for Recorded {
    fn stream_id(&self) -> &StreamId {
        &self.stream
    }

    fn event_type_name() -> &'static str {
        "hindsight_benches.Payload"
    }
}

impl Eventcore {
    /// The stream's current version, found the way eventcore's executor
    /// finds it: by reading every event of the stream and counting them.
    fn version(&self, stream: &StreamId) -> StreamVersion {
        let count = Contender::read_stream(self, stream, |_| {});
        StreamVersion::new(usize::try_from(count).expect("a length that fits in memory"))
    }

    /// Appends `writes` in one `append_events` call, each stream registered
    /// at its expected version. `false` on a version conflict (or a
    /// stream given two different expectations); nothing is written then.
    fn append_events(&self, writes: &[(&StreamId, StreamVersion, &[Payload])]) -> bool {
        let mut batch = StreamWrites::new();
        for &(stream, version, _) in writes {
            batch = match batch.register_stream(stream.clone(), version) {
                Ok(batch) => batch,
                Err(EventStoreError::ConflictingExpectedVersions { .. }) => return false,
                Err(error) => panic!("eventcore: registering a stream: {error}"),
            };
        }
        for &(stream, _, events) in writes {
            for &payload in events {
                batch = batch
                    .append(Recorded {
                        stream: stream.clone(),
                        payload,
                    })
                    .expect("every stream is registered and a Payload serialises");
            }
        }
        match block_on(self.store.append_events(batch)) {
            Ok(_) => true,
            Err(EventStoreError::VersionConflict { .. }) => false,
            Err(error) => panic!("eventcore: append_events: {error}"),
        }
    }

    /// One `read_events` page of up to [`POLL_BATCH`] events after `after`
    /// (from the beginning with `None`), with the projection pipeline's
    /// filter: all streams, this event type.
    fn page(&self, after: Option<StreamPosition>) -> Vec<(Recorded, StreamPosition)> {
        let filter = EventFilter::all().with_event_type(Recorded::event_type_name().to_string());
        let page = match after {
            Some(position) => EventPage::after(position, BatchSize::new(POLL_BATCH)),
            None => EventPage::first(BatchSize::new(POLL_BATCH)),
        };
        block_on(self.store.read_events::<Recorded>(filter, page))
            .expect("the in-memory store cannot fail to read events")
    }
}

impl Contender for Eventcore {
    const NAME: &'static str = "eventcore";
    type Stream = StreamId;

    fn new() -> Self {
        Eventcore {
            store: InMemoryEventStore::new(),
        }
    }

    fn stream(&self, index: u64) -> StreamId {
        StreamId::try_new(format!("stream-{index}")).expect("a valid stream id")
    }

    /// Reads the stream to learn its version, then appends at exactly that
    /// version; on a conflict, reads and tries again (eventcore has no
    /// "any" expectation).
    fn append(&self, stream: &StreamId, events: &[Payload]) {
        while !self.append_events(&[(stream, self.version(stream), events)]) {}
    }

    fn append_at(&self, stream: &StreamId, len: u64, events: &[Payload]) {
        let len = usize::try_from(len).expect("a length that fits in memory");
        assert!(
            self.append_events(&[(stream, StreamVersion::new(len), events)]),
            "the filler is the stream's only writer"
        );
    }

    fn read_stream(&self, stream: &StreamId, mut visit: impl FnMut(&Payload)) -> u64 {
        let events = block_on(self.store.read_stream::<Recorded>(stream.clone()))
            .expect("the in-memory store cannot fail to open a stream");
        let mut count = 0;
        for event in block_on_stream(events) {
            visit(&event.expect("every stored event is a Recorded").payload);
            count += 1;
        }
        count
    }
}

impl MultiStream for Eventcore {
    fn append_exact(&self, writes: &[(&StreamId, u64, &[Payload])]) -> bool {
        let writes: Vec<(&StreamId, StreamVersion, &[Payload])> = writes
            .iter()
            .map(|&(stream, expected_len, events)| {
                let len = usize::try_from(expected_len).expect("a length that fits in memory");
                (stream, StreamVersion::new(len), events)
            })
            .collect();
        self.append_events(&writes)
    }
}

impl GlobalRead for Eventcore {
    /// Pages through `read_events` [`POLL_BATCH`] events at a time until a
    /// short page.
    fn read_all(&self, mut visit: impl FnMut(&Payload)) -> u64 {
        let mut after = None;
        let mut count = 0;
        loop {
            let page = self.page(after);
            let full = page.len() == POLL_BATCH;
            for (event, position) in page {
                visit(&event.payload);
                count += 1;
                after = Some(position);
            }
            if !full {
                return count;
            }
        }
    }
}

impl Subscribe for Eventcore {
    type Subscription<'a> = EventcoreSubscription<'a>;

    fn subscribe(&self) -> EventcoreSubscription<'_> {
        EventcoreSubscription {
            store: self,
            after: None,
            batch: Vec::new().into_iter(),
            pause: None,
        }
    }
}

/// A subscription to every stream of an [`Eventcore`] store: eventcore's
/// projection runner loop with its default timing. It polls `read_events`
/// for up to [`POLL_BATCH`] events after the last one delivered, delivers
/// them, and before the next poll sleeps [`POLL_INTERVAL`] if the last
/// poll found events or [`EMPTY_POLL_BACKOFF`] if it found none.
/// [`Subscription::try_next`] polls without sleeping.
pub struct EventcoreSubscription<'a> {
    /// The store polled.
    store: &'a Eventcore,
    /// The position of the last event polled (`None`: from the beginning).
    after: Option<StreamPosition>,
    /// The undelivered rest of the last poll's batch.
    batch: std::vec::IntoIter<(Recorded, StreamPosition)>,
    /// The sleep the runner would take before its next poll.
    pause: Option<Duration>,
}

impl EventcoreSubscription<'_> {
    /// Polls once for the next batch, and sets the pause before the poll
    /// after it.
    fn poll(&mut self) {
        let batch = self.store.page(self.after);
        if let Some(&(_, position)) = batch.last() {
            self.after = Some(position);
        }
        let found = !batch.is_empty();
        self.pause = Some(if found {
            POLL_INTERVAL
        } else {
            EMPTY_POLL_BACKOFF
        });
        self.batch = batch.into_iter();
    }
}

impl Subscription for EventcoreSubscription<'_> {
    fn try_next(&mut self) -> Option<Payload> {
        if let Some((event, _)) = self.batch.next() {
            return Some(event.payload);
        }
        self.poll();
        self.batch.next().map(|(event, _)| event.payload)
    }

    fn next(&mut self) -> Payload {
        loop {
            if let Some((event, _)) = self.batch.next() {
                return event.payload;
            }
            if let Some(pause) = self.pause.take() {
                std::thread::sleep(pause);
            }
            self.poll();
        }
    }
}
