//! [`EventStore`] for [`MemoryStore`]: the synchronous inherent API inside
//! futures that are ready on their first poll, and a subscriber handle
//! whose waits await the subscriber's progress signal (waker-based: no
//! thread per wait, cancel-safe).

use super::{EventRef, EventStore, StoreError, SubscriberHandle};
use crate::envelope::Envelope;
use crate::error::InsertError;
use crate::ids::{Position, StreamId, StreamVersion};
use crate::name::StreamName;
use crate::read::Start;
use crate::selector::Selector;
use crate::store::MemoryStore;
use crate::subscription::{Flow, Subscriber, SubscriberError, WaitError};
use crate::transaction::{Committed, ExpectedVersion, StreamHead, Transaction};
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

/// The memory store's own failure, as [`EventStore::Error`].
///
/// ```
/// use hindsight::MemoryError;
/// assert!(MemoryError::Poisoned.to_string().contains("poisoned"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryError {
    /// A writer panicked between reserving and committing (a bug in this
    /// crate); see [`InsertError::Poisoned`].
    Poisoned,
    /// See [`InsertError::TooLarge`].
    TooLarge {
        /// The events the transaction holds (saturating at `u64::MAX`).
        events: u64,
        /// The most one transaction may write.
        limit: u64,
    },
    /// See [`InsertError::StoreFull`].
    StoreFull {
        /// The store's capacity, in events.
        capacity: u64,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One text per failure: `InsertError`'s.
        let same = match *self {
            MemoryError::Poisoned => InsertError::Poisoned,
            MemoryError::TooLarge { events, limit } => InsertError::TooLarge { events, limit },
            MemoryError::StoreFull { capacity } => InsertError::StoreFull { capacity },
        };
        fmt::Display::fmt(&same, f)
    }
}

impl std::error::Error for MemoryError {}

impl From<InsertError> for StoreError<MemoryError> {
    fn from(error: InsertError) -> Self {
        match error {
            InsertError::VersionConflict(mismatches) => StoreError::VersionConflict(mismatches),
            InsertError::Poisoned => StoreError::Backend(MemoryError::Poisoned),
            InsertError::TooLarge { events, limit } => {
                StoreError::Backend(MemoryError::TooLarge { events, limit })
            }
            InsertError::StoreFull { capacity } => {
                StoreError::Backend(MemoryError::StoreFull { capacity })
            }
            InsertError::StreamDeleted {
                stream,
                stream_name,
            } => StoreError::StreamDeleted {
                stream,
                stream_name,
            },
            InsertError::EventIdConflict {
                stream,
                stream_name,
                event_id,
                mismatch,
            } => StoreError::EventIdConflict {
                stream,
                stream_name,
                event_id,
                mismatch,
            },
        }
    }
}

