//! Checkpointed projections ([`Projection`]) against a real server, fed by
//! the memory store and by `PgStore`: each event applied once, in order,
//! in one transaction with the checkpoint; restarts, failures and a
//! second runner of the same projection.
//!
//! Needs `DATABASE_URL`, like tests/conformance.rs. Each test has its own
//! schema (its projection's row and the table it writes), so they run in
//! parallel.

use hindsight::{
    EventRef, EventStore, EventType, ExpectedVersion, HandlerFailure, MemoryStore, Position,
    Selector, StreamId, StreamVersion, Transaction, WaitError,
};
use hindsight_postgres::{
    BoxFuture, PgError, PgStore, Projection, ProjectionError, ProjectionHandle,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

/// Long enough that only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

/// The events: a number, cloned into the runner.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Counted(i64);

impl EventType for Counted {
    fn event_type(&self) -> &str {
        "Counted"
    }
}

/// A test's database: a pool and a fresh schema holding the table the
/// projection writes, `applied(position, value, seq)`.
struct Db {
    pool: PgPool,
    schema: String,
}

impl Db {
    async fn fresh() -> Option<Db> {
        let url = common::database_url()?;
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(&url)
            .await
            .expect("connect");
        let schema = common::fresh_schema();
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".applied (\
             position BIGINT PRIMARY KEY, value BIGINT NOT NULL, seq BIGSERIAL NOT NULL UNIQUE)"
        ))
        .execute(&pool)
        .await
        .expect("create the projection's table");
        Some(Db { pool, schema })
    }

    async fn projection(&self, name: &str) -> Projection {
        Projection::open(self.pool.clone(), &self.schema, name)
            .await
            .expect("open the projection")
    }

    /// Ends the session that holds the lease of projection `name` (as a
    /// lost connection would) and waits until the server dropped the lock.
    async fn break_lease(&self, name: &str) {
        // A bigint advisory key is split over classid (high half) and objid.
        let holder = "FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
             AND ((classid::int8 << 32) | objid::int8) = hashtextextended($1, 0)";
        let key = format!("hindsight-postgres-projection:{}:{name}", self.schema);
        let killed: Vec<bool> =
            sqlx::query_scalar(&format!("SELECT pg_terminate_backend(pid) {holder}"))
                .bind(&key)
                .fetch_all(&self.pool)
                .await
                .expect("end the lease's session");
        assert_eq!(killed, [true], "exactly one session holds the lease");
        let started = std::time::Instant::now();
        loop {
            let held: i64 = sqlx::query_scalar(&format!("SELECT count(*) {holder}"))
                .bind(&key)
                .fetch_one(&self.pool)
                .await
                .expect("look for the lease");
            if held == 0 {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the lease outlived its session"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The rows the projection wrote, `(position, value)`, in the order it
    /// wrote them.
    async fn applied(&self) -> Vec<(i64, i64)> {
        sqlx::query_as(&format!(
            "SELECT position, value FROM \"{}\".applied ORDER BY seq",
            self.schema
        ))
        .fetch_all(&self.pool)
        .await
        .expect("read the applied rows")
    }

    /// Drops the schema (after a passing test).
    async fn drop(self) {
        sqlx::raw_sql(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.pool)
            .await
            .expect("drop the schema");
    }
}

/// The handler every test runs: writes `(position, value)` into
/// `applied` (a second write of one position fails on the primary key),
/// counts its calls, then fails with "refused N" on `fail_on`'s value, or
/// panics on `panic_on`'s, after its write (which must be rolled back).
fn writer(
    schema: &str,
    calls: Arc<AtomicUsize>,
    fail_on: Option<i64>,
    panic_on: Option<i64>,
) -> impl for<'a> FnMut(
    &'a mut PgConnection,
    EventRef<'a, Counted, Position>,
) -> BoxFuture<'a, Result<(), String>>
       + Send
       + 'static {
    let insert = format!("INSERT INTO \"{schema}\".applied (position, value) VALUES ($1, $2)");
    move |db, event| {
        calls.fetch_add(1, Ordering::SeqCst);
        let insert = insert.clone();
        let (position, value) = (event.position().0 as i64, event.payload.0);
        Box::pin(async move {
            sqlx::query(&insert)
                .bind(position)
                .bind(value)
                .execute(db)
                .await
                .map_err(|error| error.to_string())?;
            if panic_on == Some(value) {
                panic!("boom at {value}");
            }
            if fail_on == Some(value) {
                return Err(format!("refused {value}"));
            }
            Ok(())
        })
    }
}

