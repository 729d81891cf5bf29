//! Subscriptions: contract rules 16-23, 27 and 28.

use super::support::*;
use super::{StoreFactory, TestEvent, TestKind};
use crate::{
    CorrelationId, Cursor, EventStore, ExpectedVersion, Flow, HandlerError, HandlerFailure,
    Position, Selector, StreamId, StreamVersion, SubscriberError, SubscriberHandle, Transaction,
    WaitError,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use ExpectedVersion::Any;
use TestKind::{Alpha, Beta, Gamma};

fn cursor<S: EventStore>(position: u64) -> S::Cursor {
    S::Cursor::from_position(Position(position))
}

/// Rule 16: a subscription selects all streams or one, from the beginning
/// or after a position (exclusive, for one stream too), also a position not
/// written yet.
pub fn rule_16_subscriptions_select_a_stream_and_start_after_a_cursor<F: StoreFactory>(
    factory: &F,
) {
    run("rule_16", async {
        let store = factory.create().await;
        let (a, b) = (StreamId::new(), StreamId::new());
        for i in 0..3 {
            insert(&store, Transaction::single(a, Any, ev(i * 2))).await;
            insert(&store, Transaction::single(b, Any, ev(i * 2 + 1))).await;
        }
        let all = read_all(&store, None).await;
        for scope in [None, Some(a), Some(b)] {
            for after in [None, Some(0), Some(1), Some(2), Some(4), Some(5)] {
                let mut selector = match scope {
                    None => Selector::all(),
                    Some(stream) => Selector::stream(stream),
                };
                if let Some(after) = after {
                    selector = selector.after(Position(after));
                }
                let (subscription, recorded) = record(&store, selector).await;
                reach(&subscription, Position(5)).await;
                let expected: Vec<_> = all
                    .iter()
                    .filter(|row| scope.is_none_or(|s| row.stream == s))
                    .filter(|row| after.is_none_or(|p| row.position().get() > p))
                    .cloned()
                    .collect();
                assert_eq!(snapshot(&recorded), expected, "{scope:?} after {after:?}");
                subscription.cancel().await;
            }
        }

        // After a position not written yet: only what follows it.
        let (later_all, recorded_all) = record(&store, Selector::all().after(Position(8))).await;
        let (later_a, recorded_a) = record(&store, Selector::stream(a).after(Position(7))).await;
        let mut last = Position(0);
        for i in 6..10 {
            let stream = if i % 2 == 0 { a } else { b };
            last = insert(&store, Transaction::single(stream, Any, ev(i)))
                .await
                .last_position()
                .unwrap();
        }
        reach(&later_all, last).await;
        reach(&later_a, last).await;
        let positions =
            |rows: Vec<Row<_>>| rows.iter().map(|r| r.position().get()).collect::<Vec<_>>();
        assert_eq!(positions(snapshot(&recorded_all)), [9]);
        assert_eq!(positions(snapshot(&recorded_a)), [8]);
        let versions: Vec<u64> = snapshot(&recorded_a)
            .iter()
            .map(|r| r.version.get())
            .collect();
        assert_eq!(versions, [4]);
        later_all.cancel().await;
        later_a.cancel().await;
    });
}

/// Rules 17 and 12: a subscription delivers history, then live events,
/// each once, in order, with no seam, for all streams and for one stream.
pub fn rule_17_history_then_live_without_a_seam<F: StoreFactory>(factory: &F) {
    run("rule_17_seam", async {
        let (store, handles) = store_and_handles(factory, 1).await;
        let writer = &handles[0];
        for round in 0..10u64 {
            let a = StreamId::new();
            insert(
                &store,
                Transaction::new()
                    .append(a, Any, events(Alpha, round * 10, 2))
                    .append(StreamId::new(), Any, [ev(0)]),
            )
            .await;
            let (everything, all_rows) = record(&store, Selector::all()).await;
            let (one, one_rows) = record(&store, Selector::stream(a)).await;
            let mut last = Position(0);
            for i in 0..3 {
                let done = insert(
                    writer,
                    Transaction::new()
                        .append(a, Any, events(Beta, round * 10 + 2 + i, 1))
                        .append(StreamId::new(), Any, [ev(1)]),
                )
                .await;
                last = done.last_position().unwrap();
            }
            reach(&everything, last).await;
            reach(&one, last).await;
            assert_eq!(
                snapshot(&all_rows),
                read_all(&store, None).await,
                "round {round}: all streams"
            );
            let values: Vec<u64> = snapshot(&one_rows)
                .iter()
                .map(|r| r.event.value())
                .collect();
            let expected: Vec<u64> = (0..5).map(|i| round * 10 + i).collect();
            assert_eq!(values, expected, "round {round}: one stream");
            assert_eq!(
                snapshot(&one_rows),
                read_stream(&store, a, StreamVersion(0)).await
            );
            everything.cancel().await;
            one.cancel().await;
        }
    });
}

/// Rules 18 and 23: a type filter delivers only its types; the events it
/// skips still advance the subscription, so a wait for them returns.
pub fn rule_18_type_filters_skip_events_that_still_advance<F: StoreFactory>(factory: &F) {
    run("rule_18", async {
        let store = factory.create().await;
        let (a, b) = (StreamId::new(), StreamId::new());
        let (betas, beta_rows) = record(&store, Selector::all().only_types(["Beta"])).await;
        let (a_not_beta, a_rows) =
            record(&store, Selector::stream(a).only_types(["Alpha", "Gamma"])).await;
        let kinds = [Alpha, Beta, Gamma, Beta, Alpha, Gamma, Alpha];
        for (i, kind) in kinds.iter().enumerate() {
            let stream = if i % 3 == 1 { b } else { a };
            insert(
                &store,
                Transaction::single(stream, Any, TestEvent::new(*kind, i as u64)),
            )
            .await;
        }
        // The last event (an Alpha) is skipped by `betas`: the wait returns.
        let last = store_head(&store).await.unwrap();
        reach(&betas, last).await;
        reach(&a_not_beta, last).await;
        assert_eq!(betas.processed(), Some(cursor::<F::Store>(last.get())));
        let all = read_all(&store, None).await;
        let expected: Vec<_> = all
            .iter()
            .filter(|r| r.event.kind() == Beta)
            .cloned()
            .collect();
        assert_eq!(snapshot(&beta_rows), expected);
        let expected: Vec<_> = all
            .iter()
            .filter(|r| r.stream == a && r.event.kind() != Beta)
            .cloned()
            .collect();
        assert_eq!(snapshot(&a_rows), expected);
        betas.cancel().await;
        a_not_beta.cancel().await;
    });
}

/// Writes one event to another stream, then a transaction of five events
/// to one stream, with a correlation id; returns its positions' rows.
async fn five_in_one<S: EventStore<Event = TestEvent>>(store: &S) -> Vec<Row<S::Cursor>> {
    insert(store, Transaction::single(StreamId::new(), Any, ev(100))).await;
    let stream = StreamId::new();
    let done = insert(
        store,
        Transaction::new()
            .append(
                stream,
                Any,
                [Alpha, Alpha, Beta, Alpha, Alpha].map(|k| TestEvent::new(k, 7)),
            )
            .with_correlation_id(CorrelationId::new()),
    )
    .await;
    let last = done.last_position().unwrap().get();
    read_all(store, Some(cursor::<S>(last - 5))).await
}

/// Rule 19: a handler's Stop ends the subscription at once, even in the
/// middle of a transaction, and waiting on it returns success.
pub fn rule_19_stop_ends_the_subscription_inside_a_transaction<F: StoreFactory>(factory: &F) {
    run("rule_19", async {
        for live in [false, true] {
            let store = factory.create().await;
            let history = if live {
                Vec::new()
            } else {
                five_in_one(&store).await
            };
            let calls = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&calls);
            let subscription = store
                .spawn_subscriber(Selector::all(), move |event| {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    // The third event of the five-event transaction.
                    Ok::<_, std::convert::Infallible>(if n == 4 {
                        assert_eq!(event.payload.kind(), Beta);
                        Flow::Stop
                    } else {
                        Flow::Continue
                    })
                })
                .await
                .unwrap();
            let rows = if live {
                five_in_one(&store).await
            } else {
                history
            };
            let fourth = rows[3].position();
            assert_eq!(
                subscription
                    .wait_processed(cursor::<F::Store>(fourth.get()), PATIENCE)
                    .await,
                Err(WaitError::Ended),
                "live: {live}"
            );
            assert!(subscription.is_finished());
            insert(&store, Transaction::single(StreamId::new(), Any, ev(1))).await;
            assert_eq!(
                calls.load(Ordering::SeqCst),
                4,
                "live: {live}: calls after Stop"
            );
            assert!(
                subscription.wait().await.is_ok(),
                "live: {live}: Stop is a success"
            );
        }
    });
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Boom(u32);

/// Rule 20: a handler error (or panic) ends the subscription at once;
/// waiting returns the error unchanged plus the event's position, id, type,
/// stream, version, correlation id and timestamp.
pub fn rule_20_a_handler_error_or_panic_ends_it_with_the_event<F: StoreFactory>(factory: &F) {
    run("rule_20", async {
        for panics in [false, true] {
            let store = factory.create().await;
            let calls = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&calls);
            let subscription = store
                .spawn_subscriber(Selector::all().with_type_names(), move |_event| {
                    if counter.fetch_add(1, Ordering::SeqCst) + 1 == 4 {
                        if panics {
                            panic!("{EXPECTED_PANIC}: boom");
                        }
                        return Err(Boom(7));
                    }
                    Ok(Flow::Continue)
                })
                .await
                .unwrap();
            let rows = five_in_one(&store).await;
            insert(&store, Transaction::single(StreamId::new(), Any, ev(1))).await;
            let failed = &rows[2];
            let expected_context = crate::EventContext {
                position: failed.position(),
                event_id: failed.event_id,
                event_type: Some("Beta".into()),
                stream: failed.stream,
                version: failed.version,
                correlation_id: failed.correlation_id,
                causation_id: failed.metadata.causation_id(),
                created_at: failed.created_at,
            };
            assert!(failed.correlation_id.is_some());
            match subscription.wait().await {
                Err(SubscriberError::Handler(HandlerError { failure, event })) => {
                    assert_eq!(event, expected_context, "panics: {panics}");
                    match (failure, panics) {
                        (HandlerFailure::Error(error), false) => assert_eq!(error, Boom(7)),
                        (HandlerFailure::Panic(message), true) => {
                            assert!(
                                message.contains("boom"),
                                "the panic message is lost: {message}"
                            )
                        }
                        (failure, _) => panic!("panics: {panics}: the wrong failure: {failure:?}"),
                    }
                }
                other => panic!("panics: {panics}: expected the handler's failure, got {other:?}"),
            }
            assert_eq!(
                calls.load(Ordering::SeqCst),
                4,
                "panics: {panics}: calls after the failure"
            );
        }
    });
}

