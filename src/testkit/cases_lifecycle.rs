//! Stream lifecycle: contract rule 30 (soft delete, hard delete, truncate
//! before).

use super::support::*;
use super::{StoreFactory, TestEvent};
use crate::{
    EventStore, ExpectedVersion, Flow, Position, Selector, StoreError, StreamId, StreamName,
    StreamVersion, SubscriberHandle, Transaction,
};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use ExpectedVersion::{Any, Exact, ExactPosition, NoStream, StreamExists};

/// `(version, position, value)` of each row, in the order read.
fn triples<C: crate::Cursor>(rows: &[Row<C>]) -> Vec<(u64, u64, u64)> {
    rows.iter()
        .map(|row| (row.version.0, row.position().0, row.event.value()))
        .collect()
}

fn positions<C: crate::Cursor>(rows: &[Row<C>]) -> Vec<u64> {
    rows.iter().map(|row| row.position().0).collect()
}

#[track_caller]
fn ok<B: std::fmt::Display>(result: Result<(), StoreError<B>>) {
    if let Err(error) = result {
        panic!(
            "{}: expected success, got: {error}",
            std::panic::Location::caller()
        );
    }
}

/// The call must fail with a version conflict on `stream` alone; its head
/// as reported.
#[track_caller]
fn refused<B: std::fmt::Display>(
    result: Result<(), StoreError<B>>,
    stream: StreamId,
    expected: ExpectedVersion,
) -> Option<crate::StreamHead> {
    match result {
        Err(StoreError::VersionConflict(mismatches)) => {
            assert_eq!(mismatches.len(), 1, "{mismatches:?}");
            assert_eq!(mismatches[0].stream, stream);
            assert_eq!(mismatches[0].expected, expected);
            mismatches[0].found
        }
        Ok(()) => panic!("expected a version conflict, the call succeeded"),
        Err(error) => panic!("expected a version conflict, got: {error}"),
    }
}

/// The result must be [`StoreError::StreamDeleted`] naming `stream`.
#[track_caller]
fn hard_deleted<T: std::fmt::Debug, B: std::fmt::Display>(
    result: Result<T, StoreError<B>>,
    stream: StreamId,
) {
    let caller = std::panic::Location::caller();
    match result {
        Err(StoreError::StreamDeleted { stream: named, .. }) => {
            assert_eq!(named, stream, "{caller}: the wrong stream is named")
        }
        Ok(done) => panic!("{caller}: expected StreamDeleted, the call succeeded: {done:?}"),
        Err(error) => panic!("{caller}: expected StreamDeleted, got: {error}"),
    }
}

/// Rule 30: a soft delete hides the stream from every reader (head, name,
/// stream reads, reads of the whole log); written again, it continues its
/// versions and keeps its first name; positions are never reused.
pub fn rule_30_a_soft_delete_hides_the_stream_and_a_write_continues_its_versions<
    F: StoreFactory,
>(
    factory: &F,
) {
    run("rule_30_soft_delete", async {
        let store = factory.create().await;
        let cart = StreamName::new("cart-30").unwrap();
        let a = cart.id();
        let b = StreamId::new();
        insert(
            &store,
            Transaction::new().append_named(&cart, NoStream, [ev(0), ev(1)]),
        )
        .await;
        insert(&store, Transaction::single(b, NoStream, ev(2))).await;

        ok(store.delete_stream(a, Exact(StreamVersion(1))).await);
        assert_eq!(stream_head(&store, a).await, None, "deleted: no head");
        assert_eq!(
            store.stream_name(a).await.unwrap(),
            None,
            "deleted: no name"
        );
        assert!(read_stream(&store, a, StreamVersion(0)).await.is_empty());
        assert_eq!(positions(&read_all(&store, None).await), [2]);
        assert_eq!(
            store_head(&store).await,
            Some(Position(2)),
            "the log keeps its head"
        );

        // Written again (by id): the versions and positions continue, the
        // name is the first one.
        let done = insert(&store, Transaction::single(a, NoStream, ev(3))).await;
        assert_eq!(done.stream(a), Some(head(2, 3)));
        assert_eq!(stream_head(&store, a).await, Some(head(2, 3)));
        assert_eq!(store.stream_name(a).await.unwrap(), Some(cart.clone()));
        assert_eq!(
            triples(&read_stream(&store, a, StreamVersion(0)).await),
            [(2, 3, 3)]
        );
        assert_eq!(positions(&read_all(&store, None).await), [2, 3]);
        assert_eq!(
            positions(&read_all(&store, Some(cursor_at::<F>(2))).await),
            [3]
        );
        // Deleting the other stream leaves the first alone.
        ok(store.delete_stream(b, Any).await);
        assert_eq!(positions(&read_all(&store, None).await), [3]);
        let next = insert(&store, Transaction::single(b, Any, ev(4))).await;
        assert_eq!(next.stream(b), Some(head(1, 4)), "no position is reused");
    });
}

