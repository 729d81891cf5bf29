//! Concurrent re-sends of one transaction (contract rule 29).
//!
//! Several threads insert the same transaction (the same client ids and
//! content) at once, as clients retrying after a lost reply do. Exactly one
//! of them writes; every other gets that one's `Committed`. A re-send that
//! finds the original recorded but not yet committed waits for its commit
//! under the stream's lock (the original's writer holds no lock by then),
//! so it never gets a conflict: a conflict means other content or another
//! place, never a race.
//!
//! Nothing sleeps; threads start together on a [`Barrier`], under a
//! watchdog that aborts a deadlock loudly.

use hindsight::{
    Committed, EventData, EventId, ExpectedVersion, MemoryStore, Position, Start, StreamId,
    StreamVersion, Transaction, Uuid,
};
use std::sync::Barrier;
use std::thread;

mod common;
use common::{scaled, with_watchdog, WATCHDOG};

/// The client id number `n` of round `round`.
fn eid(round: u64, n: u64) -> EventId {
    EventId::from_uuid(Uuid::from_u64_pair(round, n))
}

/// Runs `threads` inserts of `tx()` at once; every result.
fn race(
    store: &MemoryStore<u64>,
    threads: usize,
    tx: &(dyn Fn() -> Transaction<u64> + Sync),
) -> Vec<Committed> {
    let barrier = Barrier::new(threads);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let tx = tx();
                    barrier.wait();
                    store.insert(tx)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .expect("no panic")
                    .expect("every re-send succeeds")
            })
            .collect()
    })
}

/// Checks that every result is the same, and that the store holds the
/// transaction's events once: `events` more than `before`.
fn assert_written_once(store: &MemoryStore<u64>, results: &[Committed], before: u64, events: u64) {
    assert!(
        results.windows(2).all(|pair| pair[0] == pair[1]),
        "every re-send gets the original result: {results:?}"
    );
    assert_eq!(
        results[0].last_position(),
        Some(Position(before + events - 1))
    );
    assert_eq!(store.head(), Some(Position(before + events - 1)));
    assert_eq!(
        store.read_all(Start::Beginning).count() as u64,
        before + events
    );
}

#[test]
fn concurrent_resends_of_one_stream_write_write_once_under_every_expectation() {
    with_watchdog("one stream", WATCHDOG, || {
        let store = MemoryStore::new();
        let stream = StreamId::new();
        let threads = 8;
        let rounds = scaled(50, 500) as u64;
        for round in 0..rounds {
            let expected = match round % 4 {
                0 => ExpectedVersion::Any,
                1 => ExpectedVersion::StreamExists,
                2 => ExpectedVersion::Exact(StreamVersion(round * 2 - 1)),
                _ => store.stream_head(stream).expect("written").expect_exact(),
            };
            let expected = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                expected
            };
            let before = store.head().map_or(0, |head| head.0 + 1);
            let tx = || {
                Transaction::new().append_with(
                    stream,
                    expected,
                    [
                        EventData::new(round * 2).with_event_id(eid(round, 0)),
                        EventData::new(round * 2 + 1).with_event_id(eid(round, 1)),
                    ],
                )
            };
            let results = race(&store, threads, &tx);
            assert_written_once(&store, &results, before, 2);
        }
        let values: Vec<u64> = store
            .read_all(Start::Beginning)
            .map(|e| *e.payload())
            .collect();
        assert_eq!(values, (0..rounds * 2).collect::<Vec<_>>());
    });
}

#[test]
fn concurrent_resends_of_a_multi_stream_transaction_write_once() {
    with_watchdog("several streams", WATCHDOG, || {
        let store = MemoryStore::new();
        let streams = [StreamId::new(), StreamId::new(), StreamId::new()];
        let rounds = scaled(50, 500) as u64;
        for round in 0..rounds {
            let before = store.head().map_or(0, |head| head.0 + 1);
            let tx = || {
                streams
                    .iter()
                    .enumerate()
                    .fold(Transaction::new(), |tx, (n, &stream)| {
                        let n = n as u64;
                        tx.append_with(
                            stream,
                            ExpectedVersion::Any,
                            [EventData::new(round * 3 + n).with_event_id(eid(round, n))],
                        )
                    })
            };
            let results = race(&store, 6, &tx);
            assert_written_once(&store, &results, before, 3);
            assert_eq!(results[0].streams().len(), 3);
        }
    });
}
