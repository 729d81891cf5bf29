//! The `tracing` feature: the spans of the memory store's `EventStore`
//! implementation, seen by a small collecting subscriber of the tests' own
//! (tests/common/collector.rs; no `tracing-subscriber`). Each test fails if
//! the instrumentation it names is removed.
//!
//! The collector is installed per test with `with_default` (thread-local),
//! so the tests run in parallel without seeing each other's spans; the
//! subscriber test relies on the worker thread inheriting the spawning
//! thread's dispatcher, which is what it proves.
#![cfg(feature = "tracing")]

use hindsight::{
    EventStore, ExpectedVersion, Flow, MemoryStore, Position, Selector, StreamId, StreamVersion,
    SubscriberHandle, Transaction,
};
use std::convert::Infallible;
use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;
use tracing::Level;

#[path = "common/collector.rs"]
mod collector;

use collector::{field, Collector};

/// Runs `test` on this thread with `collector` as its (thread-local)
/// default, on a current-thread runtime (so every poll is on this thread).
fn traced<F: Future>(collector: &Collector, test: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(collector.clone(), || runtime.block_on(test))
}

#[test]
fn insert_through_the_trait_opens_one_debug_span_with_its_streams_events_and_committed_positions() {
    let collector = Collector::default();
    let (a, b) = (StreamId::new(), StreamId::new());
    traced(&collector, async {
        let store = MemoryStore::new();
        // Position 0, written through the inherent API: not instrumented.
        store
            .insert(Transaction::single(a, ExpectedVersion::NoStream, 0))
            .unwrap();
        let tx = Transaction::new()
            .append(a, ExpectedVersion::Exact(StreamVersion(0)), [1, 2])
            .append(b, ExpectedVersion::NoStream, [3]);
        let committed = EventStore::insert(&store, tx).await.unwrap();
        assert_eq!(committed.last_position(), Some(Position(3)));
    });

    let spans = collector.spans();
    assert_eq!(
        spans.len(),
        1,
        "one span, for the trait's insert only: {spans:?}"
    );
    let insert = &spans[0];
    assert_eq!(insert.name, "hindsight.insert");
    assert_eq!(insert.level, Level::DEBUG);
    assert_eq!(field(insert, "streams"), Some("2"));
    assert_eq!(field(insert, "events"), Some("3"));
    assert_eq!(field(insert, "first_position"), Some("1"));
    assert_eq!(field(insert, "last_position"), Some("3"));
    assert_eq!(field(insert, "error"), None);
    assert!(collector.events().is_empty());
}

#[test]
fn a_version_conflict_records_its_error_on_the_insert_span_and_a_debug_event_not_an_error() {
    let collector = Collector::default();
    let stream = StreamId::new();
    traced(&collector, async {
        let store = MemoryStore::new();
        let tx = || Transaction::single(stream, ExpectedVersion::NoStream, "created");
        EventStore::insert(&store, tx()).await.unwrap();
        let error = EventStore::insert(&store, tx()).await.unwrap_err();
        assert!(error.is_conflict());
    });

    let inserts = collector.named("hindsight.insert");
    assert_eq!(inserts.len(), 2);
    let failed = &inserts[1];
    let error = field(failed, "error").expect("the conflict is recorded on the span");
    assert!(error.starts_with("wrong expected version"), "{error}");
    assert!(error.contains(&stream.to_string()), "{error}");
    assert_eq!(field(failed, "last_position"), None);

    let events = collector.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].level,
        Level::DEBUG,
        "a conflict is control flow, not an error"
    );
    assert_eq!(events[0].parent, Some(failed.id));
    assert_eq!(
        events[0].fields.get("error").map(String::as_str),
        Some(error)
    );
}

#[test]
fn read_stream_and_read_all_spans_record_where_they_start_and_how_many_events_were_visited() {
    let collector = Collector::default();
    let stream = StreamId::new();
    traced(&collector, async {
        let store = MemoryStore::new();
        store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, [1, 2, 3, 4]))
            .unwrap();
        let mut seen = Vec::new();
        // From version 1, stopping after the second event it is handed.
        EventStore::read_stream(&store, stream, StreamVersion(1), |event| {
            seen.push(*event.payload);
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
        assert_eq!(seen, [2, 3]);
        EventStore::read_all(&store, Some(Position(0)), |_| ControlFlow::Continue(()))
            .await
            .unwrap();
        EventStore::read_all(&store, None, |_| ControlFlow::Continue(()))
            .await
            .unwrap();
    });

    let read_stream = collector.named("hindsight.read_stream");
    assert_eq!(read_stream.len(), 1);
    assert_eq!(field(&read_stream[0], "stream"), Some(&*stream.to_string()));
    assert_eq!(field(&read_stream[0], "from"), Some("1"));
    assert_eq!(field(&read_stream[0], "visited"), Some("2"));

    let read_all = collector.named("hindsight.read_all");
    assert_eq!(read_all.len(), 2);
    assert_eq!(field(&read_all[0], "after"), Some("0"));
    assert_eq!(field(&read_all[0], "visited"), Some("3"));
    assert_eq!(field(&read_all[1], "after"), None, "from the beginning");
    assert_eq!(field(&read_all[1], "visited"), Some("4"));
}

