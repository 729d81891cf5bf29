//! hindsight's [`EventStore`](hindsight::EventStore) on PostgreSQL.
//!
//! Application code written against the trait runs unchanged on
//! [`hindsight::MemoryStore`] in tests and on [`PgStore`] in production;
//! the same conformance kit (`hindsight::conformance_tests!`) checks both.
//!
//! ```no_run
//! use hindsight::{EventStore, EventType, ExpectedVersion, Flow, Selector, StreamId,
//!     SubscriberHandle, Transaction};
//! use hindsight_postgres::PgStore;
//! use std::time::Duration;
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! enum Account { Opened, Deposited(u64) }
//! impl EventType for Account {
//!     fn event_type(&self) -> &str {
//!         match self { Account::Opened => "Opened", Account::Deposited(_) => "Deposited" }
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::<Account>::connect("postgres://localhost/app", "bank").await?;
//! let account = StreamId::new();
//! let deposits = store
//!     .spawn_subscriber(Selector::all().only_types(["Deposited"]), |event| {
//!         println!("{:?} at {}", event.payload, event.position());
//!         Ok::<_, std::convert::Infallible>(Flow::Continue)
//!     })
//!     .await?;
//! let done = store
//!     .insert(Transaction::new().append(
//!         account,
//!         ExpectedVersion::NoStream,
//!         [Account::Opened, Account::Deposited(10)],
//!     ))
//!     .await?;
//! deposits.wait_processed(done.last_position().unwrap(), Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
//!
//! # How it keeps the contract
//!
//! - **Dense positions in commit order.** An insert takes its positions
//!   from a one-row counter (`log_head`) inside its transaction and holds
//!   that row's lock until `COMMIT`. A later insert waits for it, so it
//!   commits later: position order is commit order is visibility order,
//!   and a snapshot always sees a prefix of the log with no hole that fills
//!   later (rules 2 and 15). A rolled-back insert never bumped the
//!   committed counter, so no position is lost. Sequences would leave gaps
//!   on rollback and let readers skip events committed out of order. The
//!   price: inserts commit one at a time, like the memory store's watermark.
//! - **One round trip per insert.** A plpgsql function (`insert_events`)
//!   creates placeholder rows for new streams, locks the transaction's
//!   stream rows in ascending id order (no deadlocks, rule 13), checks
//!   every expectation, and on any mismatch raises one error whose DETAIL
//!   lists every failing stream with what it found (rule 7): it maps to
//!   the same [`StoreError::VersionConflict`](hindsight::StoreError) the
//!   memory store returns. Otherwise it takes the positions, writes all
//!   events with one timestamp that never goes back (rules 11 and 26),
//!   updates the stream heads and `pg_notify`s. READ COMMITTED, with a
//!   10 s `lock_timeout` so a stuck writer cannot stall the store forever.
//!   Exact expectations above `i64::MAX` never reach SQL: they are
//!   mismatches (no stream has such a version or position). An insert that
//!   names streams (`Transaction::append_named`, rule 32) runs the function
//!   inside `BEGIN`/`COMMIT`, then records the names (and categories) of
//!   the streams whose first events it wrote, on rows the function already
//!   locked: a snapshot sees a stream's first events and its name
//!   together. Its conflicts take one more query, for the kept names.
//! - **Stream lifecycle** (rule 30, migration 6): deletes, truncations,
//!   maximum counts and the store-wide reset mark the `streams` rows
//!   (`deleted_before`, `visible_from`, `tombstoned`, `max_count`) under
//!   the same row locks `insert_events` takes; `insert_events` refuses a
//!   hard-deleted stream (its own SQLSTATE, mapped to
//!   [`StoreError::StreamDeleted`](hindsight::StoreError)), checks
//!   expectations against the head since the last delete, and raises
//!   `visible_from` for a stream with a maximum count in the inserting
//!   transaction. Every read and subscription query skips events below
//!   `visible_from`; their rows stay (nothing is reclaimed). A maximum age
//!   (migration 8, `streams.max_age`, microseconds) is one more condition
//!   of the same queries: an event older than it at the query's
//!   `statement_timestamp()`, the server's clock that stamped
//!   `created_at`, is skipped; age is judged per page, so a longer age
//!   shows events again.
//! - **Reads** page by position or by (stream, version), 500 rows a query,
//!   bounded by the head read once at the start.
//! - **Subscriptions** ([`PgSubscriber`]) page by position, one snapshot
//!   per page, run the synchronous handler on a blocking thread with no
//!   connection held, and wait on `LISTEN`/`NOTIFY` as a hint (one
//!   listener connection per handle) with a 500 ms poll as the safety net.
//!
//! # Schemas
//!
//! Each store lives in its own schema, named at connect and created (and
//! migrated, idempotently, under an advisory lock) on first use.
//!
//! # Payloads
//!
//! A store writes and reads its events' payloads through a [`Codec`]:
//! serde JSON in the `JSONB` column `payload` by default ([`JsonCodec`];
//! [`PgStore::connect`], [`PgStore::with_pool`]), readable and queryable
//! in SQL; or bytes in the `BYTEA` column `payload_bytes`
//! ([`PgStore::connect_with_codec`], [`PgStore::with_pool_and_codec`]) from
//! any binary format the application picks: a [`ByteCodec`] made of two
//! functions, or a `Codec` of its own. This crate depends on no binary
//! format. Whatever the codec, the event's
//! [`EventType`](hindsight::EventType) name has a column of its own, so
//! type filters
//! ([`Selector::only_types`](hindsight::Selector::only_types)) run in SQL.
//!
//! ```no_run
//! use hindsight_postgres::{ByteCodec, PgStore};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! enum Account { Opened, Deposited(u64) }
//! # impl hindsight::EventType for Account {
//! #     fn event_type(&self) -> &str { "Account" }
//! # }
//!
//! # async fn demo() -> Result<(), hindsight_postgres::PgError> {
//! // CBOR with ciborium (the application's dependency).
//! let cbor = ByteCodec::new(
//!     |event: &Account| {
//!         let mut bytes = Vec::new();
//!         ciborium::into_writer(event, &mut bytes)?;
//!         Ok(bytes)
//!     },
//!     |bytes| Ok(ciborium::from_reader(bytes)?),
//! );
//! let store = PgStore::connect_with_codec("postgres://localhost/app", "bank", cbor).await?;
//! # drop(store); Ok(()) }
//! ```
//!
//! Every row holds exactly one of the two columns (a `CHECK`), so one
//! schema should have one codec: a store that meets a row in the other
//! form, or one its codec cannot decode, fails the read with
//! [`PgError::Decode`] at that row's position, and a subscription ends
//! with it after every event before. An event that cannot be encoded
//! fails its insert with [`PgError::Encode`] before anything is sent.
//! Schemas made before byte payloads existed are upgraded in place on
//! connect (a new column and a new insert function; constant time), and
//! their JSON events stay readable by a JSON store.
//!
//! # Checkpointed projections
//!
//! A [`Projection`] keeps a read model in PostgreSQL from the events of
//! any [`EventStore`](hindsight::EventStore), the memory store included
//! (Hindsight's `runProjection`): for each event the handler's SQL writes
//! and the projection's checkpoint commit in one transaction, so after a
//! crash or a restart every event is applied exactly once.
//!
//! ```no_run
//! use hindsight::{EventStore, EventType, ExpectedVersion, Selector, StreamId, Transaction};
//! use hindsight_postgres::{PgStore, Projection, ProjectionError};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Deposited(i64);
//! impl EventType for Deposited { fn event_type(&self) -> &str { "Deposited" } }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::<Deposited>::connect("postgres://localhost/app", "bank").await?;
//! sqlx::raw_sql("CREATE TABLE IF NOT EXISTS balances (account UUID PRIMARY KEY, total BIGINT)")
//!     .execute(store.pool())
//!     .await?;
//! // The projection's row lives in `read_models.projections`.
//! let balances = Projection::open(store.pool().clone(), "read_models", "balances").await?;
//! let runner = balances
//!     .run(&store, Selector::all(), |db, event| {
//!         let (account, amount) = (*event.stream.as_uuid(), event.payload.0);
//!         Box::pin(async move {
//!             sqlx::query(
//!                 "INSERT INTO balances VALUES ($1, $2) \
//!                  ON CONFLICT (account) DO UPDATE SET total = balances.total + $2",
//!             )
//!             .bind(account)
//!             .bind(amount)
//!             .execute(db)
//!             .await?;
//!             Ok::<_, sqlx::Error>(())
//!         })
//!     })
//!     .await?;
//! store
//!     .insert(Transaction::single(StreamId::new(), ExpectedVersion::NoStream, Deposited(10)))
//!     .await?;
//! // Runs until cancelled, or until an event fails:
//! match runner.wait().await {
//!     Err(ProjectionError::Handler { error, .. }) => {
//!         eprintln!("stopped at position {}: {error}", error.event.position)
//!     }
//!     other => other?,
//! }
//! # Ok(()) }
//! ```
//!
//! How it keeps its promises, and why it has this shape:
//!
//! - **The checkpoint is the event store's cursor as serde writes it**
//!   (`JSONB`, plus the position as a `BIGINT` for people), so one table
//!   serves projections fed by any backend; a checkpoint that does not
//!   decode as the feeding store's cursor refuses to run
//!   ([`ProjectionError::Checkpoint`]) instead of guessing.
//! - **One transaction per event**: `BEGIN`; lock the projection's row
//!   (`SELECT ... FOR UPDATE`); the handler's statements; the checkpoint;
//!   `COMMIT`. A crash anywhere leaves both or neither.
//! - **One runner per projection, by a lease**: a runner holds a session
//!   advisory lock (keyed by schema and name) on a connection of its own
//!   for as long as it runs; a second runner, in any process, does not
//!   start ([`ProjectionError::AlreadyRunning`]).
//! - **A compare-and-set on the checkpoint**, behind the lease (which
//!   goes if its connection dies): the locked row must still hold the
//!   checkpoint this runner last committed. A second runner of the same
//!   projection waits on the row lock for the first's `COMMIT`, then finds
//!   the checkpoint moved and stops with [`ProjectionError::Conflict`],
//!   before its handler runs: no event is applied twice.
//! - **Restart resumes after the checkpoint**: the subscriber starts after
//!   it (a selector's `After` a later position wins), and events at or
//!   before it are skipped anyway.
//! - **Failures are values, recorded**: a handler's error or panic rolls
//!   its transaction back, is written with the event's context on the
//!   projection's row (`error`, `error_position`, `error_at`; cleared by
//!   the next event applied), and ends the runner with
//!   [`ProjectionError::Handler`], which carries the handler's error
//!   unchanged and the event's [`EventContext`](hindsight::EventContext).
//!   A panic is caught around each poll of the handler's future and
//!   reported the same way, as [`HandlerFailure::Panic`](hindsight::HandlerFailure::Panic).
//! - **The event store's synchronous subscriber feeds an async loop**
//!   through a bounded channel (the subscriber's handler blocks on
//!   `blocking_send`, where the trait lets it block). The subscriber
//!   lends each event for one call and the transaction outlives it, so
//!   events are cloned (`Event: Clone`; wrap large ones in `Arc`).
//! - **Shutdown**: [`ProjectionHandle::cancel`] and dropping the handle
//!   stop the runner between events (an event's transaction always runs
//!   to its end); dropping never blocks.
//!
//! # Idempotent appends (rule 29)
//!
//! `insert_events` checks client event ids under the stream row locks,
//! before taking positions, with an index on `(stream_id, event_id)` of
//! client ids, so `Any` and `StreamExists` re-sends are recognised in the
//! whole stream (the memory store's window is its last 1,024 versions). A
//! conflict is SQLSTATE `HS412`, mapped to `StoreError::EventIdConflict`; a
//! whole retry returns the original heads, rebuilt from the transaction's
//! range stored with its events. Payloads are compared as stored (JSONB
//! equality, or the codec's bytes): a codec whose output for equal events
//! differs makes a re-send a conflict.

mod codec;
mod error;
mod listener;
mod panic;
#[cfg(test)]
mod plan_tests;
mod projection;
mod row;
mod schema;
mod store;
mod subscription;
#[cfg(feature = "tracing")]
mod trace;

pub use codec::{BoxError, ByteCodec, Codec, JsonCodec, PayloadForm};
pub use error::{PgError, ProjectionError};
pub use projection::{BoxFuture, Projection, ProjectionHandle, ProjectionState};
pub use store::PgStore;
pub use subscription::PgSubscriber;
