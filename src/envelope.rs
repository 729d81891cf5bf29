//! A stored event together with what the store knows about it.

use crate::{CorrelationId, EventId, Position, StreamId, StreamVersion};
use std::fmt;
use std::time::SystemTime;

/// A committed event: its payload plus its position, id, stream, stream
/// version, correlation id and creation time.
///
/// Reads and subscriptions hand out `&Envelope<E>` borrowed straight from the
/// log: nothing is copied or cloned.
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
pub struct Envelope<E> {
    pub(crate) position: Position,
    pub(crate) version: StreamVersion,
    pub(crate) stream: StreamId,
    pub(crate) event_id: EventId,
    pub(crate) correlation_id: Option<CorrelationId>,
    pub(crate) created_at: SystemTime,
    pub(crate) payload: E,
}

impl<E> Envelope<E> {
    /// The event's global position.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The event's version within its stream.
    pub fn version(&self) -> StreamVersion {
        self.version
    }

    /// The stream the event belongs to.
    pub fn stream_id(&self) -> StreamId {
        self.stream
    }

    /// The event's unique id, fixed when it was written.
    pub fn event_id(&self) -> EventId {
        self.event_id
    }

    /// The correlation id of the transaction that wrote the event, if it had one.
    pub fn correlation_id(&self) -> Option<CorrelationId> {
        self.correlation_id
    }

    /// When the transaction that wrote the event was inserted. All events of
    /// one transaction share it.
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// The event itself.
    pub fn payload(&self) -> &E {
        &self.payload
    }
}

impl<E: fmt::Debug> fmt::Debug for Envelope<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("position", &self.position)
            .field("stream", &self.stream)
            .field("version", &self.version)
            .field("event_id", &self.event_id)
            .field("correlation_id", &self.correlation_id)
            .field("created_at", &self.created_at)
            .field("payload", &self.payload)
            .finish()
    }
}
