//! Pull subscriptions: every selected event exactly once, in position
//! order, history first and then live events with no seam between them.
//!
//! A subscription is only a cursor over the log. It reads what lies below
//! the watermark at its own pace, so a slow subscriber loses nothing and
//! costs writers nothing. When it has passed everything committed it spins
//! briefly (`Backoff`), then parks on the watermark's signal until a writer
//! moves the watermark.

use crate::envelope::Envelope;
use crate::selector::Selector;
use crate::store::{Inner, MemoryStore};
use crate::stream::Stream;
use crate::sync::{Arc, Backoff};
use crate::Position;
use std::fmt;
use std::time::{Duration, Instant};

/// Why a subscription cannot deliver any more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The store was poisoned (see [`InsertError::Poisoned`](crate::InsertError::Poisoned)):
    /// every committed event was delivered, and no more will ever commit.
    Poisoned,
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionError::Poisoned => {
                write!(f, "the store is poisoned: no more events will commit")
            }
        }
    }
}

impl std::error::Error for SubscriptionError {}

/// Where a subscription is in the log.
pub(crate) struct Cursor<E> {
    pub(crate) selector: Selector<E>,
    /// The first selected position.
    first: u64,
    /// All streams: the next position to look at. One stream: the next
    /// version to look at.
    next: u64,
    /// The selected stream, once it exists.
    stream: Option<Arc<Stream>>,
    /// Every position below this has been looked at (delivered or skipped);
    /// when `advance` returns `None`, it equals the watermark it observed.
    passed: u64,
}

impl<E> Cursor<E> {
    pub(crate) fn new(selector: Selector<E>) -> Self {
        let first = selector.start.first();
        Self {
            next: if selector.stream.is_some() { 0 } else { first },
            first,
            stream: None,
            passed: first,
            selector,
        }
    }

    /// Every position below this has been looked at.
    #[inline]
    pub(crate) fn passed(&self) -> u64 {
        self.passed
    }

    /// Moves past the next selected committed event and returns its
    /// position; `None` once every committed position is passed.
    #[inline]
    pub(crate) fn advance(&mut self, inner: &Inner<E>) -> Option<u64> {
        let log = &inner.log;
        let watermark = log.committed();
        match self.selector.stream {
            None => {
                while self.next < watermark {
                    let position = self.next;
                    self.next += 1;
                    // SAFETY: `position < watermark`, loaded with Acquire above.
                    let envelope = unsafe { log.get_committed(position) };
                    if self.selector.selects_type(envelope.payload()) {
                        self.passed = position + 1;
                        return Some(position);
                    }
                }
            }
            Some(id) => {
                if self.stream.is_none() {
                    self.stream = inner.streams.get(id);
                }
                if let Some(stream) = &self.stream {
                    // The watermark was loaded first, as `committed_len` needs.
                    let len = stream.committed_len(watermark);
                    while self.next < len {
                        let position = stream.committed_position(self.next);
                        self.next += 1;
                        if position < self.first {
                            continue;
                        }
                        // SAFETY: a committed version's position lies below
                        // `watermark`, loaded with Acquire above.
                        let envelope = unsafe { log.get_committed(position) };
                        if self.selector.selects_type(envelope.payload()) {
                            self.passed = position + 1;
                            return Some(position);
                        }
                    }
                }
            }
        }
        self.passed = self.passed.max(watermark);
        None
    }
}

/// A pull subscription; see [`MemoryStore::subscribe`].
///
/// Envelopes are borrowed straight from the log: each one lives until the
/// next call on the subscription. Copy out what you need to keep.
pub struct Subscription<E> {
    store: MemoryStore<E>,
    cursor: Cursor<E>,
}

impl<E> MemoryStore<E> {
    /// Subscribes to the events `selector` selects: history first, then live
    /// events as they commit, each exactly once and in position order.
    ///
    /// The subscription keeps the store alive. Subscriptions started before,
    /// during or after a burst of writes all see the same sequence.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// use std::time::Duration;
    ///
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// store.insert(Transaction::single(stream, ExpectedVersion::Any, "history")).unwrap();
    ///
    /// let mut subscription = store.subscribe(Selector::all());
    /// assert_eq!(*subscription.next().unwrap().payload(), "history");
    ///
    /// let writer = store.clone();
    /// std::thread::spawn(move || {
    ///     writer.insert(Transaction::single(stream, ExpectedVersion::Any, "live")).unwrap();
    /// });
    /// assert_eq!(*subscription.next().unwrap().payload(), "live"); // blocks until it commits
    /// assert!(subscription.try_next().unwrap().is_none());
    /// assert!(subscription.next_timeout(Duration::from_millis(1)).unwrap().is_none());
    /// ```
    pub fn subscribe(&self, selector: Selector<E>) -> Subscription<E> {
        Subscription {
            store: self.clone(),
            cursor: Cursor::new(selector),
        }
    }
}

