//! Checkpointed projections: a handler's SQL writes and the projection's
//! checkpoint commit in one PostgreSQL transaction per event, fed by any
//! [`EventStore`].
//!
//! The runner is a Tokio task:
//!
//! 1. At start, it takes the projection's lease (a session advisory lock
//!    on a connection of its own, held until the runner ends; see
//!    `Lease`), or fails with [`ProjectionError::AlreadyRunning`]. Then it
//!    makes sure the projection's row exists, reads its
//!    checkpoint and starts a subscriber of the event store after it (a
//!    checkpoint wins over the selector's start, unless that start is
//!    later).
//! 2. The subscriber's handler is synchronous and borrows each event only
//!    for its call, so it copies the event (`E: Clone`) into a bounded
//!    channel with `blocking_send` (it runs where blocking is allowed: the
//!    memory store's own thread, `spawn_blocking` for [`PgStore`](crate::PgStore)).
//!    A full channel holds the subscriber back: no event piles up.
//! 3. The runner takes one event at a time: events at or before its
//!    checkpoint are skipped; otherwise `BEGIN`, `SELECT checkpoint ... FOR
//!    UPDATE`, and if the stored checkpoint is not the one this runner
//!    last committed, another runner moved it: stop with
//!    [`ProjectionError::Conflict`] (the compare-and-set; the row lock makes
//!    a second runner wait for the first's `COMMIT` and then see its
//!    checkpoint). Then the handler runs in the transaction, the checkpoint
//!    moves to the event's cursor, `COMMIT`.
//! 4. On a handler error or panic: `ROLLBACK`, then the failure is written
//!    on the projection's row in a statement of its own (compare-and-set
//!    too), and the runner ends with [`ProjectionError::Handler`].
//!
//! A cancel is seen between events, never inside one: an event's
//! transaction always runs to its `COMMIT` or `ROLLBACK`.

use crate::error::{PgError, ProjectionError};
use crate::panic::panic_message;
use crate::schema::{migration_lock_key, quote_schema};
use hindsight::{
    CorrelationId, Cursor, EventId, EventRef, EventStore, Flow, HandlerError, HandlerFailure,
    Position, Selector, Start, StreamId, StreamVersion, SubscriberError, SubscriberHandle,
    WaitError,
};
use sqlx::{Connection, PgConnection, PgPool};
use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch, Notify};

/// The future a projection handler returns: boxed, `Send`, borrowing the
/// connection and the event.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many copied events may wait between the subscriber and the runner.
const CHANNEL: usize = 64;

