//! The contract (`src/contract.md`), rules 1-14 and 24-25: at least one test per
//! rule, each named after the behaviour it proves and prefixed with the rule.
//!
//! Everything here is single-threaded or lightly threaded (two or three
//! threads) and deterministic; the large races live in `tests/concurrency.rs`.
//! Stream ids are built with [`sid`] wherever their order matters: the store
//! lays streams out in ascending id order, which for `Uuid::from_u128(n)` is
//! ascending `n`.

use hindsight::{
    Committed, CorrelationId, EventId, ExpectedVersion, InsertError, MemoryStore, Position, Start,
    StreamHead, StreamId, StreamVersion, Transaction, VersionMismatch,
};
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime};

use ExpectedVersion::{Any, Exact, ExactPosition, NoStream, StreamExists};

mod common;
use common::{insert, sid, with_watchdog, DropLedger, Tracked};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn head(version: u64, position: u64) -> StreamHead {
    StreamHead {
        version: StreamVersion(version),
        position: Position(position),
    }
}

fn mismatch(
    stream: StreamId,
    expected: ExpectedVersion,
    found: Option<StreamHead>,
) -> VersionMismatch {
    VersionMismatch {
        stream,
        stream_name: None,
        expected,
        found,
    }
}

/// Inserts `tx`, which must fail with a version conflict; returns the mismatches.
#[track_caller]
fn conflict<E>(store: &MemoryStore<E>, tx: Transaction<E>) -> Vec<VersionMismatch> {
    match store.insert(tx) {
        Err(InsertError::VersionConflict(mismatches)) => mismatches,
        Ok(committed) => panic!("expected a version conflict, the insert succeeded: {committed:?}"),
        Err(error) => panic!("expected a version conflict, got: {error}"),
    }
}

/// One committed event, without its payload.
type Row = (Position, StreamId, StreamVersion, EventId);

/// Every committed event, in position order.
fn rows<E>(store: &MemoryStore<E>) -> Vec<Row> {
    store
        .read_all(Start::Beginning)
        .map(|e| (e.position(), e.stream_id(), e.version(), e.event_id()))
        .collect()
}

/// The payloads of `stream`, oldest first.
fn payloads<E: Copy>(store: &MemoryStore<E>, stream: StreamId) -> Vec<E> {
    store
        .read_stream(stream, StreamVersion(0))
        .map(|e| *e.payload())
        .collect()
}

/// Every committed event as `(stream, payload)`, in position order, from `start`.
fn layout<E: Copy>(store: &MemoryStore<E>, start: Start) -> Vec<(StreamId, E)> {
    store
        .read_all(start)
        .map(|e| (e.stream_id(), *e.payload()))
        .collect()
}

/// Checks rules 1-3 over the whole store: positions 0, 1, ... without gaps,
/// versions 0, 1, ... per stream in position order, unique event ids, and
/// every per-stream view (forward, backward, head) agreeing with `read_all`.
#[track_caller]
fn assert_well_formed<E>(store: &MemoryStore<E>) {
    let all = rows(store);
    let mut per_stream: HashMap<StreamId, Vec<Row>> = HashMap::new();
    let mut ids = HashSet::new();
    for (index, row) in all.iter().enumerate() {
        let (position, stream, version, id) = *row;
        assert_eq!(position, Position(index as u64), "positions have a gap");
        let events = per_stream.entry(stream).or_default();
        assert_eq!(
            version,
            StreamVersion(events.len() as u64),
            "versions have a gap"
        );
        events.push(*row);
        assert!(ids.insert(id), "event id {id} is used twice");
    }
    assert_eq!(store.head(), all.last().map(|row| row.0));
    let as_row =
        |e: hindsight::Envelope<E>| (e.position(), e.stream_id(), e.version(), e.event_id());
    for (stream, events) in per_stream {
        let forward: Vec<Row> = store
            .read_stream(stream, StreamVersion(0))
            .map(as_row)
            .collect();
        assert_eq!(forward, events);
        let mut backward: Vec<Row> = store.read_stream_backward(stream).map(as_row).collect();
        backward.reverse();
        assert_eq!(backward, events);
        let last = events.last().expect("a listed stream has events");
        assert_eq!(store.stream_head(stream), Some(head(last.2 .0, last.0 .0)));
    }
}

// ---------------------------------------------------------------------------
// The expectation table (rules 4, 6, 7): one fixture, every kind of
// expectation, alone or among other streams, with or without events.
// ---------------------------------------------------------------------------

/// Three events, versions 0..=2 at positions 0, 2, 4 (version != position).
const TARGET: u128 = 10;
/// Two events, at positions 1 and 3.
const OTHER: u128 = 20;
/// Never written.
const MISSING: u128 = 30;
/// Streams that only the multi-stream shape writes to; missing in the fixture.
const NEW_A: u128 = 40;
const NEW_B: u128 = 50;

fn fixture() -> MemoryStore<u32> {
    let store = MemoryStore::new();
    for (stream, payload) in [
        (TARGET, 0),
        (OTHER, 100),
        (TARGET, 1),
        (OTHER, 101),
        (TARGET, 2),
    ] {
        insert(&store, Transaction::single(sid(stream), Any, payload));
    }
    store
}

/// How the expectation under test is inserted.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Alongside three passing streams (two new, one existing), or alone.
    multi: bool,
    /// Events written to the stream under test (0: a pure check).
    events: u32,
}

const SHAPES: [Shape; 4] = [
    Shape {
        multi: false,
        events: 2,
    },
    Shape {
        multi: false,
        events: 0,
    },
    Shape {
        multi: true,
        events: 2,
    },
    Shape {
        multi: true,
        events: 0,
    },
];

/// Inserts `expected` for `stream` into a fresh [`fixture`], shaped as
/// `shape`, and checks that the outcome is all or nothing: on success
/// everything is written where it belongs, on failure exactly this stream is
/// reported with what was found, nothing is written and no position is used.
fn attempt(
    stream: u128,
    expected: ExpectedVersion,
    shape: Shape,
) -> Result<Committed, Vec<VersionMismatch>> {
    let context = format!("{expected:?} on stream {stream}, {shape:?}");
    let store = fixture();
    let before = rows(&store);
    let found = store.stream_head(sid(stream));
    let subject: Vec<u32> = (1000..1000 + shape.events).collect();
    let mut tx = Transaction::new().append(sid(stream), expected, subject.clone());
    if shape.multi {
        tx = tx
            .append(sid(NEW_A), NoStream, [400])
            .append(sid(OTHER), Exact(StreamVersion(1)), [102])
            .append(sid(NEW_B), Any, [500, 501]);
    }
    let written = u64::from(shape.events) + if shape.multi { 4 } else { 0 };
    match store.insert(tx) {
        Ok(committed) => {
            let last = (written > 0).then_some(Position(4 + written));
            assert_eq!(committed.last_position(), last, "{context}");
            assert_eq!(store.head(), Some(Position(4 + written)), "{context}");
            assert_eq!(rows(&store)[..before.len()], before[..], "{context}");
            let events = payloads(&store, sid(stream));
            let old_len = found.map_or(0, |h| h.version.get() as usize + 1);
            assert_eq!(events[old_len..], subject[..], "{context}");
            if shape.events == 0 {
                assert_eq!(store.stream_head(sid(stream)), found, "{context}");
                assert_eq!(committed.stream(sid(stream)), None, "{context}");
            } else {
                assert_eq!(
                    committed.stream(sid(stream)),
                    store.stream_head(sid(stream)),
                    "{context}"
                );
            }
            assert_well_formed(&store);
            Ok(committed)
        }
        Err(InsertError::VersionConflict(mismatches)) => {
            assert_eq!(
                mismatches,
                [mismatch(sid(stream), expected, found)],
                "{context}"
            );
            assert_eq!(
                rows(&store),
                before,
                "{context}: a failed insert wrote something"
            );
            for untouched in [NEW_A, NEW_B, MISSING] {
                assert_eq!(store.stream_head(sid(untouched)), None, "{context}");
            }
            let next = insert(&store, Transaction::single(sid(OTHER), Any, 9));
            assert_eq!(
                next.last_position(),
                Some(Position(5)),
                "{context}: a position was used"
            );
            Err(mismatches)
        }
        Err(error) => panic!("{context}: {error}"),
    }
}

