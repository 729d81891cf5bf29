//! Per-event metadata: a causation id and a small map of headers.

use crate::ids::{CausationId, EventId};
use std::fmt;

/// What one event carries beside its payload, set by the writer: a
/// [`CausationId`] and up to [`MAX_HEADERS`](Self::MAX_HEADERS) headers
/// (text keys to text values). Attached with [`EventData`] and
/// [`Transaction::append_with`](crate::Transaction::append_with); read back
/// with [`Envelope::metadata`](crate::Envelope::metadata) and
/// [`EventRef::metadata`](crate::EventRef::metadata). KurrentDB calls this
/// an event's metadata; cqrs-es a commit's metadata map.
///
/// Limits, checked when a header is added ([`MetadataError`], never a
/// panic): at most [`MAX_HEADERS`](Self::MAX_HEADERS) headers; a key of 1
/// to [`MAX_KEY_LEN`](Self::MAX_KEY_LEN) bytes, unique within the event; a
/// value of at most [`MAX_VALUE_LEN`](Self::MAX_VALUE_LEN) bytes; no NUL
/// character in either (PostgreSQL text cannot hold one). Headers keep the
/// order they were added in, on every backend.
///
/// Events without metadata cost nothing: nothing is allocated or stored
/// for them (contract rule 33).
///
/// ```
/// use hindsight::{CausationId, Metadata, MetadataError};
/// let cause = CausationId::new();
/// let metadata = Metadata::new()
///     .with_causation_id(cause)
///     .with_header("user", "ada")?
///     .with_header("source", "api")?;
/// assert_eq!(metadata.causation_id(), Some(cause));
/// assert_eq!(metadata.header("user"), Some("ada"));
/// assert_eq!(metadata.headers().collect::<Vec<_>>(), [("user", "ada"), ("source", "api")]);
/// assert_eq!(metadata.clone().with_header("user", "grace"),
///            Err(MetadataError::DuplicateKey("user".into())));
/// # Ok::<(), MetadataError>(())
/// ```
#[doc(alias = "headers")]
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    causation_id: Option<CausationId>,
    /// In the order added; keys unique. A `Vec` so that [`Metadata::new`]
    /// is `const` (an empty one allocates nothing).
    headers: Vec<(Box<str>, Box<str>)>,
}

/// The metadata of every event that has none.
pub(crate) static EMPTY: Metadata = Metadata::new();

impl Metadata {
    /// The most headers one event may carry.
    pub const MAX_HEADERS: usize = 16;
    /// The longest header key, in bytes.
    pub const MAX_KEY_LEN: usize = 128;
    /// The longest header value, in bytes.
    pub const MAX_VALUE_LEN: usize = 1024;

    /// No causation id and no headers: what an event appended without
    /// metadata reads back.
    ///
    /// ```
    /// use hindsight::Metadata;
    /// assert!(Metadata::new().is_empty());
    /// assert_eq!(Metadata::new(), Metadata::default());
    /// ```
    pub const fn new() -> Self {
        Metadata {
            causation_id: None,
            headers: Vec::new(),
        }
    }

    /// Sets the causation id.
    ///
    /// ```
    /// use hindsight::{CausationId, Metadata};
    /// let cause = CausationId::new();
    /// assert_eq!(Metadata::new().with_causation_id(cause).causation_id(), Some(cause));
    /// ```
    pub fn with_causation_id(mut self, causation_id: CausationId) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// Adds the header `key: value`, after those already added.
    ///
    /// # Errors
    ///
    /// A [`MetadataError`] (and `self` is dropped) if the header breaks one
    /// of the limits above; see [`insert_header`](Self::insert_header) to
    /// keep the metadata on error.
    ///
    /// ```
    /// use hindsight::{Metadata, MetadataError};
    /// let metadata = Metadata::new().with_header("tenant", "acme")?;
    /// assert_eq!(metadata.header("tenant"), Some("acme"));
    /// assert_eq!(Metadata::new().with_header("", "x"), Err(MetadataError::EmptyKey));
    /// # Ok::<(), MetadataError>(())
    /// ```
    pub fn with_header(mut self, key: &str, value: &str) -> Result<Self, MetadataError> {
        self.insert_header(key, value)?;
        Ok(self)
    }

