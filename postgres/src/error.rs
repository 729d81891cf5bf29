//! Every failure of the PostgreSQL backend, in one place: one `Display` per
//! failure.

use hindsight::Position;

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
    /// An event could not be serialised for writing; nothing was written.
    #[error("an event could not be serialised: {0}")]
    Encode(serde_json::Error),
    /// The stored payload at `position` does not deserialise into the
    /// store's event type. Every earlier event was delivered.
    #[error("the event at position {position} could not be decoded: {source}")]
    Decode {
        /// Where the undecodable event sits.
        position: Position,
        /// What serde said.
        source: serde_json::Error,
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
