//! Reading one's writes across handles (contract rule 12) and the lifetime of
//! events (rule 24).

use super::support::*;
use super::{Ledger, StoreFactory, TestEvent, TestKind};
use crate::{
    ExpectedVersion, Position, Selector, StreamId, StreamVersion, SubscriberHandle, Transaction,
};
use std::sync::Arc;

/// Rules 12 and 25: when an insert returns, every handle reads the whole
/// transaction at once (from another task, on another thread), and a
/// subscriber started before has it to deliver.
pub fn rule_12_every_handle_reads_its_writes_at_once<F: StoreFactory>(factory: &F) {
    run("rule_12", async {
        let (store, handles) = store_and_handles(factory, 2).await;
        let (reader, subscriber_side) = (handles[0].clone(), handles[1].clone());
        let (subscription, recorded) = record(&subscriber_side, Selector::all()).await;
        let (a, b) = (StreamId::new(), StreamId::new());

        // The writer tells a reader task what it committed and waits for
        // its answer: the reader must see all of it at once.
        let (tell, mut told) = tokio::sync::mpsc::unbounded_channel::<(crate::Committed, usize)>();
        let (answer, mut answered) = tokio::sync::mpsc::unbounded_channel::<()>();
        let reader_task = tokio::spawn(async move {
            let mut rounds = 0;
            while let Some((done, expected_len)) = told.recv().await {
                let last = done.last_position().unwrap();
                let rows = read_all(&reader, None).await;
                assert_eq!(
                    rows.len(),
                    expected_len,
                    "a reader misses part of an insert"
                );
                assert_eq!(rows.last().map(Row::position), Some(last));
                for (stream, head) in done.streams() {
                    assert_eq!(stream_head(&reader, *stream).await, Some(*head));
                }
                assert_eq!(store_head(&reader).await, Some(last));
                rounds += 1;
                answer.send(()).unwrap();
            }
            rounds
        });
        let mut total = 0;
        for round in 0..50u64 {
            let done = insert(
                &store,
                Transaction::new()
                    .append(
                        a,
                        ExpectedVersion::Any,
                        events(TestKind::Alpha, round * 3, 2),
                    )
                    .append(
                        b,
                        ExpectedVersion::Any,
                        events(TestKind::Beta, round * 3 + 2, 1),
                    ),
            )
            .await;
            total += 3;
            // Read here too, through another handle, before anything else.
            let rows = read_stream(&handles[1], b, StreamVersion(round)).await;
            assert_eq!(rows.len(), 1, "round {round}: read your writes");
            tell.send((done, total)).unwrap();
            answered.recv().await.expect("the reader failed");
        }
        drop(tell);
        assert_eq!(reader_task.await.unwrap(), 50);

        let head = store_head(&store).await.unwrap();
        reach(&subscription, head).await;
        assert_eq!(snapshot(&recorded), read_all(&store, None).await);
        subscription.cancel().await;
    });
}

/// Rule 24: every event a store took is dropped exactly once, when the last
/// handle goes (the events of a failed insert when it returns): the live
/// count of the kit's events drops back to exactly zero, never below.
pub fn rule_24_every_event_is_dropped_once_when_the_last_handle_goes<F: StoreFactory>(factory: &F) {
    run("rule_24", async {
        let (stored, rejected) = (Ledger::open(), Ledger::open());
        let tracked = |ledger: Ledger, n: u64| -> Vec<TestEvent> {
            events(TestKind::Alpha, 0, n)
                .into_iter()
                .map(|event| event.on_ledger(ledger))
                .collect()
        };
        let (store, mut handles) = store_and_handles(factory, 2).await;
        let a = StreamId::new();
        insert(
            &store,
            Transaction::new().append(a, ExpectedVersion::NoStream, tracked(stored, 5)),
        )
        .await;
        insert(
            &handles[0],
            Transaction::new().append(a, ExpectedVersion::Any, tracked(stored, 3)),
        )
        .await;
        assert!(stored.live() >= 0);

        // A rejected transaction's events are gone when the insert returns.
        conflict(
            &store,
            Transaction::new().append(a, ExpectedVersion::NoStream, tracked(rejected, 4)),
        )
        .await;
        assert_eq!(
            rejected.live(),
            0,
            "a rejected event leaked or was dropped twice"
        );

        // Reads lend events; copies the reader makes are its own.
        let rows = read_all(&store, None).await;
        assert_eq!(rows.len(), 8);
        drop(rows);

        // Handles go one by one; the rest still see every event.
        drop(store);
        let last = handles.pop().unwrap();
        drop(handles);
        assert_eq!(
            read_all(&last, None).await.len(),
            8,
            "events went with a handle"
        );
        assert_eq!(store_head(&last).await, Some(Position(7)));
        let alive = stored.live();
        assert!(alive >= 0, "events dropped twice: {alive} live");
        drop(last);
        assert_eq!(
            stored.live(),
            0,
            "events outlive the store (or were dropped twice)"
        );

        // Subscriptions are handles too: the store lives until they end.
        let ledger = Ledger::open();
        let store = factory.create().await;
        let (subscription, recorded) = record(&store, Selector::all()).await;
        insert(
            &store,
            Transaction::new().append(a, ExpectedVersion::Any, tracked(ledger, 2)),
        )
        .await;
        drop(store);
        reach(&subscription, Position(1)).await;
        let copies = Arc::clone(&recorded);
        assert_eq!(copies.lock().unwrap().len(), 2);
        drop(copies);
        subscription.cancel().await;
        drop(subscription);
        drop(recorded);
        assert_eq!(
            ledger.live(),
            0,
            "a subscription kept events alive after it ended"
        );
    });
}
