//! Idempotent appends by client-supplied event ids: contract rule 29.

use super::support::*;
use super::{StoreFactory, TestEvent};
use crate::ExpectedVersion::{Any, Exact, ExactPosition, NoStream, StreamExists};
use crate::{
    Committed, EventData, EventId, EventIdMismatch, EventStore, Metadata, Position, Selector,
    StoreError, StreamId, StreamVersion, SubscriberHandle, Transaction, Uuid,
};

/// The client id number `n`.
fn eid(n: u128) -> EventId {
    EventId::from_uuid(Uuid::from_u128(0x1d00 << 64 | n))
}

/// The event of value `value` with client id `eid(id)`.
fn given(value: u64, id: u128) -> EventData<TestEvent> {
    EventData::new(ev(value)).with_event_id(eid(id))
}

/// Inserts `tx`, which must fail with an event id conflict; the stream,
/// the id and what differed.
#[track_caller]
fn id_conflict<'a, S: EventStore<Event = TestEvent>>(
    store: &'a S,
    tx: Transaction<TestEvent>,
) -> impl std::future::Future<Output = (StreamId, EventId, EventIdMismatch)> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        match store.insert(tx).await {
            Err(StoreError::EventIdConflict {
                stream,
                event_id,
                mismatch,
                ..
            }) => (stream, event_id, mismatch),
            Ok(committed) => {
                panic!(
                    "{caller}: expected an event id conflict, the insert succeeded: {committed:?}"
                )
            }
            Err(error) => panic!("{caller}: expected an event id conflict, got: {error}"),
        }
    }
}

/// Inserts `tx` (a re-send), which must return `original` and write
/// nothing: the store's head and every event stay as they were.
#[track_caller]
fn retry<'a, S: EventStore<Event = TestEvent>>(
    store: &'a S,
    tx: Transaction<TestEvent>,
    original: &'a Committed,
) -> impl std::future::Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let before = read_all(store, None).await;
        match store.insert(tx).await {
            Ok(committed) => assert_eq!(&committed, original, "{caller}: the original result"),
            Err(error) => panic!("{caller}: expected the original result, got: {error}"),
        }
        assert_eq!(
            read_all(store, None).await,
            before,
            "{caller}: wrote nothing"
        );
    }
}

