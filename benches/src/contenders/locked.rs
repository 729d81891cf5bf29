//! `Locked`: the best simple design, one mutex over the whole store.
//!
//! This is what a careful engineer writes when asked for an in-memory event
//! store in an afternoon, and the baseline hindsight's lock-free design must
//! beat to be worth its complexity. One [`Mutex`] guards:
//!
//! - the global log, a `Vec` of `(stream, payload)` in commit order (an
//!   event's global position is its index);
//! - a hash map from stream to the log positions of its events (an event's
//!   stream version is its index there), with a few-line Fx-style hasher
//!   instead of SipHash, since the keys are trusted integers.
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
//! It stores only what the benchmarks read: no event ids, timestamps or
//! correlation ids. It is the floor of a lock-based store, not a full one.

use crate::contender::{Contender, GlobalRead, MultiStream, Subscribe, Subscription};
use crate::Payload;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Condvar, Mutex, MutexGuard};

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
    streams: HashMap<u64, Vec<u64>, BuildHasherDefault<FxHasher>>,
    /// Subscribers blocked on the condition variable.
    waiters: usize,
}

/// One event in the global log.
struct Entry {
    /// The stream the event belongs to (kept so the log is a real global
    /// log, not just the concatenation of payloads).
    #[allow(dead_code)]
    stream: u64,
    payload: Payload,
}

impl State {
    /// The number of events in `stream` (0 if it does not exist).
    fn len_of(&self, stream: u64) -> u64 {
        self.streams.get(&stream).map_or(0, |s| s.len() as u64)
    }

    /// Appends `events` to `stream` and to the global log.
    fn push(&mut self, stream: u64, events: &[Payload]) {
        if events.is_empty() {
            return;
        }
        let start = self.log.len() as u64;
        self.streams
            .entry(stream)
            .or_default()
            .extend(start..start + events.len() as u64);
        self.log
            .extend(events.iter().map(|&payload| Entry { stream, payload }));
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
    type Stream = u64;

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

    fn stream(&self, index: u64) -> u64 {
        index
    }

    fn append(&self, stream: &u64, events: &[Payload]) {
        let mut state = self.lock();
        state.push(*stream, events);
        self.publish(state);
    }

    fn read_stream(&self, stream: &u64, mut visit: impl FnMut(&Payload)) -> u64 {
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
    fn append_exact(&self, writes: &[(&u64, u64, &[Payload])]) -> bool {
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
            state.push(*stream, events);
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

/// A few-line version of rustc's Fx hash: one rotate, xor and multiply per
/// word. Fine for the trusted integer keys of the stream map.
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
        for &byte in bytes {
            self.add(u64::from(byte));
        }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