    /// Adds the header `key: value`, after those already added; on error
    /// `self` is unchanged.
    ///
    /// # Errors
    ///
    /// - [`MetadataError::TooManyHeaders`]: `self` has
    ///   [`MAX_HEADERS`](Self::MAX_HEADERS) headers already.
    /// - [`MetadataError::EmptyKey`], [`MetadataError::KeyTooLong`],
    ///   [`MetadataError::ValueTooLong`], [`MetadataError::NulCharacter`]:
    ///   the key or value breaks a limit.
    /// - [`MetadataError::DuplicateKey`]: `self` has a header `key`.
    ///
    /// ```
    /// use hindsight::{Metadata, MetadataError};
    /// let mut metadata = Metadata::new();
    /// for i in 0..Metadata::MAX_HEADERS {
    ///     metadata.insert_header(&format!("k{i}"), "v")?;
    /// }
    /// assert_eq!(metadata.insert_header("one-more", "v"),
    ///            Err(MetadataError::TooManyHeaders { limit: Metadata::MAX_HEADERS }));
    /// assert_eq!(metadata.headers().len(), Metadata::MAX_HEADERS);
    /// # Ok::<(), MetadataError>(())
    /// ```
    pub fn insert_header(&mut self, key: &str, value: &str) -> Result<(), MetadataError> {
        if self.headers.len() >= Self::MAX_HEADERS {
            return Err(MetadataError::TooManyHeaders {
                limit: Self::MAX_HEADERS,
            });
        }
        if key.is_empty() {
            return Err(MetadataError::EmptyKey);
        }
        if key.len() > Self::MAX_KEY_LEN {
            return Err(MetadataError::KeyTooLong {
                len: key.len(),
                limit: Self::MAX_KEY_LEN,
            });
        }
        if value.len() > Self::MAX_VALUE_LEN {
            return Err(MetadataError::ValueTooLong {
                len: value.len(),
                limit: Self::MAX_VALUE_LEN,
            });
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(MetadataError::NulCharacter);
        }
        if self.header(key).is_some() {
            return Err(MetadataError::DuplicateKey(key.into()));
        }
        // Exactly the room needed: the store keeps this `Vec` as it is, so
        // spare capacity (4 pairs, 128 bytes, on a first `push`) would be
        // held for as long as the event.
        self.headers.reserve_exact(1);
        self.headers.push((key.into(), value.into()));
        Ok(())
    }

    /// The causation id, if one was set.
    pub fn causation_id(&self) -> Option<CausationId> {
        self.causation_id
    }

    /// The value of the header `key`, if there is one.
    ///
    /// ```
    /// use hindsight::Metadata;
    /// let metadata = Metadata::new().with_header("a", "1").unwrap();
    /// assert_eq!((metadata.header("a"), metadata.header("b")), (Some("1"), None));
    /// ```
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| **k == *key)
            .map(|(_, value)| &**value)
    }

    /// The headers, `(key, value)`, in the order they were added.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|(key, value)| (&**key, &**value))
    }

    /// Whether there is neither a causation id nor a header.
    pub fn is_empty(&self) -> bool {
        self.causation_id.is_none() && self.headers.is_empty()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("causation_id", &self.causation_id)
            .field("headers", &DebugHeaders(&self.headers))
            .finish()
    }
}

/// The headers as a map in `Debug` output.
struct DebugHeaders<'a>(&'a [(Box<str>, Box<str>)]);

impl fmt::Debug for DebugHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// Why a header was refused ([`Metadata::insert_header`]).
///
/// ```
/// use hindsight::{Metadata, MetadataError};
/// let long = "k".repeat(Metadata::MAX_KEY_LEN + 1);
/// let error = Metadata::new().with_header(&long, "v").unwrap_err();
/// assert_eq!(error, MetadataError::KeyTooLong { len: 129, limit: 128 });
/// assert_eq!(error.to_string(), "header key of 129 bytes (at most 128)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// The event has [`Metadata::MAX_HEADERS`] headers already.
    TooManyHeaders {
        /// [`Metadata::MAX_HEADERS`].
        limit: usize,
    },
    /// The key is empty.
    EmptyKey,
    /// The key is longer than [`Metadata::MAX_KEY_LEN`] bytes.
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// [`Metadata::MAX_KEY_LEN`].
        limit: usize,
    },
    /// The value is longer than [`Metadata::MAX_VALUE_LEN`] bytes.
    ValueTooLong {
        /// The value's length in bytes.
        len: usize,
        /// [`Metadata::MAX_VALUE_LEN`].
        limit: usize,
    },
    /// The key or the value holds a NUL character.
    NulCharacter,
    /// The event has a header with this key already.
    DuplicateKey(Box<str>),
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::TooManyHeaders { limit } => {
                write!(f, "too many headers (at most {limit})")
            }
            MetadataError::EmptyKey => write!(f, "empty header key"),
            MetadataError::KeyTooLong { len, limit } => {
                write!(f, "header key of {len} bytes (at most {limit})")
            }
            MetadataError::ValueTooLong { len, limit } => {
                write!(f, "header value of {len} bytes (at most {limit})")
            }
            MetadataError::NulCharacter => write!(f, "NUL character in a header"),
            MetadataError::DuplicateKey(key) => write!(f, "duplicate header key {key:?}"),
        }
    }
}

