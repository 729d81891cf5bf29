//! `Locked`: the best simple design, one mutex over the whole store.
//!
//! This is what a careful engineer writes when asked for an in-memory event
//! store in an afternoon, and the baseline hindsight's lock-free design must
//! beat to be worth its complexity. One [`Mutex`] guards:
//!
//! - the global log, a `Vec` of envelopes in commit order (an event's
//!   global position is its index);
//! - a hash map from stream id to the log positions of its events (an
//!   event's stream version is its index there), with a few-line hasher
//!   (one multiply per word and a finaliser) instead of SipHash.
//!
//! A transaction takes the lock once, checks every expectation, and appends
//! every event: atomicity, exact expectations across streams and the single
//! global order all come from the one lock. Reads hold the lock while they
//! visit.
//!
//! Subscribers wait on a [`Condvar`]. Writers count on a waiter count kept
//! under the mutex and call `notify_all` only when someone is waiting, so an
//! append with no blocked subscriber costs no wake-up system call. A
//! subscription copies a batch of up to [`BATCH`] committed events into a
//! local buffer under one lock acquisition and then delivers from the
//! buffer without locking, so a subscriber takes the lock about once per
//! batch rather than once per event, and never holds it for more than one
//! batch's copy (which keeps a catching-up subscriber from stalling writers
//! for the whole backlog).
//!
//! It implements the same contract as hindsight (`src/contract.md`), so
//! it keeps what hindsight keeps per event: the stream id (a UUID), the
//! stream version, a unique event id, the transaction's correlation id (if
//! any) and its timestamp. Event ids come from the same scheme hindsight
//! uses (a per-thread random prefix and a counter, no system call), and, as
//! hindsight does, a transaction takes its block of ids from the thread's
//! generator, and its timestamp, before the lock: under the lock an id is
//! plain arithmetic on the block.

use crate::harness::contender::{Contender, GlobalRead, MultiStream, Subscribe, Subscription};
use crate::harness::Payload;
use hindsight::StreamId;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;
use uuid::Uuid;

/// The most events a subscription copies out of the log per lock
/// acquisition.
pub const BATCH: usize = 1024;

/// An in-memory event store behind one mutex, with a condition variable for
/// subscribers (see the module documentation).
pub struct Locked {
    state: Mutex<State>,
    committed: Condvar,
}

/// Everything the mutex guards.
struct State {
    /// Every event in commit order; an event's index is its global position.
    log: Vec<Entry>,
    /// Each stream's events, as positions in `log`, oldest first.
    streams: HashMap<StreamId, Vec<u64>, BuildHasherDefault<FxHasher>>,
    /// Subscribers blocked on the condition variable.
    waiters: usize,
}

/// One event in the global log, with what the contract keeps per event.
/// Only the payload is read back by the benchmarks; the rest is written
/// (and costs its memory) as a complete store's would be.
#[allow(dead_code)]
struct Entry {
    stream: StreamId,
    version: u64,
    event_id: Uuid,
    correlation_id: Option<Uuid>,
    created_at: SystemTime,
    payload: Payload,
}

thread_local! {
    /// This thread's event ids: a random prefix and a counter.
    static EVENT_IDS: Cell<(u64, u64)> = Cell::new((Uuid::new_v4().as_u64_pair().0, 0));
}

/// A block of fresh event ids, taken from this thread's generator in one
/// thread-local access before the lock (as hindsight takes its block before
/// it reserves), so that handing them out under the lock is arithmetic.
struct EventIds {
    prefix: u64,
    next: u64,
}

impl EventIds {
    /// Takes `count` ids from this thread's generator.
    fn take(count: usize) -> Self {
        EVENT_IDS.with(|ids| {
            let (prefix, next) = ids.get();
            ids.set((prefix, next.wrapping_add(count as u64)));
            EventIds { prefix, next }
        })
    }

    /// The next id of the block (version 8, as hindsight's: prefix and
    /// counter).
    fn next_id(&mut self) -> Uuid {
        let counter = self.next;
        self.next = self.next.wrapping_add(1);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix.to_be_bytes());
        bytes[8..].copy_from_slice(&counter.to_be_bytes());
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

impl State {
    /// The number of events in `stream` (0 if it does not exist).
    fn len_of(&self, stream: StreamId) -> u64 {
        self.streams.get(&stream).map_or(0, |s| s.len() as u64)
    }

    /// Appends `events` to `stream` and to the global log, with ids from
    /// `ids`.
    fn push(
        &mut self,
        stream: StreamId,
        events: &[Payload],
        ids: &mut EventIds,
        created_at: SystemTime,
    ) {
        if events.is_empty() {
            return;
        }
        let start = self.log.len() as u64;
        let positions = self.streams.entry(stream).or_default();
        let first = positions.len() as u64;
        positions.extend(start..start + events.len() as u64);
        self.log
            .extend((first..).zip(events).map(|(version, &payload)| Entry {
                stream,
                version,
                event_id: ids.next_id(),
                correlation_id: None,
                created_at,
                payload,
            }));
    }
}

impl Locked {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the locked store is never poisoned")
    }

