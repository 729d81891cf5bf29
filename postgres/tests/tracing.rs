//! The `tracing` feature on PostgreSQL: the same spans as the memory
//! store's, seen by the collecting subscriber of hindsight's own tests
//! (tests/common/collector.rs of the repository, included by path).
//!
//! Needs `DATABASE_URL`, like tests/conformance.rs. Each test installs its
//! collector on its own future (`WithSubscriber`), so they run in parallel;
//! sqlx's own events reach it too, and are left alone.
#![cfg(feature = "tracing")]

use hindsight::testkit::{TestEvent, TestKind};
use hindsight::{
    EventStore, ExpectedVersion, Flow, Position, Selector, StreamId, StreamVersion,
    SubscriberHandle, Transaction,
};
use hindsight_postgres::PgStore;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::time::Duration;
use tracing::instrument::WithSubscriber;
use tracing::Level;

#[path = "../../tests/common/collector.rs"]
mod collector;
mod common;

use collector::{field, Collector};

const PATIENCE: Duration = Duration::from_secs(30);

fn ev(value: u64) -> TestEvent {
    TestEvent::new(TestKind::Alpha, value)
}

/// A fresh store, or `None` to skip.
async fn fresh() -> Option<PgStore<TestEvent>> {
    let url = common::database_url()?;
    Some(
        PgStore::connect(&url, &common::fresh_schema())
            .await
            .expect("open a store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_conflicts_and_reads_on_postgres_get_the_memory_stores_spans_and_fields() {
    let collector = Collector::default();
    let (a, b) = (StreamId::new(), StreamId::new());
    let ran = async {
        let Some(store) = fresh().await else {
            return false;
        };
        let tx = Transaction::new()
            .append(a, ExpectedVersion::NoStream, [ev(1), ev(2)])
            .append(b, ExpectedVersion::NoStream, [ev(3)]);
        let done = store.insert(tx).await.unwrap();
        assert_eq!(done.last_position(), Some(Position(2)));
        let conflict = store
            .insert(Transaction::single(a, ExpectedVersion::NoStream, ev(4)))
            .await
            .unwrap_err();
        assert!(conflict.is_conflict());
        let mut seen = 0;
        store
            .read_stream(a, StreamVersion(1), |_| {
                seen += 1;
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
        assert_eq!(seen, 1);
        store
            .read_all(None, |_| ControlFlow::Continue(()))
            .await
            .unwrap();
        common::drop_schema(&store).await;
        true
    }
    .with_subscriber(collector.clone())
    .await;
    if !ran {
        return;
    }

    let inserts = collector.named("hindsight.insert");
    assert_eq!(inserts.len(), 2, "{inserts:?}");
    assert_eq!(inserts[0].level, Level::DEBUG);
    assert_eq!(field(&inserts[0], "streams"), Some("2"));
    assert_eq!(field(&inserts[0], "events"), Some("3"));
    assert_eq!(field(&inserts[0], "first_position"), Some("0"));
    assert_eq!(field(&inserts[0], "last_position"), Some("2"));
    let error = field(&inserts[1], "error").expect("the conflict is on the span");
    assert!(error.starts_with("wrong expected version"), "{error}");
    let conflict_events: Vec<_> = collector
        .events()
        .into_iter()
        .filter(|event| event.parent == Some(inserts[1].id))
        // sqlx logs its statements in the span too.
        .filter(|event| event.fields.contains_key("message"))
        .collect();
    assert_eq!(conflict_events.len(), 1, "{conflict_events:?}");
    assert_eq!(conflict_events[0].level, Level::DEBUG);

    let read_stream = collector.named("hindsight.read_stream");
    assert_eq!(read_stream.len(), 1);
    assert_eq!(field(&read_stream[0], "from"), Some("1"));
    assert_eq!(field(&read_stream[0], "visited"), Some("1"));
    let read_all = collector.named("hindsight.read_all");
    assert_eq!(read_all.len(), 1);
    assert_eq!(field(&read_all[0], "visited"), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_events_on_postgres_are_inside_its_subscribers_span_on_a_blocking_thread() {
    let collector = Collector::default();
    let test_thread = std::thread::current().id();
    let stream = StreamId::new();
    let ran = async {
        let Some(store) = fresh().await else {
            return false;
        };
        let subscriber = store
            .spawn_subscriber(Selector::stream(stream), |event| {
                tracing::info!(value = event.payload.value(), "handled");
                Ok::<_, Infallible>(Flow::Continue)
            })
            .await
            .unwrap();
        let done = store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, [ev(7), ev(8)]))
            .await
            .unwrap();
        subscriber
            .wait_processed(done.last_position().unwrap(), PATIENCE)
            .await
            .unwrap();
        subscriber.cancel().await;
        subscriber.wait().await.unwrap();
        common::drop_schema(&store).await;
        true
    }
    .with_subscriber(collector.clone())
    .await;
    if !ran {
        return;
    }

    let spawn = collector.named("hindsight.spawn_subscriber");
    assert_eq!(spawn.len(), 1);
    let worker = collector.named("hindsight.subscriber");
    assert_eq!(worker.len(), 1);
    assert_eq!(worker[0].level, Level::INFO);
    assert_eq!(worker[0].parent, None);
    assert_eq!(worker[0].follows_from, [spawn[0].id]);
    assert!(field(&worker[0], "selector")
        .unwrap()
        .contains(&stream.to_string()));

    let handled: Vec<_> = collector
        .events()
        .into_iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("handled"))
        .collect();
    assert_eq!(handled.len(), 2, "{handled:?}");
    for (event, value) in handled.iter().zip(["7", "8"]) {
        assert_eq!(
            event.parent,
            Some(worker[0].id),
            "inside the subscriber's span"
        );
        assert_ne!(event.thread, test_thread);
        assert_eq!(event.fields.get("value").map(String::as_str), Some(value));
    }
}
