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
//!   mismatches (no stream has such a version or position).
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
//! # Not yet
//!
//! Checkpointed projections, a byte codec beside JSONB, idempotent appends
//! and stream deletion (rules 29-30) are not implemented; see the crate's
//! README.

mod error;
mod listener;
mod projection;
mod row;
mod schema;
mod store;
mod subscription;

pub use error::{PgError, ProjectionError};
pub use projection::{BoxFuture, Projection, ProjectionHandle, ProjectionState};
pub use store::PgStore;
pub use subscription::PgSubscriber;
