//! Transactions: what to write, to which streams, under which expectations.

use crate::ids::{CorrelationId, EventId, Position, StreamId, StreamVersion};
use crate::metadata::{EventData, Metadata};
use crate::name::StreamName;
use smallvec::SmallVec;
use std::sync::Arc;

/// What a writer expects of a stream just before its transaction.
///
/// Checked against the stream's state just before the transaction, for
/// every stream the transaction names, including streams it writes no
/// events to.
///
/// ```
/// use hindsight::{ExpectedVersion, InsertError, MemoryStore, StreamId, StreamVersion, Transaction};
///
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// let head = store.insert(Transaction::single(stream, ExpectedVersion::NoStream, 1)).unwrap()
///     .stream(stream).unwrap();
/// assert_eq!(head.version, StreamVersion(0));
///
/// // The next writer that expects version 0 wins; a second one loses.
/// store.insert(Transaction::single(stream, ExpectedVersion::Exact(head.version), 2)).unwrap();
/// let lost = store.insert(Transaction::single(stream, ExpectedVersion::Exact(head.version), 3));
/// assert!(matches!(lost, Err(InsertError::VersionConflict(_))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ExpectedVersion {
    /// Always passes.
    Any,
    /// The stream has no events.
    NoStream,
    /// The stream has at least one event.
    StreamExists,
    /// The stream's last event has this version. A missing stream never
    /// matches, not even version 0.
    Exact(StreamVersion),
    /// The stream's last event sits at this global position. Writes to
    /// other streams do not change it.
    ExactPosition(Position),
}

impl ExpectedVersion {
    /// Whether a stream whose last event is `head` (or that has none)
    /// meets this expectation.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, Position, StreamHead, StreamVersion};
    /// let head = StreamHead { version: StreamVersion(2), position: Position(9) };
    /// assert!(ExpectedVersion::Exact(StreamVersion(2)).matches(Some(head)));
    /// assert!(ExpectedVersion::ExactPosition(Position(9)).matches(Some(head)));
    /// assert!(!ExpectedVersion::Exact(StreamVersion(0)).matches(None));
    /// assert!(ExpectedVersion::NoStream.matches(None));
    /// ```
    pub fn matches(self, head: Option<StreamHead>) -> bool {
        match (self, head) {
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream, head) => head.is_none(),
            (ExpectedVersion::StreamExists, head) => head.is_some(),
            (ExpectedVersion::Exact(version), Some(head)) => head.version == version,
            (ExpectedVersion::ExactPosition(position), Some(head)) => head.position == position,
            (ExpectedVersion::Exact(_) | ExpectedVersion::ExactPosition(_), None) => false,
        }
    }
}

/// A stream's last event: its version and its global position.
///
/// Either one is a valid exact expectation for the stream's next write.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// let head = store.insert(Transaction::single(stream, ExpectedVersion::NoStream, ())).unwrap()
///     .stream(stream).unwrap();
/// assert_eq!(store.stream_head(stream), Some(head));
/// store.insert(Transaction::single(stream, head.expect_exact(), ())).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StreamHead {
    /// The version of the stream's last event.
    pub version: StreamVersion,
    /// The global position of the stream's last event.
    pub position: Position,
}

impl StreamHead {
    /// `ExpectedVersion::Exact(self.version)`: the expectation that the
    /// stream has not moved since.
    pub fn expect_exact(self) -> ExpectedVersion {
        ExpectedVersion::Exact(self.version)
    }
}

/// A transaction's events for one stream: one event inline (a one-event
/// append allocates nothing), or a `Vec`.
///
/// Not a `SmallVec`: collecting a `Vec` into a `Vec` takes its buffer as it
/// is, which keeps an append of a huge vector (of zero-sized events, say)
/// O(1), so that the size check in `insert` sees it before anything is done.
#[derive(Debug)]
pub(crate) enum Events<E> {
    One(E),
    Many(Vec<E>),
}

