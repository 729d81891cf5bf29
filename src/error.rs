//! Errors of writes.

use crate::{ExpectedVersion, StreamHead, StreamId};
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
            InsertError::Poisoned => write!(
                f,
                "the store is poisoned: a writer panicked between reserving and committing"
            ),
        }
    }
}

impl std::error::Error for InsertError {}
