//! Every failure of the PostgreSQL backend, in one place: one `Display` per
//! failure.

use crate::codec::BoxError;
use hindsight::{Position, StreamId};

/// The PostgreSQL backend's own failure, as
/// [`EventStore::Error`](hindsight::EventStore::Error).
///
/// A version conflict is not one of these: `insert` reports it as
/// [`StoreError::VersionConflict`](hindsight::StoreError::VersionConflict),
/// exactly as the memory store does.
///
/// ```
/// use hindsight::Position;
/// use hindsight_postgres::PgError;
/// let error = PgError::Corrupt { position: Some(Position(3)), detail: "negative version".into() };
/// assert!(error.to_string().contains("position 3"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The database refused or failed a statement (connection lost, lock
    /// timeout, ...). Whatever the statement was, it wrote all or nothing.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A read or a subscription's query failed; it had handled or passed
    /// every event up to `after` (nothing yet for `None`).
    #[error("query for the events {} failed: {source}", after_text(after))]
    Query {
        /// The last position handled or passed before the failure.
        after: Option<Position>,
        /// What the database said.
        source: sqlx::Error,
    },
    /// The store's [`Codec`](crate::Codec) could not encode an event of
    /// an insert (or made JSON that is not UTF-8, or panicked); nothing was
    /// written.
    #[error(
        "an event of type {event_type:?} for stream {stream} could not be encoded \
         (nothing was written): {source}"
    )]
    Encode {
        /// The stream the event was for.
        stream: StreamId,
        /// The event's [`EventType`](hindsight::EventType) name.
        event_type: String,
        /// What the codec said.
        source: BoxError,
    },
    /// The stored payload at `position` does not decode with the store's
    /// [`Codec`](crate::Codec): the codec failed (or panicked), or the
    /// payload is stored in the other [`PayloadForm`](crate::PayloadForm)
    /// (bytes read by a JSON store, or JSON by a byte store). Every earlier
    /// event was delivered.
    #[error("the event at position {position} could not be decoded: {source}")]
    Decode {
        /// Where the undecodable event sits.
        position: Position,
        /// What the codec said, or which form the row has.
        source: BoxError,
    },
    /// A row breaks the schema's invariants (a negative number, say).
    #[error("corrupt row{}: {detail}", at_text(position))]
    Corrupt {
        /// Where, if known.
        position: Option<Position>,
        /// What is wrong.
        detail: String,
    },
    /// A schema name that is not a plain lowercase identifier.
    #[error("invalid schema name {0:?}: use 1 to 48 of [a-z0-9_], starting with a letter or _")]
    InvalidSchema(String),
    /// A transaction too large for one insert: more than `i32::MAX`
    /// events for one stream.
    #[error("transaction too large: {events} events for one stream")]
    TooLarge {
        /// The events of the offending stream.
        events: usize,
    },
}

impl From<PgError> for hindsight::StoreError<PgError> {
    fn from(error: PgError) -> Self {
        hindsight::StoreError::Backend(error)
    }
}

/// "after position 4", or "from the beginning".
fn after_text(after: &Option<Position>) -> String {
    match after {
        Some(position) => format!("after position {position}"),
        None => "from the beginning".to_owned(),
    }
}

/// " at position 4", or nothing.
fn at_text(position: &Option<Position>) -> String {
    match position {
        Some(position) => format!(" at position {position}"),
        None => String::new(),
    }
}

/// Why a checkpointed projection ([`Projection`](crate::Projection)) did
/// not start, or how its runner ended (from
/// [`ProjectionHandle::wait`](crate::ProjectionHandle::wait)).
///
/// `X` is the handler's error, carried unchanged; `B` is the event store's
/// own error ([`EventStore::Error`](hindsight::EventStore::Error): a
/// [`MemoryError`](hindsight::MemoryError), a [`PgError`], ...). Whatever the
/// variant, every event up to the projection's checkpoint was applied
/// exactly once and nothing after it: restarting resumes there.
///
/// ```
/// use hindsight_postgres::ProjectionError;
/// use hindsight::{MemoryError, Position};
/// let error: ProjectionError<std::io::Error, MemoryError> =
///     ProjectionError::Conflict { expected: Some(Position(4)), found: Some(Position(5)) };
/// assert_eq!(
///     error.to_string(),
///     "another runner moved the projection's checkpoint: expected position 4, found position 5",
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError<X, B> {
    /// The handler returned an error (carried unchanged in
    /// [`HandlerFailure::Error`](hindsight::HandlerFailure::Error)) or
    /// panicked, on the event in the context. Its transaction was rolled
    /// back: the checkpoint stays just before that event. A panic while
    /// copying the event for the runner (in `Clone`, or naming its type)
    /// is reported here too, as a panic.
    #[error("{error}")]
    Handler {
        /// The failure and the event it happened on.
        error: hindsight::HandlerError<X>,
        /// Whether the failure was written on the projection's row
        /// (`error`, `error_position`, `error_at`). `false` when that
        /// statement failed, or when another runner had moved the
        /// checkpoint meanwhile (the row is then that runner's to report).
        recorded: bool,
    },
    /// The compare-and-set on the checkpoint failed: another runner of the
    /// same projection applied an event since this runner last committed.
    /// This runner applied nothing more (its transaction was rolled back).
    #[error(
        "another runner moved the projection's checkpoint: expected {}, found {}",
        checkpoint_text(expected),
        checkpoint_text(found)
    )]
    Conflict {
        /// The checkpoint this runner last committed (or started from).
        expected: Option<Position>,
        /// The checkpoint it found.
        found: Option<Position>,
    },
    /// Another runner of the same projection (in this process or any
    /// other) holds the projection's lease, so this one did not start:
    /// nothing was read or applied. It can start once that runner ends.
    #[error("projection {name:?} is already running (another runner holds its lease)")]
    AlreadyRunning {
        /// The projection's name.
        name: String,
    },
    /// The projection's row was deleted while it ran.
    #[error("the projection's row was deleted while it ran")]
    Missing,
    /// A statement on the projection's database failed (connection lost,
    /// lock timeout, ...). The event's transaction wrote all or nothing; if
    /// its `COMMIT` was lost, the checkpoint says which.
    #[error("projection database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The stored checkpoint is not a cursor of this event store (the name
    /// is used by a projection fed by another backend, say).
    #[error("the stored checkpoint {stored} is not a cursor of this store: {source}")]
    Checkpoint {
        /// The stored checkpoint, as JSON text.
        stored: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// The event's cursor could not be serialised as a checkpoint.
    #[error("a cursor could not be serialised as a checkpoint: {0}")]
    Encode(serde_json::Error),
    /// The event store failed: its subscriber could not start, or ended
    /// with this error. Every event before the failure was applied.
    #[error("event store error: {0}")]
    Store(B),
    /// User code the runner ran outside any event (the handler's `Drop`)
    /// panicked, or the runner itself did (a bug), with this message.
    #[error("the projection runner panicked: {0}")]
    Panicked(String),
    /// The event store's subscriber ended in a way this version does not
    /// know of; its message.
    #[error("the event store's subscriber ended: {0}")]
    Subscriber(String),
}

/// "position 4", or "none".
fn checkpoint_text(checkpoint: &Option<Position>) -> String {
    match checkpoint {
        Some(position) => format!("position {position}"),
        None => "none".to_owned(),
    }
}
