//! Stream handles: a stream resolved once, then appended to and read
//! without looking it up again.

use crate::error::InsertError;
use crate::ids::{CorrelationId, StreamId, StreamVersion};
use crate::metadata::EventData;
use crate::read::ReadStream;
use crate::store::MemoryStore;
use crate::stream::Stream;
use crate::sync::Arc;
use crate::transaction::{Committed, Events, ExpectedVersion, StreamHead};
use std::fmt;

/// One stream of a store, resolved once: appends and reads through the
/// handle skip the stream index, which makes it the fastest way to write
/// one stream many times (a command handler's aggregate, a test's writer
/// thread).
///
/// An append through a handle is exactly an [`insert`](MemoryStore::insert)
/// of a one-stream [`Transaction`](crate::Transaction): the same checks,
/// the same all-or-nothing, the same read-your-writes. Handles are `Clone`,
/// `Send` and `Sync` when the events are, and keep their store alive. A
/// handle may name a stream that does not exist yet; that stream still
/// reads as missing (rule 4 of the contract) until something is appended.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, StreamId, StreamVersion};
///
/// let store = MemoryStore::new();
/// let cart = store.stream(StreamId::new());
/// let head = cart.append_one(ExpectedVersion::NoStream, "item added").unwrap();
/// cart.append(head.expect_exact(), ["item added", "checked out"]).unwrap();
///
/// // A stale expectation loses, as with `insert`.
/// assert!(cart.append_one(head.expect_exact(), "paid").is_err());
/// assert_eq!(cart.head().unwrap().version, StreamVersion(2));
/// assert_eq!(cart.read(StreamVersion(1)).count(), 2);
/// ```
pub struct StreamHandle<E> {
    store: MemoryStore<E>,
    /// `Some` until the handle drops, which hands it back to the index.
    stream: Option<Arc<Stream>>,
}

impl<E> StreamHandle<E> {
    /// A handle on `stream` of `store`; see [`MemoryStore::stream`].
    pub(crate) fn new(store: MemoryStore<E>, stream: StreamId) -> Self {
        let stream = store.inner.streams.get_or_create(stream);
        StreamHandle {
            store,
            stream: Some(stream),
        }
    }

    fn resolved(&self) -> &Stream {
        self.stream
            .as_deref()
            .expect("a handle holds its stream until it drops")
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.resolved().id
    }

    /// The store the handle writes to.
    pub fn store(&self) -> &MemoryStore<E> {
        &self.store
    }