impl<E> Events<E> {
    /// Collects `events`, inline if there is exactly one.
    pub(crate) fn collect(events: impl IntoIterator<Item = E>) -> Self {
        let mut events = events.into_iter();
        if events.size_hint() == (1, Some(1)) {
            if let Some(first) = events.next() {
                return match events.next() {
                    // The hint was exact.
                    None => Events::One(first),
                    // A hint that lied: keep everything, in order.
                    Some(second) => {
                        Events::Many([first, second].into_iter().chain(events).collect())
                    }
                };
            }
            return Events::Many(Vec::new());
        }
        Events::Many(events.collect())
    }

    /// Collects the payloads of `events`, inline if there is exactly one,
    /// the metadata of those that have some and the client ids of those
    /// that have one, by index (`None` if none has), and the `==` captured
    /// with the first id.
    pub(crate) fn collect_data(events: impl IntoIterator<Item = EventData<E>>) -> Collected<E> {
        let mut metadata = Vec::new();
        let mut ids = Vec::new();
        let mut eq = None;
        // Straight into `Events`: one event stays inline (no `Vec`).
        let payloads = events.into_iter().enumerate().map(|(index, event)| {
            // Past `u32::MAX` events the transaction is refused as too large
            // before its metadata or ids are looked at.
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if !event.metadata.is_empty() {
                metadata.push((index, event.metadata));
            }
            if let Some(id) = event.event_id {
                ids.push((index, id));
                eq = eq.or(event.eq);
            }
            event.payload
        });
        let events = Events::collect(payloads);
        let extra = (!metadata.is_empty() || !ids.is_empty()).then(|| {
            Box::new(Extra {
                metadata: (!metadata.is_empty()).then_some(metadata),
                ids: (!ids.is_empty()).then_some(ids),
                eq,
            })
        });
        Collected { events, extra }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Events::One(_) => 1,
            Events::Many(events) => events.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events in order, by reference.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, E> {
        match self {
            Events::One(event) => std::slice::from_ref(event).iter(),
            Events::Many(events) => events.iter(),
        }
    }

    /// Appends `other`'s events after these.
    pub(crate) fn extend(&mut self, other: Events<E>) {
        if other.is_empty() {
            return;
        }
        let mut events = match std::mem::replace(self, Events::Many(Vec::new())) {
            Events::One(event) => vec![event],
            Events::Many(events) => events,
        };
        match other {
            Events::One(event) => events.push(event),
            Events::Many(mut more) => events.append(&mut more),
        }
        *self = Events::Many(events);
    }

    /// The events as a `Vec` (for backends: `into_writes`, which loom
    /// builds leave out).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn into_vec(self) -> Vec<E> {
        match self {
            Events::One(event) => vec![event],
            Events::Many(events) => events,
        }
    }

    /// The events in order, by value. Moving them out cannot panic.
    pub(crate) fn into_iter(self) -> EventsIter<E> {
        match self {
            Events::One(event) => EventsIter::One(Some(event)),
            Events::Many(events) => EventsIter::Many(events.into_iter()),
        }
    }
}

/// [`Events::into_iter`].
pub(crate) enum EventsIter<E> {
    One(Option<E>),
    Many(std::vec::IntoIter<E>),
}

impl<E> Iterator for EventsIter<E> {
    type Item = E;

    #[inline]
    fn next(&mut self) -> Option<E> {
        match self {
            EventsIter::One(event) => event.take(),
            EventsIter::Many(events) => events.next(),
        }
    }
}

/// `sparse` (`(index, item)`) as one value per event: `fill` where no
/// item is given, none at all (an empty vector) when `sparse` is `None`.
fn dense<T, U: Clone>(
    sparse: Option<Vec<(u32, T)>>,
    len: usize,
    fill: U,
    wrap: impl Fn(T) -> U,
) -> Vec<U> {
    let Some(sparse) = sparse else {
        return Vec::new();
    };
    let mut dense = vec![fill; len];
    for (index, item) in sparse {
        if let Some(slot) = dense.get_mut(index as usize) {
            *slot = wrap(item);
        }
    }
    dense
}

/// What [`Events::collect_data`] makes of events given as [`EventData`]:
/// the fields of an [`Append`] they fill.
pub(crate) struct Collected<E> {
    pub(crate) events: Events<E>,
    /// `None` when no event has metadata or an id.
    pub(crate) extra: Option<Box<Extra<E>>>,
}

