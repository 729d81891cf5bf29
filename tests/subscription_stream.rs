//! The owned forms of a pull subscription: `OwnedEnvelope`, the
//! `futures_core::Stream` (`SubscriptionStream`) and the blocking iterator
//! (`SubscriptionIter`); live-only starts (`Start::End`); `is_caught_up`;
//! a pull cursor that moves only past deliverable events; one-stream starts
//! found by binary search.
//!
//! Rules cited by number are those of the contract (`src/contract.md`).
//!
//! Every concurrent test compares what each consumer received with the
//! store's own `read_all` after the writers finished: exactly once, in
//! position order, nothing missing (rule 17). Writers pick their
//! transaction sizes from the seeded generator (`HINDSIGHT_TEST_SEED`
//! replays the workload). No test asserts on time: the timeouts below only
//! drop futures or bound waits for events that are never written.

mod common;

use common::{insert, scaled, seed, sid, watchdog, DropLedger, Rng, Tracked, WATCHDOG};
use futures_core::stream::FusedStream;
use futures_util::StreamExt;
use hindsight::{
    EventType, ExpectedVersion, Flow, MemoryStore, OwnedEnvelope, Position, Selector, Start,
    StreamId, Subscription, SubscriptionIter, SubscriptionStream, Transaction,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::Duration;

/// Far beyond any wait a test needs; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A wait for events nobody writes: it always runs out, whatever its length.
const SHORT: Duration = Duration::from_millis(2);

/// An event: who wrote it and its number in that writer's sequence.
type Ev = (u64, u64);

/// `(position, stream, payload)` of every event of `store`, from `read_all`.
fn log(store: &MemoryStore<Ev>) -> Vec<(Position, StreamId, Ev)> {
    store
        .read_all(Start::Beginning)
        .map(|e| (e.position(), e.stream_id(), *e.payload()))
        .collect()
}

/// `(position, stream, payload)` of an owned event.
fn row(event: &OwnedEnvelope<Ev>) -> (Position, StreamId, Ev) {
    (event.position(), event.stream_id(), *event.payload())
}

/// Writer `writer` appends `count` events to its stream `sid(writer)`, in
/// transactions of 1-5 events (seeded), every other one also carrying one
/// event for the shared stream `sid(1000)` (so one-stream consumers see
/// other streams' events interleaved).
fn write(store: &MemoryStore<Ev>, seed: u64, writer: u64, count: u64) {
    let mut rng = Rng::new(seed, writer);
    let mut next = 0;
    while next < count {
        let size = (1 + rng.below_u64(5)).min(count - next);
        let events: Vec<Ev> = (next..next + size).map(|n| (writer, n)).collect();
        let mut tx = Transaction::new().append(sid(writer.into()), ExpectedVersion::Any, events);
        if rng.below(2) == 0 {
            tx = tx.append(sid(1000), ExpectedVersion::Any, [(1000 + writer, next)]);
        }
        insert(store, tx);
        next += size;
    }
}

/// Keeps the panics the tests provoke on purpose out of the output.
fn quiet_expected_panics() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| m.contains("expected test panic")) {
                report(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------
// The types
// ---------------------------------------------------------------------------

#[test]
fn owned_forms_are_send_and_static_for_send_sync_events_and_need_no_clone() {
    fn send_static<T: Send + 'static>() {}
    fn sync<T: Sync>() {}
    // `Tracked` is neither `Clone` nor `Debug`.
    send_static::<OwnedEnvelope<Tracked>>();
    sync::<OwnedEnvelope<Tracked>>();
    send_static::<SubscriptionStream<Tracked>>();
    send_static::<SubscriptionIter<Tracked>>();
    send_static::<Subscription<Tracked>>();
}

/// Rule 24 with owned events: an `OwnedEnvelope` keeps its event (and the
/// store) alive after every other handle is gone, and the store's events are
/// dropped exactly once when the last owned event goes.
#[test]
fn rule_24_an_owned_event_keeps_the_store_alive_and_every_event_drops_once() {
    let _watchdog = watchdog("owned_event_keeps_the_store", WATCHDOG);
    let mut ledger = DropLedger::default();
    let store = MemoryStore::new();
    insert(
        &store,
        Transaction::new().append(sid(1), ExpectedVersion::Any, ledger.events(3)),
    );
    let mut events = store.subscribe(Selector::all()).into_iter();
    let second = {
        events.next().unwrap().unwrap();
        events.next().unwrap().unwrap()
    };
    let copy = second.clone();
    drop((events, store));
    assert_eq!(ledger.drops(), [0, 0, 0], "an owned event keeps the store");
    let on_another_thread = thread::spawn(move || second.position()).join().unwrap();
    assert_eq!(on_another_thread, Position(1));
    assert_eq!(ledger.drops(), [0, 0, 0], "its clone still does");
    assert_eq!(copy.envelope().position(), Position(1));
    drop(copy);
    assert_eq!(ledger.drops(), [1, 1, 1]);
}

#[test]
fn an_owned_event_has_the_envelopes_accessors() {
    let store = MemoryStore::new();
    let correlation = hindsight::CorrelationId::new();
    insert(
        &store,
        Transaction::new()
            .append(sid(1), ExpectedVersion::Any, [(1, 0), (1, 1)])
            .with_correlation_id(correlation),
    );
    let owned: Vec<_> = store
        .subscribe(Selector::all())
        .into_iter()
        .take(2)
        .map(Result::unwrap)
        .collect();
    for (owned, borrowed) in owned.iter().zip(store.read_all(Start::Beginning)) {
        assert_eq!(owned.position(), borrowed.position());
        assert_eq!(owned.stream_id(), borrowed.stream_id());
        assert_eq!(owned.version(), borrowed.version());
        assert_eq!(owned.event_id(), borrowed.event_id());
        assert_eq!(owned.correlation_id(), Some(correlation));
        assert_eq!(owned.created_at(), borrowed.created_at());
        assert_eq!(owned.payload(), borrowed.payload());
        assert_eq!(format!("{owned:?}"), format!("{borrowed:?}"));
    }
}

// ---------------------------------------------------------------------------
// The stream: exactly once, in order, to hundreds of tasks
// ---------------------------------------------------------------------------

/// What each consumer selects, by index.
fn selector_of(consumer: usize) -> Selector<Ev> {
    match consumer % 3 {
        0 => Selector::all(),
        1 => Selector::stream(sid(1000)),
        _ => Selector::stream(sid((consumer % 4) as u128)),
    }
}

/// Whether `row` is one `selector_of(consumer)` selects.
fn selects(consumer: usize, row: &(Position, StreamId, Ev)) -> bool {
    match consumer % 3 {
        0 => true,
        1 => row.1 == sid(1000),
        _ => row.1 == sid((consumer % 4) as u128),
    }
}

/// `CONSUMERS` tasks each consume a `SubscriptionStream` while `WRITERS`
/// threads write; half the tasks subscribe before the writers start, half
/// while they write. Each task reads until it has every event it selects
/// (known in advance), and must then be caught up. Every task's sequence
/// must be exactly the store's, filtered by its selector.
async fn hundreds_of_tasks_consume_one_store_while_writers_write() {
    const CONSUMERS: usize = 300;
    const WRITERS: u64 = 3;
    let per_writer = scaled(300, 2_000) as u64;
    let seed = seed();
    let store = MemoryStore::<Ev>::new();

    // How many events each selector gets: each writer's stream holds
    // `per_writer`; the shared stream one per transaction that chose it,
    // which only the writers' generators know, so count it from a dry run.
    let shared_count: u64 = (1..=WRITERS)
        .map(|writer| {
            let dry = MemoryStore::new();
            write(&dry, seed, writer, per_writer);
            dry.read_stream(sid(1000), Default::default()).count() as u64
        })
        .sum();
    let expected_count = |consumer: usize| match consumer % 3 {
        0 => WRITERS * per_writer + shared_count,
        1 => shared_count,
        _ if (1..=WRITERS as usize).contains(&(consumer % 4)) => per_writer,
        _ => 0, // sid(0): nobody writes it
    };

    let spawn_consumer = |consumer: usize| {
        let mut events = store.subscribe(selector_of(consumer)).into_stream();
        let count = expected_count(consumer);
        tokio::spawn(async move {
            let mut rows = Vec::new();
            while (rows.len() as u64) < count {
                let event = events.next().await.expect("a stream ends only on an error");
                rows.push(row(&event.expect("not poisoned")));
            }
            assert!(
                count == 0 || events.is_caught_up(),
                "consumer {consumer}: caught up after its last event"
            );
            assert!(!events.is_terminated());
            (consumer, rows)
        })
    };

    let mut tasks: Vec<_> = (0..CONSUMERS / 2).map(spawn_consumer).collect();
    let writers: Vec<_> = (1..=WRITERS)
        .map(|writer| {
            let store = store.clone();
            thread::spawn(move || write(&store, seed, writer, per_writer))
        })
        .collect();
    for consumer in CONSUMERS / 2..CONSUMERS {
        tasks.push(spawn_consumer(consumer));
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let log = log(&store);
    for task in tasks {
        let (consumer, rows) = task.await.unwrap();
        let expected: Vec<_> = log
            .iter()
            .filter(|r| selects(consumer, r))
            .copied()
            .collect();
        assert_eq!(rows.len(), expected.len(), "consumer {consumer}");
        assert!(
            rows == expected,
            "consumer {consumer}: not the store's sequence"
        );
    }
}

#[test]
fn rule_17_a_stream_delivers_exactly_once_in_order_to_hundreds_of_tasks_on_a_current_thread_runtime(
) {
    let _watchdog = watchdog("stream_current_thread", WATCHDOG);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(hundreds_of_tasks_consume_one_store_while_writers_write());
}

#[test]
fn rule_17_a_stream_delivers_exactly_once_in_order_to_hundreds_of_tasks_on_a_multi_thread_runtime()
{
    let _watchdog = watchdog("stream_multi_thread", WATCHDOG);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap()
        .block_on(hundreds_of_tasks_consume_one_store_while_writers_write());
}

// ---------------------------------------------------------------------------
// Cancel safety
// ---------------------------------------------------------------------------

/// Drops `next()` futures mid-wait (a lost `select!` branch, a timeout, a
/// future polled once and dropped) at seeded points while a writer writes:
/// every event still arrives exactly once, in order.
async fn next_futures_dropped_mid_wait_lose_nothing() {
    let seed = seed();
    let mut rng = Rng::new(seed, 99);
    let per_writer = scaled(2_000, 20_000) as u64;
    let total = written(seed, 1, per_writer);
    let store = MemoryStore::<Ev>::new();
    let mut events = store.subscribe(Selector::all()).into_stream();

    // Parked and dropped: nothing is written, so the timeout always wins.
    for _ in 0..5 {
        assert!(tokio::time::timeout(SHORT, events.next()).await.is_err());
    }
    let writer = {
        let store = store.clone();
        thread::spawn(move || write(&store, seed, 1, per_writer))
    };
    let mut rows = Vec::new();
    let mut dropped = 0u64;
    while (rows.len() as u64) < total {
        let event = match rng.below(4) {
            // A `select!` whose other branch is ready at once: the `next()`
            // future is polled once (and may register its waker) or not at
            // all, then dropped.
            0 => tokio::select! {
                event = events.next() => event,
                _ = std::future::ready(()) => None,
            },
            // The other branch is ready after one yield.
            1 => tokio::select! {
                event = events.next() => event,
                _ = tokio::task::yield_now() => None,
            },
            // A short timeout: dropped if nothing came in time.
            2 => tokio::time::timeout(Duration::from_micros(rng.below_u64(50)), events.next())
                .await
                .unwrap_or(None),
            // Waited for until it comes.
            _ => Some(
                tokio::time::timeout(PATIENCE, events.next())
                    .await
                    .expect("a wait was never woken")
                    .expect("a stream ends only on an error"),
            ),
        };
        match event {
            Some(event) => rows.push(row(&event.expect("not poisoned"))),
            None => dropped += 1,
        }
    }
    writer.join().unwrap();
    assert!(rows == log(&store), "not the store's sequence");
    eprintln!("{dropped} next() futures dropped before they returned an event");
    // Nothing more, and a wait after all those drops still parks and wakes.
    assert!(events.next().now_or_never_is_pending());
    insert(
        &store,
        Transaction::single(sid(7), ExpectedVersion::Any, (7, 0)),
    );
    let last = tokio::time::timeout(PATIENCE, events.next()).await.unwrap();
    assert_eq!(last.unwrap().unwrap().position(), Position(total));
}

/// How many events `write(_, seed, writer, count)` writes in all (its
/// stream's and the shared stream's), from a dry run.
fn written(seed: u64, writer: u64, count: u64) -> u64 {
    let dry = MemoryStore::new();
    write(&dry, seed, writer, count);
    dry.read_all(Start::Beginning).count() as u64
}

/// Polls a future once, with a waker that does nothing.
trait NowOrNever: std::future::Future + Sized {
    fn now_or_never_is_pending(self) -> bool {
        let mut future = std::pin::pin!(self);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.as_mut().poll(&mut cx).is_pending()
    }
}
impl<F: std::future::Future> NowOrNever for F {}

#[test]
fn rule_28_next_futures_dropped_mid_wait_lose_nothing_on_a_current_thread_runtime() {
    let _watchdog = watchdog("cancel_safe_current_thread", WATCHDOG);
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(next_futures_dropped_mid_wait_lose_nothing());
}

#[test]
fn rule_28_next_futures_dropped_mid_wait_lose_nothing_on_a_multi_thread_runtime() {
    let _watchdog = watchdog("cancel_safe_multi_thread", WATCHDOG);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
        .block_on(next_futures_dropped_mid_wait_lose_nothing());
}

/// A stream dropped while parked, and streams parked in many tasks, do not
/// disturb one that keeps waiting; and the pull subscription taken back
/// from a stream continues where the stream left off.
#[test]
fn a_stream_dropped_while_parked_leaves_the_others_waiting_and_into_subscription_continues() {
    let _watchdog = watchdog("stream_dropped_parked", WATCHDOG);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = MemoryStore::<Ev>::new();
        let mut kept = store.subscribe(Selector::all()).into_stream();
        let mut dropped = store.subscribe(Selector::all()).into_stream();
        assert!(tokio::time::timeout(SHORT, dropped.next()).await.is_err());
        assert!(tokio::time::timeout(SHORT, kept.next()).await.is_err());
        drop(dropped);
        let waiter = tokio::spawn(async move {
            let event = kept.next().await.unwrap().unwrap();
            assert_eq!(*event.payload(), (1, 0));
            kept
        });
        insert(
            &store,
            Transaction::new().append(sid(1), ExpectedVersion::Any, [(1, 0), (1, 1)]),
        );
        let kept = tokio::time::timeout(PATIENCE, waiter)
            .await
            .expect("never woken")
            .unwrap();
        let mut pull = kept.into_subscription();
        assert_eq!(*pull.try_next().unwrap().unwrap().payload(), (1, 1));
        assert!(pull.try_next().unwrap().is_none());
    });
}

// ---------------------------------------------------------------------------
// The blocking iterator
// ---------------------------------------------------------------------------

#[test]
fn rule_17_the_blocking_iterator_delivers_exactly_once_in_order_while_writers_write() {
    let _watchdog = watchdog("blocking_iterator", WATCHDOG);
    let seed = seed();
    let per_writer = scaled(1_000, 10_000) as u64;
    let store = MemoryStore::<Ev>::new();
    let consumers: Vec<_> = (0..4)
        .map(|consumer| {
            let _ = consumer;
            let events = store.subscribe(Selector::all()).into_iter();
            thread::spawn(move || {
                // Until the sentinel event, written after the writers.
                let mut rows = Vec::new();
                for event in events {
                    let event = event.expect("not poisoned");
                    if *event.payload() == (0, 0) {
                        break;
                    }
                    rows.push(row(&event));
                }
                rows
            })
        })
        .collect();
    let writers: Vec<_> = (1..=2)
        .map(|writer| {
            let store = store.clone();
            thread::spawn(move || write(&store, seed, writer, per_writer))
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let expected = log(&store);
    insert(
        &store,
        Transaction::single(sid(0), ExpectedVersion::Any, (0, 0)),
    );
    for consumer in consumers {
        assert!(
            consumer.join().unwrap() == expected,
            "not the store's sequence"
        );
    }
}

#[test]
fn the_blocking_iterators_next_timeout_and_try_next() {
    let _watchdog = watchdog("iterator_timeouts", WATCHDOG);
    let store = MemoryStore::<Ev>::new();
    let mut events = store.subscribe(Selector::all()).into_iter();
    assert!(events.try_next().unwrap().is_none());
    assert!(events.next_timeout(SHORT).unwrap().is_none());
    let writer = {
        let store = store.clone();
        thread::spawn(move || {
            insert(
                &store,
                Transaction::single(sid(1), ExpectedVersion::Any, (1, 0)),
            )
        })
    };
    let event = events.next_timeout(PATIENCE).unwrap().expect("it commits");
    assert_eq!(*event.payload(), (1, 0));
    writer.join().unwrap();
    assert!(events.try_next().unwrap().is_none());
    assert!(events.is_caught_up());
    assert_eq!(events.passed(), Some(Position(0)));
    let mut pull = events.into_subscription();
    assert!(pull.try_next().unwrap().is_none());
}

// ---------------------------------------------------------------------------
// Live-only start
// ---------------------------------------------------------------------------

/// `Start::End` skips everything committed when the subscription is made,
/// in every form: pull, stream, iterator, handler subscriber, for all
/// streams and for one; and a read from the end is empty.
#[test]
fn rule_16_a_subscription_from_the_end_delivers_only_events_committed_after_it_was_made() {
    let _watchdog = watchdog("start_end", WATCHDOG);
    let store = MemoryStore::<Ev>::new();
    insert(
        &store,
        Transaction::new()
            .append(sid(1), ExpectedVersion::Any, [(1, 0), (1, 1)])
            .append(sid(2), ExpectedVersion::Any, [(2, 0)]),
    );
    assert_eq!(store.read_all(Start::End).count(), 0);
    let live = || Selector::all().start(Start::End);
    let mut pull = store.subscribe(live());
    let mut one_stream = store.subscribe(Selector::stream(sid(1)).start(Start::End));
    let mut iter = store.subscribe(live()).into_iter();
    let mut stream = store.subscribe(live()).into_stream();
    let (seen, handled) = std::sync::mpsc::channel();
    let subscriber = store.spawn_subscriber(live(), move |event| {
        seen.send(*event.payload()).unwrap();
        Ok::<_, std::convert::Infallible>(Flow::Continue)
    });
    assert!(pull.try_next().unwrap().is_none());
    assert!(pull.is_caught_up());
    assert_eq!(
        pull.passed(),
        Some(Position(2)),
        "the history counts as passed"
    );
    assert!(one_stream.try_next().unwrap().is_none());

    insert(
        &store,
        Transaction::new()
            .append(sid(1), ExpectedVersion::Any, [(1, 2)])
            .append(sid(2), ExpectedVersion::Any, [(2, 1)]),
    );
    let mut from_pull = Vec::new();
    while let Some(event) = pull.try_next().unwrap() {
        from_pull.push(*event.payload());
    }
    assert_eq!(from_pull, [(1, 2), (2, 1)]);
    assert_eq!(*one_stream.try_next().unwrap().unwrap().payload(), (1, 2));
    assert!(one_stream.try_next().unwrap().is_none());
    let from_iter: Vec<_> = (0..2)
        .map(|_| *iter.next().unwrap().unwrap().payload())
        .collect();
    assert_eq!(from_iter, [(1, 2), (2, 1)]);
    let from_stream: Vec<_> = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let mut rows = Vec::new();
            for _ in 0..2 {
                rows.push(*stream.next().await.unwrap().unwrap().payload());
            }
            rows
        });
    assert_eq!(from_stream, [(1, 2), (2, 1)]);
    let from_handler: Vec<_> = (0..2)
        .map(|_| handled.recv_timeout(PATIENCE).unwrap())
        .collect();
    assert_eq!(from_handler, [(1, 2), (2, 1)]);
    subscriber.cancel();
}

/// A subscription from the end made while writers write delivers exactly
/// the store's sequence from some position between the heads seen just
/// before and just after it was made: a suffix, with no gap and nothing
/// before it.
#[test]
fn rule_17_subscriptions_from_the_end_made_during_writes_deliver_a_gapless_suffix() {
    let _watchdog = watchdog("start_end_during_writes", WATCHDOG);
    let seed = seed();
    let per_writer = scaled(500, 5_000) as u64;
    let store = MemoryStore::<Ev>::new();
    let writers: Vec<_> = (1..=2)
        .map(|writer| {
            let store = store.clone();
            thread::spawn(move || write(&store, seed, writer, per_writer))
        })
        .collect();
    let mut subscriptions = Vec::new();
    for consumer in 0..20 {
        let before = store.head();
        let subscription = store.subscribe(selector_of(consumer).start(Start::End));
        let after = store.head();
        subscriptions.push((consumer, before, after, subscription));
        thread::yield_now();
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let log = log(&store);
    for (consumer, before, after, subscription) in subscriptions {
        let mut rows = Vec::new();
        let mut subscription = subscription.into_iter();
        while let Some(event) = subscription.try_next().unwrap() {
            rows.push(row(&event));
        }
        let first = rows.first().map(|r| r.0);
        let lowest = before.map_or(0, |p| p.get() + 1);
        if let Some(first) = first {
            assert!(
                first.get() >= lowest,
                "consumer {consumer}: {first:?} was committed before it"
            );
        }
        // Everything the selector gets after the start: exactly `rows`.
        let start = first.map_or(u64::MAX, Position::get);
        let expected: Vec<_> = log
            .iter()
            .filter(|r| selects(consumer, r) && r.0.get() >= start)
            .copied()
            .collect();
        assert!(
            rows == expected,
            "consumer {consumer}: not a gapless suffix"
        );
        // Nothing the selector gets that was committed after `after` is missing.
        let highest = after.map_or(0, |p| p.get() + 1);
        let missing = log
            .iter()
            .filter(|r| selects(consumer, r) && r.0.get() >= highest)
            .any(|r| !rows.contains(r));
        assert!(
            !missing,
            "consumer {consumer}: missed an event committed after it was made"
        );
    }
}

// ---------------------------------------------------------------------------
// Caught up
// ---------------------------------------------------------------------------

/// An event whose type name may panic, or name a type outside the filter.
struct Named {
    n: u64,
    name: &'static str,
    /// While set, naming the type panics.
    panics: Arc<AtomicBool>,
}

impl EventType for Named {
    fn event_type(&self) -> &str {
        if self.panics.load(Ordering::SeqCst) {
            panic!("expected test panic: no name for event {}", self.n);
        }
        self.name
    }
}

fn named(n: u64, name: &'static str, panics: &Arc<AtomicBool>) -> Named {
    Named {
        n,
        name,
        panics: Arc::clone(panics),
    }
}

#[test]
fn is_caught_up_turns_true_with_the_last_event_committed_when_the_subscription_looked() {
    let _watchdog = watchdog("caught_up", WATCHDOG);
    let store = MemoryStore::<Ev>::new();
    insert(
        &store,
        Transaction::new().append(sid(1), ExpectedVersion::Any, (0..5).map(|n| (1, n))),
    );
    insert(
        &store,
        Transaction::single(sid(2), ExpectedVersion::Any, (2, 0)),
    );

    // All streams: false before the first call and until the last event.
    let mut all = store.subscribe(Selector::all());
    assert!(!all.is_caught_up());
    let mut caught_up = Vec::new();
    while all.try_next().unwrap().is_some() {
        caught_up.push(all.is_caught_up());
    }
    assert_eq!(caught_up, [false, false, false, false, false, true]);
    assert!(all.is_caught_up());

    // One stream: true with its own last event, whatever other streams hold.
    let mut one = store.subscribe(Selector::stream(sid(1)));
    let mut caught_up = Vec::new();
    while one.try_next().unwrap().is_some() {
        caught_up.push(one.is_caught_up());
    }
    assert_eq!(caught_up, [false, false, false, false, true]);

    // New events: still true until the subscription looks again and finds
    // them; then false until it delivered the last of them.
    insert(
        &store,
        Transaction::new().append(sid(1), ExpectedVersion::Any, [(1, 5), (1, 6)]),
    );
    assert!(all.is_caught_up(), "it has not looked since");
    all.try_next().unwrap().unwrap();
    assert!(!all.is_caught_up());
    all.try_next().unwrap().unwrap();
    assert!(all.is_caught_up());

    // The stream and the iterator answer the same.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut stream = store.subscribe(Selector::all()).into_stream();
    let caught_up = runtime.block_on(async {
        let mut caught_up = Vec::new();
        for _ in 0..8 {
            stream.next().await.unwrap().unwrap();
            caught_up.push(stream.is_caught_up());
        }
        assert!(tokio::time::timeout(SHORT, stream.next()).await.is_err());
        caught_up.push(stream.is_caught_up());
        caught_up
    });
    assert_eq!(
        caught_up,
        [false, false, false, false, false, false, false, true, true]
    );
    let mut iter = store.subscribe(Selector::all()).into_iter();
    assert!(!iter.is_caught_up());
    for _ in 0..8 {
        iter.next().unwrap().unwrap();
    }
    assert!(iter.is_caught_up());
}

#[test]
fn with_a_type_filter_is_caught_up_may_wait_for_the_next_call_past_skipped_events() {
    let store = MemoryStore::new();
    let never = Arc::new(AtomicBool::new(false));
    insert(
        &store,
        Transaction::new().append(
            sid(1),
            ExpectedVersion::Any,
            [named(0, "Known", &never), named(1, "Other", &never)],
        ),
    );
    let mut known = store.subscribe(Selector::all().only_types(["Known"]));
    assert_eq!(known.try_next().unwrap().unwrap().payload().n, 0);
    assert!(
        !known.is_caught_up(),
        "the skipped event is not looked at yet"
    );
    assert!(known.try_next().unwrap().is_none());
    assert!(known.is_caught_up());
}

// ---------------------------------------------------------------------------
// A pull cursor moves only past deliverable events (rule 17, rule 27)
// ---------------------------------------------------------------------------

/// A type name that panics is caught by the caller; the next call sees the
/// same event again (and panics again while the name still panics), and
/// once the name answers, delivers it: no event is skipped. For all
/// streams and one stream, and in the pull, iterator and stream forms.
#[test]
fn rule_17_a_type_name_that_panics_leaves_the_pull_cursor_on_its_event() {
    let _watchdog = watchdog("panicking_type_name", WATCHDOG);
    quiet_expected_panics();
    let store = MemoryStore::new();
    let calm = Arc::new(AtomicBool::new(false));
    let panics = Arc::new(AtomicBool::new(true));
    insert(
        &store,
        Transaction::new().append(
            sid(1),
            ExpectedVersion::Any,
            [
                named(0, "Known", &calm),
                named(1, "Known", &panics),
                named(2, "Known", &calm),
            ],
        ),
    );
    let selectors = || {
        [
            Selector::all().only_types(["Known"]),
            Selector::stream(sid(1)).only_types(["Known"]),
        ]
    };
    let delivered_after_two_panics = |next: &mut dyn FnMut() -> u64| {
        panics.store(true, Ordering::SeqCst);
        assert_eq!(next(), 0);
        for attempt in 0..2 {
            let result = catch_unwind(AssertUnwindSafe(&mut *next));
            assert!(result.is_err(), "attempt {attempt}: the name panics");
        }
        panics.store(false, Ordering::SeqCst);
        assert_eq!(
            next(),
            1,
            "the event the name panicked on, not the one after"
        );
        assert_eq!(next(), 2);
    };
    for selector in selectors() {
        let mut pull = store.subscribe(selector);
        delivered_after_two_panics(&mut || pull.try_next().unwrap().unwrap().payload().n);
        assert!(pull.try_next().unwrap().is_none());
    }
    for selector in selectors() {
        let mut iter = store.subscribe(selector).into_iter();
        delivered_after_two_panics(&mut || iter.next().unwrap().unwrap().payload().n);
    }
    for selector in selectors() {
        let mut stream = store.subscribe(selector).into_stream();
        let mut poll = || {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match stream.poll_next_unpin(&mut cx) {
                std::task::Poll::Ready(Some(Ok(event))) => event.payload().n,
                other => panic!("unexpected {:?}", other.is_ready()),
            }
        };
        delivered_after_two_panics(&mut poll);
    }
}

// ---------------------------------------------------------------------------
// One-stream starts (binary search)
// ---------------------------------------------------------------------------

/// A one-stream subscription after position `p` starts at the stream's
/// first event after `p`, for every `p` from before the first event to
/// past the head, with the stream's events scattered among others' (seeded);
/// and one started past the head delivers the stream's first event after
/// `p` once it is written, not an earlier one.
#[test]
fn rule_16_a_one_stream_subscription_after_any_position_starts_at_its_first_later_event() {
    let _watchdog = watchdog("one_stream_start", WATCHDOG);
    let mut rng = Rng::new(seed(), 16);
    let store = MemoryStore::<Ev>::new();
    let target = sid(1);
    for n in 0..scaled(1_500, 6_000) as u64 {
        let stream = if rng.below(3) == 0 { target } else { sid(2) };
        let size = 1 + rng.below_u64(3);
        insert(
            &store,
            Transaction::new().append(stream, ExpectedVersion::Any, (0..size).map(|k| (n, k))),
        );
    }
    let positions: Vec<Position> = store
        .read_stream(target, Default::default())
        .map(|e| e.position())
        .collect();
    let head = store.head().unwrap().get();
    for p in 0..=head + 2 {
        let expected = positions.iter().copied().find(|q| q.get() > p);
        let mut subscription = store.subscribe(Selector::stream(target).after(Position(p)));
        let first = subscription.try_next().unwrap().map(|e| e.position());
        assert_eq!(first, expected, "after {p}");
        if expected.is_some() {
            let rest =
                std::iter::from_fn(|| subscription.try_next().unwrap().map(|e| e.position()));
            let all: Vec<_> = first.into_iter().chain(rest).collect();
            let want: Vec<_> = positions.iter().copied().filter(|q| q.get() > p).collect();
            assert_eq!(all, want, "after {p}: the rest");
        }
    }
    // Started past the head: later versions may still lie before the start.
    let start = head + 5;
    let mut ahead = store.subscribe(Selector::stream(target).after(Position(start)));
    assert!(ahead.try_next().unwrap().is_none());
    let mut next = head + 1;
    while next <= start + 2 {
        let done = insert(
            &store,
            Transaction::single(target, ExpectedVersion::Any, (next, 0)),
        );
        next = done.last_position().unwrap().get() + 1;
        let delivered = ahead.try_next().unwrap().map(|e| e.position().get());
        let expected = (next - 1 > start).then_some(next - 1);
        assert_eq!(delivered, expected);
    }
}