/// The projections table, created if missing in the projection's schema.
/// `checkpoint` is the event store's cursor as serde writes it (so any
/// backend's cursor fits); `position` is the same point as a number, for
/// people and queries; the `error` columns hold the last failure, cleared
/// by the next event applied.
const TABLE: &str = r#"
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.projections (
    name TEXT PRIMARY KEY,
    checkpoint JSONB,
    position BIGINT CHECK (position >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    error TEXT,
    error_position BIGINT,
    error_at TIMESTAMPTZ
);
"#;

/// The SQL of one projection, built once at open.
#[derive(Debug)]
struct ProjectionSql {
    /// `$1` name: creates the row if missing.
    ensure: String,
    /// `$1` name: checkpoint (as text), error, error position.
    state: String,
    /// `$1` name: the checkpoint (as text).
    read: String,
    /// `$1` name: the checkpoint, row locked to the end of the transaction.
    lock: String,
    /// `$1` name, `$2` checkpoint (JSON text), `$3` position.
    advance: String,
    /// `$1` name, `$2` expected checkpoint (JSON text), `$3` error, `$4` position.
    record: String,
}

/// What every clone of a [`Projection`] shares.
#[derive(Debug)]
struct Inner {
    pool: PgPool,
    name: String,
    schema: String,
    sql: ProjectionSql,
}

/// A checkpointed projection: a name, and its row in a `projections`
/// table of a schema of a PostgreSQL database (which need not be the event
/// store's: the projection is fed by any [`EventStore`]).
///
/// [`Projection::run`] applies every event the selector selects, once, in
/// order: the handler's SQL writes and the checkpoint commit in one
/// transaction per event. Two runners of one projection never both apply
/// an event: the one that finds the checkpoint moved stops with
/// [`ProjectionError::Conflict`]. A restart resumes after the checkpoint.
///
/// ```no_run
/// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
/// use hindsight_postgres::Projection;
///
/// #[derive(Clone)]
/// struct Deposited(i64);
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::<Deposited>::new();
/// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// sqlx::raw_sql("CREATE TABLE IF NOT EXISTS totals (account UUID PRIMARY KEY, total BIGINT)")
///     .execute(&pool)
///     .await?;
/// let projection = Projection::open(pool, "read_models", "totals").await?;
/// let runner = projection
///     .run(&store, Selector::all(), |db, event| {
///         let (account, amount) = (*event.stream.as_uuid(), event.payload.0);
///         Box::pin(async move {
///             sqlx::query(
///                 "INSERT INTO totals VALUES ($1, $2) \
///                  ON CONFLICT (account) DO UPDATE SET total = totals.total + $2",
///             )
///             .bind(account)
///             .bind(amount)
///             .execute(db)
///             .await?;
///             Ok::<_, sqlx::Error>(())
///         })
///     })
///     .await?;
/// store.insert(Transaction::single(StreamId::new(), ExpectedVersion::NoStream, Deposited(10)))?;
/// // ... later
/// runner.cancel().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Projection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("schema", &self.inner.schema)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// What a projection's row says, from [`Projection::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionState<C> {
    /// The cursor of the last event applied, `None` before the first.
    pub checkpoint: Option<C>,
    /// The last failure recorded (a handler's error or panic, with the
    /// event's context), cleared when the next event is applied.
    pub error: Option<String>,
    /// The position of the event that failed, with `error`.
    pub error_position: Option<Position>,
}

impl Projection {
    /// Opens the projection `name` in `schema` of `pool`'s database:
    /// creates the schema and its `projections` table if missing
    /// (idempotent, under the schema's advisory lock), and the projection's
    /// row if missing.
    ///
    /// `schema` is 1 to 48 of `[a-z0-9_]`, not starting with a digit (it may
    /// be a [`PgStore`](crate::PgStore)'s schema); `name` is any text.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
    /// let projection = hindsight_postgres::Projection::open(pool, "read_models", "balances").await?;
    /// assert_eq!(projection.name(), "balances");
    /// # Ok(()) }
    /// ```
    pub async fn open(pool: PgPool, schema: &str, name: &str) -> Result<Self, PgError> {
        let s = quote_schema(schema)?;
        let table = format!("{s}.projections");
        let sql = ProjectionSql {
            ensure: format!("INSERT INTO {table} (name) VALUES ($1) ON CONFLICT DO NOTHING"),
            state: format!(
                "SELECT checkpoint::text, error, error_position FROM {table} WHERE name = $1"
            ),
            read: format!("SELECT checkpoint::text FROM {table} WHERE name = $1"),
            lock: format!("SELECT checkpoint::text FROM {table} WHERE name = $1 FOR UPDATE"),
            advance: format!(
                "UPDATE {table} SET checkpoint = $2::jsonb, position = $3, updated_at = now(), \
                 error = NULL, error_position = NULL, error_at = NULL WHERE name = $1"
            ),
            record: format!(
                "UPDATE {table} SET error = $3, error_position = $4, error_at = now() \
                 WHERE name = $1 AND checkpoint IS NOT DISTINCT FROM $2::jsonb"
            ),
        };
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(migration_lock_key(&s))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(&TABLE.replace("{s}", &s))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        sqlx::query(&sql.ensure).bind(name).execute(&pool).await?;
        Ok(Projection {
            inner: Arc::new(Inner {
                pool,
                name: name.to_owned(),
                schema: schema.to_owned(),
                sql,
            }),
        })
    }