impl std::error::Error for MetadataError {}

/// An event to append, with its [`Metadata`]: what
/// [`Transaction::append_with`](crate::Transaction::append_with) takes.
/// KurrentDB's name for the same thing.
///
/// ```
/// use hindsight::{CausationId, EventData, ExpectedVersion, MemoryStore, Metadata, Start, StreamId, Transaction};
/// let store = MemoryStore::new();
/// let cause = CausationId::new();
/// let event = EventData::new("shipped")
///     .with_metadata(Metadata::new().with_causation_id(cause).with_header("carrier", "ups").unwrap());
/// store.insert(Transaction::new().append_with(StreamId::new(), ExpectedVersion::Any, [event])).unwrap();
/// let read = store.read_all(Start::Beginning).next().unwrap();
/// assert_eq!(read.metadata().causation_id(), Some(cause));
/// assert_eq!(read.metadata().header("carrier"), Some("ups"));
/// ```
#[derive(Debug, Clone)]
pub struct EventData<E> {
    pub(crate) payload: E,
    pub(crate) metadata: Metadata,
    /// The writer's own id for the event (contract rule 29), if it gave one.
    pub(crate) event_id: Option<EventId>,
    /// `<E as PartialEq>::eq`, captured by [`with_event_id`](Self::with_event_id)
    /// (the one place that knows `E: PartialEq`), so that the store can
    /// compare a re-sent event with the stored one without a bound of its
    /// own. Set exactly when `event_id` is.
    pub(crate) eq: Option<fn(&E, &E) -> bool>,
}

/// Two events are equal when their payloads, metadata and ids are (the
/// captured comparison is not compared: it is `E`'s own `eq`).
impl<E: PartialEq> PartialEq for EventData<E> {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
            && self.metadata == other.metadata
            && self.event_id == other.event_id
    }
}

impl<E: Eq> Eq for EventData<E> {}

impl<E> EventData<E> {
    /// `payload` with no metadata and no id of its own.
    pub fn new(payload: E) -> Self {
        EventData {
            payload,
            metadata: Metadata::new(),
            event_id: None,
            eq: None,
        }
    }

    /// Sets the event's metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the event's causation id (its other metadata unchanged).
    ///
    /// ```
    /// use hindsight::{CausationId, EventData};
    /// let cause = CausationId::new();
    /// assert_eq!(EventData::new(1).with_causation_id(cause).metadata().causation_id(), Some(cause));
    /// ```
    pub fn with_causation_id(mut self, causation_id: CausationId) -> Self {
        self.metadata.causation_id = Some(causation_id);
        self
    }

    /// The event's own id, if one was given with
    /// [`with_event_id`](Self::with_event_id).
    pub fn event_id(&self) -> Option<EventId> {
        self.event_id
    }

