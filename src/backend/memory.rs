//! [`EventStore`] for [`MemoryStore`]: the synchronous inherent API inside
//! futures that are ready on their first poll.

use super::{EventRef, EventStore, StoreError, SubscriptionFailure, SubscriptionHandle};
use crate::error::InsertError;
use crate::ids::{Position, StreamId, StreamVersion};
use crate::read::Start;
use crate::selector::Selector;
use crate::store::MemoryStore;
use crate::subscriber::{Flow, Subscriber, SubscriberError, WaitError};
use crate::transaction::{Committed, StreamHead, Transaction};
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
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
        }
    }
}

/// The memory store behind the trait. Each future makes the inherent call
/// when first polled (so, like any future, nothing happens until it is
/// awaited) and is then ready.
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
    type Subscription<X: Send + Sync + 'static> = MemorySubscription<X>;

    async fn insert(&self, tx: Transaction<E>) -> Result<Committed, StoreError<MemoryError>> {
        MemoryStore::insert(self, tx).map_err(StoreError::from)
    }

    async fn head(&self) -> Result<Option<Position>, MemoryError> {
        Ok(MemoryStore::head(self))
    }

    async fn stream_head(&self, stream: StreamId) -> Result<Option<StreamHead>, MemoryError> {
        Ok(MemoryStore::stream_head(self, stream))
    }

    async fn read_all<F>(&self, after: Option<Position>, mut visit: F) -> Result<(), MemoryError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        let start = after.map_or(Start::Beginning, Start::After);
        for envelope in MemoryStore::read_all(self, start) {
            if visit(EventRef::from(envelope)).is_break() {
                break;
            }
        }
        Ok(())
    }

    async fn read_stream<F>(
        &self,
        stream: StreamId,
        from: StreamVersion,
        mut visit: F,
    ) -> Result<(), MemoryError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        for envelope in MemoryStore::read_stream(self, stream, from) {
            if visit(EventRef::from(envelope)).is_break() {
                break;
            }
        }
        Ok(())
    }

    async fn subscribe<X, H>(
        &self,
        selector: Selector<E>,
        mut handler: H,
    ) -> Result<MemorySubscription<X>, MemoryError>
    where
        X: Send + Sync + 'static,
        H: FnMut(EventRef<'_, E, Position>) -> Result<Flow, X> + Send + 'static,
    {
        let subscriber =
            self.spawn_subscriber(selector, move |envelope| handler(EventRef::from(envelope)));
        let store = self.clone();
        Ok(MemorySubscription {
            subscriber: Arc::new(subscriber),
            head: Arc::new(move || store.head()),
        })
    }
}

/// The handle of a memory store subscription behind
/// [`EventStore::subscribe`]: a [`Subscriber`] whose waits are async.
///
/// A wait that cannot be answered at once runs the subscriber's blocking
/// wait on a short-lived helper thread and completes from there, so no
/// executor thread is ever blocked and no particular runtime is needed
/// (the memory store's inherent [`Subscriber`] waits stay the fast path).
/// Dropping the handle cancels the subscription and waits for its thread;
/// prefer `cancel().await` in async code.
///
/// ```
/// use hindsight::{EventStore, ExpectedVersion, Flow, MemoryStore, Selector, StreamId,
///     SubscriptionHandle, Transaction};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// let total = Arc::new(Mutex::new(0));
/// let sink = total.clone();
/// // `EventStore::subscribe`: the inherent `subscribe` is the pull subscription.
/// let subscription = EventStore::subscribe(&store, Selector::all(), move |event| {
///     *sink.lock().unwrap() += *event.payload;
///     Ok::<_, std::convert::Infallible>(Flow::Continue)
/// }).await.unwrap();
///
/// let done = store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2, 3])).unwrap();
/// subscription.wait_processed(done.last_position().unwrap(), Duration::from_secs(10)).await.unwrap();
/// assert_eq!(*total.lock().unwrap(), 6);
/// subscription.cancel().await;
/// assert!(subscription.wait().await.is_ok());
/// # }
/// ```
pub struct MemorySubscription<X> {
    subscriber: Arc<Subscriber<X>>,
    /// The store's head, for `wait_caught_up`.
    head: Arc<dyn Fn() -> Option<Position> + Send + Sync>,
}

impl<X> MemorySubscription<X> {
    /// The memory store's subscriber inside, with its blocking waits.
    pub fn subscriber(&self) -> &Subscriber<X> {
        &self.subscriber
    }
}

