//! The owned forms of a pull subscription: a [`futures_core::Stream`] for
//! async code and a blocking [`Iterator`] for sync code, both yielding
//! [`OwnedEnvelope`]s.
//!
//! Both wrap a [`Subscription`] and its cursor, so they deliver exactly what
//! it would (rule 17), and differ only in how they wait. The stream waits
//! with the same handshake as every other wait of the crate (`Signal`'s
//! module docs): register a listener, count the sleeper, fence, check the
//! condition again, and only then return `Pending`. The listener is owned
//! (`OwnedSleeper`), so it survives between polls and a notification that
//! arrives between the check and the poll that registers the waker is kept
//! by the listener, not lost.
//!
//! Rules cited by number ("rule 17") are those of the contract
//! ([`crate::contract`]).

use crate::envelope::OwnedEnvelope;
use crate::ids::Position;
use crate::signal::{HoldsSignal, OwnedSleeper, Signal};
use crate::store::MemoryStore;
use crate::stream::Stream as LogStream;
use crate::subscription::{Subscription, SubscriptionError};
use crate::sync::Arc;
use futures_core::stream::{FusedStream, Stream};
use std::fmt;
use std::iter::FusedIterator;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What keeps the signal a [`SubscriptionStream`] waits on alive between
/// polls: the store, for the watermark's signal (all streams), or the
/// selected stream, for its own (one stream: targeted wake-ups).
enum Holder<E> {
    Store(MemoryStore<E>),
    Stream(Arc<LogStream>),
}

impl<E> HoldsSignal for Holder<E> {
    fn signal(&self) -> &Signal {
        match self {
            Holder::Store(store) => &store.inner.log.watermark.signal,
            Holder::Stream(stream) => &stream.signal,
        }
    }
}

impl<E> Subscription<E> {
    /// The next selected committed event, owned; never blocks.
    #[inline]
    fn advance_owned(&mut self) -> Option<OwnedEnvelope<E>> {
        let event = self.cursor.advance(&self.store.inner)?;
        let pin = self.cursor.pin_of(event.position().0);
        // SAFETY: the cursor reads the log of `self.store`, and lends from
        // it; `pin` holds the event's segment if it can be freed.
        Some(unsafe { OwnedEnvelope::new(self.store.clone(), event, pin) })
    }

    /// [`try_next`](Self::try_next), owned.
    fn try_next_owned(&mut self) -> Result<Option<OwnedEnvelope<E>>, SubscriptionError> {
        match self.advance_owned() {
            Some(event) => Ok(Some(event)),
            None if self.store.inner.log.watermark.is_poisoned() => {
                Err(SubscriptionError::Poisoned)
            }
            None => Ok(None),
        }
    }

    /// The next event, owned, blocking until `deadline` (`None` if it
    /// passed first).
    fn wait_next_owned(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<OwnedEnvelope<E>>, SubscriptionError> {
        loop {
            if let Some(event) = self.advance_owned() {
                return Ok(Some(event));
            }
            if !self.wait_more(deadline, &|| false, false)? {
                return Ok(None);
            }
        }
    }

    /// This subscription as a [`futures_core::Stream`] of owned events, for
    /// async code; see [`SubscriptionStream`].
    pub fn into_stream(self) -> SubscriptionStream<E> {
        SubscriptionStream {
            sleeper: None,
            subscription: self,
            terminated: false,
        }
    }
}

/// This subscription as a blocking iterator of owned events, for sync code;
/// see [`SubscriptionIter`].
impl<E> IntoIterator for Subscription<E> {
    type Item = Result<OwnedEnvelope<E>, SubscriptionError>;
    type IntoIter = SubscriptionIter<E>;

