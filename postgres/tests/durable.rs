//! What only a durable store can get wrong: a writer held open in a raw
//! transaction, and a malformed payload written by raw SQL.
//!
//! Needs `DATABASE_URL`, like tests/conformance.rs.

use hindsight::testkit::{TestEvent, TestKind};
use hindsight::{
    EventStore, ExpectedVersion, Flow, Position, Selector, StreamId, SubscriberError,
    SubscriberHandle, Transaction, WaitError,
};
use hindsight_postgres::{PgError, PgStore};
use sqlx::Connection;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

/// Long enough that only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

fn ev(value: u64) -> TestEvent {
    TestEvent::new(TestKind::Alpha, value)
}

/// A fresh store, the database's URL, or `None` to skip.
async fn fresh() -> Option<(PgStore<TestEvent>, String)> {
    let url = common::database_url()?;
    let store = PgStore::connect(&url, &common::fresh_schema())
        .await
        .expect("open a store");
    Some((store, url))
}

/// Every payload value a subscription handles, in order.
type Seen = Arc<Mutex<Vec<(Position, u64)>>>;

async fn record(
    store: &PgStore<TestEvent>,
) -> (
    impl SubscriberHandle<std::convert::Infallible, Cursor = Position, Error = PgError>,
    Seen,
) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let subscription = store
        .spawn_subscriber(Selector::all(), move |event| {
            sink.lock()
                .unwrap()
                .push((event.position(), event.payload.value()));
            Ok(Flow::Continue)
        })
        .await
        .expect("subscribe");
    (subscription, seen)
}

/// A writer that took its positions but has not committed blocks no
/// reader and is never seen; after its rollback the next writer gets the
/// same positions, and every subscription sees that writer's events there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_held_open_is_never_seen_and_its_positions_are_reused() {
    let Some((store, url)) = fresh().await else {
        return;
    };
    let stream = StreamId::new();
    store
        .insert(Transaction::single(
            stream,
            ExpectedVersion::NoStream,
            ev(0),
        ))
        .await
        .unwrap();
    let (subscription, seen) = record(&store).await;

    // The raw writer: the store's own insert function, inside a transaction
    // left open.
    let mut raw = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut held = raw.begin().await.unwrap();
    let payload = serde_json::to_string(&ev(666)).unwrap();
    let sql = format!(
        "SELECT * FROM \"{}\".insert_events(ARRAY[$1::uuid], ARRAY[0::int2], ARRAY[0::int8], \
         ARRAY[2], ARRAY['Alpha', 'Alpha'], ARRAY[$2, $2], '{{}}'::bytea[], NULL, \
         '{{}}'::uuid[], '{{}}'::text[], '{{}}'::uuid[])",
        store.schema()
    );
    sqlx::query(&sql)
        .bind(stream.as_uuid())
        .bind(&payload)
        .fetch_all(&mut *held)
        .await
        .unwrap();

    // Readers go on, and see nothing of it.
    assert_eq!(store.head().await.unwrap(), Some(Position(0)));
    assert_eq!(
        store.stream_head(stream).await.unwrap().unwrap().version.0,
        0
    );
    let mut read = Vec::new();
    store
        .read_all(None, |event| {
            read.push(event.payload.value());
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(read, [0]);
    assert_eq!(
        subscription
            .wait_processed(Position(1), Duration::from_millis(300))
            .await,
        Err(WaitError::TimedOut),
        "an uncommitted event was delivered"
    );

    // A second writer waits for the held one; once it rolls back, the
    // second gets positions 1 and 2.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .insert(Transaction::new().append(stream, ExpectedVersion::Any, [ev(1), ev(2)]))
                .await
        })
    };
    held.rollback().await.unwrap();
    let done = writer.await.unwrap().unwrap();
    assert_eq!(done.last_position(), Some(Position(2)));
    subscription
        .wait_processed(Position(2), PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [(Position(0), 0), (Position(1), 1), (Position(2), 2)]
    );
    subscription.cancel().await;
    common::drop_schema(&store).await;
}

/// A payload that does not decode fails a read and ends a subscription
/// with its position, after everything before it was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_fails_reads_and_subscriptions_with_its_position() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let stream = StreamId::new();
    store
        .insert(Transaction::new().append(stream, ExpectedVersion::NoStream, [ev(0), ev(1), ev(2)]))
        .await
        .unwrap();
    sqlx::query(&format!(
        "UPDATE \"{}\".events SET payload = '{{\"not\": \"a TestEvent\"}}' WHERE position = 1",
        store.schema()
    ))
    .execute(store.pool())
    .await
    .unwrap();

    let mut read = Vec::new();
    let failed = store
        .read_all(None, |event| {
            read.push(event.payload.value());
            ControlFlow::Continue(())
        })
        .await;
    assert!(
        matches!(
            failed,
            Err(PgError::Decode {
                position: Position(1),
                ..
            })
        ),
        "{failed:?}"
    );
    assert_eq!(read, [0]);

    let (subscription, seen) = record(&store).await;
    match subscription.wait().await {
        Err(SubscriberError::Backend(PgError::Decode { position, .. })) => {
            assert_eq!(position, Position(1))
        }
        other => panic!("expected a decode failure at position 1, got {other:?}"),
    }
    assert_eq!(*seen.lock().unwrap(), [(Position(0), 0)]);
    common::drop_schema(&store).await;
}