    /// The projection's name.
    ///
    /// ```no_run
    /// # fn demo(projection: hindsight_postgres::Projection) {
    /// println!("projection {}", projection.name());
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The schema its row lives in, as given at open.
    ///
    /// ```no_run
    /// # fn demo(projection: hindsight_postgres::Projection) {
    /// println!("in {}.projections", projection.schema());
    /// # }
    /// ```
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Reads the projection's row: its checkpoint, as the cursor type `C`
    /// of the store that feeds it, and its last recorded failure. A row
    /// deleted since [`Projection::open`] reads as a fresh projection.
    ///
    /// ```no_run
    /// # async fn demo(projection: hindsight_postgres::Projection) -> Result<(), hindsight_postgres::PgError> {
    /// let state = projection.state::<hindsight::Position>().await?;
    /// if let Some(error) = state.error {
    ///     eprintln!("{} stopped at {:?}: {error}", projection.name(), state.error_position);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn state<C: Cursor>(&self) -> Result<ProjectionState<C>, PgError> {
        let row: Option<(Option<String>, Option<String>, Option<i64>)> =
            sqlx::query_as(&self.inner.sql.state)
                .bind(&self.inner.name)
                .fetch_optional(&self.inner.pool)
                .await?;
        let Some((checkpoint, error, error_position)) = row else {
            return Ok(ProjectionState {
                checkpoint: None,
                error: None,
                error_position: None,
            });
        };
        let checkpoint = decode(checkpoint).map_err(|(stored, source)| PgError::Corrupt {
            position: None,
            detail: format!(
                "projection {:?}: checkpoint {stored} is not a cursor of this store: {source}",
                self.inner.name
            ),
        })?;
        let error_position = error_position
            .map(|position| crate::row::unsigned(position, "error position", None))
            .transpose()?
            .map(Position);
        Ok(ProjectionState {
            checkpoint,
            error,
            error_position,
        })
    }

    /// Starts a runner of this projection on the current Tokio runtime: a
    /// subscriber of `store` from after the checkpoint, and a task that
    /// applies each event the selector selects in one transaction with
    /// the checkpoint (see the [module docs](crate#checkpointed-projections)).
    ///
    /// The handler gets the transaction's connection and the event, and
    /// returns a boxed future (`Box::pin(async move { ... })`; copy what it
    /// needs out of the event first, or borrow the event: it lives as long
    /// as the future). It must not end the transaction itself; nested
    /// `begin` on the connection makes a savepoint.
    ///
    /// One runner per projection: while one runs (in any process), `run`
    /// fails with [`ProjectionError::AlreadyRunning`]. The runner holds
    /// one connection of `pool`, detached from it, until it ends.
    ///
    /// `X: Display`: the failure is recorded on the projection's row as
    /// text, and returned unchanged in [`ProjectionError::Handler`].
    ///
    /// `S::Event: Clone`: a subscriber lends each event to its synchronous
    /// handler for that call only, and the transaction outlives the call,
    /// so the runner keeps a copy. For large events, store `Arc`s.
    ///
    /// Events the selector skips never reach the runner and never move
    /// the checkpoint. The checkpoint wins over the selector's start
    /// (`Beginning`, `End`), unless the start is `After` a later position;
    /// before the first event applied, `End` is the head at each start.
    ///
    /// ```no_run
    /// use hindsight::{Position, Selector};
    /// use std::time::Duration;
    /// # async fn demo(store: hindsight::MemoryStore<String>, projection: hindsight_postgres::Projection)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let runner = projection
    ///     .run(&store, Selector::all(), |db, event| {
    ///         let line = event.payload.clone();
    ///         Box::pin(async move {
    ///             sqlx::query("INSERT INTO lines (line) VALUES ($1)").bind(line).execute(db).await?;
    ///             Ok::<_, sqlx::Error>(())
    ///         })
    ///     })
    ///     .await?;
    /// runner.wait_checkpoint(Position(9), Duration::from_secs(10)).await?;
    /// runner.cancel().await;
    /// # Ok(()) }
    /// ```
    pub async fn run<S, X, H>(
        &self,
        store: &S,
        selector: Selector<S::Event>,
        handler: H,
    ) -> Result<ProjectionHandle<S::Cursor, X, S::Error>, ProjectionError<X, S::Error>>
    where
        S: EventStore,
        S::Event: Clone,
        X: fmt::Display + Send + Sync + 'static,
        H: for<'a> FnMut(
                &'a mut PgConnection,
                EventRef<'a, S::Event, S::Cursor>,
            ) -> BoxFuture<'a, Result<(), X>>
            + Send
            + 'static,
    {
        let inner = &self.inner;
        let lease = Lease::take(inner).await?;
        let (checkpoint, events, subscriber) = match prepare(inner, store, &selector).await {
            Ok(prepared) => prepared,
            Err(error) => {
                lease.release().await;
                return Err(error);
            }
        };

        let shared = Arc::new(Shared {
            progress: watch::Sender::new(Progress {
                checkpoint,
                ended: false,
            }),
            outcome: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            cancel: Notify::new(),
        });
        let runner = Runner::<S, X, H> {
            projection: Arc::clone(inner),
            selector,
            last: checkpoint,
            shared: Arc::clone(&shared),
            handler,
        };
        tokio::spawn(drive(runner, events, subscriber, lease));
        Ok(ProjectionHandle { shared })
    }
}