    /// Releases the lock after a commit, waking the subscribers if any is
    /// waiting. A waiter registers under the lock before it waits, so one
    /// that is not counted here will see the commit before it sleeps.
    fn publish(&self, state: MutexGuard<'_, State>) {
        let wake = state.waiters > 0;
        drop(state);
        if wake {
            self.committed.notify_all();
        }
    }
}

impl Contender for Locked {
    const NAME: &'static str = "locked";
    type Stream = StreamId;

    fn new() -> Self {
        Locked {
            state: Mutex::new(State {
                log: Vec::new(),
                streams: HashMap::default(),
                waiters: 0,
            }),
            committed: Condvar::new(),
        }
    }

    fn stream(&self, index: u64) -> StreamId {
        StreamId::from_uuid(Uuid::from_u64_pair(0x6869_6e64_7369_6768, index))
    }

    fn append(&self, stream: &StreamId, events: &[Payload]) {
        let mut ids = EventIds::take(events.len());
        let created_at = SystemTime::now();
        let mut state = self.lock();
        state.push(*stream, events, &mut ids, created_at);
        self.publish(state);
    }

    fn read_stream(&self, stream: &StreamId, mut visit: impl FnMut(&Payload)) -> u64 {
        let state = self.lock();
        let Some(positions) = state.streams.get(stream) else {
            return 0;
        };
        for &position in positions {
            visit(&state.log[position as usize].payload);
        }
        positions.len() as u64
    }
}

impl MultiStream for Locked {
    fn append_exact(&self, writes: &[(&StreamId, u64, &[Payload])]) -> bool {
        let mut ids = EventIds::take(writes.iter().map(|(_, _, events)| events.len()).sum());
        let created_at = SystemTime::now();
        let mut state = self.lock();
        for (i, &(stream, expected_len, _)) in writes.iter().enumerate() {
            // A stream written twice in one transaction is checked once, on
            // its first expectation, as hindsight does.
            let repeated = writes[..i].iter().any(|&(earlier, _, _)| earlier == stream);
            if !repeated && state.len_of(*stream) != expected_len {
                return false;
            }
        }
        for &(stream, _, events) in writes {
            state.push(*stream, events, &mut ids, created_at);
        }
        self.publish(state);
        true
    }
}

impl GlobalRead for Locked {
    fn read_all(&self, mut visit: impl FnMut(&Payload)) -> u64 {
        let state = self.lock();
        for entry in &state.log {
            visit(&entry.payload);
        }
        state.log.len() as u64
    }
}

impl Subscribe for Locked {
    type Subscription<'a> = LockedSubscription<'a>;

    fn subscribe(&self) -> LockedSubscription<'_> {
        LockedSubscription {
            store: self,
            cursor: 0,
            buffer: VecDeque::with_capacity(BATCH),
        }
    }
}

/// A subscription to a [`Locked`] store: a cursor into the global log and a
/// buffer of events already copied out of it.
pub struct LockedSubscription<'a> {
    store: &'a Locked,
    /// The position of the first event not yet copied into `buffer`.
    cursor: usize,
    /// Copied events not yet delivered, oldest first.
    buffer: VecDeque<Payload>,
}

impl LockedSubscription<'_> {
    /// Copies up to [`BATCH`] events after the cursor into the buffer.
    fn refill(&mut self, state: &State) {
        let end = state.log.len().min(self.cursor + BATCH);
        self.buffer.extend(
            state.log[self.cursor..end]
                .iter()
                .map(|entry| entry.payload),
        );
        self.cursor = end;
    }
}

impl Subscription for LockedSubscription<'_> {
    fn try_next(&mut self) -> Option<Payload> {
        if let Some(event) = self.buffer.pop_front() {
            return Some(event);
        }
        let state = self.store.lock();
        self.refill(&state);
        drop(state);
        self.buffer.pop_front()
    }

    fn next(&mut self) -> Payload {
        if let Some(event) = self.buffer.pop_front() {
            return event;
        }
        let mut state = self.store.lock();
        while self.cursor == state.log.len() {
            state.waiters += 1;
            state = self
                .store
                .committed
                .wait(state)
                .expect("the locked store is never poisoned");
            state.waiters -= 1;
        }
        self.refill(&state);
        drop(state);
        self.buffer
            .pop_front()
            .expect("a refill after a commit copies at least one event")
    }
}

/// A few-line hash for stream ids: one rotate, xor and multiply per word
/// (rustc's Fx), then MurmurHash3's finaliser so that ids differing only in
/// their last bytes still spread over hashbrown's buckets and tags.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}