/// The memory store behind the trait. Each future makes the inherent call
/// when first polled (so, like any future, nothing happens until it is
/// awaited) and is then ready.
///
/// With the `tracing` feature each call runs in a span, and a subscriber's
/// worker thread in one of its own (the README's "Tracing" lists them); the
/// inherent API is never instrumented: it is the hot path, measured in
/// nanoseconds, and the trait is what application code calls.
///
/// ```
/// use hindsight::{EventStore, ExpectedVersion, MemoryStore, Position, StreamId, Transaction};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// // Inherent (synchronous) and trait (async) calls share one store.
/// store.insert(Transaction::single(stream, ExpectedVersion::NoStream, 1)).unwrap();
/// EventStore::insert(&store, Transaction::single(stream, ExpectedVersion::StreamExists, 2)).await.unwrap();
/// assert_eq!(EventStore::head(&store).await.unwrap(), Some(Position(1)));
/// # }
/// ```
impl<E: Send + Sync + 'static> EventStore for MemoryStore<E> {
    type Event = E;
    type Cursor = Position;
    type Error = MemoryError;
    type Subscriber<X: Send + Sync + 'static> = MemorySubscriber<X>;

    async fn insert(&self, tx: Transaction<E>) -> Result<Committed, StoreError<MemoryError>> {
        #[cfg(feature = "tracing")]
        {
            let events = tx.len();
            let span = tracing::debug_span!(
                "hindsight.insert",
                streams = super::trace::streams(&tx),
                events,
                first_position = tracing::field::Empty,
                last_position = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            let result = span.in_scope(|| MemoryStore::insert(self, tx).map_err(StoreError::from));
            super::trace::record_insert(&span, events, &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        MemoryStore::insert(self, tx).map_err(StoreError::from)
    }

    async fn head(&self) -> Result<Option<Position>, MemoryError> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!("hindsight.head", head = tracing::field::Empty);
            let head = span.in_scope(|| MemoryStore::head(self));
            span.record("head", head.map(|head| head.0));
            Ok(head)
        }
        #[cfg(not(feature = "tracing"))]
        Ok(MemoryStore::head(self))
    }

    async fn stream_head(&self, stream: StreamId) -> Result<Option<StreamHead>, MemoryError> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.stream_head",
                %stream,
                version = tracing::field::Empty,
                position = tracing::field::Empty,
            );
            let head = span.in_scope(|| MemoryStore::stream_head(self, stream));
            super::trace::record_head(&span, head);
            Ok(head)
        }
        #[cfg(not(feature = "tracing"))]
        Ok(MemoryStore::stream_head(self, stream))
    }

    async fn stream_name(&self, stream: StreamId) -> Result<Option<StreamName>, MemoryError> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.stream_name",
                %stream,
                name = tracing::field::Empty,
            );
            let name = span.in_scope(|| MemoryStore::stream_name(self, stream));
            if let Some(name) = &name {
                span.record("name", name.as_str());
            }
            Ok(name)
        }
        #[cfg(not(feature = "tracing"))]
        Ok(MemoryStore::stream_name(self, stream))
    }

    async fn delete_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> Result<(), StoreError<MemoryError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.delete_stream",
                %stream,
                ?expected,
                error = tracing::field::Empty,
            );
            let result = span.in_scope(|| {
                MemoryStore::delete_stream(self, stream, expected).map_err(StoreError::from)
            });
            super::trace::record_result(&span, "delete_stream", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        MemoryStore::delete_stream(self, stream, expected).map_err(StoreError::from)
    }

    async fn tombstone_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> Result<(), StoreError<MemoryError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.tombstone_stream",
                %stream,
                ?expected,
                error = tracing::field::Empty,
            );
            let result = span.in_scope(|| {
                MemoryStore::tombstone_stream(self, stream, expected).map_err(StoreError::from)
            });
            super::trace::record_result(&span, "tombstone_stream", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        MemoryStore::tombstone_stream(self, stream, expected).map_err(StoreError::from)
    }

    async fn truncate_stream(
        &self,
        stream: StreamId,
        before: StreamVersion,
    ) -> Result<(), StoreError<MemoryError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.truncate_stream",
                %stream,
                before = before.0,
                error = tracing::field::Empty,
            );
            let result = span.in_scope(|| {
                MemoryStore::truncate_stream(self, stream, before).map_err(StoreError::from)
            });
            super::trace::record_result(&span, "truncate_stream", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        MemoryStore::truncate_stream(self, stream, before).map_err(StoreError::from)
    }

    async fn set_max_count(
        &self,
        stream: StreamId,
        max_count: Option<u64>,
    ) -> Result<(), StoreError<MemoryError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.set_max_count",
                %stream,
                max_count,
                error = tracing::field::Empty,
            );
            let result = span.in_scope(|| {
                MemoryStore::set_max_count(self, stream, max_count).map_err(StoreError::from)
            });
            super::trace::record_result(&span, "set_max_count", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        MemoryStore::set_max_count(self, stream, max_count).map_err(StoreError::from)
    }

    async fn set_max_age(
        &self,
        stream: StreamId,
        max_age: Option<std::time::Duration>,
    ) -> Result<(), StoreError<MemoryError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.set_max_age",
                %stream,
                max_age_us = max_age.map(crate::age::max_age_micros),
                error = tracing::field::Empty,
            );
            let result = span.in_scope(|| {
                MemoryStore::set_max_age(self, stream, max_age).map_err(StoreError::from)
            });
            super::trace::record_result(&span, "set_max_age", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        MemoryStore::set_max_age(self, stream, max_age).map_err(StoreError::from)
    }

    async fn delete_all_streams(&self) -> Result<(), StoreError<MemoryError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.delete_all_streams",
                error = tracing::field::Empty,
            );
            let result =
                span.in_scope(|| MemoryStore::delete_all_streams(self).map_err(StoreError::from));
            super::trace::record_result(&span, "delete_all_streams", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        MemoryStore::delete_all_streams(self).map_err(StoreError::from)
    }

    async fn read_all<F>(&self, after: Option<Position>, visit: F) -> Result<(), MemoryError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        let start = after.map_or(Start::Beginning, Start::After);
        visit_each(
            // SAFETY: `visit_each` hands each envelope to `visit` for one
            // call (a higher-ranked borrow) and drops it before the next.
            unsafe { self.visit_all(start) },
            visit,
            #[cfg(feature = "tracing")]
            tracing::debug_span!(
                "hindsight.read_all",
                after = after.map(|after| after.0),
                visited = tracing::field::Empty,
            ),
        );
        Ok(())
    }

    async fn read_stream<F>(
        &self,
        stream: StreamId,
        from: StreamVersion,
        visit: F,
    ) -> Result<(), MemoryError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        visit_each(
            // SAFETY: as in `read_all`.
            unsafe { self.visit_stream(stream, from) },
            visit,
            #[cfg(feature = "tracing")]
            tracing::debug_span!(
                "hindsight.read_stream",
                %stream,
                from = from.0,
                visited = tracing::field::Empty,
            ),
        );
        Ok(())
    }

    async fn spawn_subscriber<X, H>(
        &self,
        selector: Selector<E>,
        mut handler: H,
    ) -> Result<MemorySubscriber<X>, MemoryError>
    where
        X: Send + Sync + 'static,
        H: FnMut(EventRef<'_, E, Position>) -> Result<Flow, X> + Send + 'static,
    {
        #[cfg(feature = "tracing")]
        let subscriber = {
            let span = tracing::info_span!("hindsight.spawn_subscriber", ?selector);
            let _entered = span.enter();
            let worker = super::trace::worker(&span, &selector);
            Subscriber::spawn(
                self,
                selector,
                move |envelope| handler(EventRef::from(envelope)),
                Some(worker),
            )
        };
        #[cfg(not(feature = "tracing"))]
        let subscriber = MemoryStore::spawn_subscriber(self, selector, move |envelope| {
            handler(EventRef::from(envelope))
        });
        Ok(MemorySubscriber { subscriber })
    }
}

