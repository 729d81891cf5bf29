//! `Seed`: the design of the original (Haskell) Hindsight memory store,
//! translated faithfully, to measure what the rewrite gained.
//!
//! The seed keeps the whole store in one STM `TVar` holding ordered,
//! persistent maps; every transaction reads and rewrites that one variable,
//! and subscribers block in STM `retry` until it changes. Here:
//!
//! - the `TVar` is one [`Mutex`] over the whole state, so every writer and
//!   every reader serialises on it, as every STM transaction on the single
//!   `TVar` conflicts with every other writer;
//! - the maps are [`BTreeMap`]s (the closest std analogue of `Data.Map`): the
//!   global log maps position to stored event, and each stream maps version
//!   to position, so a stream read is one ordered-map lookup per event;
//! - stream ids are [`Uuid`]s, ordered in a `BTreeMap` like the seed's
//!   `Map StreamId`;
//! - every stored event carries the metadata the seed keeps: a random
//!   (version 4) event id and a creation time, both made before the lock is
//!   taken, as the seed makes them in `IO` before `atomically` (one
//!   timestamp per transaction, one id per event);
//! - every commit calls `notify_all` on a [`Condvar`], unconditionally: a
//!   write to a `TVar` wakes every transaction blocked in `retry` on it,
//!   whether or not there is one;
//! - a subscriber, on every wake-up, rescans: it takes the lock, clones every
//!   event after its cursor into a fresh `Vec` and delivers from that
//!   (`try_next` does the same without waiting), the analogue of an STM
//!   transaction returning the part of the map past the cursor.
//!
//! What does not translate: `Data.Map` is persistent, so a Haskell reader
//! reads a snapshot without blocking writers, and a commit builds new map
//! nodes rather than mutating in place. Here reads hold the lock while they
//! visit, and commits mutate in place (cheaper per write than path copying,
//! dearer for readers under write load).

use crate::harness::contender::{Contender, GlobalRead, MultiStream, Subscribe, Subscription};
use crate::harness::Payload;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;
use uuid::Uuid;

/// The original Hindsight memory store's design: ordered maps under one
/// global lock (see the module documentation).
pub struct Seed {
    state: Mutex<State>,
    committed: Condvar,
}

/// The whole store, the content of the seed's single `TVar`.
struct State {
    /// Every event by global position.
    log: BTreeMap<u64, StoredEvent>,
    /// Each stream's events: version to global position.
    streams: BTreeMap<Uuid, BTreeMap<u64, u64>>,
    /// The position the next event will take.
    next_position: u64,
}

/// A stored event with the metadata the seed keeps for it.
#[derive(Clone)]
struct StoredEvent {
    /// The stream the event belongs to.
    #[allow(dead_code)]
    stream: Uuid,
    /// The event's version in its stream.
    #[allow(dead_code)]
    version: u64,
    /// The event's id, random, fixed when it was written.
    #[allow(dead_code)]
    event_id: Uuid,
    /// When the transaction that wrote the event was submitted.
    #[allow(dead_code)]
    created_at: SystemTime,
    payload: Payload,
}

/// The per-event metadata made before a transaction takes the lock.
struct Prepared {
    created_at: SystemTime,
    /// One id per event of the transaction, in order.
    event_ids: Vec<Uuid>,
}

impl Prepared {
    fn new(events: usize) -> Self {
        Prepared {
            created_at: SystemTime::now(),
            event_ids: (0..events).map(|_| Uuid::new_v4()).collect(),
        }
    }
}

impl State {
    /// The number of events in `stream` (0 if it does not exist).
    fn len_of(&self, stream: &Uuid) -> u64 {
        self.streams.get(stream).map_or(0, |s| s.len() as u64)
    }

    /// Appends `events` to `stream` and to the global log, taking their ids
    /// from `ids`.
    fn push(
        &mut self,
        stream: Uuid,
        events: &[Payload],
        created_at: SystemTime,
        ids: &mut impl Iterator<Item = Uuid>,
    ) {
        if events.is_empty() {
            return;
        }
        let versions = self.streams.entry(stream).or_default();
        for &payload in events {
            let version = versions.len() as u64;
            let position = self.next_position;
            self.next_position += 1;
            versions.insert(version, position);
            self.log.insert(
                position,
                StoredEvent {
                    stream,
                    version,
                    event_id: ids.next().expect("one prepared id per event"),
                    created_at,
                    payload,
                },
            );
        }
    }