/// The events a runner will get, and how they reach it: the stored
/// checkpoint, and a subscriber started after it feeding the channel.
#[allow(clippy::type_complexity)]
async fn prepare<S, X>(
    inner: &Inner,
    store: &S,
    selector: &Selector<S::Event>,
) -> Result<
    (
        Option<S::Cursor>,
        mpsc::Receiver<Owned<S::Event, S::Cursor>>,
        S::Subscriber<Infallible>,
    ),
    ProjectionError<X, S::Error>,
>
where
    S: EventStore,
    S::Event: Clone,
{
    sqlx::query(&inner.sql.ensure)
        .bind(&inner.name)
        .execute(&inner.pool)
        .await?;
    let stored: Option<Option<String>> = sqlx::query_scalar(&inner.sql.read)
        .bind(&inner.name)
        .fetch_optional(&inner.pool)
        .await?;
    let stored = stored.ok_or(ProjectionError::Missing)?;
    let checkpoint: Option<S::Cursor> = decode(stored)
        .map_err(|(stored, source)| ProjectionError::Checkpoint { stored, source })?;

    let (sender, events) = mpsc::channel(CHANNEL);
    let subscriber = store
        .spawn_subscriber(
            resume(selector.clone(), checkpoint),
            move |event: EventRef<'_, S::Event, S::Cursor>| {
                // Fails only once the runner dropped its end: it is over.
                match sender.blocking_send(Owned::of(event)) {
                    Ok(()) => Ok::<_, Infallible>(Flow::Continue),
                    Err(_) => Ok(Flow::Stop),
                }
            },
        )
        .await
        .map_err(ProjectionError::Store)?;
    Ok((checkpoint, events, subscriber))
}

/// A projection's lease: a session advisory lock, keyed by the schema and
/// the projection's name, on a connection of its own (detached from the
/// pool) that the runner holds until it ends. A second runner of the same
/// projection, in any process, fails to take it and does not start
/// ([`ProjectionError::AlreadyRunning`]). If the lease's connection dies
/// while the runner runs, the lock goes with it; the compare-and-set on
/// the checkpoint still stops a second runner before it applies an event
/// twice.
struct Lease {
    connection: PgConnection,
    key: String,
}

impl Lease {
    /// Takes the lease of `inner`'s projection, or says who holds it.
    async fn take<X, B>(inner: &Inner) -> Result<Lease, ProjectionError<X, B>> {
        let mut connection = inner.pool.acquire().await?.detach();
        // The schema is `[a-z0-9_]` only, so the key names one projection.
        let key = format!(
            "hindsight-postgres-projection:{}:{}",
            inner.schema, inner.name
        );
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(&key)
                .fetch_one(&mut connection)
                .await?;
        if !taken {
            let _ = connection.close().await;
            return Err(ProjectionError::AlreadyRunning {
                name: inner.name.clone(),
            });
        }
        Ok(Lease { connection, key })
    }

    /// Gives the lease back. Unlocks before closing: a closed connection
    /// drops its locks only once the server notices, some time later, and
    /// a runner started right after this one ended must find it free.
    /// Failures are ignored: a broken connection holds no lock.
    async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&self.key)
            .execute(&mut self.connection)
            .await;
        let _ = self.connection.close().await;
    }
}

