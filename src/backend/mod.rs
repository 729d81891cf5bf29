//! One interface for every backend: [`EventStore`].
//!
//! Application code is written once against [`EventStore`] and runs on
//! [`MemoryStore`](crate::MemoryStore) in tests and on a durable backend
//! (PostgreSQL, say) in production; the conformance kit (`hindsight::testkit`,
//! feature `testkit`) checks that a backend keeps rules 1-25, 27-30, 32 and 33 of
//! [the contract](crate::contract).
//!
//! - Every method is async and returns `impl Future + Send`. The trait is
//!   not object safe: application code is generic over `S: EventStore`.
//! - On a concrete `MemoryStore` its synchronous inherent methods (`insert`,
//!   `read_all`, `spawn_subscriber`, ...) win method resolution; call the
//!   trait's by path (`EventStore::insert(&store, tx)`). One name, one
//!   concept, in the inherent API and the trait alike: a *subscription*
//!   pulls events (`MemoryStore::subscribe`), a *subscriber* runs a handler
//!   on each ([`EventStore::spawn_subscriber`], `MemoryStore::spawn_subscriber`).
//! - A read calls a closure with each event as an [`EventRef`] (metadata by
//!   value, payload borrowed) until it returns [`ControlFlow::Break`].
//! - [`EventStore::Cursor`] is where a reader or a subscription is in the
//!   global order, in the backend's own type; it converts to and from a
//!   [`Position`] without loss ([`Cursor`]), and the shared types
//!   [`Transaction`], [`Committed`], [`StreamHead`] and [`Selector`] speak
//!   positions.
//! - The trait asks of `Event` only `Send + Sync + 'static`; a backend that
//!   must serialise or name events bounds its own implementation.
//! - A subscriber runs a synchronous handler on each event (an
//!   [`EventRef`]) and returns a [`SubscriberHandle`] to cancel it, wait
//!   for its outcome (a [`SubscriberError`] with the backend's error) and
//!   wait, with a timeout, until it has processed a cursor.
//!
//! Why it has this shape (async without boxing, visitor reads, cursors,
//! events without bounds, synchronous handlers) and how a PostgreSQL backend
//! would implement it, method by method, is in
//! [the design](crate::design#a-backend-agnostic-interface-backend-and-the-conformance-kit-testkit).
//!
//! ```
//! use hindsight::{EventStore, ExpectedVersion, MemoryStore, StoreError, StreamId, Transaction};
//! use std::ops::ControlFlow;
//!
//! /// Application code, written once for every backend.
//! async fn rename<S: EventStore<Event = String>>(store: &S, user: StreamId, name: &str)
//!     -> Result<(), StoreError<S::Error>>
//! {
//!     let head = store.stream_head(user).await.map_err(StoreError::Backend)?;
//!     let expected = head.map_or(ExpectedVersion::NoStream, |head| head.expect_exact());
//!     store.insert(Transaction::single(user, expected, format!("renamed to {name}"))).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryStore::new();
//! let user = StreamId::new();
//! rename(&store, user, "ada").await.unwrap();
//! rename(&store, user, "grace").await.unwrap();
//!
//! let mut history = Vec::new();
//! EventStore::read_stream(&store, user, Default::default(), |event| {
//!     history.push(event.payload.clone());
//!     ControlFlow::Continue(())
//! }).await.unwrap();
//! assert_eq!(history, ["renamed to ada", "renamed to grace"]);
//! # }
//! ```

mod memory;
#[cfg(feature = "tracing")]
mod trace;

pub use memory::{MemoryError, MemorySubscriber};

use crate::envelope::Envelope;
use crate::error::{EventIdMismatch, VersionMismatch};
use crate::ids::{CorrelationId, EventId, Position, StreamId, StreamVersion};
use crate::metadata::Metadata;
use crate::name::StreamName;
use crate::selector::Selector;
use crate::subscription::{EventContext, Flow, SubscriberError, WaitError};
use crate::transaction::{Committed, ExpectedVersion, StreamHead, Transaction};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime};

