//! Writes and reads on one handle: contract rules 1-11 and 14.

use super::support::*;
use super::{StoreFactory, TestEvent, TestKind};
use crate::{
    CorrelationId, Cursor, EventStore, ExpectedVersion, Position, StoreError, StreamHead, StreamId,
    StreamVersion, Transaction,
};
use std::collections::HashSet;
use ExpectedVersion::{Any, Exact, ExactPosition, NoStream, StreamExists};
use TestKind::{Alpha, Beta, Gamma};

/// Rule 1: every event belongs to the stream it was written to and has an
/// event id that is unique (across transactions, streams and stores) and
/// the same on every read.
pub fn rule_01_events_keep_their_stream_and_one_unique_id<F: StoreFactory>(factory: &F) {
    run("rule_01", async {
        let store = factory.create().await;
        let (a, b) = (StreamId::new(), StreamId::new());
        insert(
            &store,
            Transaction::new()
                .append(a, Any, events(Alpha, 0, 3))
                .append(b, Any, events(Beta, 10, 2)),
        )
        .await;
        insert(&store, Transaction::single(a, Any, ev(3))).await;
        assert_eq!(values(&store, a).await, [0, 1, 2, 3]);
        assert_eq!(values(&store, b).await, [10, 11]);

        let first = read_all(&store, None).await;
        for row in &first {
            let expected = if row.event.value() >= 10 { b } else { a };
            assert_eq!(
                row.stream, expected,
                "event {:?} in the wrong stream",
                row.event
            );
        }
        let again = read_all(&store, None).await;
        assert_eq!(first, again, "a second read differs (ids must be stable)");
        let mut by_stream = read_stream(&store, a, StreamVersion(0)).await;
        by_stream.extend(read_stream(&store, b, StreamVersion(0)).await);
        for row in &by_stream {
            let same = first
                .iter()
                .find(|r| r.position() == row.position())
                .unwrap();
            assert_eq!(
                row.event_id, same.event_id,
                "a stream read gives another id"
            );
        }
        let ids: HashSet<_> = first.iter().map(|row| row.event_id).collect();
        assert_eq!(ids.len(), first.len(), "event ids repeat");

        // Another store's ids are different ones.
        let other = factory.create().await;
        insert(
            &other,
            Transaction::new().append(a, Any, events(Alpha, 0, 4)),
        )
        .await;
        for row in read_all(&other, None).await {
            assert!(!ids.contains(&row.event_id), "two stores share an event id");
        }
    });
}