/// The cursor in a stored checkpoint, or the text and serde's complaint.
fn decode<C: Cursor>(stored: Option<String>) -> Result<Option<C>, (String, serde_json::Error)> {
    match stored {
        None => Ok(None),
        Some(text) => match serde_json::from_str(&text) {
            Ok(cursor) => Ok(Some(cursor)),
            Err(error) => Err((text, error)),
        },
    }
}

/// `selector`, started after `checkpoint` unless it starts after a later
/// position.
fn resume<E, C: Cursor>(selector: Selector<E>, checkpoint: Option<C>) -> Selector<E> {
    let Some(checkpoint) = checkpoint else {
        return selector;
    };
    match selector.start_point() {
        Start::After(position) if position > checkpoint.position() => selector,
        _ => selector.resume(Some(checkpoint)),
    }
}

/// An event copied out of the subscriber's handler.
struct Owned<E, C> {
    cursor: C,
    stream: StreamId,
    version: StreamVersion,
    event_id: EventId,
    correlation_id: Option<CorrelationId>,
    created_at: SystemTime,
    metadata: hindsight::Metadata,
    payload: E,
}

impl<E: Clone, C: Copy> Owned<E, C> {
    fn of(event: EventRef<'_, E, C>) -> Self {
        Owned {
            cursor: event.cursor,
            stream: event.stream,
            version: event.version,
            event_id: event.event_id,
            correlation_id: event.correlation_id,
            created_at: event.created_at,
            metadata: event.metadata.clone(),
            payload: event.payload.clone(),
        }
    }
}

impl<E, C: Copy> Owned<E, C> {
    fn as_ref(&self) -> EventRef<'_, E, C> {
        EventRef {
            cursor: self.cursor,
            stream: self.stream,
            version: self.version,
            event_id: self.event_id,
            correlation_id: self.correlation_id,
            created_at: self.created_at,
            metadata: &self.metadata,
            payload: &self.payload,
        }
    }
}

/// What a runner has done so far.
#[derive(Debug, Clone, Copy)]
struct Progress<C> {
    /// The last checkpoint this runner committed, or started from.
    checkpoint: Option<C>,
    /// Whether the runner has ended (its outcome is set).
    ended: bool,
}

/// What the runner's task and its handle share.
struct Shared<C, X, B> {
    progress: watch::Sender<Progress<C>>,
    outcome: Mutex<Option<Result<(), ProjectionError<X, B>>>>,
    cancelled: AtomicBool,
    /// Wakes the runner from its wait for the next event.
    cancel: Notify,
}

impl<C, X, B> Shared<C, X, B> {
    fn request_cancel(&self) {
        // Relaxed: re-read before every event; `Notify` orders the wake-up.
        self.cancelled.store(true, Ordering::Relaxed);
        self.cancel.notify_one();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// A running projection, from [`Projection::run`].
///
/// Dropping it requests cancellation and returns at once; the runner
/// stops before its next event (an event's transaction in flight runs to
/// its end). The waits are waker-based and cancel-safe; the timeouts need
/// a Tokio runtime with its timer.
///
/// ```no_run
/// use std::time::Duration;
/// # async fn demo(runner: hindsight_postgres::ProjectionHandle<hindsight::Position, sqlx::Error, hindsight::MemoryError>)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// runner.wait_checkpoint(hindsight::Position(41), Duration::from_secs(10)).await?;
/// println!("applied up to {:?}", runner.checkpoint());
/// runner.cancel().await;
/// runner.wait().await?; // Ok: cancelled
/// # Ok(()) }
/// ```
pub struct ProjectionHandle<C, X, B> {
    shared: Arc<Shared<C, X, B>>,
}

impl<C: fmt::Debug, X, B> fmt::Debug for ProjectionHandle<C, X, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("progress", &*self.shared.progress.borrow())
            .finish_non_exhaustive()
    }
}

impl<C, X, B> Drop for ProjectionHandle<C, X, B> {
    fn drop(&mut self) {
        self.shared.request_cancel();
    }
}