/// The bounds a [`Cursor`] needs for checkpoints: `Serialize` and
/// `DeserializeOwned` when the `serde` feature is on, nothing otherwise.
///
/// Implemented for every type that meets them; never implement it by hand.
/// A backend with a cursor type of its own should always derive serde's
/// traits for it, so that it keeps compiling when some other crate of the
/// build turns on `hindsight/serde`.
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(auto_cfg = false))] // it exists either way: no feature label
pub trait CursorSerde: serde::Serialize + serde::de::DeserializeOwned {}
#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> CursorSerde for T {}

/// The bounds a [`Cursor`] needs for checkpoints: `Serialize` and
/// `DeserializeOwned` when the `serde` feature is on, nothing otherwise.
///
/// Implemented for every type that meets them; never implement it by hand.
/// A backend with a cursor type of its own should always derive serde's
/// traits for it, so that it keeps compiling when some other crate of the
/// build turns on `hindsight/serde`.
#[cfg(not(feature = "serde"))]
pub trait CursorSerde {}
#[cfg(not(feature = "serde"))]
impl<T: ?Sized> CursorSerde for T {}

/// A point in a store's global order, as a backend represents it: what
/// readers resume from and what checkpoints store.
///
/// Ordered like the positions it stands for. Every store numbers its events
/// 0, 1, 2, ... without gaps (rule 2 of [the contract](crate::contract)), so
/// a cursor and a [`Position`] convert into each other without loss.
///
/// ```
/// use hindsight::{Cursor, Position};
/// let cursor = Position::from_position(Position(7));
/// assert_eq!(cursor.position(), Position(7));
/// assert!(Position(1) < Position(2));
/// ```
pub trait Cursor: Copy + Ord + Hash + fmt::Debug + Send + Sync + 'static + CursorSerde {
    /// The cursor standing at `position`.
    fn from_position(position: Position) -> Self;

    /// The global position this cursor stands at.
    fn position(self) -> Position;
}

impl Cursor for Position {
    #[inline]
    fn from_position(position: Position) -> Self {
        position
    }

    #[inline]
    fn position(self) -> Position {
        self
    }
}

/// A committed event as a read or a subscription hands it to its closure:
/// what the store knows of it (position, ids, version, time) by value, the
/// payload and the event's own [`Metadata`] borrowed.
///
/// The memory store builds it on the stack from its log (nothing is copied
/// but a few words); a durable store builds it from a decoded row. The fields are public so that any backend can build one.
///
/// ```
/// use hindsight::{EventRef, ExpectedVersion, MemoryStore, Position, Start, StreamId, Transaction};
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// store.insert(Transaction::single(stream, ExpectedVersion::NoStream, "opened")).unwrap();
/// let envelope = store.read_all(Start::Beginning).next().unwrap();
/// let event = EventRef::from(envelope);
/// assert_eq!((event.cursor, event.stream, *event.payload), (Position(0), stream, "opened"));
/// ```
#[derive(PartialEq, Eq)]
pub struct EventRef<'a, E, C = Position> {
    /// Where the event sits in the global order.
    pub cursor: C,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in its stream.
    pub version: StreamVersion,
    /// Its id, fixed when it was written.
    pub event_id: EventId,
    /// The correlation id of the transaction that wrote it.
    pub correlation_id: Option<CorrelationId>,
    /// When the transaction that wrote it was inserted.
    pub created_at: SystemTime,
    /// Its own metadata (causation id and headers; empty if it was
    /// appended without), borrowed like the payload (rule 33).
    pub metadata: &'a Metadata,
    /// The event itself.
    pub payload: &'a E,
}

impl<E, C: Cursor> EventRef<'_, E, C> {
    /// The event's global position.
    pub fn position(&self) -> Position {
        self.cursor.position()
    }

    /// The event's context for a [`HandlerError`](crate::HandlerError), with its type name if the
    /// backend knows it (see [`Selector::event_type_name`]).
    ///
    /// ```
    /// use hindsight::{EventRef, ExpectedVersion, MemoryStore, Start, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::single(StreamId::new(), ExpectedVersion::Any, 1)).unwrap();
    /// let event = EventRef::from(store.read_all(Start::Beginning).next().unwrap());
    /// assert_eq!(event.context(None).position, event.position());
    /// ```
    pub fn context(&self, event_type: Option<String>) -> EventContext {
        EventContext {
            position: self.position(),
            event_id: self.event_id,
            event_type,
            stream: self.stream,
            version: self.version,
            correlation_id: self.correlation_id,
            causation_id: self.metadata.causation_id(),
            created_at: self.created_at,
        }
    }
}