/// The cursor of `position` for `F`'s store.
fn cursor_at<F: StoreFactory>(position: u64) -> <F::Store as EventStore>::Cursor {
    <<F::Store as EventStore>::Cursor as crate::Cursor>::from_position(Position(position))
}

/// Rule 30: a delete is checked like an insert's expectation (a failure
/// names the stream and changes nothing); after it, the stream is missing
/// for expectations: `NoStream` passes, `StreamExists` and exact ones
/// fail. Deleting a missing stream with `Any` or `NoStream` is a no-op.
pub fn rule_30_deletes_check_expectations_and_a_deleted_stream_is_missing<F: StoreFactory>(
    factory: &F,
) {
    run("rule_30_expectations", async {
        let store = factory.create().await;
        let a = StreamId::new();
        insert(
            &store,
            Transaction::new().append(a, NoStream, [ev(0), ev(1)]),
        )
        .await;

        // Failed checks change nothing.
        let found = refused(
            store.delete_stream(a, Exact(StreamVersion(0))).await,
            a,
            Exact(StreamVersion(0)),
        );
        assert_eq!(found, Some(head(1, 1)));
        assert_eq!(
            refused(store.delete_stream(a, NoStream).await, a, NoStream),
            Some(head(1, 1))
        );
        assert_eq!(
            refused(
                store.tombstone_stream(a, ExactPosition(Position(0))).await,
                a,
                ExactPosition(Position(0))
            ),
            Some(head(1, 1))
        );
        assert_eq!(stream_head(&store, a).await, Some(head(1, 1)));
        assert_eq!(read_stream(&store, a, StreamVersion(0)).await.len(), 2);
        insert(
            &store,
            Transaction::single(a, Exact(StreamVersion(1)), ev(2)),
        )
        .await;

        ok(store.delete_stream(a, ExactPosition(Position(2))).await);
        // Missing now, for every expectation.
        let exact = Exact(StreamVersion(2));
        assert_eq!(
            conflict(&store, Transaction::single(a, exact, ev(9))).await,
            [mismatch(a, exact, None)]
        );
        assert_eq!(
            conflict(&store, Transaction::single(a, StreamExists, ev(9))).await,
            [mismatch(a, StreamExists, None)]
        );
        let position = ExactPosition(Position(2));
        assert_eq!(
            conflict(&store, Transaction::single(a, position, ev(9))).await,
            [mismatch(a, position, None)]
        );
        assert_eq!(
            refused(store.delete_stream(a, StreamExists).await, a, StreamExists),
            None
        );
        // A pure check and a second delete pass, changing nothing.
        insert(&store, Transaction::new().append(a, NoStream, [])).await;
        ok(store.delete_stream(a, Any).await);
        ok(store.delete_stream(a, NoStream).await);
        assert_eq!(store_head(&store).await, Some(Position(2)));

        // A missing stream: `Any` and `NoStream` pass, the others fail.
        let missing = StreamId::new();
        ok(store.delete_stream(missing, Any).await);
        ok(store.delete_stream(missing, NoStream).await);
        assert_eq!(
            refused(store.delete_stream(missing, exact).await, missing, exact),
            None
        );
        assert_eq!(stream_head(&store, missing).await, None);

        // Written again, the stream passes `Exact` on its new head.
        let done = insert(&store, Transaction::single(a, NoStream, ev(3))).await;
        assert_eq!(done.stream(a), Some(head(3, 3)));
        insert(
            &store,
            Transaction::single(a, Exact(StreamVersion(3)), ev(4)),
        )
        .await;
        assert_eq!(
            triples(&read_stream(&store, a, StreamVersion(0)).await),
            [(3, 3, 3), (4, 4, 4)]
        );
    });
}

