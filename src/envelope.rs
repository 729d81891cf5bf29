//! A stored event together with what the store knows about it.

use crate::ids::{CorrelationId, EventId, EventIds, Position, StreamId, StreamVersion};
use crate::log::Record;
use crate::metadata::Metadata;
use crate::name::category_of;
use crate::segments::SegmentPin;
use crate::store::MemoryStore;
use std::fmt;
use std::ptr::NonNull;
use std::time::SystemTime;

/// A committed event, as reads and subscriptions hand it out: its payload
/// plus its position, id, stream, stream version, correlation id, creation
/// time and metadata.
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

    /// The name of the event's stream, if it has one: the name its first
    /// event was appended with
    /// ([`Transaction::append_named`](crate::Transaction::append_named)).
    /// Read through the stream the event points to: no copy, and no cost
    /// to events of unnamed streams.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, StreamName, Transaction};
    /// let store = MemoryStore::new();
    /// let order = StreamName::new("order-42").unwrap();
    /// store.insert(Transaction::new()
    ///     .append_named(&order, ExpectedVersion::NoStream, ["placed"])
    ///     .append(StreamId::new(), ExpectedVersion::NoStream, ["unnamed"])).unwrap();
    /// let mut names: Vec<_> = store.read_all(Start::Beginning).map(|e| e.stream_name()).collect();
    /// names.sort();
    /// assert_eq!(names, [None, Some("order-42")]);
    /// ```
    #[doc(alias = "stream name")]
    pub fn stream_name(self) -> Option<&'a str> {
        // SAFETY: as in `stream_id`.
        unsafe { self.record.stream.get() }
            .name()
            .map(|name| &**name)
    }

    /// The category of the event's stream (the part of its name before
    /// the first `-`; see [`StreamName::category`](crate::StreamName::category)),
    /// if the stream has a name with one.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Start, StreamName, Transaction};
    /// let store = MemoryStore::new();
    /// let order = StreamName::new("order-42").unwrap();
    /// store.insert(Transaction::new().append_named(&order, ExpectedVersion::Any, [1])).unwrap();
    /// assert_eq!(store.read_all(Start::Beginning).next().unwrap().category(), Some("order"));
    /// ```
    #[doc(alias = "$ce")]
    pub fn category(self) -> Option<&'a str> {
        category_of(self.stream_name()?)
    }

    /// The event's id: the one its writer gave it
    /// ([`EventData::with_event_id`](crate::EventData::with_event_id),
    /// contract rule 29), or else the one the store derived from its
    /// position. Fixed when it was written: reading the event again always
    /// gives the same id.
    ///
    /// ```
    /// use hindsight::{EventData, EventId, ExpectedVersion, MemoryStore, Start, StreamId, Transaction, Uuid};
    /// let store = MemoryStore::new();
    /// let id = EventId::from_uuid(Uuid::from_u128(42));
    /// store.insert(Transaction::new().append_with(StreamId::new(), ExpectedVersion::Any, [
    ///     EventData::new("given").with_event_id(id),
    ///     EventData::new("derived"),
    /// ])).unwrap();
    /// let ids: Vec<_> = store.read_all(Start::Beginning).map(|e| e.event_id()).collect();
    /// assert_eq!(ids[0], id);
    /// assert_ne!(ids[1], id);
    /// ```
    #[inline]
    pub fn event_id(self) -> EventId {
        match self.record.client_id(self.position) {
            Some(id) => id,
            None => self.ids.id(self.position),
        }
    }

    /// The correlation id of the transaction that wrote the event, if it had
    /// one.
    pub fn correlation_id(self) -> Option<CorrelationId> {
        self.record.stamp.get().correlation_id()
    }

    /// The event's own metadata (causation id and headers), as it was
    /// appended ([`Transaction::append_with`](crate::Transaction::append_with));
    /// empty for an event appended without. Borrowed from the store, like
    /// the payload.
    ///
    /// ```
    /// use hindsight::{EventData, ExpectedVersion, MemoryStore, Metadata, Start, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let metadata = Metadata::new().with_header("user", "ada").unwrap();
    /// store.insert(Transaction::new().append_with(StreamId::new(), ExpectedVersion::Any, [
    ///     EventData::new(1).with_metadata(metadata.clone()),
    ///     EventData::new(2),
    /// ])).unwrap();
    /// let read: Vec<_> = store.read_all(Start::Beginning).map(|e| e.metadata().clone()).collect();
    /// assert_eq!(read, [metadata, Metadata::new()]);
    /// ```
    #[doc(alias = "headers")]
    #[doc(alias = "causation_id")]
    pub fn metadata(self) -> &'a Metadata {
        self.record.metadata(self.position)
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

    /// The record the view borrows.
    /// Whether the event was removed from its stream (deleted or truncated
    /// away, contract rule 30): readers skip it.
    #[inline]
    pub(crate) fn is_removed(self) -> bool {
        // SAFETY: as in `stream_id`.
        self.record.version < unsafe { self.record.stream.get() }.floor()
    }

    /// Whether the event is older than its stream's maximum age, by the
    /// clock reading `now` (called only if the stream has one; rule 30).
    #[inline]
    pub(crate) fn is_too_old(self, now: impl FnOnce() -> u64) -> bool {
        let created_at = || self.record.stamp.get().created_at_nanos();
        // SAFETY: as in `stream_id`.
        unsafe { self.record.stream.get() }.too_old(created_at, now)
    }

    pub(crate) fn record(self) -> &'a Record<E> {
        self.record
    }
}