impl<E, C: Copy> Clone for EventRef<'_, E, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E, C: Copy> Copy for EventRef<'_, E, C> {}

impl<E: fmt::Debug, C: fmt::Debug> fmt::Debug for EventRef<'_, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRef")
            .field("cursor", &self.cursor)
            .field("stream", &self.stream)
            .field("version", &self.version)
            .field("event_id", &self.event_id)
            .field("correlation_id", &self.correlation_id)
            .field("created_at", &self.created_at)
            .field("metadata", self.metadata)
            .field("payload", &self.payload)
            .finish()
    }
}

impl<'a, E> From<Envelope<'a, E>> for EventRef<'a, E, Position> {
    #[inline]
    fn from(envelope: Envelope<'a, E>) -> Self {
        EventRef {
            cursor: envelope.position(),
            stream: envelope.stream_id(),
            version: envelope.version(),
            event_id: envelope.event_id(),
            correlation_id: envelope.correlation_id(),
            created_at: envelope.created_at(),
            metadata: envelope.metadata(),
            payload: envelope.payload(),
        }
    }
}

/// Why an [`EventStore::insert`] wrote nothing.
///
/// A version conflict is the one failure application code handles (reload,
/// decide again, retry); everything else is the backend's own error.
///
/// ```
/// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StoreError, StreamId, Transaction};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// let tx = || Transaction::single(stream, ExpectedVersion::NoStream, "created");
/// EventStore::insert(&store, tx()).await.unwrap();
/// let error = EventStore::insert(&store, tx()).await.unwrap_err();
/// assert!(error.is_conflict());
/// assert_eq!(error.mismatches().unwrap()[0].stream, stream);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError<B> {
    /// One or more expectations failed; lists every failing stream in
    /// ascending stream id order. Nothing was written, no position used.
    VersionConflict(Vec<VersionMismatch>),
    /// The stream was hard-deleted ([`EventStore::tombstone_stream`]) and
    /// refuses every write (rule 30); nothing of the transaction was
    /// written. See [`InsertError::StreamDeleted`](crate::InsertError::StreamDeleted).
    #[doc(alias = "StreamDeletedException")]
    StreamDeleted {
        /// The hard-deleted stream.
        stream: StreamId,
        /// Its name, if the store keeps one.
        stream_name: Option<StreamName>,
    },
    /// A client-supplied event id conflicts (rule 29); nothing was
    /// written. See [`InsertError::EventIdConflict`](crate::InsertError::EventIdConflict).
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
    /// The backend failed (connection lost, store poisoned, ...). Whether
    /// anything was written is for the backend to say; a conforming backend
    /// writes all or nothing.
    Backend(B),
}

impl<B> StoreError<B> {
    /// Whether this is a version conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::VersionConflict(_))
    }

    /// The failing streams, for a version conflict.
    pub fn mismatches(&self) -> Option<&[VersionMismatch]> {
        match self {
            StoreError::VersionConflict(mismatches) => Some(mismatches),
            StoreError::StreamDeleted { .. }
            | StoreError::EventIdConflict { .. }
            | StoreError::Backend(_) => None,
        }
    }
}

impl<B: fmt::Display> fmt::Display for StoreError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::VersionConflict(mismatches) => {
                write!(f, "wrong expected version")?;
                for (i, mismatch) in mismatches.iter().enumerate() {
                    write!(f, "{}{mismatch}", if i == 0 { ": " } else { "; " })?;
                }
                Ok(())
            }
            StoreError::StreamDeleted {
                stream,
                stream_name,
            } => {
                crate::error::fmt_stream(f, *stream, stream_name.as_ref())?;
                write!(f, " is hard-deleted: it refuses every write")
            }
            StoreError::EventIdConflict {
                stream,
                stream_name,
                event_id,
                mismatch,
            } => {
                crate::error::fmt_id_conflict(f, *stream, stream_name.as_ref(), *event_id, mismatch)
            }
            StoreError::Backend(error) => write!(f, "backend error: {error}"),
        }
    }
}