#[test]
fn head_and_stream_head_spans_record_what_they_found() {
    let collector = Collector::default();
    let (stream, absent) = (StreamId::new(), StreamId::new());
    traced(&collector, async {
        let store = MemoryStore::new();
        store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, [1, 2]))
            .unwrap();
        assert_eq!(EventStore::head(&store).await.unwrap(), Some(Position(1)));
        assert!(EventStore::stream_head(&store, stream)
            .await
            .unwrap()
            .is_some());
        assert!(EventStore::stream_head(&store, absent)
            .await
            .unwrap()
            .is_none());
    });

    let head = collector.named("hindsight.head");
    assert_eq!(head.len(), 1);
    assert_eq!(field(&head[0], "head"), Some("1"));
    let heads = collector.named("hindsight.stream_head");
    assert_eq!(heads.len(), 2);
    assert_eq!(field(&heads[0], "stream"), Some(&*stream.to_string()));
    assert_eq!(field(&heads[0], "version"), Some("1"));
    assert_eq!(field(&heads[0], "position"), Some("1"));
    assert_eq!(field(&heads[1], "stream"), Some(&*absent.to_string()));
    assert_eq!(field(&heads[1], "version"), None, "no such stream");
}

#[test]
fn a_handlers_events_are_inside_its_subscribers_span_on_the_worker_thread_which_inherits_the_dispatcher(
) {
    let collector = Collector::default();
    let test_thread = std::thread::current().id();
    let stream = StreamId::new();
    traced(&collector, async {
        let store = MemoryStore::new();
        let selector = Selector::stream(stream);
        let subscriber = EventStore::spawn_subscriber(&store, selector, |event| {
            tracing::info!(payload = *event.payload, "handled");
            Ok::<_, Infallible>(Flow::Continue)
        })
        .await
        .unwrap();
        let done = store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, [7, 8]))
            .unwrap();
        subscriber
            .wait_processed(done.last_position().unwrap(), Duration::from_secs(10))
            .await
            .unwrap();
        subscriber.cancel().await;
        subscriber.wait().await.unwrap();
    });

    let spawn = collector.named("hindsight.spawn_subscriber");
    assert_eq!(spawn.len(), 1);
    let spawn = &spawn[0];
    assert!(field(spawn, "selector")
        .unwrap()
        .contains(&stream.to_string()));

    let worker = collector.named("hindsight.subscriber");
    assert_eq!(worker.len(), 1);
    let worker = &worker[0];
    assert_eq!(worker.level, Level::INFO);
    assert_eq!(worker.parent, None, "a root span: it outlives its spawn");
    assert_eq!(worker.follows_from, [spawn.id]);
    assert_eq!(field(worker, "selector"), field(spawn, "selector"));

    // The collector is this test thread's default only: the worker saw it
    // because it inherited the dispatcher.
    let handled: Vec<_> = collector
        .events()
        .into_iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("handled"))
        .collect();
    assert_eq!(handled.len(), 2, "{handled:?}");
    for (event, payload) in handled.iter().zip(["7", "8"]) {
        assert_eq!(
            event.parent,
            Some(worker.id),
            "inside the subscriber's span"
        );
        assert_ne!(event.thread, test_thread, "on the worker thread");
        assert_eq!(
            event.fields.get("payload").map(String::as_str),
            Some(payload)
        );
    }
}

#[test]
fn the_inherent_api_opens_no_spans() {
    let collector = Collector::default();
    let stream = StreamId::new();
    traced(&collector, async {
        let store = MemoryStore::new();
        let done = store
            .insert(Transaction::single(stream, ExpectedVersion::NoStream, 1))
            .unwrap();
        assert_eq!(store.read_stream(stream, StreamVersion(0)).count(), 1);
        let subscriber = store.spawn_subscriber(Selector::all(), |_| {
            tracing::info!("handled");
            Ok::<_, Infallible>(Flow::Continue)
        });
        subscriber
            .wait_processed(done.last_position().unwrap(), Duration::from_secs(10))
            .unwrap();
        subscriber.cancel();
    });
    assert!(collector.spans().is_empty(), "{:?}", collector.spans());
    // The worker of an inherent subscriber keeps its thread's dispatcher
    // (none here): its handler's event is not this thread's to see.
    assert!(collector.events().is_empty(), "{:?}", collector.events());
}
