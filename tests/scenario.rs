//! The kit for application code (`testkit::Scenario` and its parts): seeding
//! a history, recording what was written since a mark, the diff of a failed
//! assertion, the given/when/then checks and the wait for a projection, on
//! the memory store and on the same store behind `Faulty`.

use hindsight::testkit::{assert_processed, given, Faulty, Mark, Scenario};
use hindsight::{
    EventStore, ExpectedVersion, Flow, MemoryStore, Position, Selector, StoreError, StreamId,
    StreamVersion, Transaction,
};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
enum Cart {
    Opened,
    Added(u32),
    Removed(u32),
}

/// The command under test: removes an item if the cart holds it, writing
/// with the version it decided on.
async fn remove<S: EventStore<Event = Cart>>(
    store: &S,
    cart: StreamId,
    item: u32,
) -> Result<StreamVersion, RemoveError<S::Error>> {
    let mut items = Vec::new();
    let mut head = None;
    store
        .read_stream(cart, StreamVersion(0), |event| {
            match event.payload {
                Cart::Added(added) => items.push(*added),
                Cart::Removed(removed) => items.retain(|item| item != removed),
                Cart::Opened => {}
            }
            head = Some(event.version);
            std::ops::ControlFlow::Continue(())
        })
        .await
        .map_err(|error| RemoveError::Store(StoreError::Backend(error)))?;
    let version = head.ok_or(RemoveError::NoCart)?;
    if !items.contains(&item) {
        return Err(RemoveError::NotInCart(item));
    }
    let tx = Transaction::single(cart, ExpectedVersion::Exact(version), Cart::Removed(item));
    let committed = store.insert(tx).await.map_err(RemoveError::Store)?;
    Ok(committed
        .stream(cart)
        .expect("an event was written")
        .version)
}

#[derive(Debug)]
enum RemoveError<B> {
    NoCart,
    NotInCart(u32),
    Store(StoreError<B>),
}

impl<B> hindsight::testkit::ConflictError for RemoveError<B> {
    fn version_conflict(&self) -> Option<&[hindsight::VersionMismatch]> {
        match self {
            RemoveError::Store(error) => error.version_conflict(),
            _ => None,
        }
    }
}

/// The message of a caught panic.
fn message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .unwrap_or_default(),
    }
}

/// The message `check` panics with; fails the test if it does not panic.
fn panic_message(check: impl FnOnce()) -> String {
    message(catch_unwind(AssertUnwindSafe(check)).expect_err("the check should have panicked"))
}

#[tokio::test]
async fn recording_since_the_mark_leaves_out_the_given_history() {
    let store = MemoryStore::new();
    let (cart, other) = (StreamId::new(), StreamId::new());
    let mark = given(
        &store,
        [
            (cart, vec![Cart::Opened, Cart::Added(1)]),
            (other, vec![Cart::Opened]),
            (cart, vec![Cart::Added(2)]), // a stream may come twice: appended
        ],
    )
    .await
    .unwrap();
    // The history is in the store, in the order given.
    assert_eq!(mark.position(), Some(Position(3)));
    assert_eq!(
        EventStore::stream_head(&store, cart)
            .await
            .unwrap()
            .map(|head| head.version),
        Some(StreamVersion(2))
    );

    let removed = remove(&store, cart, 1).await.unwrap();
    assert_eq!(removed, StreamVersion(3));

    let written = mark.written().await.unwrap();
    assert_eq!(written.after(), Some(Position(3)));
    assert_eq!(written.len(), 1);
    let event = &written.events()[0];
    assert_eq!(
        (event.position, event.stream, event.version, &event.event),
        (Position(4), cart, StreamVersion(3), &Cart::Removed(1))
    );
    assert_eq!(written.head(), Some(Position(4)));
    written.assert_events(cart, [Cart::Removed(1)]);
    written.assert_events(other, []);
}