impl<E> Subscription<E> {
    /// The next selected event, if one is committed; never blocks.
    pub fn try_next(&mut self) -> Result<Option<&Envelope<E>>, SubscriptionError> {
        match self.cursor.advance(&self.store.inner) {
            Some(position) => Ok(Some(self.envelope(position))),
            None if self.store.inner.log.watermark.is_poisoned() => {
                Err(SubscriptionError::Poisoned)
            }
            None => Ok(None),
        }
    }

    /// The next selected event, blocking until one commits.
    #[allow(clippy::should_implement_trait)] // lending: the event borrows `self`, which `Iterator` cannot express
    pub fn next(&mut self) -> Result<&Envelope<E>, SubscriptionError> {
        let position = self
            .wait_next(None, &|| false)?
            .expect("without a deadline or a stop condition, only an event ends the wait");
        Ok(self.envelope(position))
    }

    /// The next selected event, blocking for at most `timeout`; `None` if
    /// none committed in time.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<&Envelope<E>>, SubscriptionError> {
        let deadline = Instant::now().checked_add(timeout);
        let position = self.wait_next(deadline, &|| false)?;
        Ok(position.map(|position| self.envelope(position)))
    }

    /// The next selected event, waiting asynchronously: parks the task, not
    /// the thread, so it is safe on any async runtime's worker threads.
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
    pub async fn next_async(&mut self) -> Result<&Envelope<E>, SubscriptionError> {
        loop {
            if let Some(position) = self.cursor.advance(&self.store.inner) {
                return Ok(self.envelope(position));
            }
            let watermark = &self.store.inner.log.watermark;
            if watermark.is_poisoned() {
                return Err(SubscriptionError::Poisoned);
            }
            let passed = self.cursor.passed();
            let sleeper = watermark.signal.prepare();
            if watermark.get() > passed || watermark.is_poisoned() {
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

    /// The store this subscription reads.
    pub fn store(&self) -> &MemoryStore<E> {
        &self.store
    }

    // Used by handler subscriptions, which loom builds leave out.
    #[cfg_attr(loom, allow(dead_code))]
    /// Moves past the next selected committed event; see `Cursor::advance`.
    #[inline]
    pub(crate) fn cursor_advance(&mut self) -> Option<u64> {
        self.cursor.advance(&self.store.inner)
    }

    // Used by handler subscriptions, which loom builds leave out.
    #[cfg_attr(loom, allow(dead_code))]
    /// The envelope at a position `cursor_advance` returned.
    #[inline]
    pub(crate) fn envelope_at(&self, position: u64) -> &Envelope<E> {
        self.envelope(position)
    }

    fn envelope(&self, position: u64) -> &Envelope<E> {
        // SAFETY: `position` came from `advance`, which found it below a
        // watermark loaded with Acquire.
        unsafe { self.store.inner.log.get_committed(position) }
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn cursor(&self) -> &Cursor<E> {
        &self.cursor
    }

    /// The next selected position, waiting until `deadline` or until `stop()`
    /// (both give `None`). `stop` is checked whenever the subscription would
    /// wait; whoever makes it true must then wake the watermark's signal.
    pub(crate) fn wait_next(
        &mut self,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<u64>, SubscriptionError> {
        let backoff = Backoff::new();
        loop {
            if let Some(position) = self.cursor.advance(&self.store.inner) {
                return Ok(Some(position));
            }
            if !self.wait_more(&backoff, deadline, stop)? {
                return Ok(None);
            }
        }
    }

    /// Having passed everything committed, waits until the watermark moves
    /// (`true`), or `stop()` or the deadline (`false`). Spins on `backoff`
    /// before it parks.
    pub(crate) fn wait_more(
        &self,
        backoff: &Backoff,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
    ) -> Result<bool, SubscriptionError> {
        let watermark = &self.store.inner.log.watermark;
        let passed = self.cursor.passed();
        loop {
            if watermark.get() > passed {
                return Ok(true);
            }
            if watermark.is_poisoned() {
                return Err(SubscriptionError::Poisoned);
            }
            if stop() || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(false);
            }
            if backoff.is_completed() {
                watermark.signal.park_until(
                    || watermark.get() > passed || watermark.is_poisoned() || stop(),
                    deadline,
                );
            } else {
                backoff.snooze();
            }
        }
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("selector", &self.cursor.selector)
            .field("passed", &self.cursor.passed)
            .finish_non_exhaustive()
    }
}