impl<C: Cursor, X: Send + Sync + 'static, B: Send + Sync + 'static> ProjectionHandle<C, X, B> {
    /// Stops the runner; completes once it has ended: the event in flight
    /// (if any) committed or rolled back, the subscriber stopped, the
    /// handler dropped. Idempotent; the request is made on the first poll.
    ///
    /// ```no_run
    /// # async fn demo(runner: hindsight_postgres::ProjectionHandle<hindsight::Position, sqlx::Error, hindsight::MemoryError>) {
    /// runner.cancel().await;
    /// assert!(runner.is_finished());
    /// # }
    /// ```
    pub async fn cancel(&self) {
        self.shared.request_cancel();
        let mut progress = self.shared.progress.subscribe();
        // The sender lives in `shared`, which this handle holds.
        let _ = progress.wait_for(|p| p.ended).await;
    }

    /// Waits until the runner ends and returns how: `Ok` after a cancel,
    /// or the error that stopped it. Dropping the future drops the handle,
    /// which requests cancellation.
    ///
    /// ```no_run
    /// # async fn demo(runner: hindsight_postgres::ProjectionHandle<hindsight::Position, sqlx::Error, hindsight::MemoryError>) {
    /// use hindsight_postgres::ProjectionError;
    /// match runner.wait().await {
    ///     Ok(()) => {}
    ///     Err(ProjectionError::Handler { error, .. }) => eprintln!("at {}: {error}", error.event.position),
    ///     Err(other) => eprintln!("{other}"),
    /// }
    /// # }
    /// ```
    pub async fn wait(self) -> Result<(), ProjectionError<X, B>> {
        let mut progress = self.shared.progress.subscribe();
        let _ = progress.wait_for(|p| p.ended).await;
        self.shared
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or(Ok(()))
    }

    /// The last checkpoint this runner committed (or started from): every
    /// selected event up to it is applied.
    ///
    /// ```no_run
    /// # fn demo(runner: hindsight_postgres::ProjectionHandle<hindsight::Position, sqlx::Error, hindsight::MemoryError>) {
    /// println!("{:?}", runner.checkpoint());
    /// # }
    /// ```
    pub fn checkpoint(&self) -> Option<C> {
        self.shared.progress.borrow().checkpoint
    }

    /// Waits until the checkpoint is at or after `cursor` (the cursor of a
    /// selected event: unselected events never move it), for at most
    /// `timeout`. [`WaitError::Ended`] if the runner ended first.
    ///
    /// ```no_run
    /// # async fn demo(runner: hindsight_postgres::ProjectionHandle<hindsight::Position, sqlx::Error, hindsight::MemoryError>)
    /// # -> Result<(), hindsight::WaitError> {
    /// runner.wait_checkpoint(hindsight::Position(7), std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_checkpoint(&self, cursor: C, timeout: Duration) -> Result<(), WaitError> {
        let reached = |p: &Progress<C>| p.checkpoint.is_some_and(|at| at >= cursor);
        let mut progress = self.shared.progress.subscribe();
        let done = async {
            // Copied out at once: the borrow holds the channel's lock.
            progress
                .wait_for(|p| p.ended || reached(p))
                .await
                .map(|p| *p)
        };
        match tokio::time::timeout(timeout, done).await {
            Err(_) => Err(WaitError::TimedOut),
            Ok(Ok(progress)) if reached(&progress) => Ok(()),
            Ok(_) => Err(WaitError::Ended),
        }
    }

    /// Whether the runner has ended.
    ///
    /// ```no_run
    /// # fn demo(runner: hindsight_postgres::ProjectionHandle<hindsight::Position, sqlx::Error, hindsight::MemoryError>) {
    /// if runner.is_finished() { println!("stopped"); }
    /// # }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.shared.progress.borrow().ended
    }
}

/// How the runner's loop ended without an error.
enum Stop {
    /// A cancel was requested.
    Cancelled,
    /// The subscriber ended (its handler, with the channel's sender, is gone).
    SubscriberEnded,
}

/// The runner's state, in its task.
struct Runner<S: EventStore, X, H> {
    projection: Arc<Inner>,
    selector: Selector<S::Event>,
    /// The checkpoint this runner last committed or started from.
    last: Option<S::Cursor>,
    shared: Arc<Shared<S::Cursor, X, S::Error>>,
    handler: H,
}