#[tokio::test]
async fn written_events_are_grouped_by_stream_in_order_of_first_write() {
    let store = MemoryStore::new();
    let mark = Mark::take(&store).await.unwrap();
    assert_eq!(mark.position(), None);
    let (a, b) = (StreamId::new(), StreamId::new());
    for (stream, item) in [(b, 1), (a, 2), (b, 3)] {
        let tx = Transaction::single(stream, ExpectedVersion::Any, Cart::Added(item));
        EventStore::insert(&store, tx).await.unwrap();
    }
    let written = mark.written().await.unwrap();
    assert_eq!(written.after(), None);
    assert_eq!(written.streams(), [b, a]);
    let of_b: Vec<_> = written.stream(b).map(|e| (e.version, &e.event)).collect();
    assert_eq!(
        of_b,
        [
            (StreamVersion(0), &Cart::Added(1)),
            (StreamVersion(1), &Cart::Added(3))
        ]
    );
    assert!(written.stream(StreamId::new()).next().is_none());
    // A later call sees later writes too.
    let tx = Transaction::single(a, ExpectedVersion::Any, Cart::Removed(2));
    EventStore::insert(&store, tx).await.unwrap();
    assert_eq!(mark.written().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_mismatch_names_the_first_differing_event_with_its_version_and_position() {
    let store = MemoryStore::new();
    let (cart, other) = (StreamId::new(), StreamId::new());
    let mark = given(&store, [(other, vec![Cart::Opened])]).await.unwrap();
    let tx = Transaction::new()
        .append(
            cart,
            ExpectedVersion::NoStream,
            [Cart::Opened, Cart::Added(7)],
        )
        .append(other, ExpectedVersion::Any, [Cart::Added(9)]);
    EventStore::insert(&store, tx).await.unwrap();
    let written = mark.written().await.unwrap();

    let message = panic_message(|| {
        written.assert_events(cart, [Cart::Opened, Cart::Added(8)]);
    });
    // Positions: `other`'s history at 0; the transaction is laid out by
    // stream id, so `cart`'s two events are at 1-2 or 2-3.
    let second = written.stream(cart).nth(1).unwrap().position;
    let expected = format!(
        "events written to stream {cart} since the mark (after position 0): \
         first difference at #1 (version 1, position {second})\n\
         expected, 2 events:\n    \
         #0  Opened\n  \
         > #1  Added(8)\n\
         written, 2 events:\n    \
         #0  version 0, position {}: Opened\n  \
         > #1  version 1, position {second}: Added(7)\n\
         other streams written: {other} (1 event)",
        second.get() - 1
    );
    assert_eq!(message, expected);
}

#[tokio::test]
async fn a_missing_or_an_extra_event_is_the_first_difference() {
    let store = MemoryStore::new();
    let cart = StreamId::new();
    let mark = Mark::take(&store).await.unwrap();
    let tx = Transaction::new().append(cart, ExpectedVersion::Any, [Cart::Opened]);
    EventStore::insert(&store, tx).await.unwrap();
    let written = mark.written().await.unwrap();

    let missing = panic_message(|| {
        written.assert_events(cart, [Cart::Opened, Cart::Added(1)]);
    });
    assert!(
        missing.contains("first difference at #1 (not written)"),
        "{missing}"
    );
    assert!(missing.contains("  > #1  Added(1)\n"), "{missing}");
    assert!(missing.contains("  > #1  (nothing more)\n"), "{missing}");
    assert!(
        missing.ends_with("no other stream was written"),
        "{missing}"
    );

    let extra = panic_message(|| {
        written.assert_events(cart, []);
    });
    assert!(
        extra.contains("first difference at #0 (version 0, position 0)"),
        "{extra}"
    );
    assert!(extra.contains("expected, 0 events:\n  > #0  (nothing more)\n"));
    assert!(extra.contains("  > #0  version 0, position 0: Opened\n"));

    // A wrong stream: nothing written to it, and the message says where
    // the event went.
    let elsewhere = panic_message(|| {
        written.assert_events(StreamId::new(), [Cart::Opened]);
    });
    assert!(
        elsewhere.contains(&format!("other streams written: {cart} (1 event)")),
        "{elsewhere}"
    );
}

#[tokio::test]
#[should_panic(expected = "first difference at #0 (version 1, position 1)")]
async fn then_events_panics_on_the_wrong_event() {
    let cart = StreamId::new();
    Scenario::new(MemoryStore::new())
        .given(cart, [Cart::Opened])
        .when(|store| async move {
            let tx = Transaction::single(cart, ExpectedVersion::Any, Cart::Added(1));
            EventStore::insert(&store, tx).await
        })
        .await
        .unwrap()
        .then_events(cart, [Cart::Added(2)]);
}

#[tokio::test]
async fn then_nothing_written_lists_what_was() {
    let cart = StreamId::new();
    let outcome = Scenario::new(MemoryStore::new())
        .given(cart, [Cart::Opened])
        .when(|store| async move {
            let tx = Transaction::single(cart, ExpectedVersion::Any, Cart::Added(3));
            EventStore::insert(&store, tx).await
        })
        .await
        .unwrap();
    let message = panic_message(|| {
        outcome.then_nothing_written();
    });
    assert_eq!(
        message,
        format!(
            "expected nothing written since the mark (after position 0), but 1 event was \
             written:\n    stream {cart}, version 1, position 1: Added(3)"
        )
    );
}

/// Every check of an outcome, on any backend.
async fn given_when_then<S: EventStore<Event = Cart>>(store: S) {
    // Each scenario on the same store, a cart of its own: each mark leaves
    // out the scenarios before it.
    let scenario = |cart| {
        Scenario::new(store.clone())
            .given(cart, [Cart::Opened, Cart::Added(1)])
            .given(cart, [Cart::Added(2)])
    };

    // Succeeds: writes one event after the history.
    let cart = StreamId::new();
    let outcome = scenario(cart)
        .when(|store| async move { remove(&store, cart, 2).await })
        .await
        .unwrap();
    assert_eq!(*outcome.then_ok(), StreamVersion(3));
    outcome.then_events(cart, [Cart::Removed(2)]);
    let failed = panic_message(|| {
        outcome.then_error();
    });
    assert_eq!(
        failed,
        "expected the command to fail, it succeeded: StreamVersion(3)"
    );

    // Refused: an error of the application's, nothing written.
    let cart = StreamId::new();
    let outcome = scenario(cart)
        .when(|store| async move { remove(&store, cart, 5).await })
        .await
        .unwrap();
    assert!(matches!(outcome.then_error(), RemoveError::NotInCart(5)));
    outcome.then_nothing_written();
    let succeeded = panic_message(|| {
        outcome.then_ok();
    });
    assert_eq!(
        succeeded,
        "expected the command to succeed, it failed: NotInCart(5)"
    );
    let not_conflict = panic_message(|| {
        outcome.then_conflict();
    });
    assert_eq!(
        not_conflict,
        "expected a version conflict, the command failed: NotInCart(5)"
    );

    // A stale expected version: a conflict naming the stream and its head.
    let cart = StreamId::new();
    let outcome = scenario(cart)
        .when(|store| async move {
            let tx = Transaction::single(cart, ExpectedVersion::NoStream, Cart::Opened);
            store.insert(tx).await
        })
        .await
        .unwrap();
    let conflict = outcome.then_conflict();
    assert_eq!(conflict.len(), 1);
    assert_eq!(
        (
            conflict[0].stream,
            conflict[0].found.map(|head| head.version)
        ),
        (cart, Some(StreamVersion(2)))
    );
    outcome.then_nothing_written();
}

#[tokio::test]
async fn given_when_then_on_the_memory_store() {
    given_when_then(MemoryStore::new()).await;
}

#[tokio::test]
async fn given_when_then_on_a_wrapped_store() {
    given_when_then(Faulty::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn an_injected_conflict_is_the_commands_and_the_history_still_is_not() {
    let store = Faulty::new(MemoryStore::new());
    let cart = StreamId::new();
    let faults = store.clone();
    let outcome = Scenario::new(store.clone())
        .given(cart, [Cart::Opened, Cart::Added(4)])
        .when(|store| async move {
            // Armed inside `when`: the seeding inserts are not failed.
            faults.fail_next(cart, 1);
            remove(&store, cart, 4).await
        })
        .await
        .unwrap();
    let conflict = outcome.then_conflict();
    assert_eq!(conflict[0].stream, cart);
    assert_eq!(
        conflict[0].expected,
        ExpectedVersion::Exact(StreamVersion(1))
    );
    outcome.then_nothing_written();
    assert_eq!(outcome.written().after(), Some(Position(1)));
    assert_eq!(store.injected(), 1);
}

/// A projection of every cart's item count, kept by a subscription.
type Counts = Arc<Mutex<Vec<(StreamId, i64)>>>;

async fn count_items<S: EventStore<Event = Cart>>(store: &S) -> (Counts, S::Subscriber<()>) {
    let counts: Counts = Arc::default();
    let sink = Arc::clone(&counts);
    let subscription = store
        .spawn_subscriber(Selector::all(), move |event| {
            let delta = match event.payload {
                Cart::Added(_) => 1,
                Cart::Removed(_) => -1,
                Cart::Opened => 0,
            };
            let mut counts = sink.lock().unwrap();
            match counts.iter_mut().find(|(cart, _)| *cart == event.stream) {
                Some((_, count)) => *count += delta,
                None => counts.push((event.stream, delta)),
            }
            Ok(Flow::Continue)
        })
        .await
        .unwrap();
    (counts, subscription)
}

async fn the_projection_has_processed_what_was_written<S: EventStore<Event = Cart>>(store: S) {
    let (counts, projection) = count_items(&store).await;
    let cart = StreamId::new();
    let outcome = Scenario::new(store.clone())
        .given(cart, [Cart::Opened, Cart::Added(1), Cart::Added(2)])
        .when(|store| async move { remove(&store, cart, 1).await })
        .await
        .unwrap();
    outcome.then_processed(&projection).await;
    assert_eq!(*counts.lock().unwrap(), [(cart, 1)]);

    // Nothing written: the wait is for the history.
    let other = StreamId::new();
    let outcome = Scenario::new(store)
        .given(other, [Cart::Added(5), Cart::Added(6)])
        .when(|_store| async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    outcome
        .then_nothing_written()
        .then_processed(&projection)
        .await;
    assert_eq!(*counts.lock().unwrap(), [(cart, 1), (other, 2)]);
}

#[tokio::test]
async fn then_processed_on_the_memory_store() {
    the_projection_has_processed_what_was_written(MemoryStore::new()).await;
}

#[tokio::test]
async fn then_processed_on_a_wrapped_store() {
    the_projection_has_processed_what_was_written(Faulty::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn then_processed_waits_until_the_projection_has_handled_the_last_event() {
    let store = MemoryStore::new();
    // The projection handles an event only when the test lets it.
    let (gate, turns) = mpsc::channel::<()>();
    let handled = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&handled);
    let projection = EventStore::spawn_subscriber(&store, Selector::all(), move |_event| {
        let _ = turns.recv();
        count.fetch_add(1, Ordering::SeqCst);
        Ok::<_, ()>(Flow::Continue)
    })
    .await
    .unwrap();

    let cart = StreamId::new();
    let outcome = Scenario::new(store)
        .given(cart, [Cart::Opened])
        .when(|store| async move {
            let tx = Transaction::single(cart, ExpectedVersion::Any, Cart::Added(1));
            EventStore::insert(&store, tx).await
        })
        .await
        .unwrap();
    // Still waiting: the projection has handled nothing. (A wait that did
    // not wait would return here, and fail the test.)
    let early = tokio::time::timeout(
        Duration::from_millis(50),
        outcome.then_processed(&projection),
    )
    .await;
    assert!(
        early.is_err(),
        "returned before the projection handled anything"
    );
    gate.send(()).unwrap();
    gate.send(()).unwrap();
    outcome.then_processed(&projection).await;
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}

#[tokio::test]
#[should_panic(expected = "the subscription ended before processing position 1")]
async fn assert_processed_panics_when_the_projection_ended_first() {
    let store = MemoryStore::new();
    let projection =
        EventStore::spawn_subscriber(&store, Selector::all(), |_event| Ok::<_, ()>(Flow::Stop))
            .await
            .unwrap();
    let tx = Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2]);
    EventStore::insert(&store, tx).await.unwrap();
    assert_processed(&projection, Position(1)).await;
}
