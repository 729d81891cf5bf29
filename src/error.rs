//! Errors of writes.

use crate::ids::StreamId;
use crate::transaction::{ExpectedVersion, StreamHead};
use std::fmt;

/// One stream whose expectation failed.
///
/// ```
/// use hindsight::{ExpectedVersion, InsertError, MemoryStore, StreamId, Transaction};
/// let store = MemoryStore::<()>::new();
/// let stream = StreamId::new();
/// let Err(InsertError::VersionConflict(mismatches)) =
///     store.insert(Transaction::single(stream, ExpectedVersion::StreamExists, ()))
/// else { panic!("a missing stream does not exist") };
/// assert_eq!(mismatches[0].stream, stream);
/// assert_eq!(mismatches[0].found, None); // the stream does not exist
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionMismatch {
    /// The stream.
    pub stream: StreamId,
    /// What the transaction expected of it.
    pub expected: ExpectedVersion,
    /// Its last event just before the transaction, or `None` if it had none.
    pub found: Option<StreamHead>,
}

impl fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream {}: expected {:?}, found ",
            self.stream, self.expected
        )?;
        match self.found {
            None => write!(f, "no stream"),
            Some(head) => write!(f, "version {} at position {}", head.version, head.position),
        }
    }
}

/// Why an insert wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertError {
    /// One or more expectations failed. Lists every failing stream, in
    /// ascending stream id order; nothing was written and no position was
    /// consumed.
    VersionConflict(Vec<VersionMismatch>),
    /// The transaction has more events than one transaction may write
    /// ([`MAX_TRANSACTION_EVENTS`](crate::MAX_TRANSACTION_EVENTS)). Refused
    /// before anything happened: no stream was created, no position used.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, InsertError, MemoryStore, StreamId, Transaction};
    /// let store = MemoryStore::<()>::new();
    /// let too_many = vec![(); hindsight::MAX_TRANSACTION_EVENTS as usize + 1];
    /// let refused = store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, too_many));
    /// assert!(matches!(refused, Err(InsertError::TooLarge { .. })));
    /// assert_eq!(store.head(), None);
    /// ```
    TooLarge {
        /// The events the transaction holds (saturating at `u64::MAX`).
        events: u64,
        /// The most one transaction may write.
        limit: u64,
    },
    /// The store holds as many events as it ever can
    /// ([`STORE_CAPACITY`](crate::STORE_CAPACITY)); nothing was written.
    StoreFull {
        /// The store's capacity, in events.
        capacity: u64,
    },
    /// A writer panicked between reserving positions and committing them
    /// (a bug in this crate: nothing there is meant to be able to panic).
    /// The global order now has a hole that can never be filled, so the
    /// store refuses every later write; what was committed before stays
    /// readable.
    Poisoned,
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::VersionConflict(mismatches) => {
                write!(f, "wrong expected version")?;
                for (i, mismatch) in mismatches.iter().enumerate() {
                    write!(f, "{}{mismatch}", if i == 0 { ": " } else { "; " })?;
                }
                Ok(())
            }
            InsertError::TooLarge { events, limit } => write!(
                f,
                "transaction too large: {events} events, at most {limit} per transaction"
            ),
            InsertError::StoreFull { capacity } => {
                write!(
                    f,
                    "the store is full: it holds {capacity} events, its capacity"
                )
            }
            InsertError::Poisoned => write!(
                f,
                "the store is poisoned: a writer panicked between reserving and committing"
            ),
        }
    }
}

impl std::error::Error for InsertError {}