    fn into_iter(self) -> SubscriptionIter<E> {
        SubscriptionIter {
            subscription: self,
            terminated: false,
        }
    }
}

/// A subscription as a [`futures_core::Stream`] of [`OwnedEnvelope`]s; made
/// by [`Subscription::into_stream`].
///
/// It delivers every selected event exactly once, in position order,
/// history first and then live events with no seam (rule 17), and waits
/// without blocking a thread: when it has delivered everything committed,
/// `poll_next` registers the task's waker with the store and returns
/// `Pending` until a commit moves the watermark. Events are not copied and
/// `E` needs no `Clone` (each [`OwnedEnvelope`] costs one reference count
/// increment). It is `Send + 'static` when `E: Send + Sync`, so it can be
/// moved into `tokio::spawn`.
///
/// **Cancel-safe** (rule 28). A poll moves the subscription past an event
/// only in the poll that returns it, so dropping a `next()` future (a lost
/// `tokio::select!` branch, a timeout) loses no event and delivers none
/// twice: the next poll continues where the last returned event left off.
/// Dropping the stream never blocks; it unregisters its waker.
///
/// A poll that finds events returns one at once, so a catch-up over a long
/// history never returns `Pending` until it has caught up; a consumer that
/// shares its thread with other tasks may want to yield now and then.
///
/// **Errors.** `Some(Err(SubscriptionError::Poisoned))` once every event
/// committed before the store was poisoned has been delivered; the stream
/// then ends (`None`, and [`FusedStream::is_terminated`] is `true`).
///
/// [`is_caught_up`](Self::is_caught_up) tells when the history is done.
///
/// ```
/// use futures_util::StreamExt;
/// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// store.insert(Transaction::single(stream, ExpectedVersion::Any, "history")).unwrap();
///
/// let mut events = store.subscribe(Selector::all()).into_stream();
/// let consumer = tokio::spawn(async move {
///     let mut seen = Vec::new();
///     while let Some(event) = events.next().await {
///         let event = event.unwrap();
///         seen.push(*event.payload());
///         if seen.len() == 2 {
///             return seen;
///         }
///     }
///     unreachable!("a subscription only ends on an error");
/// });
/// store.insert(Transaction::single(stream, ExpectedVersion::Any, "live")).unwrap();
/// assert_eq!(consumer.await.unwrap(), ["history", "live"]);
/// # });
/// ```
///
/// A stream of events that cannot be shared across threads is not `Send`:
///
/// ```compile_fail
/// fn spawnable<T: Send + 'static>(_: T) {}
/// let store = hindsight::MemoryStore::<std::rc::Rc<u8>>::new();
/// spawnable(store.subscribe(hindsight::Selector::all()).into_stream());
/// ```
pub struct SubscriptionStream<E> {
    /// Registered on the cursor's signal (`Cursor::signal`) while the
    /// stream waits. Declared first, so dropped first: a sleeper holding
    /// the selected stream lets go of it before the subscription hands the
    /// stream back to the index, which then removes an entry left empty.
    sleeper: Option<OwnedSleeper<Holder<E>>>,
    subscription: Subscription<E>,
    /// An error was yielded: the stream has ended.
    terminated: bool,
}

impl<E> SubscriptionStream<E> {
    /// Whether the stream has caught up: everything committed when it last
    /// looked has been delivered; see [`Subscription::is_caught_up`]. While
    /// a `next()` future of it is pending, the answer is `true`.
    pub fn is_caught_up(&self) -> bool {
        self.subscription.is_caught_up()
    }

    /// The last position delivered or passed over; see
    /// [`Subscription::passed`].
    pub fn passed(&self) -> Option<Position> {
        self.subscription.passed()
    }

    /// The store this stream reads.
    pub fn store(&self) -> &MemoryStore<E> {
        self.subscription.store()
    }

    /// The pull subscription back, where this stream left off.
    pub fn into_subscription(self) -> Subscription<E> {
        self.subscription
    }
}

impl<E> Stream for SubscriptionStream<E> {
    type Item = Result<OwnedEnvelope<E>, SubscriptionError>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.terminated {
            return Poll::Ready(None);
        }
        // The catch-up path, kept small enough to inline into the caller's
        // loop: an event is ready.
        let subscription = &mut this.subscription;
        if let Some(event) = subscription.cursor.advance(&subscription.store.inner) {
            if this.sleeper.is_some() {
                // Nothing to wait for: stop costing writers a notify.
                this.sleeper = None;
            }
            let pin = subscription.cursor.pin_of(event.position().0);
            // SAFETY: the cursor reads the log of `subscription.store`, and
            // lends from it; `pin` holds the event's segment if it can be
            // freed.
            let event = unsafe { OwnedEnvelope::new(subscription.store.clone(), event, pin) };
            return Poll::Ready(Some(Ok(event)));
        }
        this.poll_wait(cx)
    }
}