/// The runner's task: the loop, then the subscriber stopped, the handler
/// dropped, and the outcome published.
async fn drive<S, X, H>(
    mut runner: Runner<S, X, H>,
    mut events: mpsc::Receiver<Owned<S::Event, S::Cursor>>,
    subscriber: S::Subscriber<Infallible>,
    lease: Lease,
) where
    S: EventStore,
    S::Event: Clone,
    X: fmt::Display + Send + Sync + 'static,
    H: for<'a> FnMut(
            &'a mut PgConnection,
            EventRef<'a, S::Event, S::Cursor>,
        ) -> BoxFuture<'a, Result<(), X>>
        + Send
        + 'static,
{
    let shared = Arc::clone(&runner.shared);
    let worked = CatchUnwind(Box::pin(runner.work(&mut events))).await;
    // A subscriber blocked on the full channel returns (and stops) once
    // the receiver is gone: only then can it be waited for.
    drop(events);
    let mut outcome = match worked {
        Ok(Ok(Stop::SubscriberEnded)) => match subscriber.wait().await {
            Ok(()) => Ok(()),
            Err(error) => Err(subscriber_failed(&runner.projection, runner.last, error).await),
        },
        Ok(Ok(Stop::Cancelled)) => {
            subscriber.cancel().await;
            Ok(())
        }
        Ok(Err(error)) => {
            subscriber.cancel().await;
            Err(error)
        }
        Err(panic) => {
            subscriber.cancel().await;
            Err(ProjectionError::Panicked(panic_message(panic)))
        }
    };
    // The handler (user code) goes before the end is published.
    if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(runner))) {
        if outcome.is_ok() {
            outcome = Err(ProjectionError::Panicked(panic_message(panic)));
        }
    }
    // Free before the end is published: whoever waited for it may start
    // the projection again at once.
    lease.release().await;
    *shared
        .outcome
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    shared.progress.send_modify(|p| p.ended = true);
}

impl<S, X, H> Runner<S, X, H>
where
    S: EventStore,
    S::Event: Clone,
    X: fmt::Display + Send + Sync + 'static,
    H: for<'a> FnMut(
            &'a mut PgConnection,
            EventRef<'a, S::Event, S::Cursor>,
        ) -> BoxFuture<'a, Result<(), X>>
        + Send
        + 'static,
{
    /// Applies events until a cancel, the subscriber's end, or an error.
    async fn work(
        &mut self,
        events: &mut mpsc::Receiver<Owned<S::Event, S::Cursor>>,
    ) -> Result<Stop, ProjectionError<X, S::Error>> {
        loop {
            if self.shared.is_cancelled() {
                return Ok(Stop::Cancelled);
            }
            let event = tokio::select! {
                biased;
                () = self.shared.cancel.notified() => return Ok(Stop::Cancelled),
                event = events.recv() => match event {
                    Some(event) => event,
                    None => return Ok(Stop::SubscriberEnded),
                },
            };
            // Defensive: the subscriber starts after the checkpoint.
            if self.last.is_some_and(|last| event.cursor <= last) {
                continue;
            }
            self.apply(&event).await?;
        }
    }

    /// One event, in one transaction with the checkpoint.
    async fn apply(
        &mut self,
        event: &Owned<S::Event, S::Cursor>,
    ) -> Result<(), ProjectionError<X, S::Error>> {
        let projection = Arc::clone(&self.projection);
        let checkpoint = serde_json::to_string(&event.cursor).map_err(ProjectionError::Encode)?;
        let mut tx = projection.pool.begin().await?;
        let stored: Option<Option<String>> = sqlx::query_scalar(&projection.sql.lock)
            .bind(&projection.name)
            .fetch_optional(&mut *tx)
            .await?;
        // Returning drops `tx`: rolled back.
        let stored = stored.ok_or(ProjectionError::Missing)?;
        let found: Option<S::Cursor> = decode(stored)
            .map_err(|(stored, source)| ProjectionError::Checkpoint { stored, source })?;
        if found != self.last {
            return Err(ProjectionError::Conflict {
                expected: self.last.map(Cursor::position),
                found: found.map(Cursor::position),
            });
        }

        let ran = {
            let handler = &mut self.handler;
            let connection: &mut PgConnection = &mut tx;
            let event = event.as_ref();
            // Moved in, so the closure is `FnOnce` and the future may keep
            // the connection's borrow.
            let call = move || {
                let (handler, connection) = (handler, connection);
                handler(connection, event)
            };
            match catch_unwind(AssertUnwindSafe(call)) {
                Ok(future) => CatchUnwind(future).await,
                Err(panic) => Err(panic),
            }
        };
        let failure = match ran {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(HandlerFailure::Error(error)),
            Err(panic) => Some(HandlerFailure::Panic(panic_message(panic))),
        };
        if let Some(failure) = failure {
            // If the rollback fails, dropping the connection rolls back.
            let _ = tx.rollback().await;
            let event_type = catch_unwind(AssertUnwindSafe(|| {
                self.selector
                    .event_type_name(&event.payload)
                    .map(str::to_owned)
            }))
            .unwrap_or(None);
            let error = HandlerError {
                failure,
                event: event.as_ref().context(event_type),
            };
            let recorded = record(&projection, self.last, &error).await;
            return Err(ProjectionError::Handler { error, recorded });
        }

        let position = i64::try_from(event.cursor.position().0).ok();
        sqlx::query(&projection.sql.advance)
            .bind(&projection.name)
            .bind(checkpoint)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.last = Some(event.cursor);
        let cursor = event.cursor;
        self.shared
            .progress
            .send_modify(|p| p.checkpoint = Some(cursor));
        Ok(())
    }
}