/// What only some appends carry: per-event metadata and client ids. Boxed
/// in [`Append`] so that an append without either (the common case) stays
/// small enough to be moved without a `memcpy` call.
#[derive(Debug)]
pub(crate) struct Extra<E> {
    /// The metadata of the events that have some: `(index in events,
    /// metadata)`, indices ascending, none empty; `None` when no event has
    /// metadata. An index past `u32::MAX` saturates: such an append is
    /// refused as too large before its metadata is used.
    pub(crate) metadata: Option<Vec<(u32, Metadata)>>,
    /// The client-supplied ids of the events that have one (contract rule
    /// 29), as `metadata`: `(index in events, id)`, indices ascending;
    /// `None` when no event has one.
    pub(crate) ids: Option<Vec<(u32, EventId)>>,
    /// `<E as PartialEq>::eq`, from the first event given an id
    /// ([`EventData::with_event_id`]): one per stream write, not per event.
    pub(crate) eq: Option<fn(&E, &E) -> bool>,
}

/// The events for one stream in a transaction, with their expectation.
#[derive(Debug)]
pub(crate) struct Append<E> {
    pub(crate) stream: StreamId,
    /// The stream's name, for an append by name: `stream` is its id.
    pub(crate) name: Option<Arc<str>>,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Events<E>,
    /// Metadata and client ids, if any event has either.
    pub(crate) extra: Option<Box<Extra<E>>>,
}

impl<E> Append<E> {
    /// Whether any event has metadata.
    #[inline]
    pub(crate) fn has_metadata(&self) -> bool {
        self.extra
            .as_ref()
            .is_some_and(|extra| extra.metadata.is_some())
    }

    /// Whether any event has a client id.
    #[inline]
    pub(crate) fn has_ids(&self) -> bool {
        self.extra.as_ref().is_some_and(|extra| extra.ids.is_some())
    }

    /// The captured `==`, if any event has a client id.
    #[inline]
    pub(crate) fn eq(&self) -> Option<fn(&E, &E) -> bool> {
        self.extra.as_ref().and_then(|extra| extra.eq)
    }

    /// Takes the events' metadata out.
    pub(crate) fn take_metadata(&mut self) -> Option<Vec<(u32, Metadata)>> {
        self.extra.as_mut().and_then(|extra| extra.metadata.take())
    }

    /// Takes the events' client ids out.
    pub(crate) fn take_ids(&mut self) -> Option<Vec<(u32, EventId)>> {
        self.extra.as_mut().and_then(|extra| extra.ids.take())
    }

    /// The extras, made if need be.
    fn extra_mut(&mut self) -> &mut Extra<E> {
        self.extra.get_or_insert_with(|| {
            Box::new(Extra {
                metadata: None,
                ids: None,
                eq: None,
            })
        })
    }
}

/// A set of writes to one or more streams, inserted all or nothing.
///
/// Build it by appending events to streams, each with an expectation; all
/// expectations are checked against the state just before the insert, and
/// if any fails nothing is written. Inside the transaction each stream's
/// events are contiguous and in the given order, and streams are laid out
/// in ascending [`StreamId`] order.
///
/// Appending to a stream twice concatenates its events, and the first
/// expectation wins; [`compose`](Transaction::compose) follows the same rule.
///
/// An empty transaction (no streams at all) is accepted as a no-op.
///
/// ```
/// use hindsight::{CorrelationId, ExpectedVersion, MemoryStore, StreamId, Transaction};
///
/// let store = MemoryStore::new();
/// let (order, stock) = (StreamId::new(), StreamId::new());
/// let tx = Transaction::new()
///     .append(order, ExpectedVersion::NoStream, ["placed", "paid"])
///     .append(stock, ExpectedVersion::Any, ["reserved"])
///     .with_correlation_id(CorrelationId::new());
/// let committed = store.insert(tx).unwrap();
/// assert_eq!(committed.last_position().map(|p| p.get()), Some(2));
/// ```
#[derive(Debug)]
pub struct Transaction<E> {
    /// Inline for the common one-append transaction: no allocation.
    pub(crate) appends: SmallVec<[Append<E>; 1]>,
    pub(crate) correlation_id: Option<CorrelationId>,
}