impl<E> SubscriptionStream<E> {
    /// `poll_next` once the cursor found nothing: the end, or the wait.
    #[inline(never)]
    fn poll_wait(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<OwnedEnvelope<E>, SubscriptionError>>> {
        loop {
            let store = &self.subscription.store;
            let watermark = &store.inner.log.watermark;
            if watermark.is_poisoned() {
                self.sleeper = None;
                self.terminated = true;
                return Poll::Ready(Some(Err(SubscriptionError::Poisoned)));
            }
            match &mut self.sleeper {
                // Registered by an earlier pass or poll: a notification
                // since then is kept by the listener, so this is Ready; if
                // none came, it stores `cx`'s waker for the next one.
                Some(sleeper) => match sleeper.poll_notified(cx) {
                    Poll::Ready(()) => self.sleeper = None,
                    Poll::Pending => return Poll::Pending,
                },
                None => {
                    // The handshake of `Signal::prepare`, owned: register
                    // and fence, then check again. A commit whose fence came
                    // before ours is seen by this check; one whose fence
                    // came after sees our count and notifies our listener.
                    let cursor = &self.subscription.cursor;
                    let holder = match cursor.pinned_stream() {
                        Some(stream) => Holder::Stream(Arc::clone(stream)),
                        None => Holder::Store(store.clone()),
                    };
                    let sleeper = OwnedSleeper::new(holder);
                    if !cursor.may_have_more(&store.inner) && !watermark.is_poisoned() {
                        self.sleeper = Some(sleeper);
                    }
                }
            }
            // Look again: after a notification, or a registration whose
            // check found the watermark moved (or a fresh registration,
            // which is polled on the next pass).
            if let Some(event) = self.subscription.advance_owned() {
                self.sleeper = None;
                return Poll::Ready(Some(Ok(event)));
            }
        }
    }
}

impl<E> FusedStream for SubscriptionStream<E> {
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

impl<E> fmt::Debug for SubscriptionStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionStream")
            .field("subscription", &self.subscription)
            .field("waiting", &self.sleeper.is_some())
            .field("terminated", &self.terminated)
            .finish()
    }
}

/// A subscription as a blocking [`Iterator`] of [`OwnedEnvelope`]s, for
/// sync code; made by [`Subscription::into_iter`](IntoIterator::into_iter).
///
/// `next` blocks until the next selected event commits (spinning briefly,
/// then parking the thread), and delivers every selected event exactly
/// once, in position order (rule 17). It never returns `None` on its own:
/// only after it yielded `Err(SubscriptionError::Poisoned)` (every event
/// committed before the store was poisoned delivered) does it end. For a
/// bounded wait use [`next_timeout`](Self::next_timeout), for none
/// [`try_next`](Self::try_next).
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
/// use std::time::Duration;
///
/// let store = MemoryStore::new();
/// let stream = StreamId::new();
/// store.insert(Transaction::new().append(stream, ExpectedVersion::Any, [1, 2, 3])).unwrap();
///
/// let mut events = store.subscribe(Selector::stream(stream)).into_iter();
/// let first_two: Vec<i32> = events.by_ref().take(2).map(|e| *e.unwrap().payload()).collect();
/// assert_eq!(first_two, [1, 2]);
/// assert_eq!(*events.next_timeout(Duration::from_secs(5)).unwrap().unwrap().payload(), 3);
/// assert!(events.is_caught_up());
/// assert!(events.next_timeout(Duration::from_millis(1)).unwrap().is_none());
/// ```
pub struct SubscriptionIter<E> {
    subscription: Subscription<E>,
    /// An error was yielded: the iterator has ended.
    terminated: bool,
}

impl<E> SubscriptionIter<E> {
    /// The next selected event, if one is committed; never blocks.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Poisoned`] once every committed event was
    /// delivered from a poisoned store (every later call too).
    pub fn try_next(&mut self) -> Result<Option<OwnedEnvelope<E>>, SubscriptionError> {
        self.subscription.try_next_owned()
    }

    /// The next selected event, blocking for at most `timeout`; `None` if
    /// none committed in time.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<OwnedEnvelope<E>>, SubscriptionError> {
        let deadline = Instant::now().checked_add(timeout);
        self.subscription.wait_next_owned(deadline)
    }

    /// Whether the iterator has caught up; see
    /// [`Subscription::is_caught_up`].
    pub fn is_caught_up(&self) -> bool {
        self.subscription.is_caught_up()
    }

    /// The last position delivered or passed over; see
    /// [`Subscription::passed`].
    pub fn passed(&self) -> Option<Position> {
        self.subscription.passed()
    }

    /// The store this iterator reads.
    pub fn store(&self) -> &MemoryStore<E> {
        self.subscription.store()
    }

    /// The pull subscription back, where this iterator left off.
    pub fn into_subscription(self) -> Subscription<E> {
        self.subscription
    }
}

