//! Loom models of `SubscriptionStream`'s waker-based wait.
//!
//! The handshake is `Signal::prepare`'s, unchanged (register a listener,
//! count the sleeper, fence, check again, then return `Pending`); what is
//! new is that the registration is owned (`OwnedSleeper`) and outlives the
//! poll that made it: a later poll, with another waker, polls the same
//! listener. These models check that no wake-up is lost either way: a
//! commit racing the first poll, and a commit racing a second poll after a
//! first one returned `Pending` and its `next()` future was dropped.
#![cfg(loom)]

mod common;

use common::{check, stream, Outcomes};
use futures_core::Stream;
use hindsight::{
    ExpectedVersion, MemoryStore, Position, Selector, SubscriptionStream, Transaction,
};
use loom::thread;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The next event of `events`, awaited on loom's `block_on` (whose waker
/// is loom-tracked: a lost wake-up is a deadlock loom reports).
fn next(events: &mut SubscriptionStream<u32>) -> (Position, u32) {
    let event = loom::future::block_on(poll_fn(|cx| Pin::new(&mut *events).poll_next(cx)))
        .expect("a stream ends only on an error")
        .expect("not poisoned");
    (event.position(), *event.payload())
}

/// (c) A stream polled until it waits receives a concurrent insert: its
/// poll registers, fences and checks again before returning `Pending`.
#[test]
fn a_subscription_stream_receives_a_concurrent_insert() {
    check(
        "a_subscription_stream_receives_a_concurrent_insert",
        2,
        || {
            let store = MemoryStore::<u32>::new();
            let subscriber = {
                let mut events = store.subscribe(Selector::all()).into_stream();
                thread::spawn(move || next(&mut events))
            };
            let writer = {
                let store = store.clone();
                thread::spawn(move || {
                    store
                        .insert(Transaction::single(stream(1), ExpectedVersion::Any, 7))
                        .unwrap()
                })
            };
            writer.join().unwrap();
            assert_eq!(subscriber.join().unwrap(), (Position(0), 7));
        },
    );
}

/// (c) A `next()` future polled once and dropped (a lost `select!` branch)
/// leaves the stream's listener registered; the next poll, with another
/// waker, still gets the concurrent insert, whether it committed before the
/// first poll, between the polls or after the second.
#[test]
fn a_subscription_stream_polled_again_after_a_dropped_poll_receives_a_concurrent_insert() {
    let name =
        "a_subscription_stream_polled_again_after_a_dropped_poll_receives_a_concurrent_insert";
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let subscriber = {
            let mut events = store.subscribe(Selector::all()).into_stream();
            let seen = seen.clone();
            thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(&mut events).poll_next(&mut cx) {
                    Poll::Ready(Some(Ok(event))) => {
                        seen.record("first poll ready");
                        (event.position(), *event.payload())
                    }
                    Poll::Ready(other) => panic!("not an event: {:?}", other.is_some()),
                    Poll::Pending => {
                        seen.record("first poll pending");
                        next(&mut events)
                    }
                }
            })
        };
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(Transaction::single(stream(1), ExpectedVersion::Any, 7))
                    .unwrap()
            })
        };
        writer.join().unwrap();
        assert_eq!(subscriber.join().unwrap(), (Position(0), 7));
    });
    outcomes.require(name, &["first poll ready", "first poll pending"]);
}

/// (c) Targeted wake-ups in the async stream: a one-stream
/// `SubscriptionStream` registers its waker on its stream's signal (its
/// `OwnedSleeper` holds the stream), and an insert into that stream,
/// committed on the fast path (whose commit fence serves the stream's
/// wake, `Signal::wake_fenced`), reaches it, whether the insert commits
/// before the first poll, between the check and `Pending`, or after.
#[test]
fn a_one_stream_subscription_stream_receives_a_concurrent_insert_into_its_stream() {
    let name = "a_one_stream_subscription_stream_receives_a_concurrent_insert_into_its_stream";
    check(name, 2, || {
        let store = MemoryStore::<u32>::new();
        let subscriber = {
            let mut events = store.subscribe(Selector::stream(stream(2))).into_stream();
            thread::spawn(move || next(&mut events))
        };
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(Transaction::single(stream(2), ExpectedVersion::Any, 7))
                    .unwrap()
            })
        };
        writer.join().unwrap();
        assert_eq!(subscriber.join().unwrap(), (Position(0), 7));
    });
}
