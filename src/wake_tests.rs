//! Targeted wake-ups: where each kind of wait parks, that commits to other
//! streams leave a one-stream wait parked, and that nothing a one-stream
//! wait needs (its own commits, poisoning, a cancel, a wait for another
//! stream's position) is lost on the way.

use crate::store::fault;
use crate::{
    ExpectedVersion, Flow, InsertError, MemoryStore, Position, Selector, StreamId,
    SubscriptionError, Transaction, WaitError,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: only a lost wake-up reaches it.
const HANG: Duration = Duration::from_secs(30);

/// How many sleepers `stream`'s signal has (0 if it is not indexed).
fn stream_sleepers(store: &MemoryStore<u32>, stream: StreamId) -> usize {
    store
        .inner
        .streams
        .with(stream, |stream| stream.signal.sleepers())
        .unwrap_or(0)
}

fn watermark_sleepers(store: &MemoryStore<u32>) -> usize {
    store.inner.log.watermark.signal.sleepers()
}

/// Waits (yielding) until `parked()` holds: a state another thread reaches
/// on its own, with no timing assumption but the hang guard.
fn until(what: &str, parked: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG;
    while !parked() {
        assert!(Instant::now() < deadline, "never reached: {what}");
        std::thread::yield_now();
    }
}

fn one(store: &MemoryStore<u32>, stream: StreamId, payload: u32) -> Position {
    store
        .insert(Transaction::single(stream, ExpectedVersion::Any, payload))
        .unwrap()
        .last_position()
        .unwrap()
}

/// Before targeted wake-ups every parked subscription slept on the
/// watermark's signal, so every commit woke them all: 1,000 idle one-stream
/// subscribers cut a writer from about 1 M to 15 k events/s. A one-stream
/// pull subscription now parks on its stream's signal, created in the
/// index for it if the stream does not exist yet, and commits to other
/// streams leave it (and the watermark's signal) alone.
#[test]
fn a_one_stream_subscription_parks_on_its_stream_not_on_the_watermark() {
    let store = MemoryStore::new();
    let (mine, other) = (StreamId::new(), StreamId::new());
    let (sent, received) = mpsc::channel();
    let reader = {
        let mut subscription = store.subscribe(Selector::stream(mine));
        std::thread::spawn(move || {
            for _ in 0..2 {
                let event = subscription.next().map(|e| *e.payload());
                sent.send(event).unwrap();
            }
        })
    };
    until("the subscription parks on its stream", || {
        stream_sleepers(&store, mine) == 1
    });
    assert_eq!(watermark_sleepers(&store), 0);
    for i in 0..100 {
        one(&store, other, i);
        // Still parked where it was: never woken to find nothing.
        assert_eq!(stream_sleepers(&store, mine), 1);
        assert_eq!(watermark_sleepers(&store), 0);
    }
    assert!(received.try_recv().is_err(), "nothing of its stream yet");
    one(&store, mine, 7);
    assert_eq!(received.recv_timeout(HANG), Ok(Ok(7)));
    until("it parks again", || stream_sleepers(&store, mine) == 1);
    one(&store, mine, 8);
    assert_eq!(received.recv_timeout(HANG), Ok(Ok(8)));
    reader.join().unwrap();
}

/// An all-streams subscription still parks on the watermark's signal (it
/// wants every commit).
#[test]
fn an_all_streams_subscription_parks_on_the_watermark() {
    let store = MemoryStore::new();
    let mut subscription = store.subscribe(Selector::all());
    let reader = std::thread::spawn(move || subscription.next().map(|e| *e.payload()));
    until("the subscription parks on the watermark", || {
        watermark_sleepers(&store) == 1
    });
    one(&store, StreamId::new(), 3);
    assert_eq!(reader.join().unwrap(), Ok(3));
}

/// A subscription holds its stream's index entry while it lives (to park
/// on its signal); dropped, it must not leave an empty entry behind, in
/// any of its forms.
#[test]
fn one_stream_subscriptions_of_a_missing_stream_leave_no_index_entry_when_dropped() {
    let store = MemoryStore::<u32>::new();
    let id = StreamId::new();
    drop(store.subscribe(Selector::stream(id)));
    assert_eq!(store.inner.streams.len(), 0, "pull");
    drop(store.subscribe(Selector::stream(id)).into_iter());
    assert_eq!(store.inner.streams.len(), 0, "iterator");
    // A stream that registered a waker holds the stream in its sleeper too.
    let mut events = store.subscribe(Selector::stream(id)).into_stream();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = futures_core::Stream::poll_next(std::pin::Pin::new(&mut events), &mut cx);
    assert!(polled.is_pending());
    assert_eq!(stream_sleepers(&store, id), 1);
    drop(events);
    assert_eq!(store.inner.streams.len(), 0, "stream");
    let subscriber = store.spawn_subscriber(Selector::stream(id), |_| Ok::<_, ()>(Flow::Continue));
    subscriber.cancel();
    assert_eq!(subscriber.wait(), Ok(()));
    assert_eq!(store.inner.streams.len(), 0, "handler");
    // A stream with events stays, as always.
    one(&store, id, 1);
    drop(store.subscribe(Selector::stream(id)));
    assert_eq!(store.inner.streams.len(), 1);
}

/// Poisoning commits nothing, so no writer wakes the stream a one-stream
/// subscription parks on: the poisoning writer's unwinding must (here a
/// panic injected between reserving and committing, on another stream).
#[test]
fn poisoning_wakes_a_one_stream_subscription_parked_on_its_stream() {
    let store = MemoryStore::new();
    let (mine, other) = (StreamId::new(), StreamId::new());
    one(&store, mine, 1);
    let (sent, received) = mpsc::channel();
    let reader = {
        let mut subscription = store.subscribe(Selector::stream(mine));
        std::thread::spawn(move || {
            let first = subscription.next().map(|e| *e.payload());
            let second = subscription.next().map(|e| *e.payload());
            sent.send((first, second)).unwrap();
        })
    };
    until("the subscription parks on its stream", || {
        stream_sleepers(&store, mine) == 1
    });
    fault::after_writes(0, || {
        panic!("injected fault between reservation and commit")
    });
    let failed = catch_unwind(AssertUnwindSafe(|| one(&store, other, 2)));
    assert!(failed.is_err());
    assert!(store.is_poisoned());
    assert_eq!(
        received.recv_timeout(HANG),
        Ok((Ok(1), Err(SubscriptionError::Poisoned)))
    );
    reader.join().unwrap();
    assert_eq!(
        store.insert(Transaction::single(mine, ExpectedVersion::Any, 3)),
        Err(InsertError::Poisoned)
    );
}

/// A one-stream handler subscriber sleeps through other streams' commits,
/// so `processed` does not follow them on its own; a wait for one of their
/// positions (or for everything committed) must still be answered: the
/// wait makes the worker follow every commit while it lasts.
#[test]
fn a_one_stream_handler_subscriber_answers_waits_for_other_streams_positions() {
    let store = MemoryStore::new();
    let (mine, other) = (StreamId::new(), StreamId::new());
    let subscriber =
        store.spawn_subscriber(Selector::stream(mine), |_| Ok::<_, ()>(Flow::Continue));
    for i in 0..100 {
        let position = one(&store, other, i);
        // Parked on its stream, the worker has not seen this commit (and,
        // woken by nothing, would never see it).
        until("the worker parks on its stream", || {
            stream_sleepers(&store, mine) == 1
        });
        if i % 2 == 0 {
            assert_eq!(subscriber.wait_processed(position, HANG), Ok(()), "{i}");
            assert!(subscriber.processed() >= Some(position));
        } else {
            assert_eq!(subscriber.wait_caught_up(HANG), Ok(()), "{i}");
        }
        // Its own stream's commits reach it without any wait.
        let position = one(&store, mine, i);
        assert_eq!(subscriber.wait_processed(position, HANG), Ok(()), "{i}");
    }
    // A position not yet committed, of another stream: the wait starts
    // before the commit.
    let next = Position(store.head().unwrap().0 + 1);
    let waiter = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| subscriber.wait_processed(next, HANG));
        until("the worker follows every commit", || {
            watermark_sleepers(&store) == 1
        });
        one(&store, other, 0);
        waiter.join().unwrap()
    });
    assert_eq!(waiter, Ok(()));
    // Once no wait watches it, it parks on its stream again.
    until("the worker parks on its stream", || {
        one(&store, other, 0);
        stream_sleepers(&store, mine) == 1
    });
    assert_eq!(
        subscriber.wait_processed(Position(u64::MAX), Duration::ZERO),
        Err(WaitError::TimedOut)
    );
    subscriber.cancel();
    assert_eq!(subscriber.wait(), Ok(()));
}

/// A cancel reaches a one-stream worker parked on its stream.
#[test]
fn cancel_wakes_a_one_stream_handler_subscriber_parked_on_its_stream() {
    let store = MemoryStore::<u32>::new();
    let mine = StreamId::new();
    let subscriber =
        store.spawn_subscriber(Selector::stream(mine), |_| Ok::<_, ()>(Flow::Continue));
    until("the worker parks on its stream", || {
        stream_sleepers(&store, mine) == 1
    });
    subscriber.cancel();
    assert!(subscriber.is_finished());
    assert_eq!(subscriber.wait(), Ok(()));
}