impl<E> Iterator for SubscriptionIter<E> {
    type Item = Result<OwnedEnvelope<E>, SubscriptionError>;

    /// The next selected event, blocking until one commits.
    fn next(&mut self) -> Option<Self::Item> {
        if self.terminated {
            return None;
        }
        match self.subscription.wait_next_owned(None) {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => unreachable!("without a deadline only an event or an error ends the wait"),
            Err(error) => {
                self.terminated = true;
                Some(Err(error))
            }
        }
    }
}

impl<E> FusedIterator for SubscriptionIter<E> {}

impl<E> fmt::Debug for SubscriptionIter<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionIter")
            .field("subscription", &self.subscription)
            .field("terminated", &self.terminated)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ids::StreamId;
    use crate::store::fault;
    use crate::transaction::{ExpectedVersion, Transaction};
    use crate::Selector;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::task::Waker;

    /// A store holding one event, then poisoned by a writer that panics
    /// between reserving and committing (the test-only fault hook).
    fn poisoned_after_one_event() -> MemoryStore<u32> {
        let store = MemoryStore::new();
        let stream = StreamId::new();
        store
            .insert(Transaction::single(stream, ExpectedVersion::Any, 1))
            .unwrap();
        store
    }

    fn poison(store: &MemoryStore<u32>) {
        fault::after_writes(0, || {
            panic!("injected fault between reservation and commit")
        });
        let insert = catch_unwind(AssertUnwindSafe(|| {
            store.insert(Transaction::single(
                StreamId::new(),
                ExpectedVersion::Any,
                2,
            ))
        }));
        assert!(insert.is_err());
        assert!(store.is_poisoned());
    }

    /// A poisoned store: the stream delivers every committed event, then
    /// one error, then ends (`FusedStream`); a stream parked before the
    /// poisoning gets the error on its next poll.
    #[test]
    fn a_stream_on_a_poisoned_store_delivers_the_committed_events_then_one_error_and_ends() {
        let store = poisoned_after_one_event();
        let mut parked = store.subscribe(Selector::all()).into_stream();
        let mut cx = Context::from_waker(Waker::noop());
        let mut poll =
            |stream: &mut SubscriptionStream<u32>| match Pin::new(stream).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(event))) => Some(Ok(*event.payload())),
                Poll::Ready(Some(Err(error))) => Some(Err(error)),
                Poll::Ready(None) => None,
                Poll::Pending => Some(Ok(u32::MAX)),
            };
        assert_eq!(poll(&mut parked), Some(Ok(1)));
        assert_eq!(poll(&mut parked), Some(Ok(u32::MAX)), "pending: caught up");
        assert!(parked.sleeper.is_some(), "registered while it waits");
        poison(&store);
        let mut fresh = store.subscribe(Selector::all()).into_stream();
        for stream in [&mut parked, &mut fresh] {
            if stream.passed().is_none() {
                assert_eq!(poll(stream), Some(Ok(1)));
            }
            assert!(!stream.is_terminated());
            assert_eq!(poll(stream), Some(Err(SubscriptionError::Poisoned)));
            assert!(stream.is_terminated());
            assert!(stream.sleeper.is_none(), "unregistered");
            assert_eq!(poll(stream), None);
        }
    }

    /// The same for the blocking iterator: the events, one error, then
    /// `None`; its `try_next` and `next_timeout` keep reporting the error.
    #[test]
    fn the_iterator_on_a_poisoned_store_delivers_the_committed_events_then_one_error_and_ends() {
        let store = poisoned_after_one_event();
        poison(&store);
        let mut events = store.subscribe(Selector::all()).into_iter();
        assert_eq!(*events.next().unwrap().unwrap().payload(), 1);
        assert_eq!(events.try_next().err(), Some(SubscriptionError::Poisoned));
        assert_eq!(
            events.next_timeout(Duration::from_secs(60)).err(),
            Some(SubscriptionError::Poisoned)
        );
        assert_eq!(
            events.next().map(|e| e.err()),
            Some(Some(SubscriptionError::Poisoned))
        );
        assert!(events.next().is_none());
    }
}
