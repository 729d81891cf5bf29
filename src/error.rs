//! Errors of writes.

use crate::ids::{EventId, StreamId, StreamVersion};
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
    /// A client-supplied event id ([`EventData::with_event_id`](crate::EventData::with_event_id))
    /// is already in the stream, but the write is not a retry of the
    /// transaction that stored it (contract rule 29): the id is at another
    /// version, the stored event differs, only some of the events are
    /// stored, or the transaction is only partly a retry. Or the id is
    /// given twice in one transaction. Nothing was written, no position
    /// used.
    ///
    /// ```
    /// use hindsight::{EventData, EventId, EventIdMismatch, ExpectedVersion, InsertError, MemoryStore, StreamId, StreamVersion, Transaction, Uuid};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// let id = EventId::from_uuid(Uuid::from_u128(7));
    /// let tx = |amount| Transaction::new()
    ///     .append_with(stream, ExpectedVersion::Any, [EventData::new(amount).with_event_id(id)]);
    /// store.insert(tx(10)).unwrap();
    /// let error = store.insert(tx(20)).unwrap_err();
    /// assert_eq!(error, InsertError::EventIdConflict {
    ///     stream,
    ///     stream_name: None,
    ///     event_id: id,
    ///     mismatch: EventIdMismatch::OtherPayload { version: StreamVersion(0) },
    /// });
    /// assert_eq!(error.to_string(), format!(
    ///     "event id {id} conflicts on stream {stream}: the event stored at version 0 has another payload"));
    /// ```
    #[doc(alias = "idempotency")]
    EventIdConflict {
        /// The stream of the write whose id conflicts.
        stream: StreamId,
        /// Its name: the one the store keeps, or else the one the write gave.
        stream_name: Option<StreamName>,
        /// The conflicting id.
        event_id: EventId,
        /// What differed.
        mismatch: EventIdMismatch,
    },
}

/// What made a re-sent event id a conflict rather than a retry
/// ([`InsertError::EventIdConflict`], contract rule 29).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventIdMismatch {
    /// The id is stored at `found`, not where the write's expectation puts
    /// its event (`expected`; `None` for `Any` and `StreamExists`, which
    /// name no place: then the id is not the write's first, so the write
    /// would be only partly stored).
    OtherVersion {
        /// Where the id is stored.
        found: StreamVersion,
        /// Where the write's expectation puts the event with this id.
        expected: Option<StreamVersion>,
    },
    /// The event stored at `version` has this id but another payload.
    OtherPayload {
        /// The stored event's version.
        version: StreamVersion,
    },
    /// The event stored at `version` has this id but other metadata.
    OtherMetadata {
        /// The stored event's version.
        version: StreamVersion,
    },
    /// Where this event of the write would be, at `version`, the stream
    /// holds an event with another id (or none).
    OtherId {
        /// The stored event's version.
        version: StreamVersion,
    },
    /// The stream ends before the write's last event: only some of its
    /// events are stored.
    Partial,
    /// The write's events are stored, but the transaction is not a whole
    /// retry of the one that stored them: other streams of it are not
    /// retries, or the stored events belong to a transaction with more.
    PartOfTransaction,
    /// The id is given to two events of the transaction.
    Duplicate,
}

impl fmt::Display for EventIdMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventIdMismatch::OtherVersion {
                found,
                expected: Some(expected),
            } => write!(
                f,
                "it is stored at version {found}, not at version {expected} that the expectation names"
            ),
            EventIdMismatch::OtherVersion {
                found,
                expected: None,
            } => write!(
                f,
                "it is stored at version {found}, apart from the write's first event"
            ),
            EventIdMismatch::OtherPayload { version } => {
                write!(f, "the event stored at version {version} has another payload")
            }
            EventIdMismatch::OtherMetadata { version } => {
                write!(f, "the event stored at version {version} has other metadata")
            }
            EventIdMismatch::OtherId { version } => {
                write!(f, "the event stored at version {version} has another id")
            }
            EventIdMismatch::Partial => {
                write!(f, "only some of the write's events are stored")
            }
            EventIdMismatch::PartOfTransaction => write!(
                f,
                "the transaction is not a whole retry of the one that stored it"
            ),
            EventIdMismatch::Duplicate => write!(f, "it is given twice in the transaction"),
        }
    }
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
            InsertError::EventIdConflict {
                stream,
                stream_name,
                event_id,
                mismatch,
            } => fmt_id_conflict(f, *stream, stream_name.as_ref(), *event_id, mismatch),
        }
    }
}

/// The `Display` of an event id conflict, shared by [`InsertError`] and
/// [`StoreError`](crate::StoreError).
pub(crate) fn fmt_id_conflict(
    f: &mut fmt::Formatter<'_>,
    stream: StreamId,
    name: Option<&StreamName>,
    event_id: EventId,
    mismatch: &EventIdMismatch,
) -> fmt::Result {
    write!(f, "event id {event_id} conflicts on ")?;
    fmt_stream(f, stream, name)?;
    write!(f, ": {mismatch}")
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