/// Appends `values` to `stream` on the memory store, one transaction each.
fn append(store: &MemoryStore<Counted>, stream: StreamId, values: std::ops::Range<i64>) {
    for value in values {
        store
            .insert(Transaction::single(
                stream,
                ExpectedVersion::Any,
                Counted(value),
            ))
            .expect("insert");
    }
}

/// `(position, value)` for positions `range`, where value = position.
fn rows(range: std::ops::Range<i64>) -> Vec<(i64, i64)> {
    range.map(|p| (p, p)).collect()
}

type Runner<B> = ProjectionHandle<Position, String, B>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_applied_exactly_once_in_order_with_its_checkpoint() {
    let Some(db) = Db::fresh().await else { return };
    let store = MemoryStore::new();
    let stream = StreamId::new();
    append(&store, stream, 0..5);
    let projection = db.projection("once").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let runner: Runner<_> = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, calls.clone(), None, None),
        )
        .await
        .expect("run");
    append(&store, stream, 5..10); // live, after the history
    runner
        .wait_checkpoint(Position(9), PATIENCE)
        .await
        .expect("the runner reaches position 9");
    assert_eq!(db.applied().await, rows(0..10));
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(runner.checkpoint(), Some(Position(9)));
    let state = projection.state::<Position>().await.unwrap();
    assert_eq!(
        (state.checkpoint, state.error, state.error_position),
        (Some(Position(9)), None, None)
    );
    runner.cancel().await;
    assert!(runner.is_finished());
    runner.wait().await.expect("a cancelled runner ends well");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_checkpoint_and_applies_nothing_twice() {
    let Some(db) = Db::fresh().await else { return };
    let store = MemoryStore::new();
    let stream = StreamId::new();
    append(&store, stream, 0..5);
    let projection = db.projection("restart").await;

    let first_calls = Arc::new(AtomicUsize::new(0));
    let first: Runner<_> = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, first_calls.clone(), None, None),
        )
        .await
        .expect("run");
    first.wait_checkpoint(Position(4), PATIENCE).await.unwrap();
    first.cancel().await;
    first.wait().await.expect("cancelled");
    assert_eq!(first_calls.load(Ordering::SeqCst), 5);

    append(&store, stream, 5..10);
    let second_calls = Arc::new(AtomicUsize::new(0));
    // A handle of another `open`, as another process would have.
    let again = db.projection("restart").await;
    let second: Runner<_> = again
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, second_calls.clone(), None, None),
        )
        .await
        .expect("run again");
    assert!(second.checkpoint() >= Some(Position(4)));
    second.wait_checkpoint(Position(9), PATIENCE).await.unwrap();
    assert_eq!(
        second_calls.load(Ordering::SeqCst),
        5,
        "the second run handled only the events after the checkpoint"
    );
    assert_eq!(db.applied().await, rows(0..10));
    second.cancel().await;
    second.wait().await.expect("cancelled");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_is_recorded_on_the_row_and_returned_with_the_event_and_the_checkpoint_stays_before_it(
) {
    let Some(db) = Db::fresh().await else { return };
    let store = MemoryStore::new();
    let stream = StreamId::new();
    append(&store, stream, 0..6);
    let projection = db.projection("failing").await;
    let runner: Runner<_> = projection
        .run(
            &store,
            Selector::all().with_type_names(),
            writer(&db.schema, Arc::default(), Some(3), None),
        )
        .await
        .expect("run");
    let outcome = tokio::time::timeout(PATIENCE, runner.wait())
        .await
        .expect("the runner ends");
    let Err(ProjectionError::Handler { error, recorded }) = outcome else {
        panic!("expected the handler's error, got {outcome:?}");
    };
    assert_eq!(error.failure, HandlerFailure::Error("refused 3".to_owned()));
    assert_eq!(error.event.position, Position(3));
    assert_eq!(error.event.stream, stream);
    assert_eq!(error.event.version, StreamVersion(3));
    assert_eq!(error.event.event_type.as_deref(), Some("Counted"));
    assert!(recorded, "the failure was written on the projection's row");

    // The failing event's write was rolled back with its transaction.
    assert_eq!(db.applied().await, rows(0..3));
    let state = projection.state::<Position>().await.unwrap();
    assert_eq!(state.checkpoint, Some(Position(2)));
    assert_eq!(state.error_position, Some(Position(3)));
    let message = state.error.expect("an error on the row");
    assert!(
        message.contains("refused 3") && message.contains("at position 3"),
        "{message}"
    );

    // Fixed, it resumes at the failed event, and the error is cleared.
    let runner: Runner<_> = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, Arc::default(), None, None),
        )
        .await
        .expect("run again");
    runner.wait_checkpoint(Position(5), PATIENCE).await.unwrap();
    assert_eq!(db.applied().await, rows(0..6));
    let state = projection.state::<Position>().await.unwrap();
    assert_eq!((state.error, state.error_position), (None, None));
    runner.cancel().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_rolled_back_recorded_and_returned_as_a_panic() {
    let Some(db) = Db::fresh().await else { return };
    let store = MemoryStore::new();
    append(&store, StreamId::new(), 0..3);
    let projection = db.projection("panicking").await;
    let runner: Runner<_> = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, Arc::default(), None, Some(1)),
        )
        .await
        .expect("run");
    let outcome = tokio::time::timeout(PATIENCE, runner.wait())
        .await
        .expect("the runner ends");
    let Err(ProjectionError::Handler { error, recorded }) = outcome else {
        panic!("expected the handler's panic, got {outcome:?}");
    };
    assert_eq!(error.failure, HandlerFailure::Panic("boom at 1".to_owned()));
    assert_eq!(error.event.position, Position(1));
    assert!(recorded);
    assert_eq!(db.applied().await, rows(0..1));
    let state = projection.state::<Position>().await.unwrap();
    assert_eq!(state.checkpoint, Some(Position(0)));
    assert_eq!(state.error_position, Some(Position(1)));
    assert!(state.error.unwrap().contains("handler panicked: boom at 1"));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_is_refused_while_the_first_runs_and_starts_once_it_ended() {
    let Some(db) = Db::fresh().await else { return };
    let store = MemoryStore::new();
    let stream = StreamId::new();
    append(&store, stream, 0..3);
    let calls = Arc::new(AtomicUsize::new(0));
    let a: Runner<_> = db
        .projection("leased")
        .await
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, calls.clone(), None, None),
        )
        .await
        .expect("run a");
    a.wait_checkpoint(Position(2), PATIENCE).await.unwrap();

    // Another handle of the same projection, on another pool (another
    // process would do the same).
    let other = Db {
        pool: PgPoolOptions::new()
            .max_connections(2)
            .connect(&common::database_url().expect("set"))
            .await
            .expect("connect"),
        schema: db.schema.clone(),
    };
    let refused = other
        .projection("leased")
        .await
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, calls.clone(), None, None),
        )
        .await;
    match refused {
        Err(ProjectionError::AlreadyRunning { name }) => assert_eq!(name, "leased"),
        other => panic!("expected AlreadyRunning, got {:?}", other.map(|_| ())),
    }
    // A different projection is not held back by it.
    let unrelated: Runner<_> = other
        .projection("unrelated")
        .await
        .run(&store, Selector::all(), |_, _| Box::pin(async { Ok(()) }))
        .await
        .expect("another projection runs");
    unrelated.cancel().await;

    a.cancel().await;
    a.wait().await.expect("cancelled");
    append(&store, stream, 3..5);
    let b: Runner<_> = other
        .projection("leased")
        .await
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, calls.clone(), None, None),
        )
        .await
        .expect("the lease is free once the first runner ended");
    b.wait_checkpoint(Position(4), PATIENCE).await.unwrap();
    assert_eq!(db.applied().await, rows(0..5), "each event applied once");
    b.cancel().await;
    b.wait().await.expect("cancelled");
    db.drop().await;
}