/// Rule 30: a hard delete refuses every later write to the stream, with
/// any expectation, alone or in a transaction with other streams (which
/// then writes nothing to them), and every later delete or truncation; a
/// missing stream can be hard-deleted too.
pub fn rule_30_a_hard_delete_refuses_every_later_write<F: StoreFactory>(factory: &F) {
    run("rule_30_hard_delete", async {
        let store = factory.create().await;
        let (gone, other) = (sid(1), sid(2));
        insert(
            &store,
            Transaction::new().append(gone, NoStream, [ev(0), ev(1)]),
        )
        .await;
        ok(store.tombstone_stream(gone, Exact(StreamVersion(1))).await);
        assert_eq!(stream_head(&store, gone).await, None);
        assert!(read_stream(&store, gone, StreamVersion(0)).await.is_empty());
        assert!(read_all(&store, None).await.is_empty());

        for expected in [Any, NoStream, StreamExists, Exact(StreamVersion(1))] {
            hard_deleted(
                store
                    .insert(Transaction::single(gone, expected, ev(2)))
                    .await,
                gone,
            );
        }
        // With another stream, before or after it in id order; and a pure
        // check of it beside a write.
        hard_deleted(
            store
                .insert(Transaction::new().append(other, NoStream, [ev(3)]).append(
                    gone,
                    Any,
                    [ev(4)],
                ))
                .await,
            gone,
        );
        hard_deleted(
            store
                .insert(
                    Transaction::new()
                        .append(gone, NoStream, [])
                        .append(other, Any, [ev(5)]),
                )
                .await,
            gone,
        );
        // Refused before any conflict of the other stream is reported.
        hard_deleted(
            store
                .insert(
                    Transaction::new()
                        .append(other, StreamExists, [ev(6)])
                        .append(gone, Any, [ev(7)]),
                )
                .await,
            gone,
        );
        assert_eq!(
            stream_head(&store, other).await,
            None,
            "nothing written to the other stream"
        );
        assert_eq!(
            store_head(&store).await,
            Some(Position(1)),
            "no position used"
        );

        hard_deleted(store.delete_stream(gone, Any).await, gone);
        hard_deleted(store.tombstone_stream(gone, Any).await, gone);
        hard_deleted(store.truncate_stream(gone, StreamVersion(5)).await, gone);

        // A stream never written, hard-deleted, can never be written.
        let never = sid(3);
        ok(store.tombstone_stream(never, NoStream).await);
        hard_deleted(
            store
                .insert(Transaction::single(never, NoStream, ev(8)))
                .await,
            never,
        );
        assert_eq!(stream_head(&store, never).await, None);

        // The other stream is unaffected; positions go on from the head.
        let done = insert(&store, Transaction::single(other, NoStream, ev(9))).await;
        assert_eq!(done.stream(other), Some(head(0, 2)));
        assert_eq!(positions(&read_all(&store, None).await), [2]);
    });
}