impl<X> fmt::Debug for MemorySubscription<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscription")
            .field("subscriber", &self.subscriber)
            .finish_non_exhaustive()
    }
}

impl<X: Send + Sync + 'static> SubscriptionHandle<X> for MemorySubscription<X> {
    type Cursor = Position;
    type Error = MemoryError;

    fn cancel(&self) -> impl Future<Output = ()> + Send {
        let subscriber = Arc::clone(&self.subscriber);
        async move {
            if subscriber.is_finished() {
                // Its thread has set the outcome and is exiting: joining it
                // is a matter of microseconds.
                subscriber.cancel();
            } else {
                offload(move || subscriber.cancel()).await;
            }
        }
    }

    #[allow(clippy::result_large_err)] // once per subscription, as `Subscriber::into_outcome`
    async fn wait(self) -> Result<(), SubscriptionFailure<X, MemoryError>> {
        let outcome = match Arc::try_unwrap(self.subscriber) {
            Ok(subscriber) if subscriber.is_finished() => subscriber.into_outcome(),
            Ok(subscriber) => offload(move || subscriber.into_outcome()).await,
            Err(shared) => offload(move || outcome_of_shared(shared)).await,
        };
        outcome.map_err(|error| match error {
            SubscriberError::Handler(error) => SubscriptionFailure::Handler(error),
            // `SubscriberError` is non-exhaustive; poisoning is its only
            // other way to end.
            _ => SubscriptionFailure::Backend(MemoryError::Poisoned),
        })
    }

    fn wait_processed(
        &self,
        cursor: Position,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), WaitError>> + Send {
        let subscriber = Arc::clone(&self.subscriber);
        async move { wait_processed(subscriber, cursor, timeout).await }
    }

    fn wait_caught_up(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), WaitError>> + Send {
        let subscriber = Arc::clone(&self.subscriber);
        // The head now, not when the future is first polled.
        let head = (self.head)();
        async move {
            match head {
                None => Ok(()),
                Some(head) => wait_processed(subscriber, head, timeout).await,
            }
        }
    }

    fn processed(&self) -> Option<Position> {
        self.subscriber.processed()
    }

    fn is_finished(&self) -> bool {
        self.subscriber.is_finished()
    }
}

async fn wait_processed<X: Send + Sync + 'static>(
    subscriber: Arc<Subscriber<X>>,
    position: Position,
    timeout: Duration,
) -> Result<(), WaitError> {
    // Answer at once when possible: no thread for a wait already satisfied.
    match subscriber.wait_processed(position, Duration::ZERO) {
        Err(WaitError::TimedOut) if !timeout.is_zero() => {
            offload(move || subscriber.wait_processed(position, timeout)).await
        }
        answer => answer,
    }
}

/// The outcome of a subscriber that other helper threads may still hold:
/// they all return as soon as it has ended, which `wait` waits for first.
#[allow(clippy::result_large_err)] // once per subscription
fn outcome_of_shared<X>(mut shared: Arc<Subscriber<X>>) -> Result<(), SubscriberError<X>> {
    let _ = shared.wait();
    loop {
        match Arc::try_unwrap(shared) {
            Ok(subscriber) => return subscriber.into_outcome(),
            Err(still_shared) => {
                shared = still_shared;
                std::thread::yield_now();
            }
        }
    }
}

/// Runs `work` on a helper thread; the returned future completes with its
/// result (or resumes its panic), whatever runtime polls it.
fn offload<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Offloaded<T> {
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let theirs = Arc::clone(&slot);
    std::thread::Builder::new()
        .name("hindsight-wait".into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(work));
            let waker = {
                let mut slot = theirs.lock().unwrap_or_else(PoisonError::into_inner);
                slot.result = Some(result);
                slot.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        })
        .expect("failed to spawn a wait thread");
    Offloaded { slot }
}

type Outcome<T> = Result<T, Box<dyn Any + Send>>;

struct Slot<T> {
    result: Option<Outcome<T>>,
    waker: Option<Waker>,
}

/// The result of [`offload`]'s helper thread, as a future.
struct Offloaded<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Future for Offloaded<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.result.take() {
            Some(Ok(value)) => Poll::Ready(value),
            Some(Err(panic)) => {
                drop(slot);
                resume_unwind(panic)
            }
            None => {
                match &mut slot.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    waker => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}