    /// The payload.
    pub fn payload(&self) -> &E {
        &self.payload
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The payload and the metadata.
    pub fn into_parts(self) -> (E, Metadata) {
        (self.payload, self.metadata)
    }
}

impl<E: PartialEq> EventData<E> {
    /// Gives the event its own id, KurrentDB's client-supplied event id:
    /// reads return it as the event's [`event_id`](crate::Envelope::event_id),
    /// and re-sending the event makes the insert idempotent
    /// ([contract](crate::contract) rule 29): a retry of a committed
    /// transaction returns the original [`Committed`](crate::Committed) and
    /// writes nothing, and the same id with other content or at another
    /// place is an [`InsertError::EventIdConflict`](crate::InsertError::EventIdConflict).
    ///
    /// Needs `E: PartialEq`: a re-sent event is compared with the stored
    /// one (payload by `E`'s `==`, and metadata). The store calls that
    /// `==` under the stream's lock, before anything is reserved: a panic
    /// in it fails the insert, which writes nothing.
    ///
    /// ```
    /// use hindsight::{EventData, EventId, ExpectedVersion, MemoryStore, Position, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// let tx = || Transaction::new().append_with(stream, ExpectedVersion::Any, [
    ///     EventData::new("paid").with_event_id(EventId::from_uuid(uuid::Uuid::from_u128(1))),
    /// ]);
    /// let first = store.insert(tx()).unwrap();
    /// // The reply was lost; the client sends the same transaction again.
    /// let again = store.insert(tx()).unwrap();
    /// assert_eq!(again, first);
    /// assert_eq!(store.head(), Some(Position(0))); // written once
    /// ```
    #[doc(alias = "eventId")]
    pub fn with_event_id(mut self, event_id: EventId) -> Self {
        self.event_id = Some(event_id);
        self.eq = Some(<E as PartialEq>::eq);
        self
    }
}

impl<E> From<E> for EventData<E> {
    fn from(payload: E) -> Self {
        EventData::new(payload)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{CorrelationId, ExpectedVersion, MemoryStore, Start, StreamId, Transaction};

    #[test]
    fn the_log_keeps_each_events_metadata_and_frees_it_with_the_store() {
        let store = MemoryStore::new();
        let (a, b) = (StreamId::new(), StreamId::new());
        let caused = Metadata::new().with_causation_id(CausationId::new());
        let headed = Metadata::new().with_header("k", "v").unwrap();
        // A plain transaction, one with metadata only, one with both and a
        // correlation id across two streams, and a one-event one.
        store
            .insert(Transaction::single(
                a,
                ExpectedVersion::Any,
                String::from("0"),
            ))
            .unwrap();
        store
            .insert(Transaction::new().append_with(
                a,
                ExpectedVersion::Any,
                [
                    EventData::new(String::from("1")),
                    EventData::new(String::from("2")).with_metadata(caused.clone()),
                ],
            ))
            .unwrap();
        store
            .insert(
                Transaction::new()
                    .append_with(
                        a,
                        ExpectedVersion::Any,
                        [EventData::new(String::from("3")).with_metadata(headed.clone())],
                    )
                    .append(b, ExpectedVersion::Any, [String::from("4")])
                    .with_correlation_id(CorrelationId::new()),
            )
            .unwrap();
        store
            .insert(Transaction::new().append_with(
                b,
                ExpectedVersion::Any,
                [EventData::new(String::from("5")).with_metadata(headed.clone())],
            ))
            .unwrap();
        let read: Vec<(String, Metadata)> = store
            .read_all(Start::Beginning)
            .map(|e| (e.payload().clone(), e.metadata().clone()))
            .collect();
        let mut expected = vec![
            ("0", Metadata::new()),
            ("1", Metadata::new()),
            ("2", caused),
            ("3", headed.clone()),
            ("4", Metadata::new()),
            ("5", headed),
        ];
        // Streams are laid out by id in the third transaction.
        if b < a {
            expected.swap(3, 4);
        }
        let expected: Vec<(String, Metadata)> = expected
            .into_iter()
            .map(|(p, m)| (p.to_owned(), m))
            .collect();
        assert_eq!(read, expected);
        // A failed insert frees the metadata it allocated.
        let refused = store.insert(Transaction::new().append_with(
            a,
            ExpectedVersion::NoStream,
            [EventData::new(String::from("x")).with_causation_id(CausationId::new())],
        ));
        assert!(refused.is_err());
        drop(store);
    }

    #[test]
    fn headers_past_a_limit_are_refused_and_leave_the_metadata_unchanged() {
        let mut metadata = Metadata::new().with_header("a", "1").unwrap();
        let before = metadata.clone();
        let long_value = "v".repeat(Metadata::MAX_VALUE_LEN + 1);
        assert_eq!(
            metadata.insert_header("b", &long_value),
            Err(MetadataError::ValueTooLong {
                len: Metadata::MAX_VALUE_LEN + 1,
                limit: Metadata::MAX_VALUE_LEN
            })
        );
        assert_eq!(
            metadata.insert_header("b\0", "x"),
            Err(MetadataError::NulCharacter)
        );
        assert_eq!(
            metadata.insert_header("b", "\0"),
            Err(MetadataError::NulCharacter)
        );
        assert_eq!(
            metadata.insert_header("a", "2"),
            Err(MetadataError::DuplicateKey("a".into()))
        );
        assert_eq!(metadata, before);
        // At the limits exactly: accepted.
        let key = "k".repeat(Metadata::MAX_KEY_LEN);
        let value = "v".repeat(Metadata::MAX_VALUE_LEN);
        metadata.insert_header(&key, &value).unwrap();
        assert_eq!(metadata.header(&key), Some(&*value));
    }
}