/// Rule 29: re-sending a committed write with the same client ids, the
/// same content and the same expectation returns the original
/// `Committed` (its positions and heads) and writes nothing, under every
/// kind of expectation, also after other writes moved the stream and the
/// store on.
pub fn rule_29_a_retry_returns_the_original_result_and_writes_nothing<F: StoreFactory>(
    factory: &F,
) {
    run("rule_29", async {
        let store = factory.create().await;
        let (stream, other) = (sid(1), sid(2));
        let meta = Metadata::new()
            .with_header("user", "ada")
            .expect("a header");
        let first = || {
            Transaction::new().append_with(
                stream,
                NoStream,
                [given(0, 0), given(1, 1).with_metadata(meta.clone())],
            )
        };
        let c0 = insert(&store, first()).await;
        retry(&store, first(), &c0).await;

        let exact =
            || Transaction::new().append_with(stream, Exact(StreamVersion(1)), [given(2, 2)]);
        let c1 = insert(&store, exact()).await;
        insert(&store, Transaction::single(other, Any, ev(100))).await;
        retry(&store, exact(), &c1).await;

        let at = c1.last_position().expect("one event");
        let positioned = || {
            Transaction::new().append_with(stream, ExactPosition(at), [given(3, 3), given(4, 4)])
        };
        let c2 = insert(&store, positioned()).await;
        let any = || Transaction::new().append_with(stream, Any, [given(5, 5)]);
        let c3 = insert(&store, any()).await;
        let exists = || Transaction::new().append_with(stream, StreamExists, [given(6, 6)]);
        let c4 = insert(&store, exists()).await;
        // Other events on the stream since: `Any` and `StreamExists` are
        // found by id, the exact ones at the place they name.
        insert(&store, Transaction::single(stream, Any, ev(7))).await;
        for (tx, original) in [
            (first(), &c0),
            (exact(), &c1),
            (positioned(), &c2),
            (any(), &c3),
            (exists(), &c4),
        ] {
            retry(&store, tx, original).await;
        }
        assert_eq!(values(&store, stream).await, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(store_head(&store).await, Some(Position(8)));

        // Appends merged into one write (rule 10) whose first event has no
        // id: located by its first id, at its place in the write, under an
        // exact expectation (the first append's) and under `Any`.
        let merged = sid(3);
        let tx = |expected| {
            Transaction::new()
                .append(merged, expected, [ev(20)])
                .append_with(merged, Any, [given(21, 21), EventData::new(ev(22))])
        };
        let original = insert(&store, tx(NoStream)).await;
        retry(&store, tx(NoStream), &original).await;
        retry(&store, tx(Any), &original).await;
        assert_eq!(values(&store, merged).await, [20, 21, 22]);
        assert_well_formed(&store).await;
    });
}

/// Rule 29: a transaction of several streams re-sent whole returns its
/// original result (every stream's head as it was then) and writes
/// nothing; re-sending only part of it, or with a new write beside it, is
/// a conflict that writes nothing.
pub fn rule_29_a_multi_stream_retry_is_recognised_only_whole<F: StoreFactory>(factory: &F) {
    run("rule_29", async {
        let store = factory.create().await;
        let (a, b, c) = (sid(1), sid(2), sid(3));
        insert(&store, Transaction::single(b, Any, ev(0))).await;
        let tx = || {
            Transaction::new()
                .append_with(b, Exact(StreamVersion(0)), [given(10, 10)])
                .append_with(a, NoStream, [given(11, 11), given(12, 12)])
        };
        let original = insert(&store, tx()).await;
        assert_eq!(original.streams().len(), 2);
        insert(&store, Transaction::single(a, Any, ev(13))).await;
        retry(&store, tx(), &original).await;

        let head = store_head(&store).await;
        let part = Transaction::new().append_with(a, NoStream, [given(11, 11), given(12, 12)]);
        let (stream, id, mismatch) = id_conflict(&store, part).await;
        assert_eq!(
            (stream, id, mismatch),
            (a, eid(11), EventIdMismatch::PartOfTransaction),
            "a retry of part of a transaction"
        );
        let beside = tx().append_with(c, Any, [given(14, 14)]);
        let (stream, _, mismatch) = id_conflict(&store, beside).await;
        assert_eq!((stream, mismatch), (c, EventIdMismatch::PartOfTransaction));
        let beside_plain = tx().append(c, Any, [ev(15)]);
        let (_, _, mismatch) = id_conflict(&store, beside_plain).await;
        assert_eq!(mismatch, EventIdMismatch::PartOfTransaction);
        assert_eq!(
            store_head(&store).await,
            head,
            "the conflicts wrote nothing"
        );
        assert_eq!(stream_head(&store, c).await, None);
    });
}

/// Rule 29: the same ids with other content, at another version, or
/// stored only in part are a conflict naming the id and what differed,
/// and write nothing.
pub fn rule_29_other_content_place_or_extent_is_a_conflict<F: StoreFactory>(factory: &F) {
    run("rule_29", async {
        let store = factory.create().await;
        let stream = sid(1);
        let meta = Metadata::new().with_header("k", "v").expect("a header");
        let stored = Transaction::new().append_with(
            stream,
            NoStream,
            [given(0, 0), given(1, 1).with_metadata(meta.clone())],
        );
        insert(&store, stored).await;
        let head = store_head(&store).await;
        let at = |v| StreamVersion(v);
        let cases: Vec<(&str, Transaction<TestEvent>, EventId, EventIdMismatch)> = vec![
            (
                "other payload",
                Transaction::new().append_with(stream, NoStream, [given(0, 0), given(9, 1)]),
                eid(1),
                EventIdMismatch::OtherPayload { version: at(1) },
            ),
            (
                "other metadata",
                Transaction::new().append_with(stream, Any, [given(0, 0), given(1, 1)]),
                eid(1),
                EventIdMismatch::OtherMetadata { version: at(1) },
            ),
            (
                "another version",
                Transaction::new().append_with(
                    stream,
                    Exact(at(1)),
                    [given(0, 0), given(1, 1).with_metadata(meta.clone())],
                ),
                eid(0),
                EventIdMismatch::OtherVersion {
                    found: at(0),
                    expected: Some(at(2)),
                },
            ),
            (
                "a later id of the write at another place",
                Transaction::new().append_with(stream, Any, [given(5, 5), given(0, 0)]),
                eid(0),
                EventIdMismatch::OtherVersion {
                    found: at(0),
                    expected: None,
                },
            ),
            (
                "another id where the write's next event would be",
                Transaction::new().append_with(stream, Any, [given(0, 0), given(1, 7)]),
                eid(7),
                EventIdMismatch::OtherId { version: at(1) },
            ),
            (
                "more events than are stored",
                Transaction::new().append_with(
                    stream,
                    Any,
                    [
                        given(0, 0),
                        given(1, 1).with_metadata(meta.clone()),
                        given(2, 2),
                    ],
                ),
                eid(0),
                EventIdMismatch::Partial,
            ),
            (
                "fewer events than the transaction stored",
                Transaction::new().append_with(stream, NoStream, [given(0, 0)]),
                eid(0),
                EventIdMismatch::PartOfTransaction,
            ),
        ];
        for (label, tx, id, mismatch) in cases {
            let found = id_conflict(&store, tx).await;
            assert_eq!(found, (stream, id, mismatch), "{label}");
            assert_eq!(store_head(&store).await, head, "{label}: wrote nothing");
        }
        // An event without a client id never matches one with.
        let plain = Transaction::new().append(stream, NoStream, [ev(0), ev(1)]);
        conflict(&store, plain).await;
        assert_eq!(store_head(&store).await, head);
    });
}

/// Rule 29: an id given to two events of one transaction (in one stream or
/// two) is refused before anything happens.
pub fn rule_29_an_id_twice_in_one_transaction_is_refused<F: StoreFactory>(factory: &F) {
    run("rule_29", async {
        let store = factory.create().await;
        let (a, b) = (sid(1), sid(2));
        let one = Transaction::new().append_with(a, Any, [given(0, 0), given(1, 0)]);
        let (stream, id, mismatch) = id_conflict(&store, one).await;
        assert_eq!(
            (stream, id, mismatch),
            (a, eid(0), EventIdMismatch::Duplicate)
        );
        let two = Transaction::new()
            .append_with(a, Any, [given(0, 3)])
            .append_with(b, Any, [given(1, 3)]);
        let (stream, id, mismatch) = id_conflict(&store, two).await;
        assert_eq!(
            (stream, id, mismatch),
            (b, eid(3), EventIdMismatch::Duplicate)
        );
        assert_eq!(store_head(&store).await, None, "nothing written");
        assert_eq!(stream_head(&store, a).await, None);
    });
}

/// Rule 29 (and 1): an event given an id reads back with it in
/// `read_all`, stream reads and subscriptions (live and from history);
/// an event without keeps an id of the store's, unique.
pub fn rule_29_client_ids_read_back_everywhere<F: StoreFactory>(factory: &F) {
    run("rule_29", async {
        let store = factory.create().await;
        let live = record(&store, Selector::all()).await;
        let (a, b) = (sid(1), sid(2));
        insert(
            &store,
            Transaction::new()
                .append_with(b, Any, [given(0, 20), EventData::new(ev(1))])
                .append_with(a, Any, [given(2, 21)]),
        )
        .await;
        let last = insert(&store, Transaction::single(a, Any, ev(3)))
            .await
            .last_position()
            .expect("one event");
        let ids = |rows: &[Row<_>]| -> Vec<(u64, Option<EventId>)> {
            rows.iter()
                .map(|row| {
                    let id = row.event_id;
                    let client = [eid(20), eid(21)].contains(&id).then_some(id);
                    (row.event.value(), client)
                })
                .collect()
        };
        let all = assert_well_formed(&store).await;
        // `a` is laid out first.
        let expected = vec![(2, Some(eid(21))), (0, Some(eid(20))), (1, None), (3, None)];
        assert_eq!(ids(&all), expected, "read_all");
        assert_eq!(
            ids(&read_stream(&store, b, StreamVersion(0)).await),
            expected[1..3].to_vec(),
            "read_stream"
        );
        let history = record(&store, Selector::all()).await;
        for (label, (subscription, rows)) in [("live", &live), ("history", &history)] {
            reach(subscription, last).await;
            assert_eq!(ids(&snapshot(rows)), expected, "{label}");
            subscription.cancel().await;
        }
    });
}

/// Rule 29 with rule 30: removed events still count. A re-send of events
/// since soft-deleted (or truncated away) is recognised and returns the
/// original result; a `NoStream` re-send after the delete names the
/// version after it, so finds its ids at another version: a conflict.
/// Nothing is written either way.
pub fn rule_29_removed_events_still_count<F: StoreFactory>(factory: &F) {
    run("rule_29", async {
        let store = factory.create().await;
        let (kept, deleted) = (sid(1), sid(2));
        let any = || Transaction::new().append_with(kept, Any, [given(0, 0), given(1, 1)]);
        let first = insert(&store, any()).await;
        ok(store.truncate_stream(kept, StreamVersion(2)).await);
        retry(&store, any(), &first).await;

        let created = || Transaction::new().append_with(deleted, NoStream, [given(2, 2)]);
        insert(&store, created()).await;
        ok(store.delete_stream(deleted, Any).await);
        let head = store_head(&store).await;
        let (stream, id, mismatch) = id_conflict(&store, created()).await;
        assert_eq!(
            (stream, id, mismatch),
            (
                deleted,
                eid(2),
                EventIdMismatch::OtherVersion {
                    found: StreamVersion(0),
                    expected: Some(StreamVersion(1)),
                }
            )
        );
        assert_eq!(store_head(&store).await, head, "wrote nothing");
        assert_eq!(stream_head(&store, deleted).await, None, "still deleted");
    });
}

/// `result`, which must be `Ok`.
#[track_caller]
fn ok<B: std::fmt::Display>(result: Result<(), StoreError<B>>) {
    if let Err(error) = result {
        panic!("expected success, got: {error}");
    }
}