impl<E> Default for Transaction<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Transaction<E> {
    /// An empty transaction.
    pub fn new() -> Self {
        Self {
            appends: SmallVec::new(),
            correlation_id: None,
        }
    }

    /// A transaction of one event to one stream.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::single(StreamId::new(), ExpectedVersion::NoStream, "hello")).unwrap();
    /// assert_eq!(store.head().map(|p| p.get()), Some(0));
    /// ```
    pub fn single(stream: StreamId, expected: ExpectedVersion, event: E) -> Self {
        let mut tx = Self::new();
        tx.appends.push(Append {
            stream,
            name: None,
            expected,
            events: Events::One(event),
            extra: None,
        });
        tx
    }

    /// Appends `events` to `stream`, expecting `expected` of it.
    ///
    /// The events are collected here, so a panicking iterator panics in the
    /// caller, before the store is touched. Zero events still check the
    /// expectation.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// let store = MemoryStore::<u32>::new();
    /// let stream = StreamId::new();
    /// // A pure check: fails, and writes nothing, if the stream exists.
    /// store.insert(Transaction::new().append(stream, ExpectedVersion::NoStream, [])).unwrap();
    /// assert_eq!(store.head(), None);
    /// ```
    pub fn append(
        mut self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = E>,
    ) -> Self {
        if self.appends.len() == 1 {
            // Leaving the inline slot: room for four appends at once (one
            // allocation), not one reallocation per doubling.
            self.appends.reserve(3);
        }
        self.appends.push(Append {
            stream,
            name: None,
            expected,
            events: Events::collect(events),
            extra: None,
        });
        self
    }

    /// Appends `events`, each with its [`Metadata`], to `stream`,
    /// expecting `expected` of it: [`append`](Self::append) for events
    /// that carry a causation id or headers ([`EventData`]). Events whose
    /// metadata is empty cost what they cost through `append`.
    ///
    /// ```
    /// use hindsight::{CausationId, EventData, ExpectedVersion, MemoryStore, Metadata, Start, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let cause = CausationId::new();
    /// let tx = Transaction::new().append_with(StreamId::new(), ExpectedVersion::NoStream, [
    ///     EventData::new("placed").with_causation_id(cause),
    ///     EventData::new("paid"),
    /// ]);
    /// store.insert(tx).unwrap();
    /// let causes: Vec<_> = store.read_all(Start::Beginning).map(|e| e.metadata().causation_id()).collect();
    /// assert_eq!(causes, [Some(cause), None]);
    /// ```
    #[doc(alias = "AppendToStream")]
    pub fn append_with(
        self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = EventData<E>>,
    ) -> Self {
        self.append_collected(stream, expected, Events::collect_data(events))
    }

    /// Appends events already collected by [`Events::collect_data`]: their
    /// payloads, metadata, client ids and `==`.
    pub(crate) fn append_collected(
        self,
        stream: StreamId,
        expected: ExpectedVersion,
        collected: Collected<E>,
    ) -> Self {
        let mut tx = self.append(stream, expected, std::iter::empty());
        if let Some(append) = tx.appends.last_mut() {
            append.events = collected.events;
            append.extra = collected.extra;
        }
        tx
    }

    /// Appends `events` to the stream called `name` (its id is
    /// [`name.id()`](StreamName::id)), expecting `expected` of it, and has
    /// the store keep the name with the stream.
    ///
    /// Exactly [`append`](Self::append) to `name.id()`, plus the name: a
    /// stream's name is the one given with its first event, fixed from
    /// then on (later appends by id or by name change nothing), so every
    /// reader and subscriber sees one name, or none, for all of a stream's
    /// events. A stream whose first event was appended by id stays
    /// unnamed. Appends to one stream in a transaction are merged (first
    /// expectation wins, rule 10); the first name among them is kept.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Start, StreamName, Transaction};
    /// let store = MemoryStore::new();
    /// let order = StreamName::new("order-42").unwrap();
    /// store.insert(Transaction::new().append_named(&order, ExpectedVersion::NoStream, ["placed"])).unwrap();
    /// assert_eq!(store.stream_name(order.id()), Some(order.clone()));
    /// let event = store.read_all(Start::Beginning).next().unwrap();
    /// assert_eq!((event.stream_id(), event.stream_name()), (order.id(), Some("order-42")));
    /// ```
    #[doc(alias = "AppendToStream")]
    pub fn append_named(
        self,
        name: &StreamName,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = E>,
    ) -> Self {
        let mut tx = self.append(name.id(), expected, events);
        if let Some(append) = tx.appends.last_mut() {
            append.name = Some(Arc::clone(name.shared()));
        }
        tx
    }