/// Rules 2, 7 and 14: positions start at 0 and grow by one with no gaps;
/// failed, empty and zero-event inserts consume none; `head` is the last
/// position; a read after a cursor is exclusive.
pub fn rule_02_positions_are_dense_and_reads_start_after_a_cursor<F: StoreFactory>(factory: &F) {
    run("rule_02", async {
        let store = factory.create().await;
        assert_eq!(store_head(&store).await, None);
        assert!(read_all(&store, None).await.is_empty());

        let (a, b) = (StreamId::new(), StreamId::new());
        let done = insert(
            &store,
            Transaction::new().append(a, NoStream, events(Alpha, 0, 3)),
        )
        .await;
        assert_eq!(done.last_position(), Some(Position(2)));
        assert_eq!(store_head(&store).await, Some(Position(2)));

        // Neither a failure nor a write of nothing uses a position.
        conflict(&store, Transaction::single(a, NoStream, ev(9))).await;
        let _ = store.insert(Transaction::new()).await;
        insert(&store, Transaction::new().append(b, Any, [])).await;
        assert_eq!(store_head(&store).await, Some(Position(2)));

        let done = insert(
            &store,
            Transaction::new()
                .append(b, NoStream, events(Beta, 3, 1))
                .append(a, StreamExists, events(Alpha, 4, 1)),
        )
        .await;
        assert_eq!(done.last_position(), Some(Position(4)));
        let rows = assert_well_formed(&store).await;
        let positions: Vec<u64> = rows.iter().map(|row| row.position().get()).collect();
        assert_eq!(positions, [0, 1, 2, 3, 4]);
        let head = store.head().await.unwrap().unwrap();
        assert_eq!(Some(head), rows.last().map(|row| row.cursor));

        // After a cursor: exclusive, and empty past the head.
        let cursor = |p| F::Store::cursor_at(Position(p));
        let after: Vec<u64> = read_all(&store, Some(cursor(1)))
            .await
            .iter()
            .map(|row| row.position().get())
            .collect();
        assert_eq!(after, [2, 3, 4]);
        assert!(read_all(&store, Some(cursor(4))).await.is_empty());
        assert!(read_all(&store, Some(cursor(1000))).await.is_empty());

        // A read can stop early.
        let mut seen = 0;
        store
            .read_all(None, |_| {
                seen += 1;
                if seen == 2 {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            })
            .await
            .unwrap();
        assert_eq!(seen, 2, "a read goes on after Break");
    });
}

/// Rule 3: versions start at 0 and grow by one per stream, stream order
/// agrees with position order, a stream read from a version is inclusive.
pub fn rule_03_versions_are_dense_and_follow_position_order<F: StoreFactory>(factory: &F) {
    run("rule_03", async {
        let store = factory.create().await;
        let (a, b) = (StreamId::new(), StreamId::new());
        for round in 0..4u64 {
            insert(
                &store,
                Transaction::new()
                    .append(a, Any, events(Alpha, round * 10, 2))
                    .append(b, Any, events(Beta, round * 10 + 5, 1)),
            )
            .await;
        }
        let rows = assert_well_formed(&store).await;
        let versions_of = |stream| -> Vec<u64> {
            rows.iter()
                .filter(|row| row.stream == stream)
                .map(|row| row.version.get())
                .collect()
        };
        assert_eq!(versions_of(a), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(versions_of(b), [0, 1, 2, 3]);

        let from_3 = read_stream(&store, a, StreamVersion(3)).await;
        let versions: Vec<u64> = from_3.iter().map(|row| row.version.get()).collect();
        assert_eq!(versions, [3, 4, 5, 6, 7]);
        assert!(from_3.windows(2).all(|w| w[0].position() < w[1].position()));
        assert!(read_stream(&store, a, StreamVersion(8)).await.is_empty());
        assert!(read_stream(&store, a, StreamVersion(u64::MAX))
            .await
            .is_empty());
        let last = stream_head(&store, a).await.unwrap();
        assert_eq!(last.version, StreamVersion(7));
        assert_eq!(Some(last), from_3.last().map(Row::head));
    });
}

/// Rules 4 and 6: a stream exists exactly when it has an event; zero-event
/// appends and failed inserts create nothing, and zero-event appends still
/// have their expectation checked.
pub fn rule_04_streams_exist_from_their_first_event<F: StoreFactory>(factory: &F) {
    run("rule_04", async {
        let store = factory.create().await;
        let (a, b, c) = (StreamId::new(), StreamId::new(), StreamId::new());
        assert_eq!(stream_head(&store, a).await, None);
        assert!(read_stream(&store, a, StreamVersion(0)).await.is_empty());

        // Zero events: checked, nothing created.
        let done = insert(&store, Transaction::new().append(a, NoStream, [])).await;
        assert_eq!((done.last_position(), done.streams()), (None, &[][..]));
        insert(&store, Transaction::new().append(a, Any, [])).await;
        let found = conflict(&store, Transaction::new().append(a, StreamExists, [])).await;
        assert_eq!(found, [mismatch(a, StreamExists, None)]);
        assert_eq!(stream_head(&store, a).await, None);
        assert_eq!(store_head(&store).await, None);

        // A failed insert creates none of its streams.
        let first = insert(&store, Transaction::single(a, NoStream, ev(0))).await;
        let a_head = first.stream(a).unwrap();
        assert_eq!(a_head, head(0, 0));
        conflict(
            &store,
            Transaction::new()
                .append(b, NoStream, [ev(1)])
                .append(c, Any, [ev(2)])
                .append(a, NoStream, [ev(3)]),
        )
        .await;
        for missing in [b, c] {
            assert_eq!(stream_head(&store, missing).await, None);
            assert!(read_stream(&store, missing, StreamVersion(0))
                .await
                .is_empty());
        }

        // On an existing stream, zero-event checks pass and fail too.
        insert(
            &store,
            Transaction::new().append(a, Exact(StreamVersion(0)), []),
        )
        .await;
        insert(&store, Transaction::new().append(a, StreamExists, [])).await;
        let found = conflict(
            &store,
            Transaction::new().append(a, Exact(StreamVersion(1)), []),
        )
        .await;
        assert_eq!(found, [mismatch(a, Exact(StreamVersion(1)), Some(a_head))]);
        let found = conflict(&store, Transaction::new().append(a, NoStream, [])).await;
        assert_eq!(found, [mismatch(a, NoStream, Some(a_head))]);
        assert_eq!(stream_head(&store, a).await, Some(a_head));
        assert_eq!(store_head(&store).await, Some(Position(0)));
        assert_well_formed(&store).await;
    });
}

/// Rule 5: a transaction's correlation id is on every event it writes, in
/// every stream; a transaction without one writes events without one.
pub fn rule_05_the_correlation_id_is_on_every_event<F: StoreFactory>(factory: &F) {
    run("rule_05", async {
        let store = factory.create().await;
        let (a, b) = (StreamId::new(), StreamId::new());
        let (one, two) = (CorrelationId::new(), CorrelationId::new());
        insert(
            &store,
            Transaction::new()
                .append(a, Any, events(Alpha, 0, 2))
                .append(b, Any, events(Beta, 2, 1))
                .with_correlation_id(one),
        )
        .await;
        insert(&store, Transaction::single(a, Any, ev(3))).await;
        insert(
            &store,
            Transaction::new()
                .append(b, Any, events(Gamma, 4, 2))
                .with_correlation_id(two),
        )
        .await;
        let ids: Vec<_> = read_all(&store, None)
            .await
            .iter()
            .map(|row| row.correlation_id)
            .collect();
        assert_eq!(
            ids,
            [Some(one), Some(one), Some(one), None, Some(two), Some(two)]
        );
        let in_b: Vec<_> = read_stream(&store, b, StreamVersion(0))
            .await
            .iter()
            .map(|row| row.correlation_id)
            .collect();
        assert_eq!(in_b, [Some(one), Some(two), Some(two)]);
    });
}

/// A stream with two events, followed by a write to another stream, and a
/// stream that does not exist.
struct Fixture {
    existing: StreamId,
    /// `existing`'s last event: version 1, and not the store's last position.
    head: StreamHead,
    missing: StreamId,
}

async fn fixture<S: EventStore<Event = TestEvent>>(store: &S) -> Fixture {
    let existing = StreamId::new();
    let done = insert(
        store,
        Transaction::new().append(existing, NoStream, events(Alpha, 0, 2)),
    )
    .await;
    insert(store, Transaction::single(StreamId::new(), Any, ev(2))).await;
    Fixture {
        existing,
        head: done.stream(existing).unwrap(),
        missing: StreamId::new(),
    }
}

/// Writes `n` events to `stream` under `expected` and checks that it passes
/// (writing exactly those events) or fails (reporting what it found and
/// writing nothing), as `pass` says.
async fn attempt<S: EventStore<Event = TestEvent>>(
    store: &S,
    stream: StreamId,
    expected: ExpectedVersion,
    n: u64,
    pass: bool,
) {
    let before = stream_head(store, stream).await;
    let global = store_head(store).await;
    let result = store
        .insert(Transaction::new().append(stream, expected, events(Gamma, 100, n)))
        .await;
    let context = format!("{expected:?} with {n} events on a stream at {before:?}");
    match (result, pass) {
        (Ok(done), true) if n > 0 => {
            let next = global.map_or(0, |p| p.get() + 1);
            let version = before.map_or(0, |h| h.version.get() + 1);
            let written = head(version + n - 1, next + n - 1);
            assert_eq!(done.stream(stream), Some(written), "{context}");
            assert_eq!(done.last_position(), Some(written.position), "{context}");
            assert_eq!(stream_head(store, stream).await, Some(written), "{context}");
        }
        (Ok(done), true) => {
            assert_eq!(
                (done.last_position(), done.streams()),
                (None, &[][..]),
                "{context}"
            );
            assert_eq!(stream_head(store, stream).await, before, "{context}");
            assert_eq!(store_head(store).await, global, "{context}");
        }
        (Err(StoreError::VersionConflict(found)), false) => {
            assert_eq!(found, [mismatch(stream, expected, before)], "{context}");
            assert_eq!(stream_head(store, stream).await, before, "{context}");
            assert_eq!(store_head(store).await, global, "{context}");
        }
        (Ok(done), false) => panic!("{context}: passed ({done:?}) but must fail"),
        (Err(error), _) => panic!("{context}: failed ({error}) but must pass"),
    }
}

/// Runs `check` on a fresh fixture for one event and for zero events
/// (a pure check, rule 6's last line).
async fn both_sizes<S, C>(store: &S, check: C)
where
    S: EventStore<Event = TestEvent>,
    C: AsyncCheck<S>,
{
    for n in [1, 0] {
        let fixture = fixture(store).await;
        check.call(store, fixture, n).await;
    }
}

trait AsyncCheck<S> {
    fn call(&self, store: &S, fixture: Fixture, n: u64) -> impl std::future::Future<Output = ()>;
}

/// Rule 6: `Any` passes on missing and existing streams.
pub fn rule_06_any_always_passes<F: StoreFactory>(factory: &F) {
    struct Check;
    impl<S: EventStore<Event = TestEvent>> AsyncCheck<S> for Check {
        async fn call(&self, store: &S, f: Fixture, n: u64) {
            attempt(store, f.missing, Any, n, true).await;
            attempt(store, f.existing, Any, n, true).await;
        }
    }
    run("rule_06_any", async {
        both_sizes(&factory.create().await, Check).await;
    });
}

/// Rule 6: `NoStream` passes only on a stream without events.
pub fn rule_06_no_stream_passes_only_on_a_missing_stream<F: StoreFactory>(factory: &F) {
    struct Check;
    impl<S: EventStore<Event = TestEvent>> AsyncCheck<S> for Check {
        async fn call(&self, store: &S, f: Fixture, n: u64) {
            attempt(store, f.existing, NoStream, n, false).await;
            attempt(store, f.missing, NoStream, n, true).await;
        }
    }
    run("rule_06_no_stream", async {
        both_sizes(&factory.create().await, Check).await;
    });
}

/// Rule 6: `StreamExists` passes only on a stream with events.
pub fn rule_06_stream_exists_passes_only_on_an_existing_stream<F: StoreFactory>(factory: &F) {
    struct Check;
    impl<S: EventStore<Event = TestEvent>> AsyncCheck<S> for Check {
        async fn call(&self, store: &S, f: Fixture, n: u64) {
            attempt(store, f.missing, StreamExists, n, false).await;
            attempt(store, f.existing, StreamExists, n, true).await;
        }
    }
    run("rule_06_stream_exists", async {
        both_sizes(&factory.create().await, Check).await;
    });
}

/// Rule 6: an exact version passes only on the stream's last version, and
/// never on a missing stream (not even version 0).
pub fn rule_06_exact_version_passes_only_on_the_last_version<F: StoreFactory>(factory: &F) {
    struct Check;
    impl<S: EventStore<Event = TestEvent>> AsyncCheck<S> for Check {
        async fn call(&self, store: &S, f: Fixture, n: u64) {
            let v = f.head.version.get();
            attempt(store, f.missing, Exact(StreamVersion(0)), n, false).await;
            attempt(store, f.existing, Exact(StreamVersion(v - 1)), n, false).await;
            attempt(store, f.existing, Exact(StreamVersion(v + 1)), n, false).await;
            attempt(store, f.existing, Exact(StreamVersion(v)), n, true).await;
        }
    }
    run("rule_06_exact_version", async {
        both_sizes(&factory.create().await, Check).await;
    });
}

/// Rule 6: an exact position passes only on the position of the stream's
/// last event, which writes to other streams do not change; never on a
/// missing stream.
pub fn rule_06_exact_position_passes_only_on_the_last_position<F: StoreFactory>(factory: &F) {
    struct Check;
    impl<S: EventStore<Event = TestEvent>> AsyncCheck<S> for Check {
        async fn call(&self, store: &S, f: Fixture, n: u64) {
            let p = f.head.position.get();
            let global = store_head(store).await.unwrap();
            assert!(global.get() > p, "the fixture wrote another stream after");
            attempt(store, f.missing, ExactPosition(Position(0)), n, false).await;
            attempt(store, f.missing, ExactPosition(global), n, false).await;
            attempt(store, f.existing, ExactPosition(global), n, false).await;
            attempt(store, f.existing, ExactPosition(Position(p - 1)), n, false).await;
            attempt(store, f.existing, ExactPosition(Position(p)), n, true).await;
        }
    }
    run("rule_06_exact_position", async {
        both_sizes(&factory.create().await, Check).await;
    });
}

/// Five streams, one per expectation kind, each with what makes its
/// expectation pass or fail.
struct Five {
    streams: [StreamId; 5],
    passing: [ExpectedVersion; 5],
    failing: [Option<ExpectedVersion>; 5],
    found: [Option<StreamHead>; 5],
}

async fn five<S: EventStore<Event = TestEvent>>(store: &S) -> Five {
    let streams: [StreamId; 5] = std::array::from_fn(|_| StreamId::new());
    let [any, _no_stream, exists, exact, position] = streams;
    let mut found = [None; 5];
    for (i, stream) in [any, exists, exact, position].into_iter().enumerate() {
        let done = insert(
            store,
            Transaction::new().append(stream, Any, events(Alpha, i as u64, 2)),
        )
        .await;
        found[[0, 2, 3, 4][i]] = done.stream(stream);
    }
    // Another stream moves the head past every one of them.
    insert(store, Transaction::single(StreamId::new(), Any, ev(9))).await;
    let h = |i: usize| found[i].unwrap();
    Five {
        streams,
        passing: [
            Any,
            NoStream,
            StreamExists,
            Exact(h(3).version),
            ExactPosition(h(4).position),
        ],
        // The missing stream fails `StreamExists`, an existing one `NoStream`:
        // between them, every kind that can fail does.
        failing: [
            None,
            Some(StreamExists),
            Some(NoStream),
            Some(Exact(StreamVersion(h(3).version.get() + 1))),
            Some(ExactPosition(Position(h(4).position.get() - 1))),
        ],
        found,
    }
}

/// Rules 6 and 7: every kind of expectation passes and fails inside
/// multi-stream transactions: all passing writes every stream; any one
/// failing writes nothing anywhere and is reported alone; several failing
/// are all reported, in stream id order.
pub fn rule_06_every_kind_inside_multi_stream_transactions<F: StoreFactory>(factory: &F) {
    run("rule_06_multi_stream", async {
        let store = factory.create().await;

        // Each kind failing alone among four passing ones.
        for failing in 1..5 {
            let f = five(&store).await;
            let before = store_head(&store).await;
            let mut tx = Transaction::new();
            for i in 0..5 {
                let expected = if i == failing {
                    f.failing[i].unwrap()
                } else {
                    f.passing[i]
                };
                tx = tx.append(f.streams[i], expected, events(Beta, i as u64, 1));
            }
            let found = conflict(&store, tx).await;
            let expected = f.failing[failing].unwrap();
            assert_eq!(
                found,
                [mismatch(f.streams[failing], expected, f.found[failing])],
                "kind {failing} failing alone"
            );
            assert_eq!(
                store_head(&store).await,
                before,
                "a failed transaction wrote"
            );
            for i in 0..5 {
                assert_eq!(
                    stream_head(&store, f.streams[i]).await,
                    f.found[i],
                    "stream {i} changed"
                );
            }
        }

        // Every failable kind failing at once: all reported, by stream id.
        let f = five(&store).await;
        let mut tx = Transaction::new();
        let mut expected_found = Vec::new();
        for i in 0..5 {
            let expected = f.failing[i].unwrap_or(f.passing[i]);
            tx = tx.append(f.streams[i], expected, events(Beta, i as u64, 1));
            if f.failing[i].is_some() {
                expected_found.push(mismatch(f.streams[i], expected, f.found[i]));
            }
        }
        expected_found.sort_by_key(|m| m.stream);
        assert_eq!(conflict(&store, tx).await, expected_found);

        // All passing: every stream written, in one contiguous range.
        let f = five(&store).await;
        let before = store_head(&store).await.unwrap().get();
        let mut tx = Transaction::new();
        for i in 0..5 {
            tx = tx.append(f.streams[i], f.passing[i], events(Beta, i as u64, 1));
        }
        let done = insert(&store, tx).await;
        assert_eq!(done.last_position(), Some(Position(before + 5)));
        assert_eq!(done.streams().len(), 5);
        for i in 0..5 {
            let version = f.found[i].map_or(0, |h| h.version.get() + 1);
            assert_eq!(
                done.stream(f.streams[i]).map(|h| h.version),
                Some(StreamVersion(version))
            );
        }
        assert_well_formed(&store).await;
    });
}

/// Rules 7, 2 and 4: one failing expectation among ten streams writes
/// nothing anywhere, consumes no position and creates no stream; every
/// failing stream is reported with what was expected and what was found.
pub fn rule_07_a_failure_writes_nothing_and_reports_every_failing_stream<F: StoreFactory>(
    factory: &F,
) {
    run("rule_07", async {
        let store = factory.create().await;
        let streams: Vec<StreamId> = (1..=10).map(|n| sid(n * 10)).collect();
        // The even ones exist.
        let mut heads = vec![None; 10];
        for (i, stream) in streams.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let done = insert(&store, Transaction::single(*stream, NoStream, ev(i as u64))).await;
            heads[i] = done.stream(*stream);
        }
        let before = assert_well_formed(&store).await;

        // Only stream 5 (missing) fails.
        let tx = streams
            .iter()
            .enumerate()
            .fold(Transaction::new(), |tx, (i, s)| {
                let expected = if i == 5 { StreamExists } else { Any };
                tx.append(*s, expected, events(Beta, 100 + i as u64, 2))
            });
        assert_eq!(
            conflict(&store, tx).await,
            [mismatch(streams[5], StreamExists, None)]
        );
        assert_eq!(
            read_all(&store, None).await,
            before,
            "a failed transaction wrote"
        );
        for (i, stream) in streams.iter().enumerate() {
            assert_eq!(stream_head(&store, *stream).await, heads[i], "stream {i}");
        }

        // Streams 1, 4 and 8 fail, each its own way: all three reported.
        let wrong = [
            (1, StreamExists),
            (4, Exact(StreamVersion(3))),
            (8, ExactPosition(Position(0))),
        ];
        let tx = streams
            .iter()
            .enumerate()
            .fold(Transaction::new(), |tx, (i, s)| {
                let expected = wrong.iter().find(|w| w.0 == i).map_or(Any, |w| w.1);
                tx.append(*s, expected, events(Beta, 200 + i as u64, 1))
            });
        let expected: Vec<_> = wrong
            .iter()
            .map(|&(i, expected)| mismatch(streams[i], expected, heads[i]))
            .collect();
        assert_eq!(conflict(&store, tx).await, expected);
        assert_eq!(read_all(&store, None).await, before);

        // No position was consumed: the next insert follows without a gap.
        let done = insert(&store, Transaction::single(streams[1], NoStream, ev(7))).await;
        assert_eq!(done.last_position(), Some(Position(before.len() as u64)));
        assert_well_formed(&store).await;
    });
}

/// Rules 8 and 6: a successful insert returns the position of its last
/// event and each written stream's new last version and position; both are
/// the next exact expectation for that stream (per-stream cursors).
pub fn rule_08_insert_results_are_the_next_expectations<F: StoreFactory>(factory: &F) {
    run("rule_08", async {
        let store = factory.create().await;
        let (a, b, c) = (sid(1), sid(2), sid(3));
        let done = insert(
            &store,
            Transaction::new()
                .append(b, NoStream, events(Alpha, 0, 2))
                .append(a, NoStream, events(Alpha, 2, 3))
                .append(c, Any, []),
        )
        .await;
        // a: 0..=2, b: 3..=4; c wrote nothing and is not listed.
        assert_eq!(done.last_position(), Some(Position(4)));
        assert_eq!(done.streams(), [(a, head(2, 2)), (b, head(1, 4))]);
        assert_eq!(done.stream(c), None);
        for (stream, h) in done.streams() {
            assert_eq!(stream_head(&store, *stream).await, Some(*h));
        }

        // The heads are the next expectations, by version and by position,
        // with writes to other streams in between.
        let mut a_head = done.stream(a).unwrap();
        let mut b_head = done.stream(b).unwrap();
        for round in 0..5u64 {
            let next = insert(
                &store,
                Transaction::single(a, a_head.expect_exact(), ev(10 + round)),
            )
            .await;
            let stale = a_head;
            a_head = next.stream(a).unwrap();
            assert_eq!(a_head.version.get(), stale.version.get() + 1);
            assert_eq!(Some(a_head.position), next.last_position());
            conflict(&store, Transaction::single(a, stale.expect_exact(), ev(99))).await;
            conflict(
                &store,
                Transaction::single(a, ExactPosition(stale.position), ev(99)),
            )
            .await;

            let next = insert(
                &store,
                Transaction::single(b, ExactPosition(b_head.position), ev(20 + round)),
            )
            .await;
            b_head = next.stream(b).unwrap();
            assert_eq!(stream_head(&store, b).await, Some(b_head));
        }
        assert_eq!(values(&store, a).await, [2, 3, 4, 10, 11, 12, 13, 14]);
        assert_eq!(values(&store, b).await, [0, 1, 20, 21, 22, 23, 24]);
        assert_well_formed(&store).await;
    });
}

/// Rule 9: inside a transaction, streams are laid out in ascending stream id
/// order, each stream's events contiguous and in the given order; the whole
/// transaction occupies one contiguous range of positions.
pub fn rule_09_transactions_are_laid_out_by_stream_id_contiguously<F: StoreFactory>(factory: &F) {
    run("rule_09", async {
        let store = factory.create().await;
        insert(&store, Transaction::single(sid(99), Any, ev(0))).await;
        let done = insert(
            &store,
            Transaction::new()
                .append(sid(3), Any, events(Gamma, 30, 2))
                .append(sid(1), Any, events(Alpha, 10, 3))
                .append(sid(2), Any, events(Beta, 20, 1)),
        )
        .await;
        assert_eq!(done.last_position(), Some(Position(6)));
        let layout: Vec<(StreamId, u64)> = read_all(&store, F::Store::cursor_after(Position(0)))
            .await
            .iter()
            .map(|row| (row.stream, row.event.value()))
            .collect();
        assert_eq!(
            layout,
            [
                (sid(1), 10),
                (sid(1), 11),
                (sid(1), 12),
                (sid(2), 20),
                (sid(3), 30),
                (sid(3), 31),
            ]
        );

        // Random ids: ascending id order all the same.
        let mut ids: Vec<StreamId> = (0..6).map(|_| StreamId::new()).collect();
        let tx = ids
            .iter()
            .enumerate()
            .fold(Transaction::new(), |tx, (i, s)| {
                tx.append(*s, NoStream, events(Alpha, i as u64, 2))
            });
        let done = insert(&store, tx).await;
        let first = done.last_position().unwrap().get() - 11;
        ids.sort();
        let streams: Vec<StreamId> =
            read_all(&store, Some(Cursor::from_position(Position(first - 1))))
                .await
                .iter()
                .map(|row| row.stream)
                .collect();
        let expected: Vec<StreamId> = ids.iter().flat_map(|s| [*s, *s]).collect();
        assert_eq!(streams, expected);
        assert_well_formed(&store).await;
    });
}

/// Rule 10: appending to a stream twice, or composing two transactions,
/// concatenates its events (left first) and the left expectation wins; so
/// does the left correlation id, with the right one filling in for none.
pub fn rule_10_composition_concatenates_and_the_left_expectation_wins<F: StoreFactory>(
    factory: &F,
) {
    run("rule_10", async {
        let store = factory.create().await;
        let (a, b) = (StreamId::new(), StreamId::new());

        // Left NoStream wins over right StreamExists on a missing stream.
        let left = Transaction::single(a, NoStream, ev(1));
        let right = Transaction::new()
            .append(a, StreamExists, [ev(2), ev(3)])
            .append(b, Any, [ev(4)]);
        insert(&store, left.compose(right)).await;
        assert_eq!(values(&store, a).await, [1, 2, 3]);

        // Left StreamExists on the missing b loses, though right NoStream would pass.
        let c = StreamId::new();
        let tx = Transaction::single(c, StreamExists, ev(5)).compose(Transaction::single(
            c,
            NoStream,
            ev(6),
        ));
        assert_eq!(
            conflict(&store, tx).await,
            [mismatch(c, StreamExists, None)]
        );

        // Appending twice in one transaction: the same rule.
        let a_head = stream_head(&store, a).await.unwrap();
        let tx = Transaction::new()
            .append(a, a_head.expect_exact(), [ev(7)])
            .append(b, Any, [ev(8)])
            .append(a, NoStream, [ev(9)]);
        insert(&store, tx).await;
        assert_eq!(values(&store, a).await, [1, 2, 3, 7, 9]);
        assert_eq!(values(&store, b).await, [4, 8]);

        // Correlation ids: left wins, right fills in.
        let (one, two) = (CorrelationId::new(), CorrelationId::new());
        let both = Transaction::single(b, Any, ev(10))
            .with_correlation_id(one)
            .compose(Transaction::single(b, Any, ev(11)).with_correlation_id(two));
        let right_only = Transaction::single(b, Any, ev(12))
            .compose(Transaction::single(b, Any, ev(13)).with_correlation_id(two));
        insert(&store, both).await;
        insert(&store, right_only).await;
        let ids: Vec<_> = read_stream(&store, b, StreamVersion(2))
            .await
            .iter()
            .map(|row| row.correlation_id)
            .collect();
        assert_eq!(ids, [Some(one), Some(one), Some(two), Some(two)]);
        assert_well_formed(&store).await;
    });
}

/// Rule 11: every event of a transaction carries its one creation time,
/// fixed when written.
pub fn rule_11_one_timestamp_per_transaction<F: StoreFactory>(factory: &F) {
    run("rule_11", async {
        let store = factory.create().await;
        for round in 0..5 {
            insert(
                &store,
                Transaction::new()
                    .append(StreamId::new(), Any, events(Alpha, round * 10, 3))
                    .append(StreamId::new(), Any, events(Beta, round * 10 + 3, 2)),
            )
            .await;
        }
        let rows = read_all(&store, None).await;
        for tx in rows.chunks(5) {
            assert!(
                tx.iter().all(|row| row.created_at == tx[0].created_at),
                "one transaction, several timestamps"
            );
        }
        let again = read_all(&store, None).await;
        let times = |rows: &[Row<_>]| rows.iter().map(|r| r.created_at).collect::<Vec<_>>();
        assert_eq!(
            times(&rows),
            times(&again),
            "timestamps change between reads"
        );
    });
}

/// Rules 14, 4 and 6: an empty transaction is a no-op or rejected, and
/// writes nothing either way; zero-event appends write nothing; absurd
/// expectations are version conflicts; reads out of range are empty.
pub fn rule_14_empty_writes_and_bad_input<F: StoreFactory>(factory: &F) {
    run("rule_14", async {
        let store = factory.create().await;
        let a = StreamId::new();
        insert(
            &store,
            Transaction::new().append(a, Any, events(Alpha, 0, 2)),
        )
        .await;
        let before = read_all(&store, None).await;

        match store.insert(Transaction::new()).await {
            Ok(done) => assert_eq!((done.last_position(), done.streams()), (None, &[][..])),
            Err(StoreError::Backend(_)) => {} // rejected: allowed, if nothing is written
            Err(error) => panic!("an empty transaction is no conflict: {error}"),
        }
        let done = insert(
            &store,
            Transaction::new()
                .append(a, Any, [])
                .append(StreamId::new(), Any, []),
        )
        .await;
        assert_eq!((done.last_position(), done.streams()), (None, &[][..]));

        for absurd in [
            Exact(StreamVersion(u64::MAX)),
            ExactPosition(Position(u64::MAX)),
            Exact(StreamVersion(1 << 62)),
        ] {
            let found = conflict(&store, Transaction::single(a, absurd, ev(9))).await;
            assert_eq!(found, [mismatch(a, absurd, Some(head(1, 1)))]);
            let missing = StreamId::new();
            let found = conflict(&store, Transaction::single(missing, absurd, ev(9))).await;
            assert_eq!(found, [mismatch(missing, absurd, None)]);
        }
        assert_eq!(
            read_all(&store, None).await,
            before,
            "bad input wrote something"
        );

        assert!(read_stream(&store, a, StreamVersion(u64::MAX))
            .await
            .is_empty());
        assert!(read_stream(&store, StreamId::new(), StreamVersion(0))
            .await
            .is_empty());
        assert!(
            read_all(&store, Some(Cursor::from_position(Position(u64::MAX))))
                .await
                .is_empty()
        );
        assert_eq!(stream_head(&store, StreamId::new()).await, None);
        assert_well_formed(&store).await;
    });
}

/// Cursor shorthands for the cases.
trait CursorOf: EventStore {
    fn cursor_at(position: Position) -> Self::Cursor {
        Self::Cursor::from_position(position)
    }

    fn cursor_after(position: Position) -> Option<Self::Cursor> {
        Some(Self::cursor_at(position))
    }
}

impl<S: EventStore> CursorOf for S {}