impl<E: fmt::Debug> fmt::Debug for Envelope<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("position", &self.position())
            .field("stream", &self.stream_id())
            .field("stream_name", &self.stream_name())
            .field("version", &self.version())
            .field("event_id", &self.event_id())
            .field("correlation_id", &self.correlation_id())
            .field("created_at", &self.created_at())
            .field("metadata", self.metadata())
            .field("payload", self.payload())
            .finish()
    }
}

/// A committed event that owns its place in the store: an [`Envelope`]
/// without a lifetime, which can be kept, sent to another task or thread,
/// and yielded by a [`futures_core::Stream`] (see
/// [`SubscriptionStream`](crate::SubscriptionStream)).
///
/// Zero-copy like the `Envelope`: it holds a handle to the store (one
/// atomic reference count increment, the cost of
/// [`MemoryStore::clone`]) and the event's place in the log, so the event
/// is neither copied nor cloned and `E` needs no `Clone`. Committed events
/// never move and are dropped only with the last handle to the store
/// (rule 24), so the event lives as long as this value; so does the rest
/// of the store, which is what to weigh before keeping many of them for a
/// long time. Cloning it is as cheap.
///
/// It has the envelope's accessors, and [`envelope`](Self::envelope) lends
/// the `Envelope` view itself. It is `Send` and `Sync` exactly when the
/// store is (`E: Send + Sync`).
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, OwnedEnvelope, Position, Selector, StreamId, StreamVersion, Transaction};
///
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// store.insert(Transaction::new().append(stream, ExpectedVersion::NoStream, [String::from("opened")])).unwrap();
///
/// let mut events = store.subscribe(Selector::all()).into_iter();
/// let event: OwnedEnvelope<String> = events.next().unwrap().unwrap();
/// drop(events);
/// drop(store); // the event keeps what it needs alive
/// let kept = std::thread::spawn(move || {
///     assert_eq!(event.position(), Position(0));
///     assert_eq!(event.stream_id(), stream);
///     assert_eq!(event.version(), StreamVersion(0));
///     assert_eq!(event.envelope().payload(), "opened");
///     event.payload().len()
/// });
/// assert_eq!(kept.join().unwrap(), 6);
/// ```
#[doc(alias = "Event")]
#[doc(alias = "RecordedEvent")]
pub struct OwnedEnvelope<E> {
    /// Keeps the log, and so the record, alive.
    store: MemoryStore<E>,
    /// A committed record of `store`'s log.
    record: NonNull<Record<E>>,
    position: u64,
    /// Keeps the record's segment from being freed, if it can be (all its
    /// events removed, rule 30); `None` for a segment freed only with the
    /// log.
    pin: Option<SegmentPin>,
}