    /// Appends `events`, expecting `expected` of the stream just before:
    /// [`insert`](MemoryStore::insert) of
    /// `Transaction::new().append(self.id(), expected, events)`.
    ///
    /// # Errors
    ///
    /// As for [`MemoryStore::insert`]: [`InsertError::VersionConflict`] if
    /// the expectation fails (nothing written),
    /// [`InsertError::TooLarge`], [`InsertError::StoreFull`],
    /// [`InsertError::Poisoned`].
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Position, StreamId};
    /// let store = MemoryStore::new();
    /// let stream = store.stream(StreamId::new());
    /// let done = stream.append(ExpectedVersion::NoStream, [1, 2, 3]).unwrap();
    /// assert_eq!(done.last_position(), Some(Position(2)));
    /// ```
    pub fn append(
        &self,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = E>,
    ) -> Result<Committed, InsertError> {
        let head = self.append_events(expected, Events::collect(events), None)?;
        Ok(Committed::of_one(self.id(), head))
    }

    /// [`append`](Self::append) with a correlation id that every event
    /// carries.
    ///
    /// # Errors
    ///
    /// As for [`append`](Self::append).
    pub fn append_correlated(
        &self,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = E>,
        correlation_id: CorrelationId,
    ) -> Result<Committed, InsertError> {
        let head = self.append_events(expected, Events::collect(events), Some(correlation_id))?;
        Ok(Committed::of_one(self.id(), head))
    }

    /// Appends `events`, each with its [`Metadata`](crate::Metadata) (a
    /// causation id and headers, contract rule 33), expecting `expected` of
    /// the stream just before: [`insert`](MemoryStore::insert) of
    /// `Transaction::new().append_with(self.id(), expected, events)`.
    /// Events whose metadata is empty cost what they cost through
    /// [`append`](Self::append). Events given their own ids
    /// ([`EventData::with_event_id`](crate::EventData::with_event_id)) go
    /// through [`insert`](MemoryStore::insert) and its idempotency check
    /// (contract rule 29): a re-send returns the original result.
    ///
    /// # Errors
    ///
    /// As for [`append`](Self::append).
    ///
    /// ```
    /// use hindsight::{CausationId, EventData, ExpectedVersion, MemoryStore, Metadata, StreamId, StreamVersion};
    /// let store = MemoryStore::new();
    /// let order = store.stream(StreamId::new());
    /// let cause = CausationId::new();
    /// let tenant = Metadata::new().with_header("tenant", "acme").unwrap();
    /// order.append_with(ExpectedVersion::NoStream, [
    ///     EventData::new("placed").with_causation_id(cause),
    ///     EventData::new("paid").with_metadata(tenant.clone()),
    /// ]).unwrap();
    /// let read: Vec<_> = order.read(StreamVersion(0)).map(|e| e.metadata().clone()).collect();
    /// assert_eq!(read[0].causation_id(), Some(cause));
    /// assert_eq!(read[1], tenant);
    /// ```
    #[doc(alias = "AppendToStream")]
    pub fn append_with(
        &self,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = EventData<E>>,
    ) -> Result<Committed, InsertError> {
        let collected = Events::collect_data(events);
        if collected
            .extra
            .as_ref()
            .is_some_and(|extra| extra.ids.is_some())
        {
            // Client ids: the idempotency check of `insert` (rule 29).
            let tx = crate::Transaction::new().append_collected(self.id(), expected, collected);
            return self.store.insert(tx);
        }
        let head = self.store.append_to(
            self.resolved(),
            expected,
            collected.events,
            None,
            collected.extra.and_then(|extra| extra.metadata),
        )?;
        Ok(Committed::of_one(self.id(), head))
    }

    /// Appends one event and returns the stream's new head: the fastest
    /// write the store has.
    ///
    /// # Errors
    ///
    /// As for [`append`](Self::append).
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, StreamVersion};
    /// let store = MemoryStore::new();
    /// let stream = store.stream(StreamId::new());
    /// let head = stream.append_one(ExpectedVersion::Any, "hello").unwrap();
    /// assert_eq!(head.version, StreamVersion(0));
    /// ```
    pub fn append_one(
        &self,
        expected: ExpectedVersion,
        event: E,
    ) -> Result<StreamHead, InsertError> {
        let head = self.append_events(expected, Events::One(event), None)?;
        Ok(head.expect("one event was written, so the stream has a head"))
    }

    fn append_events(
        &self,
        expected: ExpectedVersion,
        events: Events<E>,
        correlation_id: Option<CorrelationId>,
    ) -> Result<Option<StreamHead>, InsertError> {
        self.store
            .append_to(self.resolved(), expected, events, correlation_id, None)
    }

    /// The stream's last committed event, or `None` if it has none.
    pub fn head(&self) -> Option<StreamHead> {
        // The watermark is loaded inside: see `committed_len`.
        let log = &self.store.inner.log;
        self.resolved().committed_head(|| log.watermark.get())
    }

    /// The stream's committed events from version `from` (inclusive), as
    /// [`MemoryStore::read_stream`].
    pub fn read(&self, from: StreamVersion) -> ReadStream<'_, E> {
        self.store.read_stream(self.id(), from)
    }
}

impl<E> Clone for StreamHandle<E> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            stream: self.stream.clone(),
        }
    }
}