#[track_caller]
fn assert_passes(stream: u128, expected: ExpectedVersion) {
    for shape in SHAPES {
        if let Err(mismatches) = attempt(stream, expected, shape) {
            panic!("{expected:?} on stream {stream} ({shape:?}) should pass: {mismatches:?}");
        }
    }
}

#[track_caller]
fn assert_fails(stream: u128, expected: ExpectedVersion) {
    for shape in SHAPES {
        if let Ok(committed) = attempt(stream, expected, shape) {
            panic!("{expected:?} on stream {stream} ({shape:?}) should fail: {committed:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Events, streams and event ids
// ---------------------------------------------------------------------------

#[test]
fn rule_01_every_event_belongs_to_the_stream_it_was_written_to() {
    let store = MemoryStore::new();
    let (a, b) = (StreamId::new(), StreamId::new());
    insert(
        &store,
        Transaction::new()
            .append(a, Any, ['a', 'b'])
            .append(b, Any, ['c']),
    );
    insert(&store, Transaction::single(a, Any, 'd'));
    for envelope in store.read_all(Start::Beginning) {
        let expected = if *envelope.payload() == 'c' { b } else { a };
        assert_eq!(envelope.stream_id(), expected);
    }
    assert_eq!(payloads(&store, a), ['a', 'b', 'd']);
    assert_eq!(payloads(&store, b), ['c']);
}

#[test]
fn rule_01_event_ids_are_stable_across_reads() {
    let store = fixture();
    let first = rows(&store);
    assert_eq!(rows(&store), first);
    for stream in [sid(TARGET), sid(OTHER)] {
        let in_all: Vec<EventId> = first
            .iter()
            .filter(|r| r.1 == stream)
            .map(|r| r.3)
            .collect();
        let forward: Vec<EventId> = store
            .read_stream(stream, StreamVersion(0))
            .map(|e| e.event_id())
            .collect();
        let mut backward: Vec<EventId> = store
            .read_stream_backward(stream)
            .map(|e| e.event_id())
            .collect();
        backward.reverse();
        assert_eq!(forward, in_all);
        assert_eq!(backward, in_all);
    }
    // Later writes do not change the ids of earlier events.
    insert(&store, Transaction::single(sid(TARGET), Any, 3));
    assert_eq!(rows(&store)[..first.len()], first[..]);
}

#[test]
fn rule_01_event_ids_are_unique_across_transactions_streams_stores_and_threads() {
    let store = MemoryStore::new();
    let other_store = MemoryStore::new();
    thread::scope(|scope| {
        for thread in 0..2u128 {
            let (store, other_store) = (store.clone(), other_store.clone());
            scope.spawn(move || {
                for round in 0..50u128 {
                    let tx = Transaction::new()
                        .append(sid(thread * 1000 + round % 5), Any, [1u32, 2, 3])
                        .append(sid(thread * 1000 + 10), Any, [4]);
                    insert(&store, tx);
                    insert(&other_store, Transaction::single(sid(round), Any, 5));
                }
            });
        }
    });
    let mut ids: Vec<EventId> = rows(&store).iter().map(|r| r.3).collect();
    ids.extend(rows(&other_store).iter().map(|r| r.3));
    let unique: HashSet<EventId> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 2 * 50 * 4 + 2 * 50);
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn rule_01_store_holds_payloads_that_are_neither_clone_nor_debug() {
    let mut ledger = DropLedger::default();
    let store = MemoryStore::new();
    let stream = StreamId::new();
    let committed = insert(
        &store,
        Transaction::new().append(stream, NoStream, ledger.events(3)),
    );
    let last = committed.stream(stream).unwrap();
    insert(
        &store,
        Transaction::new().append(stream, last.expect_exact(), ledger.events(1)),
    );
    // The stored payloads are the very values handed in, in order.
    let stored: Vec<&Tracked> = store
        .read_all(Start::Beginning)
        .map(|e| e.payload())
        .collect();
    assert_eq!(stored.len(), 4);
    for (payload, counter) in stored.iter().zip(&ledger.counters) {
        assert!(Arc::ptr_eq(&payload.0, counter));
    }
    assert_well_formed(&store);
}

// ---------------------------------------------------------------------------
// 2. Global positions
// ---------------------------------------------------------------------------

#[test]
fn rule_02_positions_start_at_zero_and_grow_by_one_without_gaps() {
    let store = MemoryStore::new();
    assert_eq!(store.head(), None);
    let mut next = 0u64;
    for (round, size) in [1u32, 3, 1, 5, 2].into_iter().enumerate() {
        let tx = Transaction::new()
            .append(sid(round as u128 % 3), Any, (0..size).collect::<Vec<_>>())
            .append(sid(7), Any, [99]);
        let committed = insert(&store, tx);
        next += u64::from(size) + 1;
        assert_eq!(committed.last_position(), Some(Position(next - 1)));
        assert_eq!(store.head(), Some(Position(next - 1)));
    }
    let positions: Vec<u64> = store
        .read_all(Start::Beginning)
        .map(|e| e.position().get())
        .collect();
    assert_eq!(positions, (0..next).collect::<Vec<_>>());
    assert_well_formed(&store);
}

#[test]
fn rule_02_failed_and_empty_inserts_consume_no_position() {
    let store = MemoryStore::new();
    let stream = sid(1);
    insert(&store, Transaction::single(stream, NoStream, 0));
    conflict(&store, Transaction::single(stream, NoStream, 1));
    insert(&store, Transaction::new());
    insert(&store, Transaction::new().append(stream, StreamExists, []));
    conflict(
        &store,
        Transaction::new().append(sid(2), Any, [1, 2, 3]).append(
            stream,
            Exact(StreamVersion(9)),
            [4],
        ),
    );
    let committed = insert(&store, Transaction::single(stream, Any, 5));
    assert_eq!(committed.last_position(), Some(Position(1)));
    assert_eq!(layout(&store, Start::Beginning), [(stream, 0), (stream, 5)]);
    assert_well_formed(&store);
}

#[test]
fn rule_02_head_is_the_position_of_the_last_committed_event() {
    let store = MemoryStore::new();
    assert_eq!(store.head(), None);
    insert(&store, Transaction::new().append(sid(1), Any, [1, 2, 3]));
    assert_eq!(store.head(), Some(Position(2)));
    insert(&store, Transaction::single(sid(2), Any, 4));
    assert_eq!(store.head(), Some(Position(3)));
    assert_eq!(
        store
            .read_all(Start::Beginning)
            .last()
            .map(|e| e.position()),
        store.head()
    );
}

#[test]
fn rule_02_read_all_from_the_beginning_or_after_a_position_exclusive() {
    let store = MemoryStore::new();
    assert_eq!(store.read_all(Start::Beginning).count(), 0);
    assert_eq!(store.read_all(Start::After(Position(0))).count(), 0);
    insert(
        &store,
        Transaction::new()
            .append(sid(1), Any, [10, 11])
            .append(sid(2), Any, [12]),
    );
    insert(&store, Transaction::single(sid(1), Any, 13));
    let from = |start| -> Vec<u32> { store.read_all(start).map(|e| *e.payload()).collect() };
    assert_eq!(from(Start::Beginning), [10, 11, 12, 13]);
    assert_eq!(from(Start::default()), [10, 11, 12, 13]);
    assert_eq!(from(Start::After(Position(0))), [11, 12, 13]);
    assert_eq!(from(Start::After(Position(2))), [13]);
    assert_eq!(from(Start::After(Position(3))), Vec::<u32>::new());
    assert_eq!(from(Start::After(Position(100))), Vec::<u32>::new());
    assert_eq!(store.read_all(Start::After(Position(1))).count(), 2);
    let first = store.read_all(Start::After(Position(1))).next().unwrap();
    assert_eq!(first.position(), Position(2));
}

#[test]
fn rule_02_a_read_sees_the_store_as_it_was_when_it_started() {
    let store = MemoryStore::new();
    insert(&store, Transaction::new().append(sid(1), Any, [1, 2]));
    let mut read = store.read_all(Start::Beginning);
    assert_eq!(read.next().map(|e| *e.payload()), Some(1));
    insert(&store, Transaction::single(sid(1), Any, 3));
    assert_eq!(read.map(|e| *e.payload()).collect::<Vec<_>>(), [2]);
    assert_eq!(store.read_all(Start::Beginning).count(), 3);
}

// ---------------------------------------------------------------------------
// 3. Stream versions
// ---------------------------------------------------------------------------

#[test]
fn rule_03_versions_start_at_zero_and_grow_by_one_per_stream() {
    let store = MemoryStore::<u64>::new();
    let (a, b) = (sid(1), sid(2));
    insert(
        &store,
        Transaction::new()
            .append(a, Any, [0, 1])
            .append(b, Any, [0]),
    );
    insert(&store, Transaction::single(b, Any, 1));
    insert(
        &store,
        Transaction::new()
            .append(b, Any, [2, 3])
            .append(a, Any, [2]),
    );
    for stream in [a, b] {
        let versions: Vec<u64> = store
            .read_stream(stream, StreamVersion(0))
            .map(|e| e.version().get())
            .collect();
        assert_eq!(versions, payloads(&store, stream));
    }
    assert_eq!(store.stream_head(a), Some(head(2, 4)));
    assert_eq!(store.stream_head(b), Some(head(3, 6)));
    assert_well_formed(&store);
}

#[test]
fn rule_03_stream_order_agrees_with_position_order() {
    let store = MemoryStore::new();
    for round in 0..12u128 {
        let tx = Transaction::new()
            .append(sid(round % 3), Any, [round as u32])
            .append(sid(3 + round % 2), Any, [round as u32, round as u32]);
        insert(&store, tx);
    }
    for stream in (0..5).map(sid) {
        let positions: Vec<Position> = store
            .read_stream(stream, StreamVersion(0))
            .map(|e| e.position())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    }
    assert_well_formed(&store);
}

#[test]
fn rule_03_read_stream_from_a_version_is_inclusive() {
    let store = MemoryStore::new();
    let (a, b) = (sid(1), sid(2));
    insert(
        &store,
        Transaction::new()
            .append(a, Any, [0, 1])
            .append(b, Any, [9]),
    );
    insert(&store, Transaction::single(a, Any, 2));
    let from = |v| -> Vec<u32> {
        store
            .read_stream(a, StreamVersion(v))
            .map(|e| *e.payload())
            .collect()
    };
    assert_eq!(from(0), [0, 1, 2]);
    assert_eq!(from(1), [1, 2]);
    assert_eq!(from(2), [2]);
    assert_eq!(from(3), Vec::<u32>::new());
    assert_eq!(store.read_stream(a, StreamVersion(1)).count(), 2);
    let read: Vec<(u64, u64)> = store
        .read_stream(a, StreamVersion(1))
        .map(|e| (e.version().get(), e.position().get()))
        .collect();
    assert_eq!(read, [(1, 1), (2, 3)]);
}

#[test]
fn rule_03_read_stream_backward_is_newest_first_and_backward_from_is_inclusive() {
    let store = MemoryStore::new();
    let (a, b) = (sid(1), sid(2));
    insert(
        &store,
        Transaction::new()
            .append(a, Any, [0, 1])
            .append(b, Any, [9]),
    );
    insert(&store, Transaction::single(a, Any, 2));
    let backward: Vec<u32> = store
        .read_stream_backward(a)
        .map(|e| *e.payload())
        .collect();
    assert_eq!(backward, [2, 1, 0]);
    let from = |v| -> Vec<u32> {
        store
            .read_stream_backward_from(a, StreamVersion(v))
            .map(|e| *e.payload())
            .collect()
    };
    assert_eq!(from(0), [0]);
    assert_eq!(from(1), [1, 0]);
    assert_eq!(from(2), [2, 1, 0]);
    assert_eq!(
        from(50),
        [2, 1, 0],
        "a version past the end starts at the last event"
    );
    assert_eq!(
        store.read_stream_backward_from(a, StreamVersion(1)).count(),
        2
    );
    let versions: Vec<u64> = store
        .read_stream_backward(a)
        .map(|e| e.version().get())
        .collect();
    assert_eq!(versions, [2, 1, 0]);
}

// ---------------------------------------------------------------------------
// 4. A stream exists exactly when it has events
// ---------------------------------------------------------------------------

#[test]
fn rule_04_a_stream_exists_from_its_first_event() {
    let store = MemoryStore::new();
    let stream = sid(1);
    assert_eq!(store.stream_head(stream), None);
    insert(&store, Transaction::single(stream, NoStream, 1));
    assert_eq!(store.stream_head(stream), Some(head(0, 0)));
    insert(&store, Transaction::new().append(stream, StreamExists, []));
    conflict(&store, Transaction::new().append(stream, NoStream, []));
}

#[test]
fn rule_04_zero_event_appends_do_not_create_the_stream() {
    let store = MemoryStore::<u32>::new();
    let stream = sid(1);
    for expected in [Any, NoStream] {
        let committed = insert(&store, Transaction::new().append(stream, expected, []));
        assert_eq!(committed.last_position(), None);
        assert!(committed.streams().is_empty());
        assert_eq!(store.stream_head(stream), None);
        assert_eq!(store.head(), None);
    }
    // Alongside a write to another stream, still not created.
    let committed = insert(
        &store,
        Transaction::new()
            .append(stream, Any, [])
            .append(sid(2), Any, [7]),
    );
    assert_eq!(committed.stream(stream), None);
    assert_eq!(store.stream_head(stream), None);
    insert(&store, Transaction::new().append(stream, NoStream, []));
    assert_eq!(layout(&store, Start::Beginning), [(sid(2), 7)]);
}

#[test]
fn rule_04_zero_event_appends_still_check_their_expectation() {
    let store = MemoryStore::<u32>::new();
    let (present, absent) = (sid(1), sid(2));
    insert(&store, Transaction::new().append(present, Any, [1, 2]));
    let failing = [
        (absent, StreamExists, None),
        (absent, Exact(StreamVersion(0)), None),
        (absent, ExactPosition(Position(0)), None),
        (present, NoStream, Some(head(1, 1))),
        (present, Exact(StreamVersion(0)), Some(head(1, 1))),
        (present, ExactPosition(Position(0)), Some(head(1, 1))),
    ];
    for (stream, expected, found) in failing {
        let mismatches = conflict(&store, Transaction::new().append(stream, expected, []));
        assert_eq!(mismatches, [mismatch(stream, expected, found)]);
    }
    for (stream, expected) in [
        (absent, NoStream),
        (present, StreamExists),
        (present, Exact(StreamVersion(1))),
        (present, ExactPosition(Position(1))),
    ] {
        let committed = insert(&store, Transaction::new().append(stream, expected, []));
        assert_eq!(committed.last_position(), None, "{expected:?}");
    }
    assert_eq!(store.head(), Some(Position(1)));
    assert_eq!(store.stream_head(absent), None);
}

#[test]
fn rule_04_a_failed_insert_does_not_create_its_streams() {
    let store = MemoryStore::new();
    let (fresh, guard) = (sid(1), sid(2));
    conflict(
        &store,
        Transaction::new()
            .append(fresh, NoStream, [1, 2])
            .append(guard, StreamExists, [3]),
    );
    for stream in [fresh, guard] {
        assert_eq!(store.stream_head(stream), None);
        assert_eq!(store.read_stream(stream, StreamVersion(0)).count(), 0);
        // Still missing for the next writer's expectations.
        conflict(&store, Transaction::new().append(stream, StreamExists, []));
        conflict(
            &store,
            Transaction::new().append(stream, Exact(StreamVersion(0)), []),
        );
    }
    insert(
        &store,
        Transaction::new()
            .append(fresh, NoStream, [1])
            .append(guard, NoStream, [3]),
    );
    assert_well_formed(&store);
}

#[test]
fn rule_04_a_missing_stream_reads_empty_and_has_no_head() {
    let store = fixture();
    let missing = sid(MISSING);
    assert_eq!(store.stream_head(missing), None);
    assert_eq!(store.read_stream(missing, StreamVersion(0)).count(), 0);
    assert_eq!(store.read_stream(missing, StreamVersion(0)).count(), 0);
    assert_eq!(store.read_stream_backward(missing).count(), 0);
    assert_eq!(
        store
            .read_stream_backward_from(missing, StreamVersion(3))
            .count(),
        0
    );
    assert_eq!(
        MemoryStore::<u32>::new()
            .read_stream(missing, StreamVersion(0))
            .count(),
        0
    );
}

#[test]
fn rule_04_transaction_len_counts_events_not_streams() {
    let empty = Transaction::<u32>::new().append(sid(1), NoStream, []);
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    let tx = empty.append(sid(2), Any, [1, 2]).append(sid(3), Any, [3]);
    assert!(!tx.is_empty());
    assert_eq!(tx.len(), 3);
}

// ---------------------------------------------------------------------------
// 5. Transactions and correlation ids
// ---------------------------------------------------------------------------

#[test]
fn rule_05_the_correlation_id_is_on_every_event_of_the_transaction() {
    let store = MemoryStore::new();
    let correlation = CorrelationId::new();
    let tx = Transaction::new()
        .append(sid(3), Any, [1, 2])
        .append(sid(1), Any, [3])
        .append(sid(2), NoStream, [4, 5, 6])
        .with_correlation_id(correlation);
    insert(&store, tx);
    insert(&store, Transaction::single(sid(1), Any, 7));
    let ids: Vec<Option<CorrelationId>> = store
        .read_all(Start::Beginning)
        .map(|e| e.correlation_id())
        .collect();
    assert_eq!(ids[..6], [Some(correlation); 6]);
    assert_eq!(
        ids[6], None,
        "a transaction without a correlation id has none"
    );
}

#[test]
fn rule_05_a_transaction_writes_several_streams_at_once() {
    let store = MemoryStore::new();
    let committed = insert(
        &store,
        Transaction::new()
            .append(sid(1), NoStream, [1])
            .append(sid(2), NoStream, [2, 3]),
    );
    assert_eq!(
        committed.streams(),
        [(sid(1), head(0, 0)), (sid(2), head(1, 2))]
    );
    assert_eq!(payloads(&store, sid(1)), [1]);
    assert_eq!(payloads(&store, sid(2)), [2, 3]);
}

// ---------------------------------------------------------------------------
// 6. Expected versions
// ---------------------------------------------------------------------------

#[test]
fn rule_06_any_passes_on_missing_and_existing_streams() {
    assert_passes(MISSING, Any);
    assert_passes(TARGET, Any);
}

#[test]
fn rule_06_no_stream_passes_only_on_a_missing_stream() {
    assert_passes(MISSING, NoStream);
    assert_fails(TARGET, NoStream);
}

#[test]
fn rule_06_stream_exists_passes_only_on_an_existing_stream() {
    assert_passes(TARGET, StreamExists);
    assert_fails(MISSING, StreamExists);
}

#[test]
fn rule_06_exact_version_passes_only_on_the_last_version() {
    assert_passes(TARGET, Exact(StreamVersion(2)));
    // 4 is the last event's position, not its version.
    for stale in [0, 1, 3, 4, u64::MAX] {
        assert_fails(TARGET, Exact(StreamVersion(stale)));
    }
}

#[test]
fn rule_06_exact_version_never_matches_a_missing_stream() {
    for version in [0, 1] {
        assert_fails(MISSING, Exact(StreamVersion(version)));
    }
}

#[test]
fn rule_06_exact_position_passes_only_on_the_last_position() {
    assert_passes(TARGET, ExactPosition(Position(4)));
    // 2 is the last event's version, 3 the other stream's last position.
    for stale in [0, 2, 3, 5, u64::MAX] {
        assert_fails(TARGET, ExactPosition(Position(stale)));
    }
}

#[test]
fn rule_06_exact_position_never_matches_a_missing_stream() {
    // 4 is the store's head.
    for position in [0, 4] {
        assert_fails(MISSING, ExactPosition(Position(position)));
    }
}

#[test]
fn rule_06_exact_position_is_not_changed_by_writes_to_other_streams() {
    let store = MemoryStore::new();
    let (stream, other) = (sid(1), sid(2));
    let last = insert(&store, Transaction::single(stream, NoStream, 0))
        .stream(stream)
        .unwrap();
    for round in 0..3 {
        insert(
            &store,
            Transaction::new().append(other, Any, [round, round]),
        );
        assert_eq!(store.stream_head(stream), Some(last));
    }
    let tx = Transaction::new()
        .append(stream, ExactPosition(last.position), [1])
        .append(other, Any, [9]);
    let committed = insert(&store, tx);
    assert_eq!(committed.stream(stream), Some(head(1, 7)));
    assert_eq!(store.head(), Some(Position(8)));
}

#[test]
fn rule_06_every_kind_passes_and_fails_together_in_one_multi_stream_transaction() {
    let store = fixture();
    let target_head = head(2, 4);
    let other_head = head(1, 3);
    let passing = || {
        Transaction::new()
            .append(sid(MISSING), NoStream, [1])
            .append(sid(TARGET), Exact(target_head.version), [2])
            .append(sid(OTHER), ExactPosition(other_head.position), [3])
            .append(sid(NEW_A), Any, [4])
            .append(sid(NEW_B), Any, [])
    };
    // The same five streams, each expectation now wrong.
    let failing = Transaction::new()
        .append(sid(MISSING), StreamExists, [1])
        .append(sid(TARGET), ExactPosition(target_head.position), [2]) // right
        .append(sid(TARGET), Exact(StreamVersion(0)), [2]) // ignored: the first wins
        .append(sid(OTHER), Exact(StreamVersion(0)), [3])
        .append(sid(NEW_A), Exact(StreamVersion(0)), [4])
        .append(sid(NEW_B), ExactPosition(Position(0)), []);
    let mismatches = conflict(&store, failing);
    assert_eq!(
        mismatches,
        [
            mismatch(sid(OTHER), Exact(StreamVersion(0)), Some(other_head)),
            mismatch(sid(MISSING), StreamExists, None),
            mismatch(sid(NEW_A), Exact(StreamVersion(0)), None),
            mismatch(sid(NEW_B), ExactPosition(Position(0)), None),
        ]
    );
    assert_eq!(store.head(), Some(Position(4)));
    let committed = insert(&store, passing());
    assert_eq!(committed.last_position(), Some(Position(8)));
    // Replayed, the same expectations now fail for every stream but the `Any` ones.
    let mismatches = conflict(&store, passing());
    let failed: Vec<StreamId> = mismatches.iter().map(|m| m.stream).collect();
    assert_eq!(failed, [sid(TARGET), sid(OTHER), sid(MISSING)]);
    assert_well_formed(&store);
}

// ---------------------------------------------------------------------------
// 7. All or nothing, and every failure reported
// ---------------------------------------------------------------------------

#[test]
fn rule_07_one_failing_expectation_in_ten_streams_writes_nothing_anywhere() {
    let store = MemoryStore::new();
    // Streams 1..=5 hold one event each, at positions 0..=4; 6..=10 are missing.
    for n in 1..=5u128 {
        insert(&store, Transaction::single(sid(n), Any, n as u32));
    }
    let before = rows(&store);
    let passing = |n: u128| match n {
        1 | 5 | 10 => Any,
        2 => StreamExists,
        3 => Exact(StreamVersion(0)),
        4 => ExactPosition(Position(3)),
        _ => NoStream,
    };
    // Appended in descending order; each of the ten streams gets two events.
    let build = |failing: Option<(u128, ExpectedVersion)>| {
        (1..=10u128).rev().fold(Transaction::new(), |tx, n| {
            let expected = match failing {
                Some((stream, wrong)) if stream == n => wrong,
                _ => passing(n),
            };
            tx.append(sid(n), expected, [n as u32 * 10, n as u32 * 10 + 1])
        })
    };
    let cases = [
        (3, Exact(StreamVersion(1)), Some(head(0, 2))),
        (8, StreamExists, None),
        (1, NoStream, Some(head(0, 0))),
        (10, ExactPosition(Position(0)), None),
        (4, ExactPosition(Position(4)), Some(head(0, 3))),
    ];
    for (stream, wrong, found) in cases {
        let mismatches = conflict(&store, build(Some((stream, wrong))));
        assert_eq!(mismatches, [mismatch(sid(stream), wrong, found)]);
        assert_eq!(
            rows(&store),
            before,
            "stream {stream}: something was written"
        );
        assert_eq!(store.head(), Some(Position(4)));
        for n in 6..=10 {
            assert_eq!(store.stream_head(sid(n)), None, "stream {n} was created");
            assert_eq!(store.read_stream(sid(n), StreamVersion(0)).count(), 0);
        }
    }
    let committed = insert(&store, build(None));
    assert_eq!(committed.last_position(), Some(Position(24)));
    let appended: Vec<u64> = store
        .read_all(Start::After(Position(4)))
        .map(|e| e.position().get())
        .collect();
    assert_eq!(
        appended,
        (5..=24).collect::<Vec<_>>(),
        "no gap after the failures"
    );
    assert_well_formed(&store);
}

#[test]
fn rule_07_every_failing_stream_is_reported_with_expected_and_found() {
    let store = MemoryStore::new();
    insert(
        &store,
        Transaction::new()
            .append(sid(1), Any, [0, 1])
            .append(sid(2), Any, [2]),
    );
    let tx = Transaction::new()
        .append(sid(9), Exact(StreamVersion(0)), [0])
        .append(sid(2), NoStream, [0])
        .append(sid(5), Any, [0])
        .append(sid(1), ExactPosition(Position(0)), [0])
        .append(sid(7), StreamExists, [])
        .append(sid(3), ExactPosition(Position(1)), [0])
        .append(sid(4), Exact(StreamVersion(1)), [0]);
    let mismatches = conflict(&store, tx);
    let expected = [
        mismatch(sid(1), ExactPosition(Position(0)), Some(head(1, 1))),
        mismatch(sid(2), NoStream, Some(head(0, 2))),
        mismatch(sid(3), ExactPosition(Position(1)), None),
        mismatch(sid(4), Exact(StreamVersion(1)), None),
        mismatch(sid(7), StreamExists, None),
        mismatch(sid(9), Exact(StreamVersion(0)), None),
    ];
    assert_eq!(
        mismatches, expected,
        "every failing stream, in ascending id order"
    );
    assert_eq!(store.head(), Some(Position(2)));
    assert_eq!(store.stream_head(sid(5)), None);
}

#[test]
fn rule_07_the_error_message_names_every_failing_stream() {
    let store = MemoryStore::new();
    insert(&store, Transaction::single(sid(1), Any, 0));
    let tx = Transaction::new()
        .append(sid(1), NoStream, [1])
        .append(sid(2), StreamExists, [2]);
    let error = store.insert(tx).unwrap_err();
    let message = error.to_string();
    for stream in [sid(1), sid(2)] {
        assert!(message.contains(&stream.to_string()), "{message}");
    }
    let boxed: Box<dyn std::error::Error + Send + Sync + 'static> = Box::new(error);
    assert_eq!(boxed.to_string(), message);
}

#[test]
fn rule_07_a_failure_consumes_no_position_so_the_next_insert_has_no_gap() {
    let store = MemoryStore::new();
    insert(&store, Transaction::new().append(sid(1), Any, [0, 1, 2]));
    for _ in 0..3 {
        conflict(
            &store,
            Transaction::new()
                .append(sid(2), Any, [9; 4])
                .append(sid(1), NoStream, [9]),
        );
    }
    let committed = insert(&store, Transaction::new().append(sid(2), Any, [3, 4]));
    assert_eq!(committed.last_position(), Some(Position(4)));
    assert_eq!(committed.stream(sid(2)), Some(head(1, 4)));
    assert_well_formed(&store);
}

// ---------------------------------------------------------------------------
// 8. What a successful insert returns
// ---------------------------------------------------------------------------

#[test]
fn rule_08_committed_reports_the_last_position_and_every_written_stream_head() {
    let store = MemoryStore::new();
    let (a, b, checked) = (sid(1), sid(2), sid(3));
    insert(
        &store,
        Transaction::new()
            .append(checked, Any, [0])
            .append(a, Any, [0]),
    );
    let tx = Transaction::new()
        .append(b, NoStream, [1])
        .append(checked, StreamExists, [])
        .append(a, Exact(StreamVersion(0)), [1, 2]);
    let committed = insert(&store, tx);
    assert_eq!(committed.last_position(), Some(Position(4)));
    assert_eq!(
        committed.streams(),
        [(a, head(2, 3)), (b, head(0, 4))],
        "ascending ids, only written streams"
    );
    assert_eq!(committed.stream(a), Some(head(2, 3)));
    assert_eq!(committed.stream(b), Some(head(0, 4)));
    assert_eq!(
        committed.stream(checked),
        None,
        "a stream only checked was not written"
    );
    assert_eq!(committed.stream(sid(4)), None);
    for (stream, stream_head) in committed.streams() {
        assert_eq!(store.stream_head(*stream), Some(*stream_head));
    }
}

#[test]
fn rule_08_committed_heads_are_the_next_exact_version_expectation() {
    let store = MemoryStore::new();
    let (a, b) = (sid(1), sid(2));
    let mut committed = insert(
        &store,
        Transaction::new()
            .append(a, NoStream, [0, 1])
            .append(b, NoStream, [0]),
    );
    for round in 0..4 {
        let (head_a, head_b) = (committed.stream(a).unwrap(), committed.stream(b).unwrap());
        let tx = Transaction::new()
            .append(a, Exact(head_a.version), [round])
            .append(b, head_b.expect_exact(), [round]);
        committed = insert(&store, tx);
        // The heads just used are stale now.
        let stale = conflict(&store, Transaction::single(a, Exact(head_a.version), 99));
        assert_eq!(
            stale,
            [mismatch(a, Exact(head_a.version), committed.stream(a))]
        );
    }
    assert_eq!(committed.stream(a), Some(head(5, 9)));
    assert_well_formed(&store);
}

#[test]
fn rule_08_committed_heads_are_the_next_exact_position_expectation() {
    let store = MemoryStore::new();
    let (a, b) = (sid(1), sid(2));
    let mut committed = insert(
        &store,
        Transaction::new()
            .append(a, NoStream, [0, 1])
            .append(b, NoStream, [0]),
    );
    for round in 0..4 {
        let (head_a, head_b) = (committed.stream(a).unwrap(), committed.stream(b).unwrap());
        let tx = Transaction::new()
            .append(a, ExactPosition(head_a.position), [round])
            .append(b, ExactPosition(head_b.position), [round, round]);
        committed = insert(&store, tx);
        let stale = conflict(
            &store,
            Transaction::single(b, ExactPosition(head_b.position), 99),
        );
        assert_eq!(
            stale,
            [mismatch(
                b,
                ExactPosition(head_b.position),
                committed.stream(b)
            )]
        );
    }
    assert_eq!(committed.stream(b), Some(head(8, 14)));
    assert_well_formed(&store);
}

// ---------------------------------------------------------------------------
// 9. Layout of a transaction
// ---------------------------------------------------------------------------

#[test]
fn rule_09_streams_are_laid_out_in_ascending_stream_id_order() {
    let store = MemoryStore::new();
    insert(&store, Transaction::new().append(sid(50), Any, [0, 0]));
    // `1 << 120` sorts after 3: the order is the UUID's byte order.
    let high = sid(1 << 120);
    let tx = Transaction::new()
        .append(sid(3), Any, [30, 31])
        .append(high, Any, [90])
        .append(sid(1), Any, [10, 11, 12])
        .append(sid(2), Any, [20]);
    let committed = insert(&store, tx);
    assert_eq!(committed.last_position(), Some(Position(8)));
    let expected = [
        (sid(1), 10),
        (sid(1), 11),
        (sid(1), 12),
        (sid(2), 20),
        (sid(3), 30),
        (sid(3), 31),
        (high, 90),
    ];
    assert_eq!(layout(&store, Start::After(Position(1))), expected);
}

#[test]
fn rule_09_random_stream_ids_are_laid_out_in_stream_id_order() {
    let store = MemoryStore::new();
    let streams: Vec<StreamId> = (0..8).map(|_| StreamId::new()).collect();
    let tx = streams
        .iter()
        .fold(Transaction::new(), |tx, s| tx.append(*s, NoStream, [0, 1]));
    insert(&store, tx);
    let mut sorted = streams.clone();
    sorted.sort();
    let expected: Vec<(StreamId, u32)> = sorted.iter().flat_map(|s| [(*s, 0), (*s, 1)]).collect();
    assert_eq!(layout(&store, Start::Beginning), expected);
}

#[test]
fn rule_09_each_stream_is_contiguous_and_in_the_given_order() {
    let store = MemoryStore::new();
    let tx = Transaction::new()
        .append(sid(2), Any, [5, 3, 8, 1])
        .append(sid(1), Any, [9, 7])
        .append(sid(2), Any, [0]);
    insert(&store, tx);
    assert_eq!(
        layout(&store, Start::Beginning),
        [
            (sid(1), 9),
            (sid(1), 7),
            (sid(2), 5),
            (sid(2), 3),
            (sid(2), 8),
            (sid(2), 1),
            (sid(2), 0)
        ]
    );
    assert_well_formed(&store);
}

#[test]
fn rule_09_a_transaction_occupies_one_contiguous_range() {
    let store = MemoryStore::new();
    let mut ranges = Vec::new();
    for round in 0..5u32 {
        let tx = Transaction::new()
            .append(
                sid(u128::from(round % 2)),
                Any,
                vec![round; round as usize + 1],
            )
            .append(sid(5), Any, [round]);
        let last = insert(&store, tx).last_position().unwrap().get();
        ranges.push((last + 1 - (u64::from(round) + 2), last));
    }
    // The ranges tile the log: each starts right after the previous one.
    let mut next = 0;
    for (first, last) in &ranges {
        assert_eq!(*first, next);
        let rounds: HashSet<u32> = store
            .read_all(Start::Beginning)
            .skip(*first as usize)
            .take((last - first + 1) as usize)
            .map(|e| *e.payload())
            .collect();
        assert_eq!(rounds.len(), 1, "range {first}..={last} mixes transactions");
        next = last + 1;
    }
}

// ---------------------------------------------------------------------------
// 10. Composition, and appending to a stream twice
// ---------------------------------------------------------------------------

#[test]
fn rule_10_compose_concatenates_a_shared_stream_left_first() {
    let store = MemoryStore::new();
    let left = Transaction::new()
        .append(sid(1), Any, [1, 2])
        .append(sid(2), Any, [10]);
    let right = Transaction::new()
        .append(sid(3), Any, [20])
        .append(sid(1), Any, [3]);
    let committed = insert(&store, left.compose(right));
    assert_eq!(committed.last_position(), Some(Position(4)));
    assert_eq!(
        layout(&store, Start::Beginning),
        [
            (sid(1), 1),
            (sid(1), 2),
            (sid(1), 3),
            (sid(2), 10),
            (sid(3), 20)
        ]
    );
}

#[test]
fn rule_10_compose_left_expectation_wins() {
    let store = MemoryStore::new();
    let stream = sid(1);
    insert(&store, Transaction::single(stream, Any, 0));
    let pair = |left, right| {
        Transaction::single(stream, left, 1).compose(Transaction::single(stream, right, 2))
    };
    // Left passes, right would fail: passes.
    insert(&store, pair(StreamExists, NoStream));
    insert(
        &store,
        pair(Exact(StreamVersion(2)), Exact(StreamVersion(7))),
    );
    // Left fails, right would pass: fails, and reports the left expectation.
    let current = store.stream_head(stream);
    assert_eq!(
        conflict(&store, pair(NoStream, StreamExists)),
        [mismatch(stream, NoStream, current)]
    );
    let stale = Exact(StreamVersion(0));
    assert_eq!(
        conflict(&store, pair(stale, Exact(StreamVersion(4)))),
        [mismatch(stream, stale, current)]
    );
    assert_eq!(payloads(&store, stream), [0, 1, 2, 1, 2]);
}

#[test]
fn rule_10_compose_left_correlation_id_wins_and_right_fills_in_for_none() {
    let (left_id, right_id) = (CorrelationId::new(), CorrelationId::new());
    let tx = |id: Option<CorrelationId>, stream: u128| {
        let tx = Transaction::single(sid(stream), Any, 0u32);
        match id {
            Some(id) => tx.with_correlation_id(id),
            None => tx,
        }
    };
    let cases = [
        (Some(left_id), Some(right_id), Some(left_id)),
        (None, Some(right_id), Some(right_id)),
        (Some(left_id), None, Some(left_id)),
        (None, None, None),
    ];
    for (left, right, expected) in cases {
        let store = MemoryStore::new();
        insert(&store, tx(left, 1).compose(tx(right, 2)));
        let ids: Vec<_> = store
            .read_all(Start::Beginning)
            .map(|e| e.correlation_id())
            .collect();
        assert_eq!(ids, [expected, expected], "{left:?} + {right:?}");
    }
}

#[test]
fn rule_10_appending_twice_to_one_stream_concatenates_and_the_first_expectation_wins() {
    let store = MemoryStore::new();
    let (a, b) = (sid(1), sid(2));
    let tx = Transaction::new()
        .append(a, NoStream, [1])
        .append(b, Any, [5])
        .append(a, StreamExists, [2, 3]);
    let committed = insert(&store, tx);
    assert_eq!(committed.streams(), [(a, head(2, 2)), (b, head(0, 3))]);
    assert_eq!(
        layout(&store, Start::Beginning),
        [(a, 1), (a, 2), (a, 3), (b, 5)]
    );
    // A first append with no events still decides the expectation.
    let tx = Transaction::new()
        .append(a, NoStream, [])
        .append(a, Exact(StreamVersion(2)), [4]);
    assert_eq!(
        conflict(&store, tx),
        [mismatch(a, NoStream, Some(head(2, 2)))]
    );
    let tx = Transaction::new()
        .append(a, Exact(StreamVersion(2)), [])
        .append(a, NoStream, [4]);
    assert_eq!(insert(&store, tx).stream(a), Some(head(3, 4)));
}

// ---------------------------------------------------------------------------
// 11. One creation time per transaction
// ---------------------------------------------------------------------------

#[test]
fn rule_11_all_events_of_a_transaction_share_one_created_at() {
    let store = MemoryStore::new();
    let before = SystemTime::now();
    let tx = Transaction::new()
        .append(sid(2), Any, [0; 50])
        .append(sid(1), Any, [0; 50])
        .append(sid(3), Any, [0]);
    insert(&store, tx);
    let after = SystemTime::now();
    let times: HashSet<SystemTime> = store
        .read_all(Start::Beginning)
        .map(|e| e.created_at())
        .collect();
    assert_eq!(times.len(), 1, "one timestamp per transaction");
    let time = *times.iter().next().unwrap();
    assert!(before <= time && time <= after, "taken during the insert");
}

#[test]
fn rule_11_created_at_is_fixed_when_written() {
    let store = MemoryStore::new();
    insert(&store, Transaction::new().append(sid(1), Any, [0, 1]));
    let first: Vec<SystemTime> = store
        .read_all(Start::Beginning)
        .map(|e| e.created_at())
        .collect();
    insert(&store, Transaction::single(sid(1), Any, 2));
    let again: Vec<SystemTime> = store
        .read_all(Start::Beginning)
        .take(2)
        .map(|e| e.created_at())
        .collect();
    assert_eq!(first, again);
}

// ---------------------------------------------------------------------------
// 12. Read your writes
// ---------------------------------------------------------------------------

#[test]
fn rule_12_every_read_sees_the_whole_transaction_when_insert_returns() {
    let store = MemoryStore::new();
    for round in 0..20u32 {
        let committed = insert(
            &store,
            Transaction::new()
                .append(sid(1), Any, [round; 3])
                .append(sid(2), Any, [round]),
        );
        let last = committed.last_position().unwrap();
        assert_eq!(store.head(), Some(last));
        assert_eq!(
            store.read_all(Start::Beginning).last().unwrap().position(),
            last
        );
        for (stream, stream_head) in committed.streams() {
            assert_eq!(store.stream_head(*stream), Some(*stream_head));
            assert_eq!(
                store
                    .read_stream_backward(*stream)
                    .next()
                    .unwrap()
                    .position(),
                stream_head.position
            );
        }
    }
}

#[test]
fn rule_12_another_handle_on_another_thread_sees_the_insert_at_once() {
    let store = MemoryStore::new();
    let (to_reader, inserted) = mpsc::channel::<Committed>();
    let (to_writer, seen) = mpsc::channel::<()>();
    let reader = store.clone();
    let reader = thread::spawn(move || {
        for committed in inserted {
            let last = committed.last_position().unwrap();
            assert_eq!(reader.head(), Some(last));
            assert_eq!(
                reader.read_all(Start::Beginning).count() as u64,
                last.get() + 1
            );
            for (stream, stream_head) in committed.streams() {
                assert_eq!(reader.stream_head(*stream), Some(*stream_head));
            }
            to_writer.send(()).unwrap();
        }
    });
    for round in 0..20u32 {
        let tx = Transaction::new()
            .append(sid(u128::from(round % 3)), Any, [round; 2])
            .append(sid(9), Any, [round]);
        to_reader.send(insert(&store, tx)).unwrap();
        seen.recv().unwrap();
    }
    drop(to_reader);
    reader.join().unwrap();
}

#[test]
fn rule_12_inserts_from_another_thread_are_seen_here_at_once() {
    let store = MemoryStore::new();
    let (to_reader, inserted) = mpsc::channel::<Committed>();
    let writer = store.clone();
    let writer = thread::spawn(move || {
        for round in 0..20u32 {
            to_reader
                .send(insert(
                    &writer,
                    Transaction::new().append(sid(1), Any, [round; 4]),
                ))
                .unwrap();
        }
    });
    for committed in inserted {
        let last = committed.last_position().unwrap().get();
        assert!(store.head() >= Some(Position(last)));
        let range = store
            .read_all(Start::Beginning)
            .skip(last as usize - 3)
            .take(4);
        let payloads: Vec<u32> = range.map(|e| *e.payload()).collect();
        assert_eq!(payloads.len(), 4);
        assert!(
            payloads.iter().all(|p| *p == payloads[0]),
            "a whole transaction"
        );
    }
    writer.join().unwrap();
}

// ---------------------------------------------------------------------------
// 13. Concurrency (small deterministic checks; the big races are elsewhere)
// ---------------------------------------------------------------------------

#[test]
fn rule_13_of_two_writers_expecting_the_same_version_exactly_one_wins() {
    let store = MemoryStore::new();
    let stream = sid(1);
    let mut current = insert(&store, Transaction::single(stream, NoStream, 0))
        .stream(stream)
        .unwrap();
    for round in 0..25u32 {
        let barrier = Barrier::new(2);
        let results: Vec<Result<Committed, InsertError>> = thread::scope(|scope| {
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let (store, barrier) = (store.clone(), &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        store.insert(Transaction::single(stream, Exact(current.version), round))
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        assert_eq!((won.len(), lost.len()), (1, 1), "round {round}");
        let winner = won[0].as_ref().unwrap().stream(stream).unwrap();
        assert_eq!(winner.version.get(), current.version.get() + 1);
        let expected = InsertError::VersionConflict(vec![mismatch(
            stream,
            Exact(current.version),
            Some(winner),
        )]);
        assert_eq!(lost[0].as_ref().unwrap_err(), &expected);
        current = winner;
    }
    assert_eq!(store.head(), Some(Position(25)));
    assert_well_formed(&store);
}

#[test]
fn rule_13_concurrent_any_writers_all_succeed() {
    let store = MemoryStore::new();
    let barrier = Barrier::new(2);
    thread::scope(|scope| {
        for writer in 0..2u32 {
            let (store, barrier) = (store.clone(), &barrier);
            scope.spawn(move || {
                barrier.wait();
                for round in 0..100 {
                    let tx = Transaction::new()
                        .append(sid(1), Any, [writer, round])
                        .append(sid(2), Any, [writer]);
                    insert(&store, tx);
                }
            });
        }
    });
    assert_eq!(store.head(), Some(Position(2 * 100 * 3 - 1)));
    assert_eq!(
        store.stream_head(sid(1)).unwrap().version,
        StreamVersion(399)
    );
    assert_well_formed(&store);
}

#[test]
fn rule_13_writers_naming_the_same_streams_in_opposite_orders_do_not_deadlock() {
    let store = MemoryStore::new();
    let done = store.clone();
    with_watchdog("opposite_orders", Duration::from_secs(10), move || {
        thread::scope(|scope| {
            let orders = [[1, 2, 3], [3, 2, 1], [2, 3, 1]];
            for order in orders {
                let store = store.clone();
                scope.spawn(move || {
                    for round in 0..200u32 {
                        let tx = order
                            .iter()
                            .fold(Transaction::new(), |tx, n| tx.append(sid(*n), Any, [round]));
                        insert(&store, tx);
                    }
                });
            }
        });
    });
    assert_eq!(done.head(), Some(Position(3 * 200 * 3 - 1)));
    assert_well_formed(&done);
}

// ---------------------------------------------------------------------------
// 14. Bad input
// ---------------------------------------------------------------------------

#[test]
fn rule_14_an_empty_transaction_is_accepted_as_a_no_op() {
    let store = MemoryStore::<u32>::new();
    let committed = insert(&store, Transaction::new());
    assert_eq!(committed.last_position(), None);
    assert!(committed.streams().is_empty());
    assert_eq!(store.head(), None);
    insert(&store, Transaction::single(sid(1), Any, 0));
    assert_eq!(insert(&store, Transaction::default()).last_position(), None);
    assert_eq!(store.head(), Some(Position(0)));
    let next = insert(&store, Transaction::single(sid(1), Any, 1));
    assert_eq!(
        next.last_position(),
        Some(Position(1)),
        "the no-op used no position"
    );
}

#[test]
fn rule_14_a_panicking_event_iterator_leaves_the_store_usable() {
    let mut ledger = DropLedger::default();
    let store = MemoryStore::new();
    insert(
        &store,
        Transaction::new().append(sid(1), Any, ledger.events(3)),
    );
    let before = rows(&store);
    let kept = ledger.events(2);
    let doomed = ledger.events(4);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let panicking = doomed.into_iter().enumerate().map(|(i, event)| {
            assert!(i < 2, "the event source failed mid-way");
            event
        });
        Transaction::new()
            .append(sid(2), Any, kept)
            .append(sid(3), NoStream, panicking)
    }));
    assert!(outcome.is_err());
    assert_eq!(
        ledger.drops(),
        [0, 0, 0, 1, 1, 1, 1, 1, 1],
        "the half-built transaction is dropped once"
    );
    assert!(!store.is_poisoned());
    assert_eq!(rows(&store), before, "nothing partial is visible");
    assert_eq!(store.stream_head(sid(2)), None);
    assert_eq!(store.stream_head(sid(3)), None);
    let committed = insert(
        &store,
        Transaction::new().append(sid(3), NoStream, ledger.events(2)),
    );
    assert_eq!(
        committed.last_position(),
        Some(Position(4)),
        "next position, no gap"
    );
    assert_well_formed(&store);
}

#[test]
fn rule_14_out_of_range_read_arguments_give_empty_reads() {
    let store = fixture();
    let stream = sid(TARGET);
    assert_eq!(store.read_all(Start::After(Position(u64::MAX))).count(), 0);
    assert_eq!(store.read_all(Start::After(Position(5))).count(), 0);
    assert_eq!(
        store.read_stream(stream, StreamVersion(u64::MAX)).count(),
        0
    );
    assert_eq!(store.read_stream(stream, StreamVersion(3)).count(), 0);
    assert_eq!(
        store
            .read_stream_backward_from(stream, StreamVersion(u64::MAX))
            .count(),
        3
    );
    assert_eq!(
        store
            .read_stream_backward_from(sid(MISSING), StreamVersion(u64::MAX))
            .count(),
        0
    );
}

#[test]
fn rule_14_absurd_expectations_are_conflicts_not_panics() {
    let store = fixture();
    for expected in [
        Exact(StreamVersion(u64::MAX)),
        ExactPosition(Position(u64::MAX)),
    ] {
        for stream in [sid(TARGET), sid(MISSING)] {
            let found = store.stream_head(stream);
            assert_eq!(
                conflict(&store, Transaction::single(stream, expected, 0)),
                [mismatch(stream, expected, found)]
            );
        }
    }
    assert_eq!(store.head(), Some(Position(4)));
}

#[test]
fn rule_14_errors_are_plain_values_that_can_travel() {
    fn assert_error<T: std::error::Error + Send + Sync + Clone + PartialEq + 'static>() {}
    assert_error::<InsertError>();
    let store = MemoryStore::new();
    let error = store
        .insert(Transaction::single(sid(1), StreamExists, 0))
        .unwrap_err();
    let sent = thread::spawn(move || error).join().unwrap();
    assert_eq!(
        sent,
        InsertError::VersionConflict(vec![mismatch(sid(1), StreamExists, None)])
    );
    assert!(sent.to_string().contains("no stream"), "{sent}");
}

// ---------------------------------------------------------------------------
// 24. Every event is dropped exactly once
// ---------------------------------------------------------------------------

#[test]
fn rule_24_stored_events_are_dropped_once_when_the_last_handle_drops() {
    let mut ledger = DropLedger::default();
    let store = MemoryStore::new();
    let clones = [store.clone(), store.clone()];
    insert(
        &store,
        Transaction::new()
            .append(sid(1), Any, ledger.events(3))
            .append(sid(2), Any, ledger.events(1)),
    );
    insert(
        &clones[0],
        Transaction::new().append(sid(2), Any, ledger.events(2)),
    );
    insert(
        &clones[1],
        Transaction::new().append(sid(1), Any, ledger.events(1)),
    );
    drop(store);
    let [first, last] = clones;
    drop(first);
    assert_eq!(ledger.drops(), [0; 7], "alive while a handle is");
    assert_eq!(last.read_all(Start::Beginning).count(), 7);
    // The last handle goes on another thread.
    thread::spawn(move || drop(last)).join().unwrap();
    assert_eq!(ledger.drops(), [1; 7]);
}

#[test]
fn rule_24_events_of_a_failed_insert_are_dropped_when_insert_returns() {
    let mut ledger = DropLedger::default();
    let store = MemoryStore::new();
    insert(
        &store,
        Transaction::new().append(sid(1), NoStream, ledger.events(2)),
    );
    let tx = Transaction::new()
        .append(sid(2), Any, ledger.events(3))
        .append(sid(1), NoStream, ledger.events(2));
    conflict(&store, tx);
    assert_eq!(ledger.drops(), [0, 0, 1, 1, 1, 1, 1]);
    // Also when only a later stream fails.
    let tx = Transaction::new()
        .append(sid(1), StreamExists, ledger.events(1))
        .append(sid(3), StreamExists, ledger.events(1));
    conflict(&store, tx);
    assert_eq!(ledger.drops()[7..], [1, 1]);
    drop(store);
    assert_eq!(
        ledger.drops(),
        [1; 9],
        "dropped once each, failed ones not again"
    );
}

#[test]
fn rule_24_an_empty_or_unused_store_drops_cleanly() {
    let mut ledger = DropLedger::default();
    drop(MemoryStore::<Tracked>::new());
    let store = MemoryStore::new();
    insert(
        &store,
        Transaction::new().append(sid(1), Any, Vec::<Tracked>::new()),
    );
    let unused = Transaction::single(sid(1), Any, ledger.events(1).pop().unwrap());
    drop(unused);
    drop(store);
    assert_eq!(ledger.drops(), [1]);
}

// ---------------------------------------------------------------------------
// 25. Handles
// ---------------------------------------------------------------------------

fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

/// Compile-time: a store of any `Send + Sync` payload is `Send + Sync + Clone`.
#[allow(dead_code)]
fn store_is_send_sync_clone_for_every_send_sync_payload<E: Send + Sync>() {
    assert_send_sync_clone::<MemoryStore<E>>();
}

#[test]
fn rule_25_store_is_send_sync_and_clone_for_send_sync_payloads() {
    store_is_send_sync_clone_for_every_send_sync_payload::<Tracked>();
    store_is_send_sync_clone_for_every_send_sync_payload::<u32>();
    let store = MemoryStore::<Tracked>::new();
    let handle = store.clone();
    thread::spawn(move || assert_eq!(handle.head(), None))
        .join()
        .unwrap();
    assert!(format!("{store:?}").starts_with("MemoryStore"));
}

#[test]
fn rule_25_clones_share_one_store() {
    let store = MemoryStore::new();
    let clone = store.clone();
    let clone_of_clone = clone.clone();
    assert!(store.same_store(&clone));
    assert!(clone_of_clone.same_store(&store));
    let other = MemoryStore::new();
    assert!(!store.same_store(&other));
    insert(&clone, Transaction::single(sid(1), NoStream, 1));
    conflict(&clone_of_clone, Transaction::single(sid(1), NoStream, 2));
    assert_eq!(store.head(), Some(Position(0)));
    assert_eq!(other.head(), None, "separate stores are independent");
    insert(&other, Transaction::single(sid(1), NoStream, 3));
    assert_eq!(other.head(), Some(Position(0)));
}

#[test]
fn rule_25_all_handles_observe_the_same_order() {
    let store = MemoryStore::new();
    let handles = [store.clone(), store.clone(), store.clone()];
    thread::scope(|scope| {
        for (writer, handle) in handles.iter().enumerate() {
            scope.spawn(move || {
                for round in 0..30u32 {
                    let tx = Transaction::new()
                        .append(sid(writer as u128), Any, [round])
                        .append(sid(9), Any, [round]);
                    insert(handle, tx);
                }
            });
        }
    });
    let order = rows(&store);
    assert_eq!(order.len(), 3 * 30 * 2);
    for handle in &handles {
        assert_eq!(rows(handle), order);
    }
    assert_well_formed(&store);
}