/// Writes `error` on the projection's row, if its checkpoint is still
/// `last`; whether it did.
async fn record<C: Cursor, X: fmt::Display>(
    projection: &Inner,
    last: Option<C>,
    error: &HandlerError<X>,
) -> bool {
    let Ok(expected) = last.map(|c| serde_json::to_string(&c)).transpose() else {
        return false;
    };
    let done = sqlx::query(&projection.sql.record)
        .bind(&projection.name)
        .bind(expected)
        .bind(error.to_string())
        .bind(i64::try_from(error.event.position.0).ok())
        .execute(&projection.pool)
        .await;
    matches!(done, Ok(done) if done.rows_affected() == 1)
}

/// The runner's error for its subscriber's failure; a panic on an event
/// (copying it, naming its type) is recorded like a handler's.
async fn subscriber_failed<C: Cursor, X: fmt::Display, B>(
    projection: &Inner,
    last: Option<C>,
    error: SubscriberError<Infallible, B>,
) -> ProjectionError<X, B>
where
    B: std::error::Error,
{
    match error {
        SubscriberError::Handler(HandlerError { failure, event }) => {
            let failure = match failure {
                HandlerFailure::Error(never) => match never {},
                HandlerFailure::Panic(message) => HandlerFailure::Panic(message),
            };
            let error = HandlerError { failure, event };
            let recorded = record(projection, last, &error).await;
            ProjectionError::Handler { error, recorded }
        }
        SubscriberError::Backend(error) => ProjectionError::Store(error),
        SubscriberError::Panicked(message) => ProjectionError::Panicked(message),
        other => ProjectionError::Subscriber(other.to_string()),
    }
}

/// Polls a future, catching its panics.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resume;
    use hindsight::{Position, Selector, Start};

    #[test]
    fn a_checkpoint_wins_over_the_start_unless_the_start_is_later() {
        let start = |selector: Selector<()>, checkpoint: Option<Position>| {
            resume(selector, checkpoint).start_point()
        };
        let at = Some(Position(5));
        assert_eq!(start(Selector::all(), None), Start::Beginning);
        assert_eq!(start(Selector::all(), at), Start::After(Position(5)));
        assert_eq!(
            start(Selector::all().start(Start::End), at),
            Start::After(Position(5))
        );
        assert_eq!(
            start(Selector::all().after(Position(3)), at),
            Start::After(Position(5))
        );
        assert_eq!(
            start(Selector::all().after(Position(9)), at),
            Start::After(Position(9))
        );
        assert_eq!(
            start(Selector::all().after(Position(9)), None),
            Start::After(Position(9))
        );
    }
}