/// The compare-and-set is the safety net behind the lease: a runner whose
/// lease was lost (its connection ended) keeps running, a second one
/// starts, and each new event is applied by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_lease_lost_a_runner_stops_at_the_first_event_a_second_runner_applied() {
    let Some(db) = Db::fresh().await else { return };
    let store = MemoryStore::new();
    let stream = StreamId::new();
    append(&store, stream, 0..3);
    let projection = db.projection("contended").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let a: Runner<_> = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, calls.clone(), None, None),
        )
        .await
        .expect("run a");
    a.wait_checkpoint(Position(2), PATIENCE).await.unwrap();
    db.break_lease("contended").await;
    let b: Runner<_> = db
        .projection("contended")
        .await
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, calls.clone(), None, None),
        )
        .await
        .expect("run b");
    assert_eq!(b.checkpoint(), Some(Position(2)));

    // Both get every new event; for each, one of them applies it first,
    // and the other then finds the checkpoint moved and stops.
    append(&store, stream, 3..10);
    let (reached_a, reached_b) = tokio::join!(
        a.wait_checkpoint(Position(9), PATIENCE),
        b.wait_checkpoint(Position(9), PATIENCE),
    );
    let (winner, loser) = match (reached_a, reached_b) {
        (Ok(()), Err(WaitError::Ended)) => (a, b),
        (Err(WaitError::Ended), Ok(())) => (b, a),
        other => panic!("expected exactly one runner to stop, got {other:?}"),
    };
    match loser.wait().await {
        Err(ProjectionError::Conflict { expected, found }) => {
            assert_eq!(expected, Some(Position(2)));
            assert!(found > expected, "found {found:?}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(db.applied().await, rows(0..10), "each event applied once");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "the loser's handler never ran"
    );
    winner.cancel().await;
    winner.wait().await.expect("cancelled");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_fed_by_the_postgres_store_applies_every_event_once_across_a_restart() {
    let Some(db) = Db::fresh().await else { return };
    let url = common::database_url().expect("set: Db::fresh returned");
    let store = PgStore::<Counted>::connect(&url, &common::fresh_schema())
        .await
        .expect("open a store");
    let stream = StreamId::new();
    let insert = |values: std::ops::Range<i64>| {
        let store = store.clone();
        async move {
            store
                .insert(Transaction::new().append(
                    stream,
                    ExpectedVersion::Any,
                    values.map(Counted),
                ))
                .await
                .expect("insert")
        }
    };
    insert(0..4).await;
    let projection = db.projection("from_postgres").await;
    let runner: Runner<PgError> = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, Arc::default(), None, None),
        )
        .await
        .expect("run");
    insert(4..7).await;
    runner.wait_checkpoint(Position(6), PATIENCE).await.unwrap();
    runner.cancel().await;
    runner.wait().await.expect("cancelled");

    insert(7..10).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let runner: Runner<PgError> = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, calls.clone(), None, None),
        )
        .await
        .expect("run again");
    runner.wait_checkpoint(Position(9), PATIENCE).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(db.applied().await, rows(0..10));
    runner.cancel().await;
    runner.wait().await.expect("cancelled");
    common::drop_schema(&store).await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_checkpoint_that_is_not_a_cursor_of_the_store_refuses_to_run() {
    let Some(db) = Db::fresh().await else { return };
    let projection = db.projection("foreign").await;
    sqlx::query(&format!(
        "UPDATE \"{}\".projections SET checkpoint = '{{\"lsn\": 7}}' WHERE name = 'foreign'",
        db.schema
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    let store = MemoryStore::new();
    let refused = projection
        .run(
            &store,
            Selector::all(),
            writer(&db.schema, Arc::default(), None, None),
        )
        .await;
    match refused {
        Err(ProjectionError::Checkpoint { stored, .. }) => assert_eq!(stored, r#"{"lsn": 7}"#),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
    assert!(matches!(
        projection.state::<Position>().await,
        Err(PgError::Corrupt { .. })
    ));
    db.drop().await;
}

/// Runs without a database: the schema is checked before any statement.
#[tokio::test]
async fn an_invalid_schema_name_is_refused_before_any_statement() {
    let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").expect("a lazy pool");
    let refused = Projection::open(pool, "Not-A-Schema", "p").await;
    assert!(
        matches!(refused, Err(PgError::InvalidSchema(ref name)) if name == "Not-A-Schema"),
        "{refused:?}"
    );
}

/// Sends on drop: tells a test that the runner dropped its handler.
struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(signal) = self.0.take() {
            let _ = signal.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_runner_even_with_its_channel_full() {
    let Some(db) = Db::fresh().await else { return };
    let store = MemoryStore::new();
    // More than the channel holds: the subscriber is blocked sending.
    append(&store, StreamId::new(), 0..300);
    let projection = db.projection("dropped").await;
    let (signal, dropped) = tokio::sync::oneshot::channel();
    let guard = DropSignal(Some(signal));
    let mut write = writer(&db.schema, Arc::default(), None, None);
    let runner: Runner<_> = projection
        .run(&store, Selector::all(), move |db, event| {
            let _ = &guard;
            write(db, event)
        })
        .await
        .expect("run");
    runner.wait_checkpoint(Position(0), PATIENCE).await.unwrap();
    drop(runner); // returns at once
    tokio::time::timeout(PATIENCE, dropped)
        .await
        .expect("the runner dropped its handler")
        .expect("the signal was sent, not dropped");
    // It stopped between events: the rows are a prefix, with the checkpoint.
    let applied = db.applied().await;
    let checkpoint = projection.state::<Position>().await.unwrap().checkpoint;
    assert_eq!(
        checkpoint,
        Some(Position(applied.len() as u64 - 1)),
        "checkpoint and rows agree"
    );
    assert_eq!(applied, rows(0..applied.len() as i64));
    db.drop().await;
}