/// Rule 21: cancel wakes a subscription waiting for events and returns once
/// it has stopped (never while its handler runs); it is idempotent, safe
/// from several tasks at once and after the subscription ended, which keeps
/// its outcome.
pub fn rule_21_cancel_is_idempotent_wakes_and_returns_once_stopped<F: StoreFactory>(factory: &F) {
    run("rule_21", async {
        let store = factory.create().await;

        // Waiting for events: woken, stopped, outcome Ok, never called.
        let (parked, recorded) = record(&store, Selector::all()).await;
        parked.wait_caught_up(PATIENCE).await.unwrap();
        parked.cancel().await;
        assert!(parked.is_finished());
        parked.cancel().await;
        insert(&store, Transaction::single(StreamId::new(), Any, ev(0))).await;
        assert!(snapshot(&recorded).is_empty(), "called after cancel");
        assert!(parked.wait().await.is_ok());

        // Cancel while the handler runs: returns only once it has returned.
        let (entered, was_entered) = tokio::sync::oneshot::channel::<()>();
        let (open, gate) = mpsc::channel::<()>();
        let left = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let mut entered = Some(entered);
        let (left_in, calls_in) = (Arc::clone(&left), Arc::clone(&calls));
        let busy = store
            .spawn_subscriber(Selector::all(), move |_| {
                calls_in.fetch_add(1, Ordering::SeqCst);
                if let Some(entered) = entered.take() {
                    let _ = entered.send(());
                    let _ = gate.recv();
                    left_in.store(true, Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(Flow::Continue)
            })
            .await
            .unwrap();
        let busy = Arc::new(busy);
        insert(&store, Transaction::single(StreamId::new(), Any, ev(1))).await;
        was_entered.await.expect("the handler never ran");
        let cancels: Vec<_> = (0..2)
            .map(|_| {
                let (busy, left) = (Arc::clone(&busy), Arc::clone(&left));
                tokio::spawn(async move {
                    busy.cancel().await;
                    assert!(
                        left.load(Ordering::SeqCst),
                        "cancel returned while the handler ran"
                    );
                })
            })
            .collect();
        open.send(()).unwrap();
        for cancel in cancels {
            cancel.await.expect("a cancel failed");
        }
        let calls_then = calls.load(Ordering::SeqCst);
        insert(&store, Transaction::single(StreamId::new(), Any, ev(2))).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            calls_then,
            "called after cancel returned"
        );
        let Ok(busy) = Arc::try_unwrap(busy) else {
            panic!("a cancel task kept the handle")
        };
        assert!(busy.wait().await.is_ok());

        // After Stop, and after a failure: the outcome stays.
        let stopped = store
            .spawn_subscriber(Selector::all(), |_| Ok::<_, Boom>(Flow::Stop))
            .await
            .unwrap();
        let failed = store
            .spawn_subscriber(Selector::all(), |_| Err::<Flow, _>(Boom(1)))
            .await
            .unwrap();
        let first = cursor::<F::Store>(0);
        assert_eq!(
            stopped
                .wait_processed(cursor::<F::Store>(1), PATIENCE)
                .await,
            Err(WaitError::Ended)
        );
        assert_eq!(
            failed.wait_processed(first, PATIENCE).await,
            Err(WaitError::Ended)
        );
        for _ in 0..2 {
            stopped.cancel().await;
            failed.cancel().await;
        }
        assert!(stopped.wait().await.is_ok());
        match failed.wait().await {
            Err(SubscriberError::Handler(error)) => {
                assert_eq!(error.failure, HandlerFailure::Error(Boom(1)))
            }
            other => panic!("a cancel after a failure changed the outcome to {other:?}"),
        }
    });
}

/// Rule 22: a subscriber whose handler is stuck loses nothing and does not
/// hold up writers: every insert returns while it is stuck, and once it
/// goes on it gets every event.
pub fn rule_22_a_slow_subscriber_loses_nothing_and_slows_no_writer<F: StoreFactory>(factory: &F) {
    run("rule_22", async {
        let store = factory.create().await;
        let (entered, was_entered) = tokio::sync::oneshot::channel::<()>();
        let (open, gate) = mpsc::channel::<()>();
        let mut entered = Some(entered);
        let rows: Recorded<<F::Store as EventStore>::Cursor> = Default::default();
        let sink = Arc::clone(&rows);
        let slow = store
            .spawn_subscriber(Selector::all(), move |event| {
                if let Some(entered) = entered.take() {
                    let _ = entered.send(());
                    let _ = gate.recv();
                }
                sink.lock().unwrap().push(Row::of(event));
                Ok::<_, std::convert::Infallible>(Flow::Continue)
            })
            .await
            .unwrap();
        insert(&store, Transaction::single(StreamId::new(), Any, ev(0))).await;
        was_entered.await.expect("the handler never ran");
        // Stuck in its first event: the writers go on regardless.
        for tx in 0..40u64 {
            let stream = sid(1 + u128::from(tx % 3));
            insert(
                &store,
                Transaction::new().append(stream, Any, events(Beta, tx * 5, 5)),
            )
            .await;
        }
        let head = store_head(&store).await.unwrap();
        assert_eq!(head, Position(200));
        assert!(slow.processed() < Some(cursor::<F::Store>(head.get())));
        open.send(()).unwrap();
        reach(&slow, head).await;
        assert_eq!(snapshot(&rows), read_all(&store, None).await);
        slow.cancel().await;
    });
}

/// Rule 23: a wait for a processed position returns once the subscription
/// has passed it (events of other streams count as passed), times out for
/// a position never written, and reports at once a subscription that ended.
pub fn rule_23_waits_count_passed_events_and_time_out<F: StoreFactory>(factory: &F) {
    run("rule_23", async {
        let store = factory.create().await;
        let (a, b) = (StreamId::new(), StreamId::new());
        let (only_a, a_rows) = record(&store, Selector::stream(a)).await;
        assert_eq!(only_a.processed(), None);
        only_a.wait_caught_up(PATIENCE).await.unwrap();
        insert(&store, Transaction::single(a, Any, ev(0))).await;
        let last = insert(
            &store,
            Transaction::new().append(b, Any, events(Alpha, 1, 5)),
        )
        .await;
        let last = last.last_position().unwrap();
        // Only b's events lie between: they count as passed.
        reach(&only_a, last).await;
        assert!(only_a.processed() >= Some(cursor::<F::Store>(last.get())));
        assert_eq!(snapshot(&a_rows).len(), 1);
        only_a.wait_caught_up(PATIENCE).await.unwrap();

        // A position never written: the wait times out.
        let never = cursor::<F::Store>(last.get() + 10);
        assert_eq!(
            only_a
                .wait_processed(never, Duration::from_millis(50))
                .await,
            Err(WaitError::TimedOut)
        );
        only_a.cancel().await;
        // Ended: reported at once, whatever the timeout.
        assert_eq!(
            only_a.wait_processed(never, PATIENCE).await,
            Err(WaitError::Ended)
        );
        assert!(only_a.wait().await.is_ok());
    });
}

/// Rule 27: a wait made from a subscription's own handler answers at once
/// (`OwnHandler`) instead of waiting for the handler it runs in, for a
/// position the subscription has not passed; a position it has passed is
/// answered `Ok`. Each wait's future is polled once from inside the
/// handler: it must be ready on that first poll.
pub fn rule_27_waits_from_the_own_handler_answer_at_once<F: StoreFactory>(factory: &F) {
    run("rule_27", async {
        let store = factory.create().await;
        type Handle<S> = <S as EventStore>::Subscriber<std::convert::Infallible>;
        let own: Arc<std::sync::OnceLock<Handle<F::Store>>> = Arc::default();
        let (answers_in, answers) = mpsc::channel();
        let handle = {
            let own = Arc::clone(&own);
            store
                .spawn_subscriber(Selector::all(), move |event| {
                    if let Some(own) = own.get() {
                        let next = cursor::<F::Store>(event.position().get() + 1);
                        let earlier = cursor::<F::Store>(event.position().get().saturating_sub(1));
                        let _ = answers_in.send((
                            poll_once(own.wait_processed(next, PATIENCE)),
                            poll_once(own.wait_caught_up(PATIENCE)),
                            poll_once(own.wait_processed(earlier, Duration::ZERO)),
                        ));
                    }
                    Ok(Flow::Continue)
                })
                .await
                .unwrap()
        };
        insert(&store, Transaction::single(StreamId::new(), Any, ev(0))).await;
        insert(&store, Transaction::single(StreamId::new(), Any, ev(1))).await;
        let first = cursor::<F::Store>(0);
        handle.wait_processed(first, PATIENCE).await.unwrap();
        assert!(own.set(handle).is_ok());
        let last = insert(&store, Transaction::single(StreamId::new(), Any, ev(2))).await;
        let answered = tokio::task::spawn_blocking(move || answers.recv_timeout(PATIENCE))
            .await
            .unwrap()
            .expect("the handler never ran on the event after the handle was set");
        assert_eq!(
            answered,
            (
                Some(Err(WaitError::OwnHandler)),
                Some(Err(WaitError::OwnHandler)),
                Some(Ok(())),
            ),
            "(a later position, caught up, an earlier position) asked from the handler"
        );
        let handle = own.get().expect("set above");
        handle
            .wait_processed(
                cursor::<F::Store>(last.last_position().unwrap().get()),
                PATIENCE,
            )
            .await
            .unwrap();
        handle.cancel().await;
        assert!(handle.is_finished());
    });
}

/// Rule 28: dropping a subscription's handle never waits, even while its
/// handler is blocked (here on a gate only this test opens): the drop
/// returns at once, and once the handler returns the subscription stops and
/// drops the handler's captures on its own. Waits dropped before they
/// answer release what they held: the subscription still answers the next
/// wait and cancels as usual.
pub fn rule_28_drops_never_block_and_abandoned_waits_release_everything<F: StoreFactory>(
    factory: &F,
) {
    run("rule_28", async {
        let store = factory.create().await;

        // Abandoned waits, then a real one.
        let (waited, rows) = record(&store, Selector::all()).await;
        let never = cursor::<F::Store>(1_000_000);
        for _ in 0..100 {
            let abandoned = tokio::time::timeout(
                Duration::from_millis(1),
                waited.wait_processed(never, PATIENCE),
            );
            assert!(
                abandoned.await.is_err(),
                "a position never written was reached"
            );
        }
        let done = insert(&store, Transaction::single(StreamId::new(), Any, ev(0))).await;
        reach(&waited, done.last_position().unwrap()).await;
        assert_eq!(snapshot(&rows).len(), 1);
        waited.cancel().await;
        assert!(waited.wait().await.is_ok());

        // A drop while the handler is blocked.
        struct Captured(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for Captured {
            fn drop(&mut self) {
                if let Some(dropped) = self.0.take() {
                    let _ = dropped.send(());
                }
            }
        }
        let (dropped_in, dropped) = tokio::sync::oneshot::channel();
        let (entered_in, entered) = tokio::sync::oneshot::channel::<()>();
        let (open, gate) = mpsc::channel::<()>();
        let calls = Arc::new(AtomicU64::new(0));
        let handle = {
            let captured = Captured(Some(dropped_in));
            let mut entered_in = Some(entered_in);
            let calls = Arc::clone(&calls);
            store
                .spawn_subscriber(Selector::all(), move |_| {
                    let _captured = &captured;
                    calls.fetch_add(1, Ordering::SeqCst);
                    if let Some(entered) = entered_in.take() {
                        let _ = entered.send(());
                        let _ = gate.recv();
                    }
                    Ok::<_, std::convert::Infallible>(Flow::Continue)
                })
                .await
                .unwrap()
        };
        insert(&store, Transaction::single(StreamId::new(), Any, ev(1))).await;
        entered.await.expect("the handler never ran");
        // The handler is blocked on `gate`: a drop that waited for it would
        // hang here (the watchdog would end the run).
        drop(handle);
        open.send(()).unwrap();
        tokio::time::timeout(PATIENCE, dropped)
            .await
            .expect("the subscription never dropped its handler after the handle was dropped")
            .expect("the handler's captures were leaked");
        let calls_then = calls.load(Ordering::SeqCst);
        insert(&store, Transaction::single(StreamId::new(), Any, ev(2))).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            calls_then,
            "called after its end"
        );
    });
}

/// Polls `future` once with a waker that does nothing: its output if it is
/// ready at once.
fn poll_once<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}