impl<B: std::error::Error + 'static> std::error::Error for StoreError<B> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Backend(error) => Some(error),
            StoreError::VersionConflict(_)
            | StoreError::StreamDeleted { .. }
            | StoreError::EventIdConflict { .. } => None,
        }
    }
}

/// An event store, whatever keeps its events: the interface application
/// code is written against.
///
/// Every implementation keeps rules 1-25, 27-30, 32 and 33 of [the contract](crate::contract)
/// (the conformance kit, `hindsight::testkit`, checks them): dense global
/// positions, dense stream versions, all-or-nothing transactions under expected
/// versions reporting every failing stream, read-your-writes, and
/// subscriptions that deliver every selected event once, in order, history
/// then live with no seam.
///
/// Handles are cheap to clone and share one store (`Clone`); the futures are
/// `Send`, so they can be spawned on a multi-threaded runtime. Why the trait
/// has this shape is in
/// [the design](crate::design#a-backend-agnostic-interface-backend-and-the-conformance-kit-testkit).
///
/// # Implementing it for a durable backend
///
/// [The design](crate::design#how-a-postgresql-backend-would-implement-it)
/// sketches a PostgreSQL implementation method by method, built on
/// [`Transaction::into_writes`] (the writes merged per stream, sorted by
/// stream id) and [`Committed::new`]; run the conformance kit against it.
///
/// # On the memory store
///
/// Each future does the inherent, synchronous call when first polled and is
/// then ready: no allocation beyond what the inherent call makes, no copy of
/// events. An insert may block its thread for the moment it takes earlier
/// concurrent inserts to commit (they are running, never parked at an
/// `.await`), as a short critical section would.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// What the store keeps. Backends that must serialise or name events put
    /// those bounds on their implementation, not here.
    type Event: Send + Sync + 'static;

    /// Where a reader or a subscription is in the global order.
    type Cursor: Cursor;

    /// The backend's own failures (I/O, a poisoned store, ...).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The handle of a running subscriber whose handler fails with `X`.
    type Subscriber<X: Send + Sync + 'static>: SubscriberHandle<
        X,
        Cursor = Self::Cursor,
        Error = Self::Error,
    >;

    /// Inserts a transaction, all or nothing (rules 5-14 of
    /// [the contract](crate::contract)).
    ///
    /// When the future returns `Ok`, every reader and subscriber of every
    /// handle can see the whole transaction. A transaction with no events
    /// still checks its expectations; its [`Committed::last_position`] is
    /// `None`.
    fn insert(
        &self,
        tx: Transaction<Self::Event>,
    ) -> impl Future<Output = Result<Committed, StoreError<Self::Error>>> + Send;

    /// The cursor of the last committed event, or `None` for an empty store.
    fn head(&self) -> impl Future<Output = Result<Option<Self::Cursor>, Self::Error>> + Send;

    /// The last committed event of `stream` (its version and position), or
    /// `None` if the stream does not exist.
    fn stream_head(
        &self,
        stream: StreamId,
    ) -> impl Future<Output = Result<Option<StreamHead>, Self::Error>> + Send;

    /// The name the store keeps for `stream` (rule 32): the one given with
    /// its first event ([`Transaction::append_named`]); `None` for a
    /// stream that does not exist or whose first event was appended by id.
    ///
    /// ```
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamName, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new();
    /// let order = StreamName::new("order-42").unwrap();
    /// let tx = Transaction::new().append_named(&order, ExpectedVersion::NoStream, ["placed"]);
    /// EventStore::insert(&store, tx).await.unwrap();
    /// assert_eq!(EventStore::stream_name(&store, order.id()).await.unwrap(), Some(order));
    /// # }
    /// ```
    fn stream_name(
        &self,
        stream: StreamId,
    ) -> impl Future<Output = Result<Option<StreamName>, Self::Error>> + Send;

    /// Deletes `stream` (a soft delete, KurrentDB's "delete"; rule 30 of
    /// [the contract](crate::contract)) if `expected` holds against its
    /// head, as an insert's expectation would (else a version conflict
    /// naming the stream, and nothing changes).
    ///
    /// Afterwards the stream reads as missing ([`stream_head`],
    /// [`stream_name`] and [`read_stream`] find nothing; [`read_all`] and
    /// subscribers skip its events when they reach them) until it is
    /// written again: an insert expecting `NoStream` passes, and the next
    /// event gets the next version after the deleted ones. Deleting a
    /// missing stream with `Any` or `NoStream` changes nothing and
    /// succeeds. Positions are never reused.
    ///
    /// [`stream_head`]: Self::stream_head
    /// [`stream_name`]: Self::stream_name
    /// [`read_stream`]: Self::read_stream
    /// [`read_all`]: Self::read_all
    ///
    /// ```
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, StreamVersion, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// EventStore::insert(&store, Transaction::single(stream, ExpectedVersion::NoStream, 1)).await.unwrap();
    /// EventStore::delete_stream(&store, stream, ExpectedVersion::StreamExists).await.unwrap();
    /// assert_eq!(EventStore::stream_head(&store, stream).await.unwrap(), None);
    /// let again = Transaction::single(stream, ExpectedVersion::NoStream, 2);
    /// let done = EventStore::insert(&store, again).await.unwrap();
    /// assert_eq!(done.stream(stream).unwrap().version, StreamVersion(1));
    /// # }
    /// ```
    #[doc(alias = "soft delete")]
    fn delete_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send;

    /// Deletes `stream` for good (a hard delete, KurrentDB's "tombstone"):
    /// as [`delete_stream`](Self::delete_stream), and every later write to
    /// it (an append with events, or an expectation other than `Any`, in
    /// any transaction) fails with [`StoreError::StreamDeleted`], writing
    /// nothing. Irreversible; a missing stream may be hard-deleted too.
    ///
    /// ```
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StoreError, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// EventStore::insert(&store, Transaction::single(stream, ExpectedVersion::NoStream, 1)).await.unwrap();
    /// EventStore::tombstone_stream(&store, stream, ExpectedVersion::Any).await.unwrap();
    /// let refused = EventStore::insert(&store, Transaction::single(stream, ExpectedVersion::Any, 2)).await;
    /// assert!(matches!(refused, Err(StoreError::StreamDeleted { .. })));
    /// # }
    /// ```
    #[doc(alias = "hard delete", alias = "tombstone")]
    fn tombstone_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send;

    /// Hides the versions of `stream` below `before` from every reader
    /// (KurrentDB's `$tb`; rule 30). The head and versions do not change,
    /// and the stream still exists for expectations and
    /// [`stream_head`](Self::stream_head); the floor never moves back (a
    /// smaller `before` later is a no-op); a stream never written is left
    /// alone. Fails with [`StoreError::StreamDeleted`] on a hard-deleted
    /// stream.
    ///
    /// ```
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, StreamVersion, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// let tx = Transaction::new().append(stream, ExpectedVersion::NoStream, [0, 1, 2]);
    /// EventStore::insert(&store, tx).await.unwrap();
    /// EventStore::truncate_stream(&store, stream, StreamVersion(2)).await.unwrap();
    /// let mut read = Vec::new();
    /// EventStore::read_stream(&store, stream, StreamVersion(0), |e| {
    ///     read.push(*e.payload);
    ///     std::ops::ControlFlow::Continue(())
    /// }).await.unwrap();
    /// assert_eq!(read, [2]);
    /// # }
    /// ```
    #[doc(alias = "truncate before", alias = "$tb")]
    fn truncate_stream(
        &self,
        stream: StreamId,
        before: StreamVersion,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send;

    /// Sets the most events of `stream` that readers see (KurrentDB's
    /// `$maxCount`; rule 30), or removes the limit (`None`): all but the
    /// last `max_count` versions are hidden at once and after every append
    /// (by the time it returns), as a truncation before the stream's length
    /// minus `max_count` would. Hidden versions stay hidden (a larger count
    /// later shows none again); the head and versions do not change; a
    /// stream not written yet keeps the limit for its first events. Fails
    /// with [`StoreError::StreamDeleted`] on a hard-deleted stream.
    ///
    /// ```
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, StreamVersion, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// EventStore::set_max_count(&store, stream, Some(1)).await.unwrap();
    /// let tx = Transaction::new().append(stream, ExpectedVersion::NoStream, [0, 1, 2]);
    /// EventStore::insert(&store, tx).await.unwrap();
    /// let mut read = Vec::new();
    /// EventStore::read_stream(&store, stream, StreamVersion(0), |e| {
    ///     read.push(*e.payload);
    ///     std::ops::ControlFlow::Continue(())
    /// }).await.unwrap();
    /// assert_eq!(read, [2]);
    /// # }
    /// ```
    #[doc(alias = "$maxCount", alias = "max count")]
    fn set_max_count(
        &self,
        stream: StreamId,
        max_count: Option<u64>,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send;

    /// Sets the longest time readers see an event of `stream` for
    /// (KurrentDB's `$maxAge`; rule 30), or removes the limit (`None`).
    /// Every reader skips an event created (by the store's clock: the
    /// server's for PostgreSQL) more than `max_age` before the reader
    /// reaches it; age is evaluated when each event is reached, so a longer
    /// age (or `None`) shows again the events it covers. The head, versions
    /// and expectations do not change; a stream not written yet keeps the
    /// limit for its first events. `max_age` is kept as
    /// [`max_age_micros`](crate::max_age_micros) says: whole microseconds,
    /// rounded up, at least one, at most
    /// [`MAX_AGE_LIMIT`](crate::MAX_AGE_LIMIT). Fails with
    /// [`StoreError::StreamDeleted`] on a hard-deleted stream.
    ///
    /// ```
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, StreamVersion, TestClock, Transaction};
    /// use std::time::{Duration, SystemTime};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let clock = TestClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
    /// let store = MemoryStore::builder().clock(clock.clone()).build();
    /// let stream = StreamId::new();
    /// EventStore::insert(&store, Transaction::single(stream, ExpectedVersion::Any, 0)).await.unwrap();
    /// clock.advance(Duration::from_secs(60));
    /// EventStore::insert(&store, Transaction::single(stream, ExpectedVersion::Any, 1)).await.unwrap();
    /// EventStore::set_max_age(&store, stream, Some(Duration::from_secs(30))).await.unwrap();
    /// let mut read = Vec::new();
    /// EventStore::read_stream(&store, stream, StreamVersion(0), |e| {
    ///     read.push(*e.payload);
    ///     std::ops::ControlFlow::Continue(())
    /// }).await.unwrap();
    /// assert_eq!(read, [1]);
    /// # }
    /// ```
    #[doc(alias = "$maxAge", alias = "max age")]
    fn set_max_age(
        &self,
        stream: StreamId,
        max_age: Option<std::time::Duration>,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send;

    /// Deletes every stream at once (a soft delete of each; rule 30): a
    /// logical reset of the store (Marten's `ResetAllData`), for handles
    /// shared between tests or components. Every event committed before
    /// the call is removed for every reader; positions are never reused
    /// and versions continue, names, hard deletes and maximum counts stay:
    /// not a fresh store. Atomic with respect to transactions (none is half
    /// before and half after it).
    ///
    /// ```
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, Position, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new();
    /// let tx = Transaction::single(StreamId::new(), ExpectedVersion::Any, 1);
    /// EventStore::insert(&store, tx).await.unwrap();
    /// EventStore::delete_all_streams(&store).await.unwrap();
    /// let mut seen = 0;
    /// EventStore::read_all(&store, None, |_| { seen += 1; std::ops::ControlFlow::Continue(()) }).await.unwrap();
    /// assert_eq!(seen, 0);
    /// assert_eq!(EventStore::head(&store).await.unwrap(), Some(Position(0)));
    /// # }
    /// ```
    #[doc(alias = "reset", alias = "ResetAllData")]
    fn delete_all_streams(
        &self,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send;

    /// Calls `visit` with every committed event, in position order, from the
    /// beginning (`after` is `None`) or after a cursor (exclusive), until it
    /// returns [`ControlFlow::Break`]. The read sees the store as it was
    /// when it started.
    fn read_all<F>(
        &self,
        after: Option<Self::Cursor>,
        visit: F,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send
    where
        F: FnMut(EventRef<'_, Self::Event, Self::Cursor>) -> ControlFlow<()> + Send;

    /// Calls `visit` with the committed events of `stream` from version
    /// `from` (inclusive), oldest first, until it returns
    /// [`ControlFlow::Break`]. Nothing for a stream that does not exist.
    fn read_stream<F>(
        &self,
        stream: StreamId,
        from: StreamVersion,
        visit: F,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send
    where
        F: FnMut(EventRef<'_, Self::Event, Self::Cursor>) -> ControlFlow<()> + Send;

    /// Starts a subscriber: runs `handler` on every event `selector`
    /// selects, each exactly once, in position order, history first and then
    /// live (rules 16-23 of [the contract](crate::contract)). Hindsight (the
    /// Haskell library) calls this `subscribe`; here `subscribe` is the
    /// memory store's pull subscription, and this is named like the memory
    /// store's inherent [`MemoryStore::spawn_subscriber`](crate::MemoryStore::spawn_subscriber).
    ///
    /// The handler is synchronous: it gets the event borrowed (the memory
    /// store copies nothing), its calls never overlap, and it returns
    /// [`Flow::Continue`], [`Flow::Stop`] or an error, which ends the
    /// subscriber with the event's context (so does a panic). A backend
    /// runs it where blocking is allowed (the memory store: a thread of its
    /// own; an async backend: `spawn_blocking` or a dedicated thread). Work
    /// that must `.await` belongs behind a channel the handler feeds.
    #[doc(alias = "subscribe")]
    fn spawn_subscriber<X, H>(
        &self,
        selector: Selector<Self::Event>,
        handler: H,
    ) -> impl Future<Output = Result<Self::Subscriber<X>, Self::Error>> + Send
    where
        X: Send + Sync + 'static,
        H: FnMut(EventRef<'_, Self::Event, Self::Cursor>) -> Result<Flow, X> + Send + 'static;
}

/// A running handler subscriber of an [`EventStore`], as
/// [`EventStore::spawn_subscriber`] returns it.
///
/// Every wait here is async and never blocks the caller's thread, and
/// dropping a wait's future releases everything it held (the waits are
/// cancel-safe). `X` is the handler's error type.
///
/// Dropping the handle requests cancellation and returns at once: it never
/// blocks (an executor thread, say) on the handler's current call; the
/// subscriber stops before its next event and ends on its own
/// ([contract](crate::contract) rule 28). `cancel().await` is for those who
/// want to wait for that end.
pub trait SubscriberHandle<X>: Send + Sync + 'static {
    /// The store's cursor.
    type Cursor: Cursor;
    /// The store's own failures.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stops the subscriber; completes once its handler will never be
    /// called again ([contract](crate::contract) rule 21). Idempotent,
    /// harmless after the subscriber ended on its own (the outcome stays
    /// what it was), wakes a subscriber waiting for events.
    ///
    /// The request is made when the future is first polled; dropping the
    /// future after that leaves it in place. The future completes once the
    /// handler's current call has returned: if that call waits for the
    /// awaiting task itself (a full channel only that task drains), it stays
    /// pending, so drain from another task or drop the handle instead.
    fn cancel(&self) -> impl Future<Output = ()> + Send;

    /// Waits until the subscriber ends and returns how: `Ok` after
    /// [`Flow::Stop`] or a cancel, the handler's error (unchanged, with the
    /// event's context) or the backend's error otherwise.
    /// [`SubscriberError::OwnHandler`] at once if called from the
    /// subscriber's own handler. Dropping the future drops the handle,
    /// which requests cancellation.
    fn wait(self) -> impl Future<Output = Result<(), SubscriberError<X, Self::Error>>> + Send;

    /// Waits until the subscriber has handled or passed over `cursor`
    /// (events it does not select count as passed), for at most `timeout`
    /// ([contract](crate::contract) rule 23). [`WaitError::Ended`] if it
    /// ended before; [`WaitError::OwnHandler`] at once if called from the
    /// subscriber's own handler for a cursor it has not passed.
    fn wait_processed(
        &self,
        cursor: Self::Cursor,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), WaitError>> + Send;

    /// Waits until the subscriber has handled everything committed when
    /// this is called, for at most `timeout`.
    fn wait_caught_up(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), WaitError>> + Send;

    /// The last cursor handled or passed over, `None` before the first.
    fn processed(&self) -> Option<Self::Cursor>;

    /// Whether the subscriber has ended.
    fn is_finished(&self) -> bool;
}
