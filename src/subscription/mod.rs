//! Pull subscriptions: every selected event exactly once, in position
//! order, history first and then live events with no seam between them.
//!
//! A subscription is only a cursor over the log. It reads what lies below
//! the watermark at its own pace, so a slow subscriber loses nothing and
//! costs writers nothing. When it has passed everything committed it spins
//! briefly (`Backoff`), then parks on the watermark's signal until a writer
//! moves the watermark.
//!
//! The folder holds every form of subscription, one concern a file: this
//! file, the pull [`Subscription`]; `cursor.rs`, the cursor they all move
//! through the log; `stream.rs`, the owned forms (a `Stream` and a blocking
//! iterator); `handler.rs`, the handler subscriber and its worker thread;
//! `error.rs`, every subscription error and its context. The methods of
//! [`MemoryStore`] that start them (`subscribe`, `spawn_subscriber`) live
//! with the store's others, in `store.rs`.
//!
//! Rules cited by number ("rule 17") are those of the contract
//! ([`crate::contract`]).

mod cursor;
pub(crate) mod error;
#[cfg(not(loom))]
pub(crate) mod handler;
pub(crate) mod stream;

pub(crate) use cursor::Cursor;
pub use error::SubscriptionError;
#[cfg(not(loom))]
pub use error::{EventContext, HandlerError, HandlerFailure, SubscriberError, WaitError};
#[cfg(feature = "tracing")]
pub(crate) use handler::WorkerTrace;
#[cfg(not(loom))]
pub use handler::{Flow, Subscriber};
pub use stream::{SubscriptionIter, SubscriptionStream};

use crate::envelope::Envelope;
use crate::ids::Position;
use crate::selector::Selector;
use crate::signal::Signal;
use crate::store::MemoryStore;
use std::fmt;
use std::time::{Duration, Instant};

/// A pull subscription; see [`MemoryStore::subscribe`].
///
/// Events are borrowed straight from the log: each [`Envelope`] lives until
/// the next call on the subscription. Copy out what you need to keep.
///
/// For an event that outlives the next call, a [`futures_core::Stream`] or
/// an [`Iterator`], turn it into its owned forms:
/// [`into_stream`](Self::into_stream) and [`into_iter`](Self::into_iter)
/// yield [`OwnedEnvelope`](crate::OwnedEnvelope)s.
pub struct Subscription<E> {
    pub(crate) store: MemoryStore<E>,
    pub(crate) cursor: Cursor<E>,
}

impl<E> Subscription<E> {
    /// A subscription of `store` at the start of `selector`; see
    /// [`MemoryStore::subscribe`].
    pub(crate) fn new(store: MemoryStore<E>, selector: Selector<E>) -> Self {
        let cursor = Cursor::new(selector, &store.inner);
        Subscription { store, cursor }
    }

