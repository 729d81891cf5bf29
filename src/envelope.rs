//! A stored event together with what the store knows about it.

use crate::ids::{CorrelationId, EventId, EventIds, Position, StreamId, StreamVersion};
use crate::log::Record;
use std::fmt;
use std::time::SystemTime;

/// A committed event, as reads and subscriptions hand it out: its payload
/// plus its position, id, stream, stream version, correlation id and
/// creation time.
///
/// A small `Copy` view that borrows the event from the store's log: nothing
/// is copied or cloned, and [`payload`](Self::payload) lends the event for
/// as long as the read or subscription that produced the view (`'a`).
/// Hindsight calls this an event envelope; KurrentDB a recorded event.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Position, Start, StreamId, StreamVersion, Transaction};
///
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// store.insert(Transaction::new().append(stream, ExpectedVersion::NoStream, ["opened", "closed"])).unwrap();
///
/// let second = store.read_all(Start::Beginning).nth(1).unwrap();
/// assert_eq!(second.position(), Position(1));
/// assert_eq!(second.stream_id(), stream);
/// assert_eq!(second.version(), StreamVersion(1));
/// assert_eq!(*second.payload(), "closed");
/// ```
#[doc(alias = "RecordedEvent")]
pub struct Envelope<'a, E> {
    record: &'a Record<E>,
    position: u64,
    ids: &'a EventIds,
}

impl<E> Clone for Envelope<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Envelope<'_, E> {}

impl<'a, E> Envelope<'a, E> {
    /// The view of `record`, committed at `position` of a log whose event
    /// ids are `ids`.
    pub(crate) fn new(record: &'a Record<E>, position: u64, ids: &'a EventIds) -> Self {
        Self {
            record,
            position,
            ids,
        }
    }

    /// The event's global position.
    pub fn position(self) -> Position {
        Position(self.position)
    }

    /// The event's version within its stream.
    pub fn version(self) -> StreamVersion {
        StreamVersion(self.record.version)
    }

    /// The stream the event belongs to.
    pub fn stream_id(self) -> StreamId {
        // SAFETY: the record's stream holds this event, and the view
        // borrows the log that holds the record.
        unsafe { self.record.stream.get() }.id
    }

    /// The event's unique id, fixed when it was written: reading the event
    /// again always gives the same id.
    pub fn event_id(self) -> EventId {
        self.ids.id(self.position)
    }

    /// The correlation id of the transaction that wrote the event, if it had
    /// one.
    pub fn correlation_id(self) -> Option<CorrelationId> {
        self.record.stamp.get().correlation_id()
    }

    /// When the transaction that wrote the event was inserted, by the
    /// store's clock (the system clock unless the store was built with
    /// another, see [`MemoryStore::builder`](crate::MemoryStore::builder)).
    /// All events of one transaction share it, and it never decreases along
    /// position order ([contract](crate::contract) rule 26): a transaction
    /// whose clock reading is earlier than the events before it carries
    /// their time. Precision is one nanosecond; a clock set before 1970
    /// reads as the Unix epoch.
    pub fn created_at(self) -> SystemTime {
        self.record.stamp.get().created_at()
    }

    /// The event itself, borrowed from the store for `'a`.
    pub fn payload(self) -> &'a E {
        &self.record.payload
    }
}

impl<E: fmt::Debug> fmt::Debug for Envelope<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("position", &self.position())
            .field("stream", &self.stream_id())
            .field("version", &self.version())
            .field("event_id", &self.event_id())
            .field("correlation_id", &self.correlation_id())
            .field("created_at", &self.created_at())
            .field("payload", self.payload())
            .finish()
    }
}