    /// Sets the correlation id that every event of the transaction carries.
    pub fn with_correlation_id(mut self, correlation_id: CorrelationId) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Both transactions as one: `self`'s writes first. Events for a stream
    /// both name are concatenated (`self`'s first) and `self`'s expectation
    /// wins; so does `self`'s correlation id, if it has one.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// let left = Transaction::single(stream, ExpectedVersion::NoStream, "a");
    /// let right = Transaction::single(stream, ExpectedVersion::StreamExists, "b");
    /// store.insert(left.compose(right)).unwrap(); // NoStream is checked, not StreamExists
    /// let events: Vec<_> = store.read_all(Start::Beginning).map(|e| *e.payload()).collect();
    /// assert_eq!(events, ["a", "b"]);
    /// ```
    pub fn compose(mut self, other: Transaction<E>) -> Self {
        self.appends.extend(other.appends);
        self.correlation_id = self.correlation_id.or(other.correlation_id);
        self
    }

    /// The number of events the transaction writes (saturating at
    /// `usize::MAX`, which only vectors of zero-sized events can reach).
    pub fn len(&self) -> usize {
        self.appends.iter().fold(0usize, |total, append| {
            total.saturating_add(append.events.len())
        })
    }

    /// Whether the transaction writes no events (it may still check
    /// expectations).
    pub fn is_empty(&self) -> bool {
        self.appends.iter().all(|append| append.events.is_empty())
    }

    /// The appends merged per stream (first expectation wins, events
    /// concatenated in order) and sorted by stream id.
    pub(crate) fn into_normalized(self) -> (SmallVec<[Append<E>; 1]>, Option<CorrelationId>) {
        let mut appends = self.appends;
        // Stable: appends to one stream stay in the order they were made.
        appends.sort_by_key(|append| append.stream);
        appends.dedup_by(|later, earlier| {
            if later.stream != earlier.stream {
                return false;
            }
            let events = std::mem::replace(&mut later.events, Events::Many(Vec::new()));
            let offset = u32::try_from(earlier.events.len()).unwrap_or(u32::MAX);
            if let Some(later) = later.take_metadata() {
                earlier
                    .extra_mut()
                    .metadata
                    .get_or_insert_with(Vec::new)
                    .extend(
                        later
                            .into_iter()
                            .map(|(index, metadata)| (offset.saturating_add(index), metadata)),
                    );
            }
            if let Some(eq) = later.eq() {
                let extra = earlier.extra_mut();
                extra.eq = extra.eq.or(Some(eq));
            }
            if let Some(later) = later.take_ids() {
                earlier.extra_mut().ids.get_or_insert_with(Vec::new).extend(
                    later
                        .into_iter()
                        .map(|(index, id)| (offset.saturating_add(index), id)),
                );
            }
            earlier.events.extend(events);
            if earlier.name.is_none() {
                earlier.name = later.name.take();
            }
            true
        });
        (appends, self.correlation_id)
    }