    /// The next selected event, if one is committed; never blocks.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Poisoned`] once every committed event was
    /// delivered from a poisoned store.
    pub fn try_next(&mut self) -> Result<Option<Envelope<'_, E>>, SubscriptionError> {
        match self.cursor.advance(&self.store.inner) {
            Some(event) => Ok(Some(event)),
            None if self.store.inner.log.watermark.is_poisoned() => {
                Err(SubscriptionError::Poisoned)
            }
            None => Ok(None),
        }
    }

    /// The next selected event, blocking until one commits.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next).
    #[allow(clippy::should_implement_trait)] // lending: the event borrows `self`, which `Iterator` cannot express
    pub fn next(&mut self) -> Result<Envelope<'_, E>, SubscriptionError> {
        let event = self
            .wait_next(None, &|| false)?
            .expect("without a deadline or a stop condition, only an event ends the wait");
        Ok(event)
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
    ) -> Result<Option<Envelope<'_, E>>, SubscriptionError> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_next(deadline, &|| false)
    }

    /// Delivers every selected event committed now to `visit`, in order,
    /// and returns how many it delivered; never blocks. The batch form of
    /// [`try_next`](Self::try_next): the watermark is loaded once per batch,
    /// not once per event, which is how a subscriber catches up at the speed
    /// of a read.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next), once nothing is left to deliver.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2, 3])).unwrap();
    /// let mut subscription = store.subscribe(Selector::all());
    /// let mut sum = 0;
    /// assert_eq!(subscription.drain(|event| sum += *event.payload()).unwrap(), 3);
    /// assert_eq!(sum, 6);
    /// assert_eq!(subscription.drain(|_| unreachable!()).unwrap(), 0);
    /// ```
    pub fn drain(
        &mut self,
        mut visit: impl FnMut(Envelope<'_, E>),
    ) -> Result<u64, SubscriptionError> {
        let mut delivered = 0;
        while let Some(event) = self.cursor.advance(&self.store.inner) {
            visit(event);
            delivered += 1;
        }
        if delivered == 0 && self.store.inner.log.watermark.is_poisoned() {
            return Err(SubscriptionError::Poisoned);
        }
        Ok(delivered)
    }

    /// The next selected event, waiting asynchronously: parks the task, not
    /// the thread, so it is safe on any async runtime's worker threads.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next).
    ///
    /// ```
    /// # use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// # let store = MemoryStore::new();
    /// # store.insert(Transaction::single(StreamId::new(), ExpectedVersion::Any, 7)).unwrap();
    /// let mut subscription = store.subscribe(Selector::all());
    /// let first = futures_lite_block_on(async { *subscription.next_async().await.unwrap().payload() });
    /// assert_eq!(first, 7);
    /// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v } }
    /// # }
    /// ```
    pub async fn next_async(&mut self) -> Result<Envelope<'_, E>, SubscriptionError> {
        loop {
            if let Some(event) = self.cursor.advance(&self.store.inner) {
                return Ok(event);
            }
            let inner = &*self.store.inner;
            if inner.log.watermark.is_poisoned() {
                return Err(SubscriptionError::Poisoned);
            }
            let sleeper = self.cursor.signal(inner).prepare();
            if self.cursor.may_have_more(inner) || inner.log.watermark.is_poisoned() {
                continue;
            }
            sleeper.notified().await;
        }
    }

    /// The last position delivered or passed over: every position up to and
    /// including it has been seen. `None` until position 0 is passed.
    pub fn passed(&self) -> Option<Position> {
        self.cursor.passed().checked_sub(1).map(Position)
    }

    /// Whether the subscription has caught up: every event committed when
    /// it last looked at the watermark has been delivered (or skipped, as
    /// other streams and types are). It looks whenever it has delivered
    /// everything below the value it loaded before, so this turns true with
    /// the delivery of the last event committed then (for a one-stream
    /// subscription, its stream's last; with a type filter, possibly only
    /// when the next call finds nothing more), and at once when a call
    /// finds nothing to deliver. It stays true until the subscription
    /// loads a watermark with more to deliver. `false` before the first
    /// call. Never blocks, never loads anything: a history-then-live
    /// consumer asks it after each event to learn that the history is done.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2])).unwrap();
    /// let mut subscription = store.subscribe(Selector::all());
    /// assert!(!subscription.is_caught_up()); // nothing checked yet
    /// subscription.try_next().unwrap();
    /// assert!(!subscription.is_caught_up());
    /// subscription.try_next().unwrap();
    /// assert!(subscription.is_caught_up()); // the last event committed when it looked
    /// assert!(subscription.try_next().unwrap().is_none());
    /// assert!(subscription.is_caught_up());
    /// ```
    pub fn is_caught_up(&self) -> bool {
        self.cursor.is_caught_up()
    }

    /// The store this subscription reads.
    pub fn store(&self) -> &MemoryStore<E> {
        &self.store
    }

    // Used by subscribers (handler subscriptions), which loom builds leave out.
    #[cfg_attr(loom, allow(dead_code))]
    /// Moves past the next selected committed event and returns it with
    /// the selector (for the event's context); see `Cursor::advance`.
    #[inline]
    pub(crate) fn advance(&mut self) -> Option<(Envelope<'_, E>, &Selector<E>)> {
        let event = self.cursor.advance(&self.store.inner)?;
        Some((event, &self.cursor.selector))
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn cursor(&self) -> &Cursor<E> {
        &self.cursor
    }

    /// The next selected event, waiting until `deadline` or until `stop()`
    /// (both give `None`). `stop` is checked whenever the subscription would
    /// wait; whoever makes it true must then wake the cursor's signal
    /// (`Cursor::signal`).
    pub(crate) fn wait_next(
        &mut self,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Envelope<'_, E>>, SubscriptionError> {
        loop {
            if let Some(event) = self.cursor.advance(&self.store.inner) {
                return Ok(Some(event));
            }
            if !self.wait_more(deadline, stop, false)? {
                return Ok(None);
            }
        }
    }

    /// Having passed everything committed, waits until a commit may hold
    /// an event for the cursor (`true`), or `stop()` or the deadline
    /// (`false`): spins, yields, then parks
    /// ([`Signal::wait_until`](crate::signal::Signal::wait_until)) on the
    /// cursor's signal. With `wide`, waits for any commit instead, on the
    /// watermark's signal: a handler subscriber of one stream that a
    /// `wait_processed` needs to see other streams' positions pass.
    pub(crate) fn wait_more(
        &self,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
        wide: bool,
    ) -> Result<bool, SubscriptionError> {
        let inner = &*self.store.inner;
        let watermark = &inner.log.watermark;
        let passed = self.cursor.passed();
        let (signal, moved): (&Signal, &dyn Fn() -> bool) = if wide {
            (&watermark.signal, &|| watermark.get() > passed)
        } else {
            (self.cursor.signal(inner), &|| {
                self.cursor.may_have_more(inner)
            })
        };
        signal.wait_until(|| moved() || watermark.is_poisoned() || stop(), deadline);
        if moved() {
            Ok(true)
        } else if watermark.is_poisoned() {
            Err(SubscriptionError::Poisoned)
        } else {
            Ok(false)
        }
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        // Hand the held stream back: the index drops its entry if the
        // stream never held an event and nobody else holds it.
        if let Some(stream) = self.cursor.pin.take() {
            self.store.inner.streams.release(stream);
        }
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("selector", &self.cursor.selector)
            .field("passed", &self.cursor.passed())
            .finish_non_exhaustive()
    }
}
