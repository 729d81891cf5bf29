//! The commit-order torture test: a random delay inside the insert's
//! critical section (after the positions are taken, before `COMMIT`),
//! concurrent writers on separate pools, and subscriptions started before,
//! during and after the writes. If positions could commit out of order, a
//! subscription paging by position would skip or repeat an event, and a
//! later insert could be acknowledged below an earlier one.
//!
//! The delay is test-only and lives in the test's own schema: a statement
//! trigger on `events` (the rows `insert_events` writes after bumping
//! `log_head`) that sleeps 0-4 ms. The store's SQL is unchanged.
//!
//! Needs `DATABASE_URL`, like tests/conformance.rs.

use hindsight::testkit::{TestEvent, TestKind};
use hindsight::{
    EventStore, ExpectedVersion, Flow, Position, Selector, StreamId, SubscriberHandle, Transaction,
};
use hindsight_postgres::{PgError, PgStore};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

/// Writers, each on its own pool (a separate handle, as another service
/// instance would be).
const WRITERS: u64 = 8;
/// Transactions per writer.
const TRANSACTIONS: u64 = 40;
/// Streams the writers share.
const STREAMS: usize = 5;
/// Long enough that only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a subscription saw: (position, stream, version, payload value).
type Seen = Arc<Mutex<Vec<(Position, StreamId, u64, u64)>>>;

async fn subscribe(
    store: &PgStore<TestEvent>,
) -> (
    impl SubscriberHandle<std::convert::Infallible, Cursor = Position, Error = PgError>,
    Seen,
) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let subscription = store
        .spawn_subscriber(Selector::all(), move |event| {
            sink.lock().unwrap().push((
                event.position(),
                event.stream,
                event.version.0,
                event.payload.value(),
            ));
            Ok(Flow::Continue)
        })
        .await
        .expect("subscribe");
    (subscription, seen)
}

/// One acknowledged insert: when it was sent and acknowledged, and the
/// positions it got.
struct Ack {
    sent: Instant,
    acked: Instant,
    first: u64,
    last: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_delayed_before_commit_commit_in_position_order_and_every_subscription_gets_everything(
) {
    let Some(url) = common::database_url() else {
        return;
    };
    let schema = common::fresh_schema();
    let store = PgStore::<TestEvent>::connect(&url, &schema)
        .await
        .expect("open a store");
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION \"{schema}\".torture_delay() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep(random() * 0.004); RETURN NULL; END $$; \
         CREATE TRIGGER torture_delay AFTER INSERT ON \"{schema}\".events \
         FOR EACH STATEMENT EXECUTE FUNCTION \"{schema}\".torture_delay();"
    ))
    .execute(store.pool())
    .await
    .expect("install the delay");

    let streams: Arc<Vec<StreamId>> = Arc::new((0..STREAMS).map(|_| StreamId::new()).collect());
    let (early, early_seen) = subscribe(&store).await;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let handle = PgStore::<TestEvent>::connect(&url, &schema)
            .await
            .expect("open a writer's handle");
        let streams = Arc::clone(&streams);
        writers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in 0..TRANSACTIONS {
                // 1 to 3 events, to one or two streams; every value unique.
                let value = (writer * TRANSACTIONS + n) * 10;
                let a = streams[((writer + n) % STREAMS as u64) as usize];
                let b = streams[((writer + 2 * n + 1) % STREAMS as u64) as usize];
                let two_streams = n % 3 == 0 && a != b;
                let count = 1 + n % 2 + u64::from(two_streams);
                let mut transaction = Transaction::new().append(
                    a,
                    ExpectedVersion::Any,
                    (0..1 + n % 2).map(|k| TestEvent::new(TestKind::Alpha, value + k)),
                );
                if two_streams {
                    transaction = transaction.append(
                        b,
                        ExpectedVersion::Any,
                        [TestEvent::new(TestKind::Beta, value + 5)],
                    );
                }
                let sent = Instant::now();
                let done = handle.insert(transaction).await.expect("insert");
                let acked = Instant::now();
                let last = done.last_position().expect("events were written").0;
                acks.push(Ack {
                    sent,
                    acked,
                    first: last + 1 - count,
                    last,
                });
            }
            acks
        }));
    }

    // A subscription started while the writers run, on another handle.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let during_handle = PgStore::<TestEvent>::connect(&url, &schema)
        .await
        .expect("open a handle");
    let (during, during_seen) = subscribe(&during_handle).await;

    let mut acks = Vec::new();
    for writer in writers {
        acks.extend(writer.await.expect("a writer panicked"));
    }
    let total: u64 = acks.iter().map(|ack| ack.last - ack.first + 1).sum();
    let end = Position(total - 1);
    assert_eq!(store.head().await.unwrap(), Some(end));

    // Commit order is position order: an insert acknowledged before another
    // was sent got lower positions; acknowledged ranges are disjoint and
    // cover 0..total exactly.
    acks.sort_by_key(|ack| ack.first);
    for pair in acks.windows(2) {
        assert_eq!(
            pair[0].last + 1,
            pair[1].first,
            "acknowledged ranges overlap or leave a hole"
        );
    }
    for a in &acks {
        for b in &acks {
            if a.acked < b.sent {
                assert!(
                    a.last < b.first,
                    "positions {}..={} were acknowledged before an insert that got {}..={} was sent",
                    a.first,
                    a.last,
                    b.first,
                    b.last
                );
            }
        }
    }

    // The log as a read sees it: dense positions, dense versions per stream.
    let mut log = Vec::new();
    store
        .read_all(None, |event| {
            log.push((
                event.position(),
                event.stream,
                event.version.0,
                event.payload.value(),
            ));
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(log.len() as u64, total);
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    for (index, (position, stream, version, _)) in log.iter().enumerate() {
        assert_eq!(position.0, index as u64, "positions are not dense");
        let next = versions.entry(*stream).or_insert(0);
        assert_eq!(
            *version, *next,
            "versions of a stream are not dense in position order"
        );
        *next += 1;
    }

    // A subscription started after everything, on yet another handle.
    let late_handle = PgStore::<TestEvent>::connect(&url, &schema)
        .await
        .expect("open a handle");
    let (late, late_seen) = subscribe(&late_handle).await;

    for (name, subscription, seen) in [
        ("before", &early, &early_seen),
        ("during", &during, &during_seen),
        ("after", &late, &late_seen),
    ] {
        subscription
            .wait_processed(end, PATIENCE)
            .await
            .unwrap_or_else(|error| panic!("the subscription started {name}: {error:?}"));
        assert_eq!(
            *seen.lock().unwrap(),
            log,
            "the subscription started {name} did not get the log, once, in order"
        );
    }
    early.cancel().await;
    during.cancel().await;
    late.cancel().await;
    common::drop_schema(&store).await;
}