/// Hands `events` to `visit` until it returns [`ControlFlow::Break`]. With
/// the `tracing` feature, inside `span`, which records how many it handed
/// over as `visited`.
#[inline]
fn visit_each<'a, E: 'a>(
    events: impl Iterator<Item = Envelope<'a, E>>,
    mut visit: impl FnMut(EventRef<'_, E, Position>) -> ControlFlow<()>,
    #[cfg(feature = "tracing")] span: tracing::Span,
) {
    #[cfg(feature = "tracing")]
    let (_entered, mut visited) = (span.enter(), 0u64);
    for envelope in events {
        #[cfg(feature = "tracing")]
        {
            visited += 1;
        }
        if visit(EventRef::from(envelope)).is_break() {
            break;
        }
    }
    #[cfg(feature = "tracing")]
    span.record("visited", visited);
}

/// The handle of a memory store subscriber behind
/// [`EventStore::spawn_subscriber`]: a [`Subscriber`] whose waits are async.
///
/// A type of its own rather than the trait implemented on [`Subscriber`]:
/// the trait's by-value `wait(self)` would win method resolution over the
/// inherent `wait(&self)`, and silently turn synchronous calls into futures.
///
/// Every wait is waker-based: it answers at once when it can, and otherwise
/// awaits the subscriber's progress signal (and, for its timeout, a
/// `futures_timer::Delay`, served by one helper thread for the whole
/// process), on any runtime or none. No wait starts a thread, and each is
/// cancel-safe: dropping its future releases everything it held.
///
/// Dropping the handle requests cancellation and returns at once (it never
/// blocks an executor thread); the worker stops before its next event and
/// exits on its own. `cancel().await` waits for that end without blocking
/// the thread. The handle holds the store weakly ([contract](crate::contract)
/// rule 24).
///
/// ```
/// use hindsight::{EventStore, ExpectedVersion, Flow, MemoryStore, Selector, StreamId,
///     SubscriberHandle, Transaction};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// let total = Arc::new(Mutex::new(0));
/// let sink = total.clone();
/// // By path: the inherent `spawn_subscriber` (blocking waits) wins method resolution.
/// let subscriber = EventStore::spawn_subscriber(&store, Selector::all(), move |event| {
///     *sink.lock().unwrap() += *event.payload;
///     Ok::<_, std::convert::Infallible>(Flow::Continue)
/// }).await.unwrap();
///
/// let done = store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2, 3])).unwrap();
/// subscriber.wait_processed(done.last_position().unwrap(), Duration::from_secs(10)).await.unwrap();
/// assert_eq!(*total.lock().unwrap(), 6);
/// subscriber.cancel().await;
/// assert!(subscriber.wait().await.is_ok());
/// # }
/// ```
pub struct MemorySubscriber<X> {
    subscriber: Subscriber<X>,
}

impl<X> MemorySubscriber<X> {
    /// The memory store's subscriber inside, with its blocking waits.
    pub fn subscriber(&self) -> &Subscriber<X> {
        &self.subscriber
    }
}

impl<X> fmt::Debug for MemorySubscriber<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscriber")
            .field("subscriber", &self.subscriber)
            .finish_non_exhaustive()
    }
}