impl<E> OwnedEnvelope<E> {
    /// The owned form of `envelope`.
    ///
    /// # Safety
    ///
    /// `envelope` is a view of `store`'s own log (any store handle: they
    /// share one log), and `pin` holds its segment, or is `None` for a
    /// segment never freed while the log lives.
    #[inline]
    pub(crate) unsafe fn new(
        store: MemoryStore<E>,
        envelope: Envelope<'_, E>,
        pin: Option<SegmentPin>,
    ) -> Self {
        Self {
            store,
            record: NonNull::from(envelope.record()),
            position: envelope.position,
            pin,
        }
    }

    /// The [`Envelope`] view of the event, borrowed from `self`.
    #[inline]
    pub fn envelope(&self) -> Envelope<'_, E> {
        // Committed slots never move (segments are never reallocated), and a
        // committed record is only shared (its stamp changes only before it
        // becomes visible) until its segment is freed, which `self.pin`
        // prevents, or the log drops, which needs the last store handle:
        // `self` holds one for as long as the borrow lasts.
        // SAFETY: `record` is a committed record of `self.store`'s log
        // (`new`'s contract), alive and unchanging while `self` is.
        let record = unsafe { self.record.as_ref() };
        Envelope::new(record, self.position, &self.store.inner.log.ids)
    }

    /// The event's global position.
    pub fn position(&self) -> Position {
        Position(self.position)
    }

    /// The event's version within its stream.
    pub fn version(&self) -> StreamVersion {
        self.envelope().version()
    }

    /// The stream the event belongs to.
    pub fn stream_id(&self) -> StreamId {
        self.envelope().stream_id()
    }

    /// The name of the event's stream, if it has one; see
    /// [`Envelope::stream_name`].
    pub fn stream_name(&self) -> Option<&str> {
        self.envelope().stream_name()
    }

    /// The event's unique id; see [`Envelope::event_id`].
    pub fn event_id(&self) -> EventId {
        self.envelope().event_id()
    }

    /// The correlation id of the transaction that wrote the event, if it had
    /// one.
    pub fn correlation_id(&self) -> Option<CorrelationId> {
        self.envelope().correlation_id()
    }

    /// When the transaction that wrote the event was inserted; see
    /// [`Envelope::created_at`].
    pub fn created_at(&self) -> SystemTime {
        self.envelope().created_at()
    }

    /// The event's own metadata; see [`Envelope::metadata`].
    pub fn metadata(&self) -> &Metadata {
        self.envelope().metadata()
    }

    /// The event itself, borrowed from `self`.
    pub fn payload(&self) -> &E {
        self.envelope().payload()
    }
}

impl<E> Clone for OwnedEnvelope<E> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            record: self.record,
            position: self.position,
            pin: self.pin.clone(),
        }
    }
}

// SAFETY: an `OwnedEnvelope` is a store handle plus a shared reference to
// one of its records in disguise. The handle is `Send` and `Sync` when
// `E: Send + Sync`, and sharing `&Record<E>` across threads needs exactly
// `E: Sync` (the record is never written while it is reachable).
unsafe impl<E: Send + Sync> Send for OwnedEnvelope<E> {}
// SAFETY: as above.
unsafe impl<E: Send + Sync> Sync for OwnedEnvelope<E> {}

impl<E: fmt::Debug> fmt::Debug for OwnedEnvelope<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.envelope(), f)
    }
}