impl<E> Drop for StreamHandle<E> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            // A handle on a stream that never got an event leaves nothing.
            self.store.inner.streams.release(stream);
        }
    }
}

impl<E> fmt::Debug for StreamHandle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamHandle")
            .field("stream", &self.id())
            .field("name", &self.resolved().name().map(|name| &**name))
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{CausationId, EventData, ExpectedVersion, InsertError, MemoryStore, Metadata};
    use crate::{Start, StreamId, StreamVersion, Transaction};

    fn events(cause: CausationId) -> Vec<EventData<u32>> {
        let header = Metadata::new().with_header("k", "v").unwrap();
        vec![
            EventData::new(0),
            EventData::new(1).with_causation_id(cause),
            EventData::new(2),
            EventData::new(3).with_metadata(header),
        ]
    }

    fn metadata(store: &MemoryStore<u32>) -> Vec<(u32, Metadata)> {
        store
            .read_all(Start::Beginning)
            .map(|e| (*e.payload(), e.metadata().clone()))
            .collect()
    }

    /// A handle's `append_with` writes what `insert` of
    /// `Transaction::append_with` writes: each event keeps its own
    /// metadata, at its own offset, and the heads agree.
    #[test]
    fn append_with_keeps_each_events_metadata_as_insert_does() {
        let cause = CausationId::new();
        let (by_handle, by_insert) = (MemoryStore::new(), MemoryStore::new());
        let stream = StreamId::new();
        let done = by_handle
            .stream(stream)
            .append_with(ExpectedVersion::NoStream, events(cause))
            .unwrap();
        let expected = by_insert
            .insert(Transaction::new().append_with(
                stream,
                ExpectedVersion::NoStream,
                events(cause),
            ))
            .unwrap();
        assert_eq!(done, expected);
        assert_eq!(metadata(&by_handle), metadata(&by_insert));
        assert_eq!(metadata(&by_handle)[1].1.causation_id(), Some(cause));
        assert!(metadata(&by_handle)[2].1.is_empty());
    }

    /// A failed expectation writes nothing, metadata included; a
    /// zero-event `append_with` is a pure check.
    #[test]
    fn append_with_checks_the_expectation_first() {
        let store = MemoryStore::new();
        let handle = store.stream(StreamId::new());
        handle.append_one(ExpectedVersion::NoStream, 9).unwrap();
        let refused = handle.append_with(ExpectedVersion::NoStream, events(CausationId::new()));
        assert!(matches!(refused, Err(InsertError::VersionConflict(_))));
        let checked = handle
            .append_with(ExpectedVersion::Exact(StreamVersion(0)), [])
            .unwrap();
        assert_eq!(checked.last_position(), None);
        assert_eq!(store.read_all(Start::Beginning).count(), 1);
    }

    /// Events given their own ids through a handle get `insert`'s
    /// idempotency check (rule 29): a re-send returns the original result
    /// and writes nothing, other content is a conflict, and the ids are
    /// read back. (The handle's fast path would drop the ids.)
    #[test]
    fn append_with_client_ids_is_idempotent_as_insert_is() {
        let store = MemoryStore::new();
        let handle = store.stream(StreamId::new());
        let first = crate::EventId::from_uuid(crate::Uuid::from_u128(1));
        let second = crate::EventId::from_uuid(crate::Uuid::from_u128(2));
        let send = |b: i32| {
            handle.append_with(
                ExpectedVersion::NoStream,
                [
                    EventData::new(1).with_event_id(first),
                    EventData::new(b).with_event_id(second),
                ],
            )
        };
        let done = send(2).unwrap();
        assert_eq!(send(2).unwrap(), done, "the original result");
        assert!(matches!(send(3), Err(InsertError::EventIdConflict { .. })));
        let ids: Vec<_> = store
            .read_all(Start::Beginning)
            .map(|e| e.event_id())
            .collect();
        assert_eq!(ids, [first, second], "written once, with the client's ids");
    }
}