impl<X: Send + Sync + 'static> SubscriberHandle<X> for MemorySubscriber<X> {
    type Cursor = Position;
    type Error = MemoryError;

    /// Requests cancellation, then waits (without blocking the thread) until
    /// the worker has ended: the handler's current call has returned and
    /// the handler and the store are released. Cancel-safe: dropping the
    /// future leaves the request in place (the subscriber still stops).
    ///
    /// It completes once the handler's current call returns, so a handler
    /// blocked on the awaiting task itself (a full channel that only this
    /// task drains) keeps it pending: drain from another task, or drop the
    /// handle instead (which never waits). Polled from inside a handler, it
    /// only requests and completes at once (see [`Subscriber::cancel`]).
    fn cancel(&self) -> impl Future<Output = ()> + Send {
        self.subscriber.cancel_async()
    }

    #[allow(clippy::result_large_err)] // once per subscriber, as `Subscriber::into_outcome`
    async fn wait(self) -> Result<(), SubscriberError<X, MemoryError>> {
        // The inherent outcome is the trait's: one error type for both.
        self.subscriber.into_outcome_async().await
    }

    fn wait_processed(
        &self,
        cursor: Position,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), WaitError>> + Send {
        self.subscriber.wait_processed_async(cursor, timeout)
    }

    fn wait_caught_up(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), WaitError>> + Send {
        // The committed prefix now, not when the future is first polled.
        let end = self.subscriber.caught_up_end();
        self.subscriber.wait_end_async(end, timeout)
    }

    fn processed(&self) -> Option<Position> {
        self.subscriber.processed()
    }

    fn is_finished(&self) -> bool {
        self.subscriber.is_finished()
    }
}