    /// Clones every event at or after `from`, in order.
    fn events_from(&self, from: u64) -> Vec<StoredEvent> {
        self.log
            .range(from..)
            .map(|(_, event)| event.clone())
            .collect()
    }
}

impl Seed {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("the seed store is never poisoned")
    }

    /// Releases the lock after a commit and wakes every waiter, as a `TVar`
    /// write does.
    fn publish(&self, state: MutexGuard<'_, State>) {
        drop(state);
        self.committed.notify_all();
    }
}

impl Contender for Seed {
    const NAME: &'static str = "seed";
    type Stream = Uuid;

    fn new() -> Self {
        Seed {
            state: Mutex::new(State {
                log: BTreeMap::new(),
                streams: BTreeMap::new(),
                next_position: 0,
            }),
            committed: Condvar::new(),
        }
    }

    fn stream(&self, index: u64) -> Uuid {
        Uuid::from_u64_pair(0x5eed, index)
    }

    fn append(&self, stream: &Uuid, events: &[Payload]) {
        let prepared = Prepared::new(events.len());
        let mut ids = prepared.event_ids.into_iter();
        let mut state = self.lock();
        state.push(*stream, events, prepared.created_at, &mut ids);
        self.publish(state);
    }

    fn read_stream(&self, stream: &Uuid, mut visit: impl FnMut(&Payload)) -> u64 {
        let state = self.lock();
        let Some(versions) = state.streams.get(stream) else {
            return 0;
        };
        for position in versions.values() {
            visit(&state.log[position].payload);
        }
        versions.len() as u64
    }
}

impl MultiStream for Seed {
    fn append_exact(&self, writes: &[(&Uuid, u64, &[Payload])]) -> bool {
        let total = writes.iter().map(|&(_, _, events)| events.len()).sum();
        let prepared = Prepared::new(total);
        let mut ids = prepared.event_ids.into_iter();
        let mut state = self.lock();
        for (i, &(stream, expected_len, _)) in writes.iter().enumerate() {
            // A stream written twice in one transaction is checked once, on
            // its first expectation, as hindsight does.
            let repeated = writes[..i].iter().any(|&(earlier, _, _)| earlier == stream);
            if !repeated && state.len_of(stream) != expected_len {
                return false;
            }
        }
        for &(stream, _, events) in writes {
            state.push(*stream, events, prepared.created_at, &mut ids);
        }
        self.publish(state);
        true
    }
}

impl GlobalRead for Seed {
    fn read_all(&self, mut visit: impl FnMut(&Payload)) -> u64 {
        let state = self.lock();
        for event in state.log.values() {
            visit(&event.payload);
        }
        state.log.len() as u64
    }
}

impl Subscribe for Seed {
    type Subscription<'a> = SeedSubscription<'a>;

    fn subscribe(&self) -> SeedSubscription<'_> {
        SeedSubscription {
            store: self,
            next_position: 0,
            pending: Vec::new().into_iter(),
        }
    }
}

/// A subscription to a [`Seed`] store: the position after the last event
/// fetched, and the events of the last rescan not yet delivered.
pub struct SeedSubscription<'a> {
    store: &'a Seed,
    /// The position of the first event not yet fetched.
    next_position: u64,
    /// The rest of the last rescan, oldest first.
    pending: std::vec::IntoIter<StoredEvent>,
}

impl SeedSubscription<'_> {
    /// Takes the rescanned `events` as the new pending batch, moves the
    /// cursor past them, and delivers the first.
    fn deliver(&mut self, events: Vec<StoredEvent>) -> Option<Payload> {
        self.next_position += events.len() as u64;
        self.pending = events.into_iter();
        self.pending.next().map(|event| event.payload)
    }
}

impl Subscription for SeedSubscription<'_> {
    fn try_next(&mut self) -> Option<Payload> {
        if let Some(event) = self.pending.next() {
            return Some(event.payload);
        }
        let events = self.store.lock().events_from(self.next_position);
        self.deliver(events)
    }

    fn next(&mut self) -> Payload {
        if let Some(event) = self.pending.next() {
            return event.payload;
        }
        let mut state = self.store.lock();
        loop {
            let events = state.events_from(self.next_position);
            if !events.is_empty() {
                drop(state);
                return self
                    .deliver(events)
                    .expect("a non-empty rescan has a first event");
            }
            state = self
                .store
                .committed
                .wait(state)
                .expect("the seed store is never poisoned");
        }
    }
}