/// Rule 30: truncating before a version hides the versions below it from
/// stream reads and reads of the whole log; the head and versions do not
/// change (the stream still exists for expectations), and the floor never
/// moves back. A truncation ahead of the head hides versions as they come.
pub fn rule_30_truncate_hides_versions_below_and_never_moves_back<F: StoreFactory>(factory: &F) {
    run("rule_30_truncate", async {
        let store = factory.create().await;
        let (a, b) = (sid(1), sid(2));
        insert(
            &store,
            Transaction::new().append(a, NoStream, (0..5).map(ev).collect::<Vec<_>>()),
        )
        .await;
        insert(&store, Transaction::single(b, NoStream, ev(5))).await;

        ok(store.truncate_stream(a, StreamVersion(2)).await);
        assert_eq!(
            triples(&read_stream(&store, a, StreamVersion(0)).await),
            [(2, 2, 2), (3, 3, 3), (4, 4, 4)]
        );
        assert_eq!(
            triples(&read_stream(&store, a, StreamVersion(3)).await),
            [(3, 3, 3), (4, 4, 4)]
        );
        assert_eq!(positions(&read_all(&store, None).await), [2, 3, 4, 5]);
        assert_eq!(
            stream_head(&store, a).await,
            Some(head(4, 4)),
            "the head stays"
        );

        // Never backwards.
        ok(store.truncate_stream(a, StreamVersion(1)).await);
        ok(store.truncate_stream(a, StreamVersion(0)).await);
        assert_eq!(values(&store, a).await, [2, 3, 4]);

        // The stream still exists for expectations; versions go on.
        let done = insert(
            &store,
            Transaction::single(a, Exact(StreamVersion(4)), ev(6)),
        )
        .await;
        assert_eq!(done.stream(a), Some(head(5, 6)));
        assert_eq!(values(&store, a).await, [2, 3, 4, 6]);

        // Ahead of the head: everything hidden, the stream still exists,
        // later versions below the floor hidden too, the first at it shown.
        ok(store.truncate_stream(a, StreamVersion(7)).await);
        assert!(read_stream(&store, a, StreamVersion(0)).await.is_empty());
        assert_eq!(stream_head(&store, a).await, Some(head(5, 6)));
        insert(&store, Transaction::single(a, StreamExists, ev(7))).await;
        assert!(
            read_stream(&store, a, StreamVersion(0)).await.is_empty(),
            "version 6 < 7"
        );
        insert(
            &store,
            Transaction::single(a, Exact(StreamVersion(6)), ev(8)),
        )
        .await;
        assert_eq!(
            triples(&read_stream(&store, a, StreamVersion(0)).await),
            [(7, 8, 8)]
        );
        assert_eq!(positions(&read_all(&store, None).await), [5, 8]);

        // A stream never written: nothing to hide, nothing kept.
        let fresh = sid(3);
        ok(store.truncate_stream(fresh, StreamVersion(3)).await);
        insert(&store, Transaction::single(fresh, NoStream, ev(9))).await;
        assert_eq!(values(&store, fresh).await, [9]);
    });
}