    /// The transaction as a backend applies it: one write per stream, in
    /// ascending stream id order (the layout of contract rule 9), appends to the same
    /// stream merged (events concatenated, the first expectation kept: rule
    /// 10), each event's metadata, and the correlation id every event
    /// carries.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, StreamId, Transaction, Uuid};
    /// let (a, b) = (StreamId::from_uuid(Uuid::from_u128(1)), StreamId::from_uuid(Uuid::from_u128(2)));
    /// let tx = Transaction::new()
    ///     .append(b, ExpectedVersion::NoStream, [1])
    ///     .append(a, ExpectedVersion::Any, [2])
    ///     .append(b, ExpectedVersion::StreamExists, [3]);
    /// let (writes, correlation_id) = tx.into_writes();
    /// assert_eq!(writes.iter().map(|w| w.stream).collect::<Vec<_>>(), [a, b]);
    /// assert_eq!(writes[1].expected, ExpectedVersion::NoStream);
    /// assert_eq!(writes[1].events, [1, 3]);
    /// assert_eq!(correlation_id, None);
    /// ```
    pub fn into_writes(self) -> (Vec<StreamWrite<E>>, Option<CorrelationId>) {
        let (appends, correlation_id) = self.into_normalized();
        let writes = appends
            .into_iter()
            .map(|mut append| {
                let sparse_metadata = append.take_metadata();
                let sparse_ids = append.take_ids();
                let events = append.events.into_vec();
                let metadata = dense(sparse_metadata, events.len(), Metadata::new(), |m| m);
                let event_ids = dense(sparse_ids, events.len(), None, Some);
                StreamWrite {
                    stream: append.stream,
                    name: append
                        .name
                        .map(|name| StreamName::kept(append.stream, name)),
                    expected: append.expected,
                    events,
                    metadata,
                    event_ids,
                }
            })
            .collect();
        (writes, correlation_id)
    }
}

impl<E: PartialEq> Transaction<E> {
    /// Appends `events` to `stream`, expecting `expected` of it, each with
    /// its own client-supplied id: [`append_with`](Self::append_with) of
    /// [`EventData::with_event_id`] for each, so that re-sending the
    /// transaction is idempotent ([contract](crate::contract) rule 29).
    ///
    /// ```
    /// use hindsight::{EventId, ExpectedVersion, MemoryStore, StreamId, Transaction, Uuid};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// let (a, b) = (EventId::from_uuid(Uuid::from_u128(1)), EventId::from_uuid(Uuid::from_u128(2)));
    /// let tx = || Transaction::new().append_with_ids(stream, ExpectedVersion::NoStream, [(a, "placed"), (b, "paid")]);
    /// let first = store.insert(tx()).unwrap();
    /// assert_eq!(store.insert(tx()).unwrap(), first); // the retry writes nothing
    /// assert_eq!(store.stream_head(stream).unwrap().version.0, 1);
    /// ```
    #[doc(alias = "AppendToStream")]
    pub fn append_with_ids(
        self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = (EventId, E)>,
    ) -> Self {
        let events = events
            .into_iter()
            .map(|(id, payload)| EventData::new(payload).with_event_id(id));
        self.append_with(stream, expected, events)
    }
}

/// The writes of one stream in a transaction, as a backend applies them.
///
/// ```
/// use hindsight::{ExpectedVersion, StreamId, Transaction};
/// let stream = StreamId::new();
/// let (writes, _) = Transaction::single(stream, ExpectedVersion::NoStream, 'a').into_writes();
/// assert_eq!(writes[0].stream, stream);
/// assert_eq!(writes[0].events, ['a']);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWrite<E> {
    /// The stream.
    pub stream: StreamId,
    /// The stream's name, if it was appended to by name
    /// ([`Transaction::append_named`]): a backend keeps it with the stream
    /// if these are the stream's first events, and ignores it otherwise
    /// (rule 32).
    pub name: Option<StreamName>,
    /// What the transaction expects of it.
    pub expected: ExpectedVersion,
    /// Its events, in order (possibly none: a pure check).
    pub events: Vec<E>,
    /// Its events' metadata: empty if none of them has any (the common
    /// case, which allocates nothing), else one per event, in order, the
    /// empty [`Metadata`] for an event without (rule 33).
    pub metadata: Vec<Metadata>,
    /// Its events' client-supplied ids ([`EventData::with_event_id`], rule
    /// 29): empty if none of them has one (the common case, which
    /// allocates nothing), else one per event, in order, `None` for an
    /// event without. A backend stores them as the events' ids, and checks
    /// a re-send as the contract's rule 29 says.
    pub event_ids: Vec<Option<EventId>>,
}

