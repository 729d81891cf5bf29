//! Errors of writes.

use crate::ids::StreamId;
use crate::name::StreamName;
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
///
/// A named stream (see [`StreamName`]) is shown by its name too:
///
/// ```
/// use hindsight::{ExpectedVersion, InsertError, MemoryStore, StreamName, Transaction};
/// let store = MemoryStore::<()>::new();
/// let order = StreamName::new("order-42").unwrap();
/// let tx = || Transaction::new().append_named(&order, ExpectedVersion::NoStream, [()]);
/// store.insert(tx()).unwrap();
/// let conflict = store.insert(tx()).unwrap_err();
/// assert_eq!(
///     conflict.to_string(),
///     "wrong expected version: stream \"order-42\" (ef43bdfe-97b9-5894-9241-c2f6da76db3b): \
///      expected NoStream, found version 0 at position 0",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMismatch {
    /// The stream.
    pub stream: StreamId,
    /// The stream's name: the one the store keeps for it, or else the one
    /// the failing append gave; `None` for a stream known by id only.
    pub stream_name: Option<StreamName>,
    /// What the transaction expected of it.
    pub expected: ExpectedVersion,
    /// Its last event just before the transaction, or `None` if it had none.
    pub found: Option<StreamHead>,
}

impl fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stream_name {
            Some(name) => write!(f, "stream {:?} ({})", name.as_str(), self.stream)?,
            None => write!(f, "stream {}", self.stream)?,
        }
        write!(f, ": expected {:?}, found ", self.expected)?;
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
    /// The stream was hard-deleted
    /// ([`MemoryStore::tombstone_stream`](crate::MemoryStore::tombstone_stream)),
    /// and refuses every later write: an append with events, or an
    /// expectation check other than `Any`, in any transaction. Nothing of
    /// the transaction was written, to any stream; no position was used.
    /// If several streams of one transaction are hard-deleted, the one with
    /// the lowest id is named.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, InsertError, MemoryStore, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let (gone, other) = (StreamId::new(), StreamId::new());
    /// store.insert(Transaction::single(gone, ExpectedVersion::Any, 1)).unwrap();
    /// store.tombstone_stream(gone, ExpectedVersion::Any).unwrap();
    /// let tx = Transaction::new()
    ///     .append(other, ExpectedVersion::Any, [2])
    ///     .append(gone, ExpectedVersion::Any, [3]);
    /// assert_eq!(
    ///     store.insert(tx),
    ///     Err(InsertError::StreamDeleted { stream: gone, stream_name: None })
    /// );
    /// assert_eq!(store.stream_head(other), None); // nothing written
    /// ```
    #[doc(alias = "StreamDeletedException")]
    StreamDeleted {
        /// The hard-deleted stream.
        stream: StreamId,
        /// Its name, if the store keeps one.
        stream_name: Option<StreamName>,
    },
}

/// Writes "stream "name" (id)" or "stream id".
pub(crate) fn fmt_stream(
    f: &mut fmt::Formatter<'_>,
    stream: StreamId,
    name: Option<&StreamName>,
) -> fmt::Result {
    match name {
        Some(name) => write!(f, "stream {:?} ({})", name.as_str(), stream),
        None => write!(f, "stream {stream}"),
    }
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
            InsertError::StreamDeleted {
                stream,
                stream_name,
            } => {
                fmt_stream(f, *stream, stream_name.as_ref())?;
                write!(f, " is hard-deleted: it refuses every write")
            }
        }
    }
}

impl std::error::Error for InsertError {}

/// Why a text cannot name a stream; see [`StreamName::new`].
///
/// ```
/// use hindsight::{StreamName, StreamNameError};
/// let error = StreamName::new("").unwrap_err();
/// assert_eq!(error, StreamNameError::Empty);
/// assert_eq!(error.to_string(), "a stream name cannot be empty");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamNameError {
    /// The name is empty.
    Empty,
    /// The name is longer than
    /// [`MAX_STREAM_NAME_LEN`](crate::MAX_STREAM_NAME_LEN) bytes.
    TooLong {
        /// The name's length, in bytes.
        len: usize,
        /// The most a name may have.
        max: usize,
    },
    /// The name contains a NUL character, which PostgreSQL's `TEXT` (among
    /// others) cannot store.
    Nul {
        /// The byte offset of the first NUL.
        at: usize,
    },
}

impl fmt::Display for StreamNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamNameError::Empty => write!(f, "a stream name cannot be empty"),
            StreamNameError::TooLong { len, max } => {
                write!(f, "a stream name of {len} bytes is too long: at most {max}")
            }
            StreamNameError::Nul { at } => {
                write!(f, "a stream name cannot contain NUL (found at byte {at})")
            }
        }
    }
}

impl std::error::Error for StreamNameError {}