/// Rule 30 with rules 16-17: a subscription skips the events removed
/// before it reaches them (it was held inside its handler meanwhile),
/// whether it follows every stream or the one stream; events it delivered
/// before the removal stay delivered, and what follows comes in order.
pub fn rule_30_subscriptions_skip_events_removed_before_they_reach_them<F: StoreFactory>(
    factory: &F,
) {
    run("rule_30_subscriptions", async {
        let store = factory.create().await;
        let (gate, a, b) = (sid(1), sid(2), sid(3));
        // Position 0: the event the subscribers are held on.
        insert(&store, Transaction::single(gate, NoStream, ev(0))).await;
        // A subscriber that delivered everything before the removals.
        let (early, early_rows) = record(&store, Selector::all()).await;
        reach(&early, Position(0)).await;

        let held = |selector: Selector<TestEvent>| {
            let store = store.clone();
            async move {
                let (entered, entered_rx) = mpsc::channel::<()>();
                let (release, release_rx) = mpsc::channel::<()>();
                let release_rx = Mutex::new(release_rx);
                let rows: Recorded<<F::Store as EventStore>::Cursor> = Arc::default();
                let sink = Arc::clone(&rows);
                let subscriber = store
                    .spawn_subscriber(selector, move |event| {
                        if sink.lock().unwrap().is_empty() {
                            let _ = entered.send(());
                            let _ = release_rx.lock().unwrap().recv_timeout(PATIENCE);
                        }
                        sink.lock().unwrap().push(Row::of(event));
                        Ok::<_, std::convert::Infallible>(Flow::Continue)
                    })
                    .await
                    .unwrap_or_else(|error| panic!("spawn_subscriber failed: {error}"));
                entered_rx
                    .recv_timeout(PATIENCE)
                    .expect("the handler was entered");
                (subscriber, rows, release)
            }
        };
        let (all, all_rows, release_all) = held(Selector::all()).await;
        // One stream: held on its version 0 (position 1).
        insert(&store, Transaction::single(a, NoStream, ev(1))).await;
        let (one, one_rows, release_one) = held(Selector::stream(a)).await;

        // Positions 2..=4 for `a` (versions 1..=3), 5 for `b`.
        insert(
            &store,
            Transaction::new().append(a, Any, (2..5).map(ev).collect::<Vec<_>>()),
        )
        .await;
        insert(&store, Transaction::single(b, NoStream, ev(5))).await;
        reach(&early, Position(5)).await;
        // `a`'s versions below 3 (positions 1..=3) go; then `b` entirely.
        ok(store.truncate_stream(a, StreamVersion(3)).await);
        ok(store.delete_stream(b, Any).await);
        let last = insert(&store, Transaction::single(a, Any, ev(6))).await;
        let last = last.last_position().unwrap();
        assert_eq!(last, Position(6));

        release_all.send(()).unwrap();
        release_one.send(()).unwrap();
        reach(&all, last).await;
        reach(&one, last).await;
        reach(&early, last).await;
        let values_of = |rows: &Recorded<_>| -> Vec<(u64, u64)> {
            snapshot(rows)
                .iter()
                .map(|row: &Row<_>| (row.position().0, row.event.value()))
                .collect()
        };
        // Held at position 0: skips `a`'s versions 0..=2 (positions 1..=3)
        // and `b`'s event, removed before it reached them.
        assert_eq!(values_of(&all_rows), [(0, 0), (4, 4), (6, 6)]);
        // Held at `a`'s version 0, already being delivered: it stays; then
        // versions 3 and up.
        assert_eq!(values_of(&one_rows), [(1, 1), (4, 4), (6, 6)]);
        // Already past: nothing retracted.
        assert_eq!(
            values_of(&early_rows),
            [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
        );
        for subscriber in [early, all, one] {
            subscriber.cancel().await;
        }
        // A subscription started now sees only what is left.
        let (late, late_rows) = record(&store, Selector::all()).await;
        reach(&late, last).await;
        assert_eq!(values_of(&late_rows), [(0, 0), (4, 4), (6, 6)]);
        late.cancel().await;
    });
}

/// Rule 30: a maximum count keeps only the stream's last events visible,
/// at once and after every append (alone or in a transaction with other
/// streams); hidden events stay hidden when the count grows or goes; the
/// head and versions do not change.
pub fn rule_30_a_max_count_keeps_the_last_events_visible<F: StoreFactory>(factory: &F) {
    run("rule_30_max_count", async {
        let store = factory.create().await;
        let (a, b) = (sid(1), sid(2));
        // Set before the stream's first events: kept for them.
        ok(store.set_max_count(a, Some(2)).await);
        insert(
            &store,
            Transaction::new().append(a, NoStream, [ev(0), ev(1), ev(2)]),
        )
        .await;
        assert_eq!(values(&store, a).await, [1, 2]);
        insert(
            &store,
            Transaction::single(a, Exact(StreamVersion(2)), ev(3)),
        )
        .await;
        assert_eq!(
            triples(&read_stream(&store, a, StreamVersion(0)).await),
            [(2, 2, 2), (3, 3, 3)]
        );
        assert_eq!(stream_head(&store, a).await, Some(head(3, 3)));

        // On a stream with events: applied at once.
        insert(
            &store,
            Transaction::new().append(b, NoStream, [ev(4), ev(5), ev(6)]),
        )
        .await;
        ok(store.set_max_count(b, Some(1)).await);
        assert_eq!(values(&store, b).await, [6]);
        assert_eq!(positions(&read_all(&store, None).await), [2, 3, 6]);

        // Both in one transaction.
        insert(
            &store,
            Transaction::new()
                .append(a, Any, [ev(7)])
                .append(b, Any, [ev(8), ev(9)]),
        )
        .await;
        assert_eq!(values(&store, a).await, [3, 7]);
        assert_eq!(values(&store, b).await, [9]);

        // A smaller count hides more at once; a larger one, or none, shows
        // nothing again but hides no more after later appends.
        ok(store.set_max_count(a, Some(1)).await);
        assert_eq!(values(&store, a).await, [7]);
        ok(store.set_max_count(a, Some(5)).await);
        assert_eq!(values(&store, a).await, [7]);
        insert(&store, Transaction::single(a, Any, ev(10))).await;
        assert_eq!(values(&store, a).await, [7, 10]);
        ok(store.set_max_count(a, None).await);
        insert(&store, Transaction::single(a, Any, ev(11))).await;
        assert_eq!(values(&store, a).await, [7, 10, 11]);
        assert_eq!(stream_head(&store, a).await.map(|h| h.version.0), Some(6));

        // A count of 0 hides every event; the stream still exists.
        ok(store.set_max_count(b, Some(0)).await);
        assert!(read_stream(&store, b, StreamVersion(0)).await.is_empty());
        insert(&store, Transaction::single(b, StreamExists, ev(12))).await;
        assert!(read_stream(&store, b, StreamVersion(0)).await.is_empty());

        ok(store.tombstone_stream(b, Any).await);
        hard_deleted(store.set_max_count(b, Some(3)).await, b);
    });
}

/// Rule 30: a maximum age hides, from every reader that reaches them,
/// the events of the stream created longer ago than the age, by the
/// store's clock; newer events, other streams, the head, versions and
/// expectations are untouched (a stream whose every event is too old still
/// exists); an age set before the stream's first event is kept for it;
/// age is evaluated when read, so removing the limit shows them again; a
/// subscriber already past them keeps them; a hard-deleted stream refuses
/// it.
///
/// Real time passes: the old events are written, then 2.2 s of sleep, then
/// a new one, and the age is 2 s. The old ones are then always too old (the
/// sleep starts after their insert returned); the new one stays young
/// enough as long as this task is not held up 2 s between its write and
/// the checks (a slack wide enough for a loaded CI machine, not a
/// measurement).
pub fn rule_30_a_max_age_hides_events_older_than_it_when_reached<F: StoreFactory>(factory: &F) {
    run("rule_30_max_age", async {
        let store = factory.create().await;
        let (a, b, c) = (sid(1), sid(2), sid(3));
        // Set before the stream's first event: kept for it.
        ok(store.set_max_age(c, Some(Duration::from_secs(2))).await);
        insert(
            &store,
            Transaction::new()
                .append(a, NoStream, [ev(0), ev(1)])
                .append(b, NoStream, [ev(2)])
                .append(c, NoStream, [ev(5)]),
        )
        .await;
        let (early, early_rows) = record(&store, Selector::all()).await;
        reach(&early, Position(3)).await;
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        insert(
            &store,
            Transaction::single(a, Exact(StreamVersion(1)), ev(3)),
        )
        .await;
        ok(store.set_max_age(a, Some(Duration::from_secs(2))).await);

        // Every kind of read skips the old events of `a` and `c`, and only
        // those.
        assert_eq!(
            triples(&read_stream(&store, a, StreamVersion(0)).await),
            [(2, 4, 3)]
        );
        assert_eq!(positions(&read_all(&store, None).await), [2, 4]);
        assert_eq!(values(&store, b).await, [2]);
        assert!(read_stream(&store, c, StreamVersion(0)).await.is_empty());
        let (all, all_rows) = record(&store, Selector::all()).await;
        let (one, one_rows) = record(&store, Selector::stream(a)).await;
        reach(&all, Position(4)).await;
        reach(&one, Position(4)).await;
        assert_eq!(positions(&snapshot(&all_rows)), [2, 4]);
        assert_eq!(positions(&snapshot(&one_rows)), [4]);

        // The head, versions and expectations are those of every event;
        // a stream whose every event is too old still exists.
        assert_eq!(stream_head(&store, a).await, Some(head(2, 4)));
        assert_eq!(stream_head(&store, c).await, Some(head(0, 3)));
        let done = insert(
            &store,
            Transaction::new()
                .append(a, Exact(StreamVersion(2)), [ev(4)])
                .append(c, StreamExists, []),
        )
        .await;
        assert_eq!(done.stream(a), Some(head(3, 5)));

        // A subscriber that delivered them keeps them, and goes on.
        reach(&early, Position(5)).await;
        assert_eq!(positions(&snapshot(&early_rows)), [0, 1, 2, 3, 4, 5]);

        // Evaluated when read: no limit, or the longest, shows them again.
        ok(store.set_max_age(a, None).await);
        assert_eq!(values(&store, a).await, [0, 1, 3, 4]);
        assert_eq!(positions(&read_all(&store, None).await), [0, 1, 2, 4, 5]);
        ok(store.set_max_age(c, Some(Duration::MAX)).await);
        assert_eq!(positions(&read_all(&store, None).await), [0, 1, 2, 3, 4, 5]);

        ok(store.tombstone_stream(b, Any).await);
        hard_deleted(store.set_max_age(b, Some(Duration::from_secs(1))).await, b);
        for subscriber in [early, all, one] {
            subscriber.cancel().await;
        }
    });
}

/// Rule 30: deleting every stream at once is a logical reset: every event
/// written before is removed for every reader, while positions go on,
/// versions continue, hard deletes and maximum counts stay.
pub fn rule_30_deleting_all_streams_is_a_logical_reset<F: StoreFactory>(factory: &F) {
    run("rule_30_reset", async {
        let store = factory.create().await;
        let (a, b, gone, limited) = (sid(1), sid(2), sid(3), sid(4));
        insert(
            &store,
            Transaction::new()
                .append(a, NoStream, [ev(0), ev(1)])
                .append(b, NoStream, [ev(2)])
                .append(gone, NoStream, [ev(3)]),
        )
        .await;
        ok(store.tombstone_stream(gone, Any).await);
        ok(store.set_max_count(limited, Some(1)).await);
        let (early, early_rows) = record(&store, Selector::all()).await;
        reach(&early, Position(2)).await;

        ok(store.delete_all_streams().await);
        assert!(read_all(&store, None).await.is_empty());
        for stream in [a, b, gone, limited] {
            assert_eq!(stream_head(&store, stream).await, None);
            assert!(read_stream(&store, stream, StreamVersion(0))
                .await
                .is_empty());
        }
        assert_eq!(
            store_head(&store).await,
            Some(Position(3)),
            "positions go on"
        );
        // Twice is the same as once.
        ok(store.delete_all_streams().await);

        let done = insert(
            &store,
            Transaction::new().append(a, NoStream, [ev(4)]).append(
                limited,
                NoStream,
                [ev(5), ev(6)],
            ),
        )
        .await;
        assert_eq!(done.stream(a), Some(head(2, 4)), "versions continue");
        assert_eq!(done.stream(limited), Some(head(1, 6)));
        assert_eq!(
            values(&store, limited).await,
            [6],
            "the maximum count stays"
        );
        hard_deleted(
            store.insert(Transaction::single(gone, Any, ev(7))).await,
            gone,
        );
        assert_eq!(positions(&read_all(&store, None).await), [4, 6]);

        // A subscriber that was already past keeps what it got; one
        // started now sees only what came after.
        reach(&early, Position(6)).await;
        let early_positions: Vec<u64> = snapshot(&early_rows)
            .iter()
            .map(|r| r.position().0)
            .collect();
        // Position 5 is beyond `limited`'s maximum count by the time the
        // insert returns (rule 30), but a live subscriber may reach it
        // between the commit and the trim (the memory store trims after
        // its commit; PostgreSQL inside it): either is right.
        assert!(
            early_positions == [0, 1, 2, 4, 6] || early_positions == [0, 1, 2, 4, 5, 6],
            "{early_positions:?}"
        );
        let (late, late_rows) = record(&store, Selector::all()).await;
        reach(&late, Position(6)).await;
        let late_positions: Vec<u64> = snapshot(&late_rows)
            .iter()
            .map(|r| r.position().0)
            .collect();
        assert_eq!(late_positions, [4, 6]);
        early.cancel().await;
        late.cancel().await;
    });
}