/// What a successful insert wrote.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Position, StreamId, StreamVersion, Transaction};
/// let store = MemoryStore::new();
/// let (a, b) = (StreamId::new(), StreamId::new());
/// let done = store.insert(Transaction::new()
///     .append(a, ExpectedVersion::Any, [1, 2])
///     .append(b, ExpectedVersion::Any, [3])).unwrap();
/// assert_eq!(done.last_position(), Some(Position(2)));
/// assert_eq!(done.stream(a).unwrap().version, StreamVersion(1));
/// assert_eq!(done.streams().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub(crate) last_position: Option<Position>,
    /// Inline for the common one-stream transaction: no allocation.
    pub(crate) streams: SmallVec<[(StreamId, StreamHead); 1]>,
}

impl Committed {
    /// What a successful insert reports: the position of its last event
    /// (`None` if it wrote none) and the new head of every stream it wrote
    /// events to (in any order; kept sorted by stream id). For backends.
    ///
    /// ```
    /// use hindsight::{Committed, Position, StreamHead, StreamId, StreamVersion};
    /// let stream = StreamId::new();
    /// let head = StreamHead { version: StreamVersion(0), position: Position(4) };
    /// let committed = Committed::new(Some(Position(4)), vec![(stream, head)]);
    /// assert_eq!(committed.stream(stream), Some(head));
    /// ```
    pub fn new(last_position: Option<Position>, mut streams: Vec<(StreamId, StreamHead)>) -> Self {
        streams.sort_by_key(|(stream, _)| *stream);
        Committed {
            last_position,
            streams: streams.into(),
        }
    }

    /// What a one-stream transaction reports: `head` if it wrote events.
    pub(crate) fn of_one(stream: StreamId, head: Option<StreamHead>) -> Self {
        match head {
            Some(head) => Committed {
                last_position: Some(head.position),
                streams: smallvec::smallvec![(stream, head)],
            },
            None => Committed::nothing(),
        }
    }

    /// What a transaction that wrote no events reports.
    pub(crate) fn nothing() -> Self {
        Committed {
            last_position: None,
            streams: SmallVec::new(),
        }
    }

    /// The position of the transaction's last event; `None` if it wrote no
    /// events.
    pub fn last_position(&self) -> Option<Position> {
        self.last_position
    }

    /// The new head of `stream`, if the transaction wrote events to it.
    pub fn stream(&self, stream: StreamId) -> Option<StreamHead> {
        self.streams
            .binary_search_by_key(&stream, |(id, _)| *id)
            .ok()
            .map(|index| self.streams[index].1)
    }

    /// The new head of every stream the transaction wrote events to, in
    /// ascending stream id order.
    pub fn streams(&self) -> &[(StreamId, StreamHead)] {
        &self.streams
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn id(n: u128) -> EventId {
        EventId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// Appends to one stream merged in a transaction (rule 10) keep each
    /// event's client id at its place, for backends (`into_writes`) and
    /// for the memory store's re-send check.
    #[test]
    fn merged_appends_keep_each_events_client_id() {
        let stream = StreamId::new();
        let tx = || {
            Transaction::new()
                .append(stream, ExpectedVersion::NoStream, [0])
                .append_with_ids(stream, ExpectedVersion::Any, [(id(1), 1)])
                .append_with(
                    stream,
                    ExpectedVersion::Any,
                    [EventData::new(2), EventData::new(3).with_event_id(id(3))],
                )
        };
        let (writes, _) = tx().into_writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].events, [0, 1, 2, 3]);
        assert_eq!(writes[0].event_ids, [None, Some(id(1)), None, Some(id(3))]);

        let store = MemoryStore::new();
        let first = store.insert(tx()).unwrap();
        let ids: Vec<_> = store
            .read_stream(stream, StreamVersion(0))
            .map(|e| e.event_id())
            .collect();
        assert_eq!((ids[1], ids[3]), (id(1), id(3)));
        assert_eq!(store.insert(tx()).unwrap(), first, "the merged re-send");
        assert_eq!(store.head(), Some(Position(3)));
    }
}
